"""The `movietickets` command: serve, migrate, seed, admins, reconcile, the Daraja simulator."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import NoReturn

from movietickets.observability import configure_logging
from movietickets.settings import Settings, UnsafeSettings

# The rest is imported by the commands that use it: with one worker, uvicorn serves in this
# very process, which should not carry Alembic, the simulator or the seed data (about 12 MB).

logger = logging.getLogger("movietickets")

# The admin `make run` gives a newcomer (development only, when no admin exists yet).
DEVELOPMENT_ADMIN = "admin"

# What `serve` runs; the tests' concurrency proof swaps in an app with an unlocked seat check.
APP_FACTORY = "movietickets.app:create_app_from_env"


async def _seed(settings: Settings) -> int:
    from movietickets.catalogue.seed import seed_sample_movies
    from movietickets.db.engine import create_engine, create_sessionmaker

    engine = create_engine(settings)
    try:
        return await seed_sample_movies(create_sessionmaker(engine))
    finally:
        await engine.dispose()


async def _create_admin(settings: Settings, username: str, password: str, weak: bool) -> None:
    from movietickets.auth.service import AuthService
    from movietickets.db.engine import create_engine, create_sessionmaker

    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            await AuthService(session, settings).create_admin(username, password, allow_weak=weak)
    finally:
        await engine.dispose()


async def _ensure_first_admin(settings: Settings) -> str | None:
    """Creates the first admin when the database has none: FIRST_ADMIN_USERNAME and
    FIRST_ADMIN_PASSWORD, or in development only `admin`/`admin`. Returns who was created."""
    from movietickets.auth.service import AuthService
    from movietickets.db.engine import create_engine, create_sessionmaker

    if settings.first_admin_username is not None and settings.first_admin_password is not None:
        username, password = (
            settings.first_admin_username,
            settings.first_admin_password.get_secret_value(),
        )
    elif settings.environment == "development":
        username, password = DEVELOPMENT_ADMIN, DEVELOPMENT_ADMIN
    else:
        return None
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            auth = AuthService(session, settings)
            if await auth.has_admins():
                return None
            weak = settings.environment == "development"
            await auth.create_admin(username, password, allow_weak=weak)
            return username
    finally:
        await engine.dispose()


async def _check_unicode_storage(settings: Settings) -> None:
    from movietickets.db.charset import check_unicode_storage
    from movietickets.db.engine import create_engine

    engine = create_engine(settings)
    try:
        await check_unicode_storage(engine)
    finally:
        await engine.dispose()


def prepare(_args: argparse.Namespace, settings: Settings) -> None:
    from movietickets.db import migrations

    migrations.upgrade(settings)
    # After migrating (0002 converts the tables): what is left cannot store `Wanjirũ 😀`.
    asyncio.run(_check_unicode_storage(settings))
    if settings.seed_sample_movies:
        added = asyncio.run(_seed(settings))
        if added:
            logger.info("added %d sample movies to the empty database", added)
    from movietickets.errors import AppError

    try:
        created = asyncio.run(_ensure_first_admin(settings))
    except AppError as exc:
        raise SystemExit(f"movietickets: the first admin (FIRST_ADMIN_*): {exc.message}") from None
    if created == DEVELOPMENT_ADMIN and settings.first_admin_username is None:
        logger.warning("development only: created admin 'admin' with password 'admin'")
    elif created is not None:
        logger.info("created the first admin, %s (FIRST_ADMIN_USERNAME)", created)


def _development_callback_token(settings: Settings) -> Settings:
    """Development behaves like production: callbacks need a secret, made up per run."""
    if settings.environment != "development" or settings.mpesa_callback_token is not None:
        return settings
    # Worker processes read their settings from the environment.
    os.environ["MPESA_CALLBACK_TOKEN"] = secrets.token_urlsafe(24)
    logger.info("generated a callback token for this run (set MPESA_CALLBACK_TOKEN to fix one)")
    return Settings()


def create_admin(args: argparse.Namespace, settings: Settings) -> None:
    from movietickets.errors import AppError

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise SystemExit("the passwords differ")
    try:
        asyncio.run(_create_admin(settings, args.username, password, weak=False))
    except AppError as exc:
        raise SystemExit(f"create-admin: {exc.message}") from None
    print(f"admin {args.username} created")


def _command_line_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    """--host, --port and --workers mean exactly HOST, PORT and WORKERS: for the simulator's
    and the callback's URLs too, in this process, the prepare step and every worker (which
    read their settings from the environment)."""
    options = {"HOST": args.host, "PORT": args.port, "WORKERS": args.workers}
    given = {name: str(value) for name, value in options.items() if value is not None}
    if not given:
        return settings
    os.environ.update(given)
    return Settings()


def serve(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    from movietickets.server import LimitedHttpToolsProtocol, raise_open_files_limit

    settings = _development_callback_token(_command_line_settings(args, settings))
    try:
        settings.check_can_serve()
    except UnsafeSettings as exc:
        raise SystemExit(f"movietickets serve: {exc}") from None
    if not args.no_migrate:
        # In a child process, so that the memory Alembic and the migrations take is given back.
        prepared = subprocess.run(
            [sys.executable, "-m", "movietickets.cli", "prepare"], check=False
        )
        if prepared.returncode:
            raise SystemExit(prepared.returncode)
    raise_open_files_limit(settings)  # inherited by the workers
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        # Header and body read timeouts, a header size cap and a connection limit (server.py).
        http=LimitedHttpToolsProtocol,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        access_log=False,  # AccessLogMiddleware logs requests more cheaply
        log_config=None,
        # Only TRUSTED_PROXIES name the client (middleware/client_address.py), not uvicorn.
        proxy_headers=False,
        timeout_keep_alive=settings.keep_alive_seconds,
        server_header=False,
    )


def migrate(args: argparse.Namespace, settings: Settings) -> None:
    from movietickets.db import migrations

    if args.action == "upgrade":
        migrations.upgrade(settings, args.revision or "head")
    else:
        migrations.downgrade(settings, args.revision or "base")


def seed(_args: argparse.Namespace, settings: Settings) -> None:
    print(f"added {asyncio.run(_seed(settings))} sample movies")


def simulator(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    from movietickets.daraja.setup import simulator_config
    from movietickets.daraja.simulator import create_simulator_app

    config = simulator_config(settings)
    if args.callback_delay is not None:
        config = replace(config, callback_delay_seconds=args.callback_delay)
    uvicorn.run(
        create_simulator_app(config),
        host=args.host,
        port=args.port,
        access_log=False,
        log_config=None,
    )


async def _reconcile(settings: Settings, once: bool) -> None:
    import httpx

    from movietickets.daraja.setup import build_daraja
    from movietickets.db.engine import create_engine, create_sessionmaker
    from movietickets.payments.reconciler import Reconciler

    engine = create_engine(settings)
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(
            settings.mpesa_read_timeout_seconds, connect=settings.mpesa_connect_timeout_seconds
        )
    ) as http:
        daraja, _ = build_daraja(settings, http)
        reconciler = Reconciler(create_sessionmaker(engine), daraja, settings)
        try:
            if once:
                print(await reconciler.run_once())
            else:
                await reconciler.run_forever()
        finally:
            await engine.dispose()


def reconcile(args: argparse.Namespace, settings: Settings) -> None:
    asyncio.run(_reconcile(settings, args.once))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="movietickets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser("serve", help="migrate, seed (development) and serve")
    serve_parser.add_argument("--host")
    serve_parser.add_argument("--port", type=int)
    serve_parser.add_argument("--workers", type=int)
    serve_parser.add_argument("--no-migrate", action="store_true", help="skip migrations")
    serve_parser.set_defaults(handler=serve)

    migrate_parser = commands.add_parser("migrate", help="apply or revert migrations")
    migrate_parser.add_argument("action", choices=["upgrade", "downgrade"], nargs="?")
    migrate_parser.add_argument("revision", nargs="?")
    migrate_parser.set_defaults(handler=migrate, action="upgrade")

    seed_parser = commands.add_parser("seed", help="add sample movies to an empty database")
    seed_parser.set_defaults(handler=seed)

    simulator_parser = commands.add_parser(
        "simulator", help="run the Daraja simulator on its own (consumer key simulator-key)"
    )
    simulator_parser.add_argument("--host", default="127.0.0.1")
    simulator_parser.add_argument("--port", type=int, default=8001)
    simulator_parser.add_argument("--callback-delay", type=float, help="seconds before callbacks")
    simulator_parser.set_defaults(handler=simulator)

    reconcile_parser = commands.add_parser(
        "reconcile", help="settle pushes that got no callback (STK Query), e.g. from cron"
    )
    reconcile_parser.add_argument("--once", action="store_true", help="one pass, then exit")
    reconcile_parser.set_defaults(handler=reconcile)

    admin_parser = commands.add_parser("create-admin", help="add an admin account")
    admin_parser.add_argument("username")
    admin_parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    admin_parser.set_defaults(handler=create_admin)

    # Run by `serve` in a child process; on its own it migrates and seeds like `serve` does.
    prepare_parser = commands.add_parser("prepare", help="migrate and seed, then exit")
    prepare_parser.set_defaults(handler=prepare)
    return parser


def _fail(command: str, message: str) -> NoReturn:
    print(f"movietickets {command}: {message}", file=sys.stderr)
    raise SystemExit(1)


def main(argv: Sequence[str] | None = None) -> None:
    """Every failure is one line on standard error and exit status 1, never a traceback."""
    from pydantic import ValidationError

    from movietickets import cli_errors
    from movietickets.db.charset import UnicodeStorageError

    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        _fail(args.command, cli_errors.settings_problem(exc))
    configure_logging(settings.log_level)
    cli_errors.quiet_aiosqlite_closed_loop()
    try:
        args.handler(args, settings)
    except UnicodeStorageError as exc:
        _fail(args.command, f"refusing to start: {exc}")
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:
        _fail(args.command, cli_errors.describe(exc, settings.database_url))


if __name__ == "__main__":
    main()
