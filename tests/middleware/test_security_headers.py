"""Security headers on every response, CORS only for configured origins, and error bodies
that never reveal SQL, paths or stack traces."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.types import Receive, Scope, Send

from movietickets.middleware.security_headers import API_CSP, DOCS_CSP, SecurityHeadersMiddleware
from movietickets.payments.status import PaymentStatusService
from movietickets.settings import Settings

COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}
ORIGIN = "https://tickets.example.com"
SECRET_DETAIL = "secret /etc/passwd SELECT password FROM admin"


def assert_secured(response: httpx.Response, csp: str = API_CSP) -> None:
    for name, value in COMMON.items():
        assert response.headers.get(name) == value, (name, response.status_code)
    assert response.headers["content-security-policy"] == csp
    assert "strict-transport-security" not in response.headers  # not in production
    assert "server" not in response.headers


@pytest.fixture
async def lenient_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that gets the 500 of an unexpected exception instead of the exception."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def break_payment_status(monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    async def broken(self: PaymentStatusService, checkout_request_id: str) -> Any:
        raise exc

    monkeypatch.setattr(PaymentStatusService, "query", broken)


async def query_payment(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/api/query-payment-status", json={"checkoutRequestId": "ws_CO_1"})


class TestHeaders:
    async def test_on_json(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/movies")
        assert response.status_code == 200
        assert_secured(response)

    @pytest.mark.parametrize(
        ("method", "path", "body", "status"),
        [
            ("GET", "/api/nowhere", None, 404),
            ("GET", "/api/movies/999999", None, 404),
            ("POST", "/api/make-payment", {}, 422),
            ("POST", "/api/make-payment", "not json", 400),
            ("PUT", "/api/make-payment", {}, 405),
        ],
    )
    async def test_on_errors(
        self, client: httpx.AsyncClient, method: str, path: str, body: Any, status: int
    ) -> None:
        content = body if isinstance(body, str) else None
        json_body = None if isinstance(body, str) else body
        response = await client.request(
            method,
            path,
            json=json_body,
            content=content,
            headers={"content-type": "application/json"},
        )
        assert response.status_code == status
        assert_secured(response)

    async def test_on_a_body_too_large(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/api/make-payment", content=b"x" * 70_000)
        assert response.status_code == 413
        assert_secured(response)

    async def test_on_an_unexpected_exception(
        self, lenient_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        break_payment_status(monkeypatch, RuntimeError(SECRET_DETAIL))
        response = await query_payment(lenient_client)
        assert response.status_code == 500
        assert_secured(response)

    @pytest.mark.parametrize(
        "path", ["/docs", "/redoc", "/docs/oauth2-redirect", "/static-offline-docs/swagger-ui.css"]
    )
    async def test_docs_may_load_their_own_assets(
        self, client: httpx.AsyncClient, path: str
    ) -> None:
        response = await client.get(path)
        assert response.status_code == 200
        assert_secured(response, DOCS_CSP)

    async def test_the_openapi_document_is_an_api_response(self, client: httpx.AsyncClient) -> None:
        assert_secured(await client.get("/openapi.json"))


class TestInProduction:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        # What production insists on; nothing here calls Daraja.
        return settings.model_copy(
            update={
                "environment": "production",
                "mpesa_callback_token": SecretStr("t" * 32),
                "mpesa_consumer_key": SecretStr("key"),
                "mpesa_consumer_secret": SecretStr("secret"),
                "simulator_enabled": False,
            }
        )

    async def test_hsts(self, client: httpx.AsyncClient) -> None:
        for response in (await client.get("/api/movies"), await client.get("/api/nowhere")):
            assert response.headers["strict-transport-security"] == "max-age=31536000"


async def test_headers_the_app_sets_itself_are_kept_and_server_is_dropped() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"x-frame-options", b"SAMEORIGIN"), (b"server", b"uvicorn")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

    transport = httpx.ASGITransport(app=SecurityHeadersMiddleware(app, hsts=True))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/")
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["strict-transport-security"] == "max-age=31536000"
    assert "server" not in response.headers


class TestErrorBodies:
    async def test_an_unexpected_exception_reveals_nothing(
        self,
        lenient_client: httpx.AsyncClient,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        break_payment_status(monkeypatch, RuntimeError(SECRET_DETAIL))
        response = await query_payment(lenient_client)
        assert response.status_code == 500
        assert response.json() == {"error": "Internal server error", "code": "internal_error"}
        # The details go to the log, for us.
        assert any(
            record.exc_info and SECRET_DETAIL in str(record.exc_info[1])
            for record in caplog.records
        )

    async def test_a_database_outage_reveals_no_sql(
        self, lenient_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        error = OperationalError(
            "SELECT password FROM admin WHERE id = %s", (1,), OSError("/var/run/mysqld.sock")
        )
        break_payment_status(monkeypatch, error)
        response = await query_payment(lenient_client)
        assert response.status_code == 503
        assert response.json() == {
            "error": "The database is unavailable; try again shortly",
            "code": "database_down",
        }
        assert response.headers["Retry-After"] == "5"

    async def test_a_failed_statement_reveals_no_sql(
        self, lenient_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        error = IntegrityError("INSERT INTO ticket VALUES (%s)", ("x",), Exception(SECRET_DETAIL))
        break_payment_status(monkeypatch, error)
        response = await query_payment(lenient_client)
        assert response.status_code == 500
        assert response.json() == {"error": "Internal server error", "code": "internal_error"}


async def preflight(client: httpx.AsyncClient, origin: str) -> httpx.Response:
    return await client.options(
        "/api/make-payment",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, idempotency-key",
        },
    )


class TestCorsOffByDefault:
    async def test_no_cors_headers(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/movies", headers={"Origin": ORIGIN})
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers
        assert "access-control-allow-origin" not in (await preflight(client, ORIGIN)).headers


class TestCorsForConfiguredOrigins:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"cors_origins": [ORIGIN]})

    async def test_preflight(self, client: httpx.AsyncClient) -> None:
        response = await preflight(client, ORIGIN)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in response.headers["access-control-allow-methods"]
        allowed = response.headers["access-control-allow-headers"].lower()
        assert "idempotency-key" in allowed
        assert "content-type" in allowed
        assert "access-control-allow-credentials" not in response.headers

    async def test_simple_request(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/movies", headers={"Origin": ORIGIN})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ORIGIN
        exposed = response.headers["access-control-expose-headers"].lower()
        assert "retry-after" in exposed
        assert "x-request-id" in exposed
        assert_secured(response)

    async def test_not_for_another_origin(self, client: httpx.AsyncClient) -> None:
        other = "https://evil.example.net"
        response = await client.get("/api/movies", headers={"Origin": other})
        assert "access-control-allow-origin" not in response.headers
        refused = await preflight(client, other)
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers


class TestRateLimitedAnswers:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(
            update={"rate_limit_enabled": True, "rate_limit_writes": "1/minute"}
        )

    async def test_carry_the_headers(self, client: httpx.AsyncClient) -> None:
        await query_payment(client)
        response = await query_payment(client)
        assert response.status_code == 429
        assert_secured(response)
