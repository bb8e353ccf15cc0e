"""The floor reference: a raw ASGI app answering every request with the bytes of `GET /api/movies`.

No framework, no routing, no database: the most any Python server can do here under the same
uvicorn settings as the service. The body is captured from the running service by the harness
and read once at import from the file named by `BENCH_FLOOR_BODY`.

    BENCH_FLOOR_BODY=bench/results/movies_body.json \\
        uvicorn bench.floor_app:app --workers 1 --no-access-log --log-level warning
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_BODY_PATH = Path(__file__).resolve().parent / "results" / "movies_body.json"

BODY = Path(os.environ.get("BENCH_FLOOR_BODY", DEFAULT_BODY_PATH)).read_bytes()
HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
]
START = {"type": "http.response.start", "status": 200, "headers": HEADERS}
RESPONSE = {"type": "http.response.body", "body": BODY}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await send(START)
        await send(RESPONSE)
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
