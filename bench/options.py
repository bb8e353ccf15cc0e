"""Command-line options, scenario names and the paths the harness writes to."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"  # raw wrk output and server logs (git-ignored)
RESULTS_MD = BENCH_DIR / "RESULTS.md"
LUA_DIR = BENCH_DIR / "lua"

BACKENDS = ("mariadb", "sqlite")

# Scenario name -> what it measures (the order is the order they run and are reported in).
SCENARIOS: dict[str, str] = {
    "movies": "GET /api/movies (20 movies)",
    "movie": "GET /api/movies/{id}",
    "ticket": "GET /api/tickets/{id}",
    "healthz": "GET /healthz (no database: framework and middleware only)",
    "pay": "POST /api/make-payment, one hot movie, callbacks off",
    "pay100k": "POST /api/make-payment, 100,000 tickets stored, callbacks off",
    "flow": "Full flow: make-payment + simulator callback -> Paid",
    "soldout": "POST /api/make-payment racing for the last 200 seats",
    "floor": "Floor: raw ASGI app, same bytes as GET /api/movies",
}
# healthz is a diagnostic (how much of a GET is framework and middleware): opt-in.
DEFAULT_SCENARIOS = tuple(name for name in SCENARIOS if name != "healthz")

_DURATION = re.compile(r"^([0-9]+)\s*(s|m)?$")
_DATABASE_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")


@dataclass(frozen=True, slots=True)
class Options:
    duration_s: int
    connections: int
    threads: int
    workers: tuple[int, ...]
    backends: tuple[str, ...]
    scenarios: tuple[str, ...]
    quick: bool
    mariadb_url: str
    database: str
    preload: int
    callback_delay: float
    output: Path
    install_wrk: bool
    command_line: str

    def wants(self, scenario: str) -> bool:
        return scenario in self.scenarios


def _duration(text: str) -> int:
    match = _DURATION.fullmatch(text.strip())
    if not match or int(match[1]) < 1:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 10s, 1m)")
    return int(match[1]) * (60 if match[2] == "m" else 1)


def _parse_names(text: str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown {what}: {', '.join(unknown) or '(none)'}; choose from {', '.join(allowed)}"
        )
    return names


def _parse_workers(text: str) -> tuple[int, ...]:
    try:
        workers = tuple(dict.fromkeys(int(part) for part in text.split(",") if part.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of worker counts: {text!r}") from None
    if not workers or any(not 1 <= count <= 64 for count in workers):
        raise argparse.ArgumentTypeError("worker counts must be between 1 and 64, e.g. 1,2")
    return workers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark movietickets with wrk and write bench/RESULTS.md.",
        epilog="Scenarios: "
        + "; ".join(f"{name} = {title}" for name, title in SCENARIOS.items())
        + f". Default: {','.join(DEFAULT_SCENARIOS)}.",
    )
    parser.add_argument("--duration", type=_duration, help="per wrk run (default 10s)")
    parser.add_argument("--connections", type=int, default=50, help="wrk -c (default 50)")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument(
        "--workers", default="1,2", help="uvicorn worker counts to run, e.g. 1,2 (default 1,2)"
    )
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="mariadb,sqlite (default both)"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated, from: {','.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 s wrk runs (a smoke test, not a measurement)"
    )
    parser.add_argument(
        "--mariadb-url",
        default="mysql+asyncmy://root@127.0.0.1:3306",
        help="MariaDB server, without a database (default %(default)s)",
    )
    parser.add_argument(
        "--database", default="mt_bench", help="MariaDB database, dropped and recreated"
    )
    parser.add_argument(
        "--preload", type=int, help="tickets stored before pay100k (default 100000)"
    )
    parser.add_argument(
        "--callback-delay",
        type=float,
        default=0.5,
        help="simulator seconds between push and callback (default 0.5)",
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS_MD, help="report path (default bench/RESULTS.md)"
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="never run apt-get install wrk, even as root",
    )
    return parser


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        workers = _parse_workers(args.workers)
        backends = _parse_names(args.backends, BACKENDS, "backend")
        requested = _parse_names(args.scenarios, tuple(SCENARIOS), "scenario")
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.threads < 1 or args.connections < args.threads:
        parser.error("--threads must be at least 1 and --connections at least --threads")
    if not _DATABASE_NAME.fullmatch(args.database):
        parser.error("--database must be letters, digits and underscores")
    preload = args.preload if args.preload is not None else 100_000
    if not 0 <= preload <= 1_000_000:
        parser.error("--preload must be between 0 and 1000000")
    duration = args.duration if args.duration is not None else (2 if args.quick else 10)
    return Options(
        duration_s=duration,
        connections=args.connections,
        threads=args.threads,
        workers=workers,
        backends=backends,
        scenarios=tuple(name for name in SCENARIOS if name in requested),
        quick=args.quick,
        mariadb_url=args.mariadb_url.rstrip("/"),
        database=args.database,
        preload=preload,
        callback_delay=args.callback_delay,
        output=args.output,
        install_wrk=not args.no_install,
        command_line=shlex.join(["python", "-m", "bench", *(argv or sys.argv[1:])]),
    )
