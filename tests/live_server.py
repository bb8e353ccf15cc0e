"""Runs the service as it ships (`movietickets serve`: uvicorn, migrations) in a subprocess,
and the Daraja simulator in one of its own (a Daraja that outlives the service's crashes)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """A server started by `start_server`: its URL, and ways to end it."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log: IO[bytes] | int) -> None:
        self.process = process
        self.url = url
        self._log = log

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: nothing runs after it."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def pause(self) -> None:
        """SIGSTOP: nothing it would send goes out until `resume` (its timers run late)."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def _end(self, how: signal.Signals) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, how)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if not isinstance(self._log, int):
            self._log.close()


def _wait_until_up(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start within 30 s")
        time.sleep(0.1)


def _spawn(
    arguments: list[str], environment: dict[str, str], log_path: Path | None
) -> tuple[subprocess.Popen[bytes], IO[bytes] | int]:
    log_path = log_path or (Path(os.environ["SERVER_LOG"]) if "SERVER_LOG" in os.environ else None)
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", *arguments],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, log


def start_server(
    database_url: str,
    *,
    workers: int = 1,
    log_path: Path | None = None,
    command: str = "movietickets.cli",
    port: int | None = None,
    serve_args: tuple[str, ...] = (),
    extra_env: Mapping[str, str] | None = None,
    **env: str,
) -> ServerProcess:
    """Serves on a free loopback port (or `port`) once /healthz answers.

    `command` is the module run as `python -m <command> serve`: the shipped CLI, or a
    test's variant of it; `serve_args` are added to it (`--no-migrate`). The journal goes to
    a directory of the server's own unless JOURNAL_DIR is given.
    """
    port = port or free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ENVIRONMENT": "test",
        "RATE_LIMIT_ENABLED": "false",
        "SEED_SAMPLE_MOVIES": "false",
        "LOG_LEVEL": "WARNING",
        "PORT": str(port),
        "WORKERS": str(workers),
        "RECONCILE_IN_SERVICE": "false",
        "JWT_SECRET_KEY": "test-signing-key-0123456789abcdef0123456789abcdef",
        "JOURNAL_DIR": tempfile.mkdtemp(prefix="movietickets-journal-"),
        **(extra_env or {}),
        **env,
    }
    process, log = _spawn([command, "serve", *serve_args], environment, log_path)
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log)
    try:
        _wait_until_up(process, f"{server.url}/healthz")
    except BaseException:
        server.kill()
        raise
    return server


@contextmanager
def live_server(database_url: str, **options: Any) -> Iterator[str]:
    """`start_server`'s server for the block; yields the base URL; stops it afterwards."""
    server = start_server(database_url, **options)
    try:
        yield server.url
    finally:
        server.stop()


# The simulator's credentials, for a service that talks to it as to Daraja.
SIMULATOR_CREDENTIALS = {
    "SIMULATOR_ENABLED": "false",
    "MPESA_CONSUMER_KEY": "simulator-key",
    "MPESA_CONSUMER_SECRET": "simulator-secret",
}


class Simulator(ServerProcess):
    @property
    def settings(self) -> dict[str, str]:
        """A service's settings for talking to this simulator as to Daraja."""
        return {**SIMULATOR_CREDENTIALS, "MPESA_BASE_URL": self.url}


@contextmanager
def daraja_simulator(
    *, callback_delay: float, push_delay: float = 0.0, log_path: Path | None = None
) -> Iterator[Simulator]:
    """`movietickets simulator` in its own process, as long as the block runs."""
    port = free_port()
    environment = {
        **os.environ,
        "LOG_LEVEL": "INFO",
        "SIMULATOR_PUSH_DELAY_SECONDS": str(push_delay),
    }
    arguments = ["movietickets.cli", "simulator", "--port", str(port)]
    arguments += ["--callback-delay", str(callback_delay)]
    process, log = _spawn(arguments, environment, log_path)
    simulator = Simulator(process, f"http://127.0.0.1:{port}", log)
    try:
        _wait_until_up(process, simulator.url)
        yield simulator
    finally:
        simulator.resume()
        simulator.stop()
