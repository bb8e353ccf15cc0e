"""httpx on asyncio streams: keep-alive, closed connections, timeouts, TLS, respx."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpcore
import httpx
import pytest
import respx
from asgi_lifespan import LifespanManager

from movietickets.app import create_app
from movietickets.daraja import transport as transport_module
from movietickets.daraja.transport import AsyncioBackend, asyncio_transport
from movietickets.settings import Settings

LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100)


class EchoServer:
    """A small HTTP/1.1 server: echoes the request, counts connections, can misbehave."""

    def __init__(self) -> None:
        self.connections = 0
        self.close_after_response = False
        self.silent = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection = self.connections
        self._writers.add(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                length = 0
                for line in head.split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                if self.silent:
                    await asyncio.sleep(3600)
                payload = json.dumps(
                    {
                        "request": head.split("\r\n")[0],
                        "body": body.decode(),
                        "connection": connection,
                    }
                ).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
                if self.close_after_response:
                    break  # as a server whose keep-alive timeout ran out does
        writer.close()
        self._writers.discard(writer)


@pytest.fixture
async def server() -> AsyncIterator[EchoServer]:
    echo = EchoServer()
    await echo.start()
    yield echo
    await echo.stop()


@pytest.fixture
async def client(server: EchoServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=asyncio_transport(LIMITS),
        base_url=f"http://127.0.0.1:{server.port}",
        timeout=httpx.Timeout(5, connect=2),
    ) as http:
        yield http


async def test_requests_share_one_kept_alive_connection(
    server: EchoServer, client: httpx.AsyncClient
) -> None:
    for n in range(5):
        response = await client.post("/stkpush", json={"n": n})
        assert response.status_code == 200
        echoed = response.json()
        assert echoed["request"] == "POST /stkpush HTTP/1.1"
        assert json.loads(echoed["body"]) == {"n": n}
        assert echoed["connection"] == 1
    assert server.connections == 1


async def test_concurrent_requests_reuse_pooled_connections(
    server: EchoServer, client: httpx.AsyncClient
) -> None:
    opened = []
    for _ in range(2):
        responses = await asyncio.gather(*(client.get(f"/n/{n}") for n in range(60)))
        requests = [response.json()["request"] for response in responses]
        assert requests == [f"GET /n/{n} HTTP/1.1" for n in range(60)]
        opened.append(server.connections)
    # The second rush found its connections in the pool.
    assert opened[1] == opened[0]


@pytest.mark.parametrize("idle_poll_after", [transport_module.POLL_IF_IDLE_SECONDS, 0.0])
async def test_a_connection_the_server_closed_is_not_reused(
    server: EchoServer,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    idle_poll_after: float,
) -> None:
    """Seen as closed by the event loop, or (idle long enough) by polling the socket."""
    monkeypatch.setattr(transport_module, "POLL_IF_IDLE_SECONDS", idle_poll_after)
    server.close_after_response = True
    for n in range(3):
        response = await client.get("/")
        assert response.json()["connection"] == n + 1
        await asyncio.sleep(0.05)
    assert server.connections == 3


async def test_nobody_listening_is_a_connect_error(server: EchoServer) -> None:
    await server.stop()
    async with httpx.AsyncClient(transport=asyncio_transport(LIMITS)) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{server.port}/")
    await server.start()  # for the fixture's teardown


async def test_a_silent_server_is_a_read_timeout(server: EchoServer) -> None:
    server.silent = True
    async with httpx.AsyncClient(transport=asyncio_transport(LIMITS), timeout=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(f"http://127.0.0.1:{server.port}/", json={})


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    try:
        # The openssl command line tool, with fixed arguments: nothing untrusted is run.
        subprocess.run(  # noqa: S603
            [  # noqa: S607
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl cannot make a test certificate: {exc}")
    return key, cert


async def test_https_is_verified(certificate: tuple[Path, Path]) -> None:
    key, cert = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    echo = EchoServer()
    await echo.start(server_context)
    try:
        trusting = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(transport=asyncio_transport(LIMITS, verify=trusting)) as http:
            response = await http.post(f"https://localhost:{echo.port}/secure", json={"a": 1})
            assert response.json()["request"] == "POST /secure HTTP/1.1"
            assert response.extensions["network_stream"].get_extra_info("ssl_object") is not None
        # Default verification (the public CAs) refuses a self-signed certificate.
        async with httpx.AsyncClient(transport=asyncio_transport(LIMITS)) as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(f"https://localhost:{echo.port}/")
    finally:
        await echo.stop()


async def test_respx_still_mocks_it() -> None:
    with respx.mock(base_url="https://daraja.test") as router:
        router.post("/push").respond(json={"mocked": True})
        async with httpx.AsyncClient(transport=asyncio_transport(LIMITS)) as http:
            response = await http.post("https://daraja.test/push", json={})
    assert response.json() == {"mocked": True}


async def test_the_service_talks_to_daraja_through_it(settings: Settings) -> None:
    app = create_app(settings)
    async with LifespanManager(app):
        http: httpx.AsyncClient = app.state.resources.http
        pool = http._transport._pool  # type: ignore[attr-defined]
        assert isinstance(pool, httpcore.AsyncConnectionPool)
        assert isinstance(pool._network_backend, AsyncioBackend)
