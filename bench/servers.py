"""Starting and stopping the servers under test, and reading their memory from /proc.

Every server runs in a session of its own (`start_new_session=True`) so that stopping it
signals its whole process group: the uvicorn supervisor and every worker it spawned.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.options import PROJECT_ROOT

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0


class ServerError(RuntimeError):
    """A server did not start, or died while being measured."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def movietickets_command(*args: str) -> list[str]:
    """`.venv/bin/movietickets ARGS`, or `python -m movietickets.cli ARGS` without the script."""
    script = Path(sys.executable).parent / "movietickets"
    if script.is_file():
        return [str(script), *args]
    return [sys.executable, "-m", "movietickets.cli", *args]


def _children(pid: int) -> list[int]:
    children: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return children
    for task in tasks:
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return children


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM: the most resident memory the process has had since it started, in MB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


@dataclass(slots=True)
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    workers: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def worker_pids(self) -> list[int]:
        """With one worker uvicorn serves in its main process; with more, in spawned children."""
        if self.workers == 1:
            return [self.process.pid]
        return [
            child
            for child in _children(self.process.pid)
            if "resource_tracker" not in _cmdline(child)
        ]

    def peak_rss_per_worker_mb(self) -> list[float]:
        return [rss for pid in self.worker_pids() if (rss := peak_rss_mb(pid)) is not None]

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise ServerError(
                f"{self.name} exited with {self.process.returncode}; see {self.log_path}"
            )


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_until_ready(server: Server, ready_path: str, *, any_status: bool) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(timeout=2.0) as client:
        while True:
            if server.process.poll() is not None:
                raise ServerError(
                    f"{server.name} exited with {server.process.returncode} while starting:\n"
                    + _log_tail(server.log_path)
                )
            try:
                response = client.get(server.base_url + ready_path)
                answered = any_status or response.status_code == 200
            except httpx.TransportError:
                answered = False
            if answered and len(server.worker_pids()) >= server.workers:
                return
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{server.name} was not ready within {START_TIMEOUT_S:.0f} s:\n"
                    + _log_tail(server.log_path)
                )
            time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT_S)
    # The group may outlive its leader (a worker still shutting down): make sure it is gone.
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_TIMEOUT_S)


@contextmanager
def running(
    name: str,
    command: Sequence[str],
    *,
    port: int,
    workers: int,
    log_path: Path,
    env: Mapping[str, str],
    ready_path: str,
    ready_on_any_status: bool = False,
) -> Iterator[Server]:
    """Start `command`, wait until `ready_path` answers, yield it, and always stop it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            list(command),
            cwd=PROJECT_ROOT,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        server = Server(name, process, port, workers, log_path)
        try:
            _wait_until_ready(server, ready_path, any_status=ready_on_any_status)
            yield server
        finally:
            _stop(process)


@contextmanager
def service(
    *,
    database_url: str,
    workers: int,
    simulator_url: str,
    log_path: Path,
) -> Iterator[Server]:
    """`movietickets serve` as it ships, pointed at the simulator in its own process."""
    port = free_port()
    env = {
        "DATABASE_URL": database_url,
        "HOST": LOOPBACK,
        "PORT": str(port),
        "WORKERS": str(workers),
        "ENVIRONMENT": "test",
        "RATE_LIMIT_ENABLED": "false",  # the load comes from one address
        "MAX_HELD_SEATS_PER_ADDRESS": "0",  # so do all its unpaid seats
        "LOG_LEVEL": "WARNING",
        "SEED_SAMPLE_MOVIES": "false",
        "SIMULATOR_ENABLED": "false",
        "MPESA_CALLBACK_URL": f"http://{LOOPBACK}:{port}/api/payment-callback",
        "MPESA_BASE_URL": simulator_url,
        "MPESA_CONSUMER_KEY": "simulator-key",
        "MPESA_CONSUMER_SECRET": "simulator-secret",
    }
    with running(
        f"service ({workers} worker{'s' if workers > 1 else ''})",
        movietickets_command("serve"),
        port=port,
        workers=workers,
        log_path=log_path,
        env=env,
        ready_path="/healthz",
    ) as server:
        yield server


@contextmanager
def simulator(*, callback_delay: float, log_path: Path) -> Iterator[Server]:
    """The Daraja simulator (`movietickets simulator`) in a process of its own."""
    port = free_port()
    command = movietickets_command(
        "simulator",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--callback-delay",
        str(callback_delay),
    )
    with running(
        "Daraja simulator",
        command,
        port=port,
        workers=1,
        log_path=log_path,
        env={"LOG_LEVEL": "WARNING", "ENVIRONMENT": "test"},
        ready_path="/",
        ready_on_any_status=True,
    ) as server:
        yield server


@contextmanager
def floor(*, body_path: Path, workers: int, log_path: Path) -> Iterator[Server]:
    """bench.floor_app under the service's uvicorn settings (no access log, no server header)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.floor_app:app",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
        "--no-server-header",
    ]
    with running(
        f"floor ({workers} worker{'s' if workers > 1 else ''})",
        command,
        port=port,
        workers=workers,
        log_path=log_path,
        env={"BENCH_FLOOR_BODY": str(body_path)},
        ready_path="/api/movies",
    ) as server:
        yield server
