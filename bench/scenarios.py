"""The scenarios, grouped in stages that each start from a fresh database and a fresh server.

    read     movies, movie, ticket,  20 movies, 200 stored tickets; one server for them all
             healthz
    pay      pay                     empty ticket table; make-payment on the hot movie (9003)
    pay100k  pay100k                 100,000 stored tickets (and their pushes); same requests
    flow     flow                    make-payment with callbacks on (4149), then wait for Paid
    soldout  soldout                 hot movie with 200 seats, 3 per order: must sell out exactly
    floor    floor                   bench.floor_app with the same worker count

Peak RSS is read after each scenario (VmHWM, since the server started). The oversell check runs
after every make-payment scenario.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import servers, wrk
from bench.data import HOT_MOVIE_ID, READ_STAGE_TICKETS, BenchDatabase, DataError, OversellCheck
from bench.options import LUA_DIR, RESULTS_DIR, SCENARIOS, Options

PAYMENT_PATH = "/api/make-payment"
PAYMENT_SCRIPT = LUA_DIR / "make_payment.lua"
CALLBACKS_OFF = "9003"  # simulator: push accepted, no callback
CALLBACKS_ON = "4149"  # simulator: paid, callback after the delay
CALLBACK_WAIT_S = 10.0
SOLDOUT_SEATS = 200
SOLDOUT_QUANTITY = 3
GET_MOVIE_ID = 7
MOVIES_BODY = RESULTS_DIR / "movies_body.json"
WRK_DIR = RESULTS_DIR / "wrk"
LOG_DIR = RESULTS_DIR / "logs"

_TICKET_ROUTE = re.compile(r"^/api/tickets/\{[^/}]+\}$")


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    scenarios: tuple[str, ...]
    stored_tickets: Callable[[Options], int]
    hot_movie_seats: int | None = None


STAGES = (
    Stage("read", ("movies", "movie", "ticket", "healthz"), lambda _: READ_STAGE_TICKETS),
    Stage("pay", ("pay",), lambda _: 0),
    Stage("pay100k", ("pay100k",), lambda options: options.preload),
    Stage("flow", ("flow",), lambda _: 0),
    Stage("soldout", ("soldout",), lambda _: 0, hot_movie_seats=SOLDOUT_SEATS),
)
PAYMENT_SCENARIOS = ("pay", "pay100k", "flow", "soldout")
# What can go wrong in one scenario or stage without stopping the whole run.
MEASUREMENT_ERRORS = (RuntimeError, DataError, OSError, ValueError, httpx.HTTPError)


@dataclass(slots=True)
class ScenarioResult:
    scenario: str
    backend: str  # mariadb, sqlite, or floor
    workers: int
    wrk: wrk.WrkResult | None = None
    peak_rss_mb: list[float] = field(default_factory=list)
    oversell: OversellCheck | None = None
    completed_per_s: float | None = None
    notes: list[str] = field(default_factory=list)
    problem: str | None = None  # why it was not measured
    raw_path: Path | None = None

    @property
    def expected_statuses(self) -> frozenset[int]:
        """Non-2xx answers that are the point of the scenario, not errors (sold out)."""
        return frozenset({409}) if self.scenario == "soldout" else frozenset()

    @property
    def title(self) -> str:
        return SCENARIOS[self.scenario]

    @property
    def measured(self) -> bool:
        return self.wrk is not None and self.problem is None

    def summary(self) -> str:
        head = f"[{self.backend} x{self.workers}] {self.scenario:8}"
        if self.wrk is None or self.problem:
            return f"{head} NOT MEASURED: {self.problem}"
        w = self.wrk
        line = (
            f"{head} {w.requests_per_s:9.1f} req/s  p50 {w.p50_ms:7.2f} ms  "
            f"p99 {w.p99_ms:7.2f} ms  errors {w.describe_errors(self.expected_statuses)}"
        )
        if self.peak_rss_mb:
            line += f"  RSS {max(self.peak_rss_mb):.0f} MB"
        if self.oversell is not None:
            line += f"  oversold {self.oversell.describe()}"
        if self.completed_per_s is not None:
            line += f"  completed {self.completed_per_s:.1f}/s"
        return line


class EndpointMissing(RuntimeError):
    """The service does not have the route a scenario needs (yet)."""


def _openapi_paths(client: httpx.Client) -> set[str] | None:
    try:
        response = client.get("/openapi.json")
        if response.status_code == 200:
            paths = response.json().get("paths", {})
            return set(paths) if isinstance(paths, dict) else None
    except (httpx.HTTPError, ValueError):
        pass
    return None


def _check_route(paths: set[str] | None, method: str, path: str) -> None:
    if paths is None:
        return
    wanted = _TICKET_ROUTE if path.startswith("/api/tickets/") else None
    found = any(wanted.match(p) for p in paths) if wanted else path in paths
    if not found:
        raise EndpointMissing(f"{method} {path} is not in the service's /openapi.json (not built?)")


def _preflight(client: httpx.Client, method: str, path: str, body: Any = None) -> None:
    """One request before the load: a 404/405 or 5xx stops the scenario with a clear reason."""
    try:
        response = client.request(method, path, json=body)
    except httpx.HTTPError as exc:
        raise RuntimeError(f"{method} {path} failed: {type(exc).__name__}: {exc}") from exc
    if response.status_code in (404, 405):
        raise EndpointMissing(
            f"{method} {path} answered {response.status_code}: {response.text[:200]}"
        )
    if not response.is_success:
        raise RuntimeError(
            f"{method} {path} answered {response.status_code}: {response.text[:300]}"
        )


class Runner:
    def __init__(self, options: Options, wrk_path: str) -> None:
        self.options = options
        self.wrk_path = wrk_path
        self.results: list[ScenarioResult] = []
        self.body_captured = False
        self.simulator: servers.Server | None = None
        self.simulator_problem: str | None = None
        self.versions: dict[str, str] = {}

    # --- the whole run -------------------------------------------------------------------------

    def run(self) -> list[ScenarioResult]:
        shutil.rmtree(WRK_DIR, ignore_errors=True)
        shutil.rmtree(LOG_DIR, ignore_errors=True)
        MOVIES_BODY.unlink(missing_ok=True)
        with ExitStack() as stack:
            # Always started: the service refuses to start without a Daraja to talk to.
            try:
                self.simulator = stack.enter_context(
                    servers.simulator(
                        callback_delay=self.options.callback_delay,
                        log_path=LOG_DIR / "simulator.log",
                    )
                )
            except servers.ServerError as exc:
                self.simulator_problem = f"the Daraja simulator did not start: {exc}"
                print(self.simulator_problem, flush=True)
            for workers in self.options.workers:
                for backend in self.options.backends:
                    for stage in STAGES:
                        wanted = tuple(s for s in stage.scenarios if self.options.wants(s))
                        if wanted:
                            self._run_stage(stage, wanted, backend, workers)
                if self.options.wants("floor"):
                    self._run_floor(workers)
        return self.results

    def _record(self, result: ScenarioResult) -> None:
        self.results.append(result)
        print(result.summary(), flush=True)

    # --- one stage: fresh database, fresh server -----------------------------------------------

    def _database(self, backend: str) -> BenchDatabase:
        return BenchDatabase(
            backend, mariadb_url=self.options.mariadb_url, database=self.options.database
        )

    @contextmanager
    def _service(
        self, stage: Stage, backend: str, workers: int, database: BenchDatabase
    ) -> Iterator[servers.Server]:
        if self.simulator is None:
            raise RuntimeError(self.simulator_problem or "no Daraja simulator")
        stored = stage.stored_tickets(self.options)
        started = time.monotonic()
        database.prepare(stored, hot_movie_seats=stage.hot_movie_seats)
        print(
            f"[{backend} x{workers}] stage {stage.name}: database ready "
            f"({stored:,} stored tickets, {time.monotonic() - started:.1f} s)",
            flush=True,
        )
        with servers.service(
            database_url=database.url,
            workers=workers,
            simulator_url=self.simulator.base_url,
            log_path=LOG_DIR / f"service-{backend}-w{workers}-{stage.name}.log",
        ) as server:
            yield server

    def _run_stage(
        self, stage: Stage, scenarios: tuple[str, ...], backend: str, workers: int
    ) -> None:
        database = self._database(backend)
        done: set[str] = set()
        try:
            with (
                self._service(stage, backend, workers, database) as server,
                httpx.Client(base_url=server.base_url, timeout=30.0) as client,
            ):
                self.versions.setdefault(backend, database.server_version())
                if not self.body_captured:
                    self._capture_movies_body(client)
                paths = _openapi_paths(client)
                for scenario in scenarios:
                    result = ScenarioResult(scenario, backend, workers)
                    try:
                        self._measure(scenario, result, server, client, database, paths)
                    except MEASUREMENT_ERRORS as exc:
                        result.problem = str(exc) or type(exc).__name__
                    result.peak_rss_mb = server.peak_rss_per_worker_mb()
                    done.add(scenario)
                    self._record(result)
                    server.check_alive()
        except MEASUREMENT_ERRORS as exc:
            for scenario in scenarios:
                if scenario not in done:
                    problem = str(exc) or type(exc).__name__
                    self._record(ScenarioResult(scenario, backend, workers, problem=problem))

    def _capture_movies_body(self, client: httpx.Client) -> None:
        response = client.get("/api/movies")
        if response.status_code != 200:
            raise RuntimeError(f"GET /api/movies answered {response.status_code}")
        movies = response.json().get("movies", [])
        if len(movies) != 20:
            print(f"warning: GET /api/movies returned {len(movies)} movies, not 20", flush=True)
        MOVIES_BODY.parent.mkdir(parents=True, exist_ok=True)
        MOVIES_BODY.write_bytes(response.content)
        self.body_captured = True

    def _wrk(
        self,
        result: ScenarioResult,
        url: str,
        script: Path | None = None,
        script_args: tuple[str, ...] = (),
    ) -> wrk.WrkResult:
        raw_path = WRK_DIR / f"{result.backend}-w{result.workers}-{result.scenario}.txt"
        result.raw_path = raw_path
        result.wrk = wrk.run(
            self.wrk_path,
            url,
            threads=self.options.threads,
            connections=self.options.connections,
            duration_s=self.options.duration_s,
            raw_path=raw_path,
            script=script,
            script_args=script_args,
        )
        return result.wrk

    def _measure(
        self,
        scenario: str,
        result: ScenarioResult,
        server: servers.Server,
        client: httpx.Client,
        database: BenchDatabase,
        paths: set[str] | None,
    ) -> None:
        base = server.base_url
        if scenario == "movies":
            _preflight(client, "GET", "/api/movies")
            self._wrk(result, f"{base}/api/movies")
        elif scenario == "movie":
            _preflight(client, "GET", f"/api/movies/{GET_MOVIE_ID}")
            self._wrk(result, f"{base}/api/movies/{GET_MOVIE_ID}")
        elif scenario == "ticket":
            ticket_id = database.paid_ticket_id()
            _check_route(paths, "GET", f"/api/tickets/{ticket_id}")
            _preflight(client, "GET", f"/api/tickets/{ticket_id}")
            self._wrk(result, f"{base}/api/tickets/{ticket_id}")
        elif scenario == "healthz":
            _preflight(client, "GET", "/healthz")
            self._wrk(result, f"{base}/healthz")
        elif scenario in ("pay", "pay100k"):
            self._payments(result, base, client, database, paths, CALLBACKS_OFF, quantity=1)
        elif scenario == "soldout":
            self._payments(
                result, base, client, database, paths, CALLBACKS_OFF, quantity=SOLDOUT_QUANTITY
            )
            held = result.oversell.held_quantity if result.oversell else 0
            result.notes.append(f"{held} of {SOLDOUT_SEATS} seats held at the end")
        elif scenario == "flow":
            _check_route(paths, "POST", "/api/payment-callback")
            self._payments(result, base, client, database, paths, CALLBACKS_ON, quantity=1)
            self._wait_for_callbacks(result, database)
        else:
            raise ValueError(f"unknown scenario {scenario}")

    def _payments(
        self,
        result: ScenarioResult,
        base_url: str,
        client: httpx.Client,
        database: BenchDatabase,
        paths: set[str] | None,
        last4: str,
        *,
        quantity: int,
    ) -> None:
        _check_route(paths, "POST", PAYMENT_PATH)
        # The preflight buys with callbacks off, so it never counts as a completed purchase.
        preflight = {
            "movieId": HOT_MOVIE_ID,
            "customerName": "Bench Preflight",
            "phoneNumber": f"079999{CALLBACKS_OFF}",
            "quantity": quantity,
        }
        _preflight(client, "POST", PAYMENT_PATH, preflight)
        measured = self._wrk(
            result,
            f"{base_url}{PAYMENT_PATH}",
            PAYMENT_SCRIPT,
            (str(HOT_MOVIE_ID), last4, str(quantity)),
        )
        if not any(200 <= code < 300 for code in measured.statuses):
            result.notes.append("no make-payment succeeded under load")
        result.oversell = database.oversell(HOT_MOVIE_ID)

    def _wait_for_callbacks(self, result: ScenarioResult, database: BenchDatabase) -> None:
        """Let the simulator's callbacks land, then count the purchases that completed."""
        deadline = time.monotonic() + CALLBACK_WAIT_S
        counts = database.ticket_counts(HOT_MOVIE_ID, phone_suffix=CALLBACKS_ON)
        while counts.get("Pending", 0) and time.monotonic() < deadline:
            time.sleep(0.5)
            counts = database.ticket_counts(HOT_MOVIE_ID, phone_suffix=CALLBACKS_ON)
        paid = counts.get("Paid", 0)
        assert result.wrk is not None
        result.completed_per_s = paid / result.wrk.duration_s if result.wrk.duration_s else 0.0
        answered = sum(n for code, n in result.wrk.statuses.items() if 200 <= code < 300)
        leftovers = [f"{counts[s]:,} {s}" for s in ("Pending", "Failed") if counts.get(s)]
        result.notes.append(
            f"completed purchases: {result.completed_per_s:.1f}/s ({paid:,} Paid"
            + "".join(f", {text}" for text in leftovers)
            + f"; wrk counted {answered:,} answers)"
        )
        result.oversell = database.oversell(HOT_MOVIE_ID)

    # --- the floor -----------------------------------------------------------------------------

    def _run_floor(self, workers: int) -> None:
        result = ScenarioResult("floor", "floor", workers)
        try:
            if not self.body_captured:
                self._capture_only(workers)
            with servers.floor(
                body_path=MOVIES_BODY,
                workers=workers,
                log_path=LOG_DIR / f"floor-w{workers}.log",
            ) as server:
                self._wrk(result, f"{server.base_url}/api/movies")
                result.peak_rss_mb = server.peak_rss_per_worker_mb()
        except MEASUREMENT_ERRORS as exc:
            result.problem = str(exc) or type(exc).__name__
        self._record(result)

    def _capture_only(self, workers: int) -> None:
        """Only the floor was asked for: start the service once to capture GET /api/movies."""
        backend = self.options.backends[0]
        stage = Stage("capture", (), lambda _: 0)
        with (
            self._service(stage, backend, workers, self._database(backend)) as server,
            httpx.Client(base_url=server.base_url, timeout=30.0) as client,
        ):
            self._capture_movies_body(client)
