"""uvicorn's HTTP/1.1 protocol (httptools), with the limits it lacks against slow or huge requests.

uvicorn (0.54) has no read timeout: its keep-alive timer runs only between requests, so a
client that opens a connection and sends its request a byte at a time (slowloris), or never
sends one, holds the connection forever. httptools has no cap on header size: a 64 MiB header
is buffered whole. ASGI middleware cannot help, since the app is called only once the headers
are complete. `LimitedHttpToolsProtocol` adds, per connection:

- before the first byte of a request: the keep-alive timeout (KEEP_ALIVE_SECONDS), as between
  requests; the connection is closed without an answer, as an idle one is;
- from a request's first byte to the end of its headers: HEADER_READ_TIMEOUT_SECONDS (408);
- request line and headers together at most MAX_HEADER_BYTES (431), checked on every chunk
  read, so no more than that plus one read (256 KiB) is ever buffered;
- from the end of the headers to the end of the body: BODY_READ_TIMEOUT_SECONDS (408);
- over MAX_CONNECTIONS open connections in the worker, a request gets 503 with Retry-After
  (uvicorn's --limit-concurrency answers a plain-text 503; this one has the service's JSON).

A refused request is answered with `Connection: close` and the JSON error shape; the connection
is then half-closed and what the client still sends is read and dropped for a moment, so that
the client reads the answer instead of a reset.

`movietickets serve` uses it; with plain uvicorn, pass
`--http movietickets.server:LimitedHttpToolsProtocol`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from movietickets.settings import Settings

logger = logging.getLogger("movietickets.server")

# How long a refused connection keeps reading (and dropping) what the client still sends.
LINGER_SECONDS = 2.0
# File descriptors a worker needs besides its client connections (database pool, Redis,
# outgoing HTTP, logs): raised to, when the soft limit is lower, at start.
SPARE_FILE_DESCRIPTORS = 256

REASONS = {
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}
# These answers never reach the app: the security headers it adds (security.py) are here.
HEADERS = (
    b"content-type: application/json\r\n"
    b"x-content-type-options: nosniff\r\n"
    b"x-frame-options: DENY\r\n"
    b"referrer-policy: no-referrer\r\n"
    b"cross-origin-opener-policy: same-origin\r\n"
    b"content-security-policy: default-src 'none'; frame-ancestors 'none'\r\n"
    b"connection: close\r\n"
)


@dataclass(frozen=True)
class ServerLimits:
    idle_seconds: float
    header_timeout_seconds: float
    body_timeout_seconds: float
    max_header_bytes: int
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        return cls(
            idle_seconds=settings.keep_alive_seconds,
            header_timeout_seconds=settings.header_read_timeout_seconds,
            body_timeout_seconds=settings.body_read_timeout_seconds,
            max_header_bytes=settings.max_header_bytes,
            max_connections=settings.max_connections,
        )


@functools.cache
def process_limits() -> ServerLimits:
    """Read once per process: uvicorn's workers are started afresh and read the environment."""
    return ServerLimits.from_settings(Settings())


def raise_open_files_limit(settings: Settings) -> None:
    """Makes MAX_CONNECTIONS reachable: at the soft limit of open files (often 1024), a worker
    cannot accept connections at all (asyncio stops accepting for a second at a time), which
    is how a few hundred slow clients used to lock everyone else out."""
    needed = settings.max_connections + SPARE_FILE_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        ceiling = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        if ceiling < needed:
            logger.warning(
                "open files are limited to %d (hard limit): MAX_CONNECTIONS=%d needs about %d",
                ceiling,
                settings.max_connections,
                needed,
            )


