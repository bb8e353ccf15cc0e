"""httpx's HTTP transport on plain asyncio streams, for the calls to Daraja.

httpx talks to the network through httpcore, which by default goes through anyio: every
request checks each pooled connection with `get_extra_info("is_readable")` (anyio builds its
typed-attribute table, then polls the socket) and reads and writes through anyio's stream
wrappers. Measured on this machine with 50 concurrent requests, that is about 1,050 us of CPU
per request; on asyncio streams, about 580 us. make-payment spends more CPU in its STK push
than in anything else, so this is its largest single saving.

Only the network backend changes: httpcore's connection pool, HTTP/1.1 handling, timeouts and
exceptions are the same (so respx, which mocks the pool, works as before), and httpx maps
them to the exceptions `DarajaClient` sorts into "not sent" and "outcome unknown".
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
import time
import typing

import httpcore
import httpx

# A pooled connection idle for less than this is trusted on what the event loop has seen
# (end of stream, transport closing); an older one is also polled, in case the server closed
# it since the loop last looked (idle timeouts are seconds long, not milliseconds).
POLL_IF_IDLE_SECONDS = 1.0


def _readable(sock: socket.socket | None) -> bool:
    """An idle HTTP/1.1 connection that is readable was closed by the server (or is broken)."""
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._used_at = time.monotonic()

    # The `timeout` parameters (ASYNC109) are httpcore's interface: it passes each operation's
    # timeout from httpx's Timeout.
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                data = await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(exc) from exc
        except OSError as exc:
            raise httpcore.ReadError(exc) from exc
        self._used_at = time.monotonic()
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(exc) from exc
        except OSError as exc:
            raise httpcore.WriteError(exc) from exc
        self._used_at = time.monotonic()

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            await self.aclose()
            raise httpcore.ConnectTimeout(exc) from exc
        except OSError as exc:  # ssl.SSLError included
            await self.aclose()
            raise httpcore.ConnectError(exc) from exc
        return self

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable":
            if self._reader.at_eof() or self._writer.is_closing():
                return True
            if time.monotonic() - self._used_at < POLL_IF_IDLE_SECONDS:
                return False
            return _readable(self._writer.get_extra_info("socket"))
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend on asyncio streams (TCP; TLS started on demand)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(local_address, 0) if local_address else None
                )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(exc) from exc
        except OSError as exc:
            raise httpcore.ConnectError(exc) from exc
        sock: socket.socket | None = writer.get_extra_info("socket")
        if sock is not None:
            for option in socket_options or ():
                sock.setsockopt(*option)
        return _Stream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def asyncio_transport(
    limits: httpx.Limits, *, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncHTTPTransport:
    """An httpx transport as httpx builds it (TLS verification, limits), on asyncio streams."""
    transport = httpx.AsyncHTTPTransport(limits=limits, verify=verify)
    # httpx has no parameter for httpcore's network backend; its pool takes it from here
    # for every connection it opens (tests/daraja/test_transport.py checks it is used).
    pool = transport._pool
    assert isinstance(pool, httpcore.AsyncConnectionPool)
    pool._network_backend = AsyncioBackend()
    return transport
