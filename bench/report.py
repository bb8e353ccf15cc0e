"""bench/RESULTS.md: one table per backend and worker count, the targets, and the machine."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench.options import PROJECT_ROOT, Options
from bench.scenarios import PAYMENT_SCENARIOS, ScenarioResult

BACKEND_NAMES = {"mariadb": "MariaDB", "sqlite": "SQLite", "floor": "Floor"}

GET_RATE_TARGET = 5_000.0
GET_P99_TARGET_MS = 30.0
PAY_RATE_TARGET = 500.0
PRELOAD_TOLERANCE = 0.10
RSS_TARGET_MB = 100.0


# --- the machine -------------------------------------------------------------------------------


def _first_line(command: Sequence[str]) -> str:
    try:
        completed = subprocess.run(
            list(command), capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (completed.stdout or completed.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def _proc_field(path: str, name: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return "unknown"


def _package(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _load() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


@dataclass(frozen=True, slots=True)
class Machine:
    """What the numbers were measured on, read when the run starts (load also at the end)."""

    started: datetime
    cpus: str
    cpu_model: str
    memory: str
    kernel: str
    python: str
    packages: dict[str, str]
    wrk: str
    git: str
    load_at_start: str

    @classmethod
    def describe(cls, wrk_version: str) -> Machine:
        memory_kb = _proc_field("/proc/meminfo", "MemTotal").split()[0]
        memory = f"{int(memory_kb) / 1024 / 1024:.1f} GiB" if memory_kb.isdigit() else "unknown"
        commit = _first_line(["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short", "HEAD"])
        # No optional locks: never take index.lock while others work in the same checkout.
        dirty = _first_line(
            ["git", "--no-optional-locks", "-C", str(PROJECT_ROOT), "status", "--porcelain"]
        )
        return cls(
            started=datetime.now(UTC),
            cpus=_first_line(["nproc"]),
            cpu_model=_proc_field("/proc/cpuinfo", "model name"),
            memory=memory,
            kernel=f"{platform.system()} {platform.release()}",
            python=platform.python_version(),
            packages={
                name: _package(name)
                for name in ("uvicorn", "uvloop", "httptools", "fastapi", "sqlalchemy", "asyncmy")
            },
            wrk=wrk_version,
            git=commit + (" (with uncommitted changes)" if dirty not in ("", "unknown") else ""),
            load_at_start=_load(),
        )


# --- formatting --------------------------------------------------------------------------------


def _int(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:.1f}"


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _rss(result: ScenarioResult) -> str:
    if not result.peak_rss_mb:
        return "n/a"
    return " / ".join(f"{rss:.0f}" for rss in result.peak_rss_mb)


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


class Report:
    def __init__(
        self,
        options: Options,
        results: Sequence[ScenarioResult],
        machine: Machine,
        versions: dict[str, str],
    ) -> None:
        self.options = options
        self.results = list(results)
        self.machine = machine
        self.versions = versions

    def find(self, scenario: str, backend: str, workers: int) -> ScenarioResult | None:
        for result in self.results:
            if (result.scenario, result.backend, result.workers) == (scenario, backend, workers):
                return result
        return None

    def floor_rate(self, workers: int) -> float | None:
        floor = self.find("floor", "floor", workers)
        if floor is None or not floor.measured or floor.wrk is None:
            return None
        return floor.wrk.requests_per_s

    # --- the results tables ---------------------------------------------------------------------

    def _row(self, result: ScenarioResult) -> str:
        if result.wrk is None or result.problem:
            return (
                f"| {result.title} | - | - | - | - | {_rss(result)} | - | - | "
                f"**not measured**: {_escape(result.problem or 'unknown')} |"
            )
        w = result.wrk
        floor = self.floor_rate(result.workers)
        ratio = "-"
        if floor:
            ratio = f"{w.requests_per_s / floor:.{2 if w.requests_per_s >= floor / 10 else 3}f}"
        oversold = result.oversell.describe() if result.oversell is not None else "-"
        notes = list(result.notes)
        if result.scenario in PAYMENT_SCENARIOS and w.statuses:
            notes.append(
                "statuses " + ", ".join(f"{c}: {n:,}" for c, n in sorted(w.statuses.items()))
            )
        if result.raw_path is not None:
            notes.append(f"raw: `{result.raw_path.relative_to(PROJECT_ROOT)}`")
        errors = w.describe_errors(result.expected_statuses)
        return (
            f"| {result.title} | {_int(w.requests_per_s)} | {_ms(w.p50_ms)} | {_ms(w.p99_ms)} | "
            f"{errors} | {_rss(result)} | {ratio} | {oversold} | {_escape('; '.join(notes))} |"
        )

    def _tables(self) -> list[str]:
        lines: list[str] = []
        header = [
            "| Scenario | req/s | p50 ms | p99 ms | errors | peak RSS MB per worker "
            "| vs floor | oversold | notes |",
            "|---|---:|---:|---:|---|---:|---:|---:|---|",
        ]
        groups = [(b, w) for w in self.options.workers for b in self.options.backends]
        groups += [("floor", w) for w in self.options.workers]
        for backend, workers in groups:
            rows = [r for r in self.results if (r.backend, r.workers) == (backend, workers)]
            if not rows:
                continue
            plural = "s" if workers > 1 else ""
            title = BACKEND_NAMES[backend]
            if backend == "floor":
                title += " (raw ASGI app, same uvicorn settings, same body as GET /api/movies)"
            lines += [f"### {title}, {workers} worker{plural}", "", *header]
            lines += [self._row(result) for result in rows]
            lines.append("")
        return lines

    # --- the targets ----------------------------------------------------------------------------

    def _target_rows(self) -> list[str]:
        rows: list[str] = []

        def add(target: str, run: str, measured: str, verdict: str) -> None:
            rows.append(f"| {target} | {run} | {measured} | {verdict} |")

        def run_name(backend: str, workers: int) -> str:
            binding = "" if workers == 1 else " (for reference)"
            return (
                f"{BACKEND_NAMES[backend]}, {workers} worker{'s' if workers > 1 else ''}{binding}"
            )

        def missing(result: ScenarioResult | None) -> str:
            reason = result.problem if result is not None else "scenario not run"
            return f"not measured: {_escape(reason or 'unknown')}"

        def at_least(value: float, target: float, unit: str) -> str:
            if value >= target:
                return "**met**"
            gap = target - value
            return f"**missed** by {_int(gap)} {unit} ({gap / target * 100:.0f}% short)"

        def below(value: float, target: float, unit: str) -> str:
            if value < target:
                return "**met**"
            gap = value - target
            return f"**missed** by {gap:.1f} {unit} ({gap / target * 100:.0f}% over)"

        for workers in self.options.workers:
            for backend in self.options.backends:
                run = run_name(backend, workers)
                for scenario, label in (
                    ("movies", "GET /api/movies"),
                    ("movie", "GET /api/movies/{id}"),
                ):
                    if not self.options.wants(scenario):
                        continue
                    result = self.find(scenario, backend, workers)
                    if result is None or result.wrk is None or result.problem:
                        add(f"{label} >= ~5,000 req/s, p99 < 30 ms", run, "-", missing(result))
                        continue
                    w = result.wrk
                    add(
                        f"{label} >= ~5,000 req/s",
                        run,
                        f"{_int(w.requests_per_s)} req/s",
                        at_least(w.requests_per_s, GET_RATE_TARGET, "req/s"),
                    )
                    add(
                        f"{label} p99 < 30 ms",
                        run,
                        f"{_ms(w.p99_ms)} ms",
                        below(w.p99_ms, GET_P99_TARGET_MS, "ms"),
                    )
                if backend == "mariadb" and self.options.wants("pay"):
                    result = self.find("pay", backend, workers)
                    label = "make-payment, one hot movie, MariaDB >= ~500 req/s"
                    if result is None or result.wrk is None or result.problem:
                        add(label, run, "-", missing(result))
                    else:
                        rate = result.wrk.requests_per_s
                        add(
                            label,
                            run,
                            f"{_int(rate)} req/s",
                            at_least(rate, PAY_RATE_TARGET, "req/s"),
                        )
                self._oversell_target(add, run, backend, workers, missing)
                self._preload_target(add, run, backend, workers, missing)
                self._rss_target(add, run, backend, workers)
        return rows

    def _oversell_target(
        self,
        add: Callable[[str, str, str, str], None],
        run: str,
        backend: str,
        workers: int,
        missing: Callable[[ScenarioResult | None], str],
    ) -> None:
        checked = [
            r
            for r in self.results
            if (r.backend, r.workers) == (backend, workers) and r.scenario in PAYMENT_SCENARIOS
        ]
        if not checked:
            return
        measured = [r for r in checked if r.oversell is not None]
        if not measured:
            add("zero oversold seats", run, "-", missing(checked[0]))
            return
        oversold = sum(r.oversell.oversold for r in measured if r.oversell)
        drift = sum(abs(r.oversell.seats_paid_drift) for r in measured if r.oversell)
        names = ", ".join(r.scenario for r in measured)
        verdict = "**met**" if oversold == 0 and drift == 0 else "**missed**"
        detail = f"{oversold} oversold" + (f", seatsPaid off by {drift}" if drift else "")
        if oversold:
            verdict += f" by {oversold} seat{'s' if oversold > 1 else ''}"
        elif drift:
            verdict += f": seatsPaid disagrees with Paid tickets by {drift}"
        add("zero oversold seats", run, f"{detail} ({names})", verdict)

    def _preload_target(
        self,
        add: Callable[[str, str, str, str], None],
        run: str,
        backend: str,
        workers: int,
        missing: Callable[[ScenarioResult | None], str],
    ) -> None:
        if not (self.options.wants("pay") and self.options.wants("pay100k")):
            return
        label = f"make-payment with {self.options.preload:,} stored tickets within 10% of empty"
        empty = self.find("pay", backend, workers)
        loaded = self.find("pay100k", backend, workers)
        for result in (empty, loaded):
            if result is None or result.wrk is None or result.problem:
                add(label, run, "-", missing(result))
                return
        assert empty is not None
        assert loaded is not None
        assert empty.wrk is not None
        assert loaded.wrk is not None
        base, rate = empty.wrk.requests_per_s, loaded.wrk.requests_per_s
        if base <= 0:
            add(label, run, "empty database: 0 req/s", "not measured: no baseline")
            return
        change = (rate - base) / base
        measured = f"{_int(rate)} vs {_int(base)} req/s ({change * 100:+.1f}%)"
        if change >= -PRELOAD_TOLERANCE:
            verdict = "**met**"
        else:
            verdict = f"**missed** by {(-change - PRELOAD_TOLERANCE) * 100:.1f} points"
            verdict += f" ({_int(base * (1 - PRELOAD_TOLERANCE) - rate)} req/s)"
        add(label, run, measured, verdict)

    def _rss_target(
        self, add: Callable[[str, str, str, str], None], run: str, backend: str, workers: int
    ) -> None:
        peaks = [
            max(r.peak_rss_mb)
            for r in self.results
            if (r.backend, r.workers) == (backend, workers) and r.peak_rss_mb
        ]
        if not peaks:
            return
        peak = max(peaks)
        verdict = "**met**"
        if peak > RSS_TARGET_MB:
            over = peak - RSS_TARGET_MB
            verdict = f"**missed** by {over:.0f} MB ({over / RSS_TARGET_MB * 100:.0f}% over)"
        add("peak RSS per worker <= 100 MB", run, f"{peak:.0f} MB (highest scenario)", verdict)

    # --- the document ---------------------------------------------------------------------------

    def render(self) -> str:
        m = self.machine
        o = self.options
        lines = ["# Benchmark results", ""]
        if o.quick:
            lines += [
                "> **Quick smoke run** (`--quick`, 2 s per scenario): these numbers only show "
                "that the harness works; they are not a measurement. Run `make bench` for one.",
                "",
            ]
        lines += [
            f"Run `{o.command_line}` on {m.started:%Y-%m-%d %H:%M} UTC: wrk "
            f"`-t{o.threads} -c{o.connections} -d{o.duration_s}s --latency`, uvicorn workers "
            f"{', '.join(map(str, o.workers))}, backends {', '.join(o.backends)}. "
            "Each stage starts from a freshly migrated database and a fresh server "
            "(`movietickets serve`); the Daraja simulator runs in its own process with a "
            f"{o.callback_delay:g} s callback delay. See `bench/README.md`.",
            "",
            "- **errors**: socket errors plus non-2xx responses (status codes come from the Lua "
            "script on the POST scenarios).",
            "- **peak RSS MB per worker**: VmHWM of each worker process since the server started "
            "(with 1 worker, the uvicorn process itself), read after the scenario.",
            "- **vs floor**: req/s divided by the floor's req/s at the same worker count.",
            "- **oversold**: on the hot movie after the run, `seatsPaid` + seats of unexpired "
            "Pending tickets beyond `max_tickets` (0 expected); `seatsPaid` must also equal the "
            "seats of its Paid tickets, and any difference is shown.",
            "",
            "## Results",
            "",
        ]
        lines += self._tables()
        lines += [
            "## Targets",
            "",
            "Targets apply to one server process; the 2-worker rows are for reference. "
            '"~5,000" and "~500" are checked as 5,000 and 500.',
            "",
            "| Target | Run | Measured | Verdict |",
            "|---|---|---|---|",
            *self._target_rows(),
            "",
            "## Machine",
            "",
            f"- CPUs (`nproc`): {m.cpus}; CPU model: {m.cpu_model}",
            f"- Memory (MemTotal): {m.memory}",
            f"- Kernel: {m.kernel}",
            f"- Python {m.python}; "
            + ", ".join(f"{name} {version}" for name, version in m.packages.items()),
            "- Databases: "
            + (
                ", ".join(f"{BACKEND_NAMES[b]} {v}" for b, v in sorted(self.versions.items()))
                or "none reached"
            ),
            f"- Load generator: {m.wrk}, on the same machine as the servers",
            f"- Commit: {m.git}",
            f"- Load average (1/5/15 min): {m.load_at_start} at the start, {_load()} at the end",
            f"- Date: {m.started:%Y-%m-%d %H:%M:%S} UTC",
            "",
        ]
        return "\n".join(lines)


def not_measured(results: Iterable[ScenarioResult]) -> list[ScenarioResult]:
    return [r for r in results if not r.measured]


def oversold(results: Iterable[ScenarioResult]) -> list[ScenarioResult]:
    return [
        r
        for r in results
        if r.oversell is not None and (r.oversell.oversold or r.oversell.seats_paid_drift)
    ]