def _error(status: int, code: str, message: str, extra: bytes) -> tuple[bytes, bytes]:
    """The head (without its final empty line) and the body of an error answer."""
    body = json.dumps({"error": message, "code": code}).encode()
    head = b"HTTP/1.1 %d %s\r\n" % (status, REASONS[status])
    return head + HEADERS + extra + b"content-length: %d\r\n" % len(body), body


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = process_limits()
        # One deadline at a time (idle, headers, body, linger), on one timer that may fire
        # early and look again: arming a deadline per request costs a float, not a timer.
        self._due: float | None = None
        self._on_due: Callable[[], None] = self._idle_timed_out
        self._timer: asyncio.TimerHandle | None = None
        self._reading_head = False
        self._head_bytes = 0
        self._refused = False

    # The phases of a request, each with its deadline.

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._due = self.loop.time() + seconds
        self._on_due = callback
        if self._timer is not None and self._timer.when() > self._due:
            self._timer.cancel()
            self._timer = None
        if self._timer is None:
            self._timer = self.loop.call_at(self._due, self._check_due)

    def _disarm(self) -> None:
        self._due = None  # the timer, if any, fires and finds nothing due

    def _check_due(self) -> None:
        self._timer = None
        if self._due is None:
            return
        if self.loop.time() < self._due:
            self._timer = self.loop.call_at(self._due, self._check_due)
            return
        self._due = None
        self._on_due()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.idle_seconds, self._idle_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a refusal: dropped
        super().data_received(data)
        if self._reading_head and not self._refused:
            # The whole chunk counts (it may begin with the end of a pipelined request).
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse_large_head()

    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()
        self._reading_head = True
        self._head_bytes = 0
        self._arm(self.limits.header_timeout_seconds, self._head_timed_out)

    def on_url(self, url: bytes) -> None:
        if not self._refused:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._refused:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._reading_head = False
        # "METHOD url HTTP/1.1\r\n", "name: value\r\n" each, "\r\n".
        size = len(self.url) + 20 + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.max_header_bytes:
            self._refuse_large_head()
            return
        if len(self.connections) > self.limits.max_connections:
            logger.warning(
                "%d open connections, over MAX_CONNECTIONS=%d: answered 503",
                len(self.connections),
                self.limits.max_connections,
            )
            self._refuse(
                503,
                "server_busy",
                "Too many connections to this server; try again shortly",
                b"retry-after: 1\r\n",
            )
            return
        super().on_headers_complete()
        if self.parser.should_upgrade() and self._should_upgrade():
            self._disarm()  # a WebSocket now owns the transport
            return
        self._arm(self.limits.body_timeout_seconds, self._body_timed_out)

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        super().on_message_complete()

    # Deadlines passed.

    def _idle_timed_out(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def _head_timed_out(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request waits for the answer to the one before; so does its clock.
            self._arm(self.limits.header_timeout_seconds, self._head_timed_out)
            return
        logger.info("request headers not received within %g s", self.limits.header_timeout_seconds)
        self._reading_head = False
        seconds = f"{self.limits.header_timeout_seconds:g}"
        self._refuse(408, "request_timeout", f"Request headers not received within {seconds} s")

    def _body_timed_out(self) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_started:
            self.transport.close()  # answered already, without reading it all
            return
        logger.info("request body not received within %g s", self.limits.body_timeout_seconds)
        # The app, waiting for the body, gets http.disconnect; what it sends then is dropped.
        cycle.disconnected = True
        cycle.message_event.set()
        seconds = f"{self.limits.body_timeout_seconds:g}"
        self._refuse(408, "request_timeout", f"Request body not received within {seconds} s")

    # Refusals.

    def _refuse_large_head(self) -> None:
        limit = self.limits.max_header_bytes
        logger.info("request headers over MAX_HEADER_BYTES=%d: answered 431", limit)
        self._reading_head = False
        self._refuse(
            431,
            "headers_too_large",
            f"Request line and headers larger than {self.limits.max_header_bytes} bytes",
        )

    def _refuse(self, status: int, code: str, message: str, extra: bytes = b"") -> None:
        """Answers and closes; reads and drops what the client still sends for a moment."""
        self._refused = True
        self._disarm()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.disconnected:
            self.transport.close()  # an answer is being sent on this connection: no second one
            return
        head, body = _error(status, code, message, extra)
        defaults = self.server_state.default_headers  # the date
        head += b"".join(name + b": " + value + b"\r\n" for name, value in defaults)
        self.transport.write(head + b"\r\n" + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._arm(LINGER_SECONDS, self.transport.close)
