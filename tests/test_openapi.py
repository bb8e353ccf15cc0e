"""OpenAPI fit for SDK generators, and docs that work without internet."""

from __future__ import annotations

import re

import httpx

from movietickets.app import create_app
from tests.conftest import make_settings

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def test_every_operation_has_a_unique_id_tag_and_documented_errors() -> None:
    schema = create_app(make_settings("sqlite+aiosqlite:///:memory:")).openapi()
    operation_ids = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            operation_ids.append(operation["operationId"])
            assert operation["tags"], f"{method} {path} has no tag"
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith(("/ErrorBody", "/HTTPValidationError")), (path, status)
    assert len(operation_ids) == len(set(operation_ids))
    assert {"listMovies", "getMovie", "createMovie", "listMoviesForPurchase"} <= set(operation_ids)


def test_movie_schemas_carry_examples() -> None:
    schemas = create_app(make_settings("sqlite+aiosqlite:///:memory:")).openapi()["components"][
        "schemas"
    ]
    assert schemas["MovieCreate"]["examples"][0]["showTime"].endswith("-07-15T20:00:00.000Z")
    assert schemas["MoviePublic"]["examples"]


async def test_docs_assets_are_served_locally(client: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        html = (await client.get(page)).text
        assert "cdn." not in html
        assert "unpkg" not in html
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        response = await client.get(f"/static-offline-docs/{asset}")
        assert response.status_code == 200
        assert len(response.content) > 10_000


def test_every_schema_has_one_clean_unique_name() -> None:
    schema = create_app(make_settings("sqlite+aiosqlite:///:memory:")).openapi()
    names = list(schema["components"]["schemas"])
    for name in names:
        # No module paths (`movietickets__...`), no `-Input`/`-Output` twins, no `Body_...`.
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", name), name
    titles = [
        definition.get("title", name)
        for name, definition in schema["components"]["schemas"].items()
    ]
    assert len(titles) == len(set(titles)), sorted(titles)
    query = schema["paths"]["/api/query-payment-status"]["post"]["responses"]["200"]
    assert query["content"]["application/json"]["schema"]["$ref"].endswith("/PaymentStatusResult")
    status = schema["components"]["schemas"]["PaymentStatus"]
    assert status["enum"] == ["Pending", "Paid", "Failed", "Unconfirmed"]


def test_ticket_read_declares_the_admin_token_optional() -> None:
    schema = create_app(make_settings("sqlite+aiosqlite:///:memory:")).openapi()
    operation = schema["paths"]["/api/tickets/{id}"]["get"]
    assert {} in operation["security"]
    assert {"OAuth2PasswordBearer": []} in operation["security"]
    assert "401" in operation["responses"]
    admin_only = schema["paths"]["/api/admin/sales"]["get"]
    assert admin_only["security"] == [{"OAuth2PasswordBearer": []}]
