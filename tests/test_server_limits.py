"""Slow and oversized requests against a live `movietickets serve` (server.py's limits).

Every client here talks to the loopback server of this module only; every loop is bounded in
count and time, and stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live_server import RunningServer, free_port, running_server, server_environment

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
IDLE_TIMEOUT = 3  # KEEP_ALIVE_SECONDS: before a request's first byte, as between requests
MAX_CONNECTIONS = 600
MAX_HEADER_BYTES = 32 * 1024
STARTING_OPEN_FILES = 512  # below what MAX_CONNECTIONS needs: serve raises it


def _low_open_files_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (STARTING_OPEN_FILES, hard))


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('limits') / 'movietickets.db'}"


@pytest.fixture(scope="module")
def server(database: str) -> Iterator[RunningServer]:
    port = free_port()
    env = server_environment(
        database,
        port,
        HEADER_READ_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        BODY_READ_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        KEEP_ALIVE_SECONDS=str(IDLE_TIMEOUT),
        MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        MAX_HEADER_BYTES=str(MAX_HEADER_BYTES),
    )
    with running_server(
        [sys.executable, "-m", "movietickets.cli", "serve"],
        port=port,
        env=env,
        preexec_fn=_low_open_files_limit,
    ) as running:
        yield running


def _address(server: RunningServer) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


async def _read_answer(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server sends until it closes (or half-closes) the connection."""
    async with asyncio.timeout(seconds):
        return await reader.read()


def _status(answer: bytes) -> int | None:
    if not answer.startswith(b"HTTP/1.1 "):
        return None
    return int(answer.split(b" ", 2)[1])


