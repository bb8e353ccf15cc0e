"""`python -m bench` (`make bench`): run the scenarios, write bench/RESULTS.md.

Exit status: 0 when every scenario was measured and nothing was oversold; 1 when a scenario
could not be measured (server did not start, endpoint missing, ...) or seats were oversold;
2 when wrk is missing or the options are wrong. Missed performance targets do not fail the run:
RESULTS.md says by how much each was missed.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from types import FrameType

from bench import wrk
from bench.options import PROJECT_ROOT, RESULTS_DIR, parse_options
from bench.report import Machine, Report, not_measured, oversold
from bench.scenarios import Runner


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    # SystemExit unwinds through every `finally`, so the servers under test are stopped.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        wrk_path = wrk.ensure_installed(allow_install=options.install_wrk)
    except wrk.WrkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    machine = Machine.describe(wrk.version(wrk_path))
    print(
        f"bench: {', '.join(options.scenarios)} on {', '.join(options.backends)}, "
        f"workers {', '.join(map(str, options.workers))}, {options.duration_s} s per run",
        flush=True,
    )
    runner = Runner(options, wrk_path)
    results = runner.run()

    report = Report(options, results, machine, runner.versions)
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(report.render())
    try:
        shown = options.output.resolve().relative_to(PROJECT_ROOT)
    except ValueError:
        shown = options.output
    print(f"wrote {shown} (raw wrk output in bench/results/wrk/)")

    failed = not_measured(results)
    bad = oversold(results)
    for result in failed:
        print(
            f"NOT MEASURED {result.backend} x{result.workers} {result.scenario}: {result.problem}"
        )
    for result in bad:
        assert result.oversell is not None
        print(
            f"OVERSOLD {result.backend} x{result.workers} {result.scenario}: "
            f"{result.oversell.describe()}"
        )
    return 1 if failed or bad else 0


if __name__ == "__main__":
    sys.exit(main())
