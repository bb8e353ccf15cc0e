"""Runs the service as it ships (`movietickets serve`: uvicorn, migrations) in a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_environment(
    database_url: str, port: int, *, workers: int = 1, **env: str
) -> dict[str, str]:
    """The environment the live servers of the tests run with."""
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
        **env,
    }


@dataclass(frozen=True)
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]


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
    log_path = log_path or (Path(os.environ["SERVER_LOG"]) if "SERVER_LOG" in os.environ else None)
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(  # noqa: S603  (the tests' own commands)
        list(command),
        env=dict(env),
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=preexec_fn,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}")
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start within 30 s")
            time.sleep(0.1)
        yield RunningServer(base_url, process)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if not isinstance(log, int):
            log.close()


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
    port = free_port()
    with running_server(
        [sys.executable, "-m", command, "serve"],
        port=port,
        env=server_environment(database_url, port, workers=workers, **env),
        log_path=log_path,
    ) as server:
        yield server.url