async def _slow_client(server: RunningServer, *, silent: bool) -> bytes:
    """Starts a request and sends one more header byte every half second (or nothing at all),
    for at most 20 s: returns what the server answered when it closed the connection."""
    reader, writer = await asyncio.open_connection(*_address(server))
    try:
        answer = asyncio.create_task(_read_answer(reader, 20))
        if not silent:
            writer.write(b"GET /api/movies HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        for _ in range(40):
            if answer.done():
                break
            if not silent:
                with contextlib.suppress(ConnectionError):
                    writer.write(b"a")
                    await writer.drain()
            await asyncio.sleep(0.5)
        return await answer  # TimeoutError if the server never let go
    finally:
        writer.close()


async def test_slowloris_of_500_connections(server: RunningServer) -> None:
    """450 connections send their headers a byte at a time, 50 send nothing: others are still
    served meanwhile, and the server drops every one of them by itself."""
    attack = [
        asyncio.create_task(_slow_client(server, silent=number % 10 == 0)) for number in range(500)
    ]
    answers = []
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        for _ in range(400):  # a normal client, until the attack is over
            if all(task.done() for task in attack):
                break
            answers.append((await http.get("/api/movies")).status_code)
            await asyncio.sleep(0.05)
    ended = await asyncio.gather(*attack, return_exceptions=True)
    assert answers
    assert set(answers) == {200}
    never_dropped = [result for result in ended if isinstance(result, BaseException)]
    assert never_dropped == []
    statuses = [_status(answer) for answer in ended if isinstance(answer, bytes)]
    assert statuses.count(408) == 450  # the slow ones: told, then closed
    assert statuses.count(None) == 50  # the silent ones: closed like any idle connection
    timed_out = next(answer for answer in ended if isinstance(answer, bytes) and answer)
    assert b'"code": "request_timeout"' in timed_out
    assert b"connection: close" in timed_out


async def test_slow_body_gets_408(server: RunningServer) -> None:
    reader, writer = await asyncio.open_connection(*_address(server))
    try:
        writer.write(
            b"POST /api/make-payment HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"
        )
        answer = asyncio.create_task(_read_answer(reader, 20))
        for _ in range(40):
            if answer.done():
                break
            with contextlib.suppress(ConnectionError):
                writer.write(b" ")
                await writer.drain()
            await asyncio.sleep(0.5)
        received = await answer
    finally:
        writer.close()
    assert _status(received) == 408
    assert received.endswith(
        b'{"error": "Request body not received within 2 s", "code": "request_timeout"}'
    )


async def test_headers_over_the_cap_get_431(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        # Below the cap: served.
        response = await http.get("/api/movies", headers={"X-Large": "a" * (MAX_HEADER_BYTES // 2)})
        assert response.status_code == 200
        # 64 KiB in one header, or spread over many: refused, and the client reads why.
        for headers in (
            {"X-Large": "a" * (64 * 1024 + 1)},
            {f"X-Many-{number}": "a" * 1000 for number in range(66)},
        ):
            response = await http.get("/api/movies", headers=headers)
            assert response.status_code == 431
            assert response.json() == {
                "error": f"Request line and headers larger than {MAX_HEADER_BYTES} bytes",
                "code": "headers_too_large",
            }
            assert response.headers["connection"] == "close"
            assert response.headers["x-content-type-options"] == "nosniff"
        # And the server goes on serving.
        assert (await http.get("/api/movies")).status_code == 200


def _reset_peak_memory(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM starts again from VmRSS


def _memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


async def _huge_header(server: RunningServer, size: int) -> bytes:
    """Sends a header of `size` bytes in 256 KiB pieces, stopping when the server answers."""
    reader, writer = await asyncio.open_connection(*_address(server))
    try:
        answer = asyncio.create_task(_read_answer(reader, 30))
        writer.write(b"GET /api/movies HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: ")
        piece = b"a" * (256 * 1024)
        for _ in range(size // len(piece)):
            if answer.done():
                break
            try:
                writer.write(piece)
                await writer.drain()
            except ConnectionError:
                break
        else:
            writer.write(b"\r\n\r\n")
        return await answer
    finally:
        writer.close()


async def test_huge_headers_do_not_grow_the_worker(server: RunningServer) -> None:
    """Eight concurrent requests with a 64 MiB header each (the issue's 219 -> 679 MB)."""
    pid = server.process.pid  # one worker: uvicorn serves in the command's own process
    _reset_peak_memory(pid)
    before = _memory_kib(pid, "VmHWM")
    answers = await asyncio.gather(*(_huge_header(server, 64 * 1024 * 1024) for _ in range(8)))
    peak = _memory_kib(pid, "VmHWM")
    assert [_status(answer) for answer in answers] == [431] * 8
    assert peak - before < 32 * 1024  # KiB: what eight capped headers may take, and then some


async def test_over_max_connections_requests_get_503(server: RunningServer) -> None:
    """Connections beyond MAX_CONNECTIONS (here the silent ones) make requests 503, with
    Retry-After, instead of the worker running out of file descriptors."""
    crowd = [await asyncio.open_connection(*_address(server)) for _ in range(MAX_CONNECTIONS)]
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            busy = await http.get("/api/movies")
    finally:
        for _, writer in crowd:
            writer.close()
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "1"
    assert busy.json()["code"] == "server_busy"
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        for _ in range(100):  # the server notices the closed connections
            status = (await http.get("/api/movies")).status_code
            if status == 200:
                break
            await asyncio.sleep(0.1)
    assert status == 200


def test_open_files_limit_fits_max_connections(server: RunningServer) -> None:
    """Started with a soft limit of 512 open files, serve raised it for MAX_CONNECTIONS."""
    limits = Path(f"/proc/{server.process.pid}/limits").read_text().splitlines()
    soft = int(next(line for line in limits if line.startswith("Max open files")).split()[3])
    assert soft >= MAX_CONNECTIONS + 100


async def test_plain_uvicorn_with_the_protocol(server: RunningServer, database: str) -> None:
    """What the README gives for plain uvicorn (the module's server has migrated the database)."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "movietickets.main:app", "--port", str(port)]
    command += ["--http", "movietickets.server:LimitedHttpToolsProtocol"]
    with running_server(command, port=port, env=server_environment(database, port)) as plain:
        async with httpx.AsyncClient(base_url=plain.url, timeout=10) as http:
            response = await http.get("/api/movies", headers={"X-Large": "a" * 40_000})
            assert response.status_code == 431
