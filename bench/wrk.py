"""Runs wrk and turns its `--latency` report into numbers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# wrk prints times with these units (see format_time_us in wrk's units.c).
_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME = r"([0-9.]+)(us|ms|s|m|h)"
_PERCENTILE = re.compile(rf"^\s*(50|75|90|99)(?:\.0+)?%\s+{_TIME}\s*$", re.MULTILINE)
_TOTAL = re.compile(rf"^\s*([0-9]+) requests in {_TIME}", re.MULTILINE)
_RATE = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.MULTILINE)
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)"
)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: ([0-9]+)")
# Printed by the done() hook of bench/lua/*.lua: one line per HTTP status.
_STATUS = re.compile(r"^status ([0-9]{3}) ([0-9]+)$", re.MULTILINE)


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed something we cannot read."""


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration_s: float
    requests_per_s: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    socket_errors: dict[str, int]
    non_2xx: int
    # Only when a Lua script counted them (POST scenarios): HTTP status -> responses.
    statuses: dict[int, int] = field(default_factory=dict)

    def error_count(self, expected: frozenset[int] = frozenset()) -> int:
        """Socket errors plus non-2xx responses, leaving out the `expected` statuses."""
        expected_count = sum(n for code, n in self.statuses.items() if code in expected)
        return self.non_2xx - expected_count + sum(self.socket_errors.values())

    def describe_errors(self, expected: frozenset[int] = frozenset()) -> str:
        """`0`, or the total and where it came from, e.g. `12 (502 x10, timeout 2)`."""
        parts: list[str] = []
        failed = {
            c: n for c, n in self.statuses.items() if not 200 <= c < 400 and c not in expected
        }
        if failed:
            parts += [f"{code} x{n}" for code, n in sorted(failed.items())]
        elif self.non_2xx and not self.statuses:
            parts.append(f"non-2xx {self.non_2xx}")
        parts += [f"{kind} {n}" for kind, n in self.socket_errors.items() if n]
        count = self.error_count(expected)
        text = f"{count} ({', '.join(parts)})" if count else "0"
        for code in sorted(expected):
            if self.statuses.get(code):
                text += f" (+{self.statuses[code]:,} x {code}, expected)"
        return text


def _ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS_MS[unit]


def parse(output: str) -> WrkResult:
    """Parse the report of `wrk --latency` (wrk 4.x)."""
    percentiles = {int(m[1]): _ms(m[2], m[3]) for m in _PERCENTILE.finditer(output)}
    total = _TOTAL.search(output)
    rate = _RATE.search(output)
    if total is None or rate is None or not {50, 75, 90, 99} <= percentiles.keys():
        raise WrkError(f"cannot read the wrk report:\n{output}")
    socket = _SOCKET_ERRORS.search(output)
    socket_errors = dict.fromkeys(("connect", "read", "write", "timeout"), 0)
    if socket is not None:
        socket_errors = dict(zip(socket_errors, map(int, socket.groups()), strict=True))
    non_2xx = _NON_2XX.search(output)
    return WrkResult(
        requests=int(total[1]),
        duration_s=_ms(total[2], total[3]) / 1000,
        requests_per_s=float(rate[1]),
        p50_ms=percentiles[50],
        p75_ms=percentiles[75],
        p90_ms=percentiles[90],
        p99_ms=percentiles[99],
        socket_errors=socket_errors,
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        statuses={int(m[1]): int(m[2]) for m in _STATUS.finditer(output)},
    )


def ensure_installed(*, allow_install: bool) -> str:
    """The path of wrk; installs the Debian package when missing and allowed (root only)."""
    found = shutil.which("wrk")
    if found:
        return found
    can_install = allow_install and os.geteuid() == 0 and shutil.which("apt-get") is not None
    if can_install:
        print("wrk is not installed: running apt-get install -y wrk", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "wrk"]
        # A fresh machine may have no package lists yet: update once if the install fails.
        for command in (install, ["apt-get", "update"], install):
            if shutil.which("wrk"):
                break
            try:
                subprocess.run(command, env=env, timeout=600, check=False)
            except subprocess.TimeoutExpired:
                break
        found = shutil.which("wrk")
        if found:
            return found
    raise WrkError(
        "wrk is not installed. Install it with `sudo apt-get install -y wrk` (Debian/Ubuntu) "
        "or from https://github.com/wg/wrk, then run `make bench` again."
    )


def version(wrk: str) -> str:
    try:
        completed = subprocess.run(
            [wrk, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    first = (completed.stdout or completed.stderr).splitlines()
    return first[0].split(" Copyright")[0] if first else "unknown"


def run(
    wrk: str,
    url: str,
    *,
    threads: int,
    connections: int,
    duration_s: int,
    raw_path: Path,
    script: Path | None = None,
    script_args: Sequence[str] = (),
) -> WrkResult:
    """Run one load test, keep its raw report at `raw_path`, and return it parsed."""
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s}s",
        "--latency",
    ]
    if script is not None:
        command += ["-s", str(script)]
    command.append(url)
    if script_args:
        command += ["--", *script_args]
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=duration_s + 60, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish within {duration_s + 60} s") from exc
    output = completed.stdout + (f"\n[stderr]\n{completed.stderr}" if completed.stderr else "")
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    raw_path.write_text(f"$ {' '.join(command)}\n{output}")
    if completed.returncode != 0:
        raise WrkError(f"wrk exited with {completed.returncode}: {output.strip()[-500:]}")
    return parse(completed.stdout)
