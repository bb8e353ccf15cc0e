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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_environment(
    database_url: str, port: int, *, workers: int = 1, **env: str
) -> dict[str, str]:
    """The environment the live servers of the tests run with (each its own journal)."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "ENVIRONMENT": "test",
        "RATE_LIMIT_ENABLED": "false",
        # Every test buyer comes from 127.0.0.1: tests of the bounds set their own.
        "MAX_HELD_SEATS_PER_PHONE": "0",
        "MAX_HELD_SEATS_PER_ADDRESS": "0",
        "SEED_SAMPLE_MOVIES": "false",
        "LOG_LEVEL": "WARNING",
        "PORT": str(port),
        "WORKERS": str(workers),
        "RECONCILE_IN_SERVICE": "false",
        "JWT_SECRET_KEY": "test-signing-key-0123456789abcdef0123456789abcdef",
        "JOURNAL_DIR": tempfile.mkdtemp(prefix="movietickets-journal-"),
        **env,
    }


@dataclass(frozen=True)
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]


class ServerProcess(RunningServer):
    """A server (or simulator) process that a test may crash, stop, pause and resume."""

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: nothing runs after it."""
        _end(self.process, signal.SIGKILL)

    def stop(self) -> None:
        _end(self.process, signal.SIGTERM)

    def pause(self) -> None:
        """SIGSTOP: nothing it would send goes out until `resume` (its timers run late)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGCONT)


def _end(process: subprocess.Popen[bytes], how: signal.Signals) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
    os.killpg(process.pid, how)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait_until_up(process: subprocess.Popen[bytes], url: str) -> None:
    # Generous: a loaded two-core machine may take long to start an interpreter.
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start within 60 s")
        time.sleep(0.1)


def _log_file(log_path: Path | None) -> IO[bytes] | int:
    log_path = log_path or (Path(os.environ["SERVER_LOG"]) if "SERVER_LOG" in os.environ else None)
    return open(log_path, "ab") if log_path else subprocess.DEVNULL


def start_process(
    command: Sequence[str],
    *,
    url: str,
    up_path: str = "/healthz",
    env: Mapping[str, str],
    cwd: Path | None = None,
    log_path: Path | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> ServerProcess:
    """Starts `command`, serving `url`, in a session of its own; returns once `up_path`
    answers there."""
    log = _log_file(log_path)
    try:
        process = subprocess.Popen(  # noqa: S603  (the tests' own commands)
            list(command),
            env=dict(env),
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
    finally:
        if not isinstance(log, int):
            log.close()  # the child has its own copy
    server = ServerProcess(url, process)
    try:
        _wait_until_up(process, f"{url}{up_path}")
    except BaseException:
        server.kill()
        raise
    return server


@contextmanager
def running_server(
    command: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str],
    cwd: Path | None = None,
    log_path: Path | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[RunningServer]:
    """Runs `command` until it answers /healthz on `port`; stops it (and its workers) after."""
    server = start_process(
        command,
        url=f"http://127.0.0.1:{port}",
        env=env,
        cwd=cwd,
        log_path=log_path,
        preexec_fn=preexec_fn,
    )
    try:
        yield server
    finally:
        server.stop()


def start_server(
    database_url: str,
    *,
    port: int | None = None,
    workers: int = 1,
    serve_args: Sequence[str] = (),
    log_path: Path | None = None,
    command: str = "movietickets.cli",
    env: Mapping[str, str] | None = None,
) -> ServerProcess:
    """`python -m <command> serve` on `port` (a free one by default), once it answers.

    The caller ends it (`kill`, `stop`); restarted on the same port, it is where Daraja's
    callbacks were told to go. `serve_args`: e.g. `--no-migrate`; `env`: settings added to
    `server_environment`'s.
    """
    port = port or free_port()
    return start_process(
        [sys.executable, "-m", command, "serve", *serve_args],
        url=f"http://127.0.0.1:{port}",
        env=server_environment(database_url, port, workers=workers, **(env or {})),
        log_path=log_path,
    )


@contextmanager
def live_server(
    database_url: str,
    *,
    workers: int = 1,
    log_path: Path | None = None,
    command: str = "movietickets.cli",
    **env: str,
) -> Iterator[str]:
    """Serves on a free loopback port; yields the base URL; stops the server afterwards.

    `command` is the module run as `python -m <command> serve`: the shipped CLI, or a
    test's variant of it.
    """
    server = start_server(
        database_url, workers=workers, log_path=log_path, command=command, env=env
    )
    try:
        yield server.url
    finally:
        server.stop()


# A service's settings for talking to a separate simulator as to Daraja.
SIMULATOR_CREDENTIALS = {
    "SIMULATOR_ENABLED": "false",
    "MPESA_CONSUMER_KEY": "simulator-key",
    "MPESA_CONSUMER_SECRET": "simulator-secret",
}


@dataclass(frozen=True)
class Simulator(ServerProcess):
    log_path: Path

    @property
    def settings(self) -> dict[str, str]:
        """A service's environment for talking to this simulator as to Daraja."""
        return {**SIMULATOR_CREDENTIALS, "MPESA_BASE_URL": self.url}

    def logged(self, text: str) -> int:
        """How many of its log lines so far say `text` ("STK push accepted": each is answered
        `push_delay` later; "STK push held open": a push that is never answered)."""
        return self.log_path.read_text(errors="replace").count(text)


@contextmanager
def daraja_simulator(*, callback_delay: float, push_delay: float = 0.0) -> Iterator[Simulator]:
    """`movietickets simulator` in its own process, as long as the block runs."""
    port = free_port()
    environment = {
        **os.environ,
        "LOG_LEVEL": "INFO",
        "SIMULATOR_PUSH_DELAY_SECONDS": str(push_delay),
    }
    command = [sys.executable, "-m", "movietickets.cli", "simulator", "--port", str(port)]
    command += ["--callback-delay", str(callback_delay)]
    # Its log tells what it accepted: a file of its own.
    descriptor, log_name = tempfile.mkstemp(prefix="movietickets-simulator-", suffix=".log")
    os.close(descriptor)
    log_path = Path(log_name)
    started = start_process(
        command, url=f"http://127.0.0.1:{port}", up_path="/", env=environment, log_path=log_path
    )
    simulator = Simulator(started.url, started.process, log_path)
    try:
        yield simulator
    finally:
        simulator.stop()
        log_path.unlink(missing_ok=True)
