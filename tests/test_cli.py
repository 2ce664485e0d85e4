"""The `authsvc` command line: its version, its help, its type errors, and the progress
`check` and `migrate` report on stderr while they walk a store."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
from importlib.metadata import version

import pytest

from authsvc.__main__ import build_parser, main


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "authsvc", *args]
    return subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120
    )


def test_version_comes_from_the_package_metadata():
    done = _run("--version")
    assert (done.returncode, done.stdout) == (0, f"authsvc {version('authsvc')}\n")


def test_every_subcommand_has_a_description_and_every_option_help():
    parser = build_parser()
    [subparsers] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    listed = {choice.dest for choice in subparsers._choices_actions}
    assert listed == set(subparsers.choices)  # every command has a one-line help
    for name, sub in subparsers.choices.items():
        assert sub.description and len(sub.description) > 40, name
        for action in sub._actions:
            if action.help is argparse.SUPPRESS:
                continue  # --worker-of: the supervisor's, not a user's
            assert action.help, f"authsvc {name} {action.option_strings}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["serve", "--workers", "abc"],
            "argument --workers: expected a whole number of at least 1, not 'abc'",
        ),
        (["serve", "--workers", "0"], "expected a whole number of at least 1, not '0'"),
        (
            ["serve", "--port", "http"],
            "argument --port: expected a port number from 0 to 65535, not 'http'",
        ),
        (["store", "--port", "0"], "expected a port number from 1 to 65535, not '0'"),
        (
            ["check", "--progress-every", "often"],
            "argument --progress-every: expected a number of seconds from 0 to 3600, not 'often'",
        ),
    ],
)
def test_a_bad_option_value_says_what_is_expected(args, expected, capsys):
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert expected in err and "invalid" not in err


_PROGRESS = re.compile(
    r"authsvc (check|migrate): (\d+) keys scanned, (.+) so far \(([a-z -]+), \d+\.\d s\)"
)


def _progress(stderr: str) -> list[tuple[int, str, str]]:
    rows = []
    for line in stderr.splitlines():
        match = _PROGRESS.fullmatch(line)
        assert match, f"not a progress line: {line!r}"
        rows.append((int(match[2]), match[3], match[4]))
    return rows


async def test_check_reports_progress_on_stderr(redis_server, store):
    ghosts = 1200  # stale claims: three batches of the walk
    pipe = store.pipeline(transaction=False)
    for i in range(ghosts):
        pipe.set(f"account:username:ghost{i}", "123")
    await pipe.execute()
    env = {"KEYDB_URL": redis_server.url}

    done = await asyncio.to_thread(_run, "check", "--progress-every", "0", env=env)
    assert done.returncode == 1
    rows = _progress(done.stderr)
    scanned = [n for n, _, _ in rows]
    assert scanned == sorted(scanned) and scanned[-1] == ghosts
    assert [n for n, _, phase in rows if phase == "claims"][:4] == [0, 500, 1000, 1200]
    assert {phase for _, _, phase in rows} >= {"claims", "accounts", "indexes", "characters"}
    assert "1000 problems" in rows[3][1]  # the problems found before the last batch
    # The report itself is unchanged, on stdout.
    assert done.stdout.splitlines()[-1] == f"scanned {ghosts} keys, {ghosts} problems"

    done = await asyncio.to_thread(_run, "check", "--fix", "--progress-every", "0", env=env)
    assert done.returncode == 0
    assert any(detail.endswith("1000 fixed") for _, detail, _ in _progress(done.stderr))

    # A short run says nothing more than its report.
    done = await asyncio.to_thread(_run, "check", "--progress-every", "3600", env=env)
    assert (done.returncode, done.stderr) == (0, "")


async def test_migrate_reports_progress_on_stderr(redis_server, store):
    members = 1200  # an old listing index: copied 500 entries at a time
    await store.zadd("idx:users:created", {f"{i:013d}:{i}": 0 for i in range(members)})
    env = {"KEYDB_URL": redis_server.url}

    done = await asyncio.to_thread(_run, "migrate", "--progress-every", "0", env=env)
    assert done.returncode == 0, done.stderr
    rows = _progress(done.stderr)
    assert [phase for _, _, phase in rows][:6] == [
        "activity",
        "favorites",
        "links",
        "roles",
        "indexes",
        "indexes",
    ]
    moved = [int(detail.split()[0]) for _, detail, phase in rows if phase == "indexes"]
    assert moved == [0, 0, 500, 1000, members]
    assert "index entries: 1200" in done.stdout
