"""The documented errors: an enum of the codes really sent, an example of each status's own,
the headers that come with them, and no response shape the service never sends."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path
from typing import Any

import httpx

import movietickets
from movietickets import errors
from movietickets.app import create_app
from movietickets.errors import AppError, ErrorCode
from tests.conftest import make_settings
from tests.helpers import buy, create_movie

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}
PACKAGE = Path(movietickets.__file__).parent


@functools.cache
def document() -> dict[str, Any]:
    return create_app(make_settings("sqlite+aiosqlite:///:memory:")).openapi()


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document()["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def operation(operation_id: str) -> dict[str, Any]:
    (found,) = [op for _, _, op in operations() if op["operationId"] == operation_id]
    return found


def examples(response: dict[str, Any]) -> list[dict[str, Any]]:
    named = response["content"]["application/json"]["examples"]
    return [example["value"] for example in named.values()]


def error_classes() -> list[type[AppError]]:
    document()  # importing and building the app imports every module that raises errors
    found: list[type[AppError]] = []
    pending = [AppError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def codes_written_directly() -> set[str]:
    """`code="..."` in every call in the package: the framework errors and the middleware's."""
    written: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                if keyword.arg == "code" and isinstance(keyword.value, ast.Constant):
                    assert isinstance(keyword.value.value, str), (path, keyword.value.value)
                    written.add(keyword.value.value)
            # server.py's refusals before the app: `_refuse(status, "code", message)`.
            if (
                isinstance(node.func, ast.Attribute)
                and node.func.attr == "_refuse"
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
            ):
                written.add(str(node.args[1].value))
    return written


def codes_sent() -> set[str]:
    sent = {cls.code for cls in error_classes()}
    sent |= codes_written_directly()
    sent |= set(errors._HTTP_CODES.values())
    # A Starlette HTTPException of a status that `_HTTP_CODES` does not name.
    source = ast.parse(Path(errors.__file__).read_text())
    fallbacks = [
        str(node.args[1].value)
        for node in ast.walk(source)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "_HTTP_CODES"
        and len(node.args) == 2
        and isinstance(node.args[1], ast.Constant)
    ]
    assert fallbacks == ["http_error"]
    return sent | set(fallbacks)


# One line of errors.py's docstring tree: "    │   ├── SoldOut     409 sold_out (...)".
TREE_LINE = re.compile(
    r"^    (?P<branches>(?:[│ ]   )*(?:[├└]── )?)"
    r"(?P<name>[A-Z]\w+) +(?P<status>\d{3}) (?P<code>[a-z_]+)\b"
)


def documented_tree() -> dict[str, tuple[str | None, int, str]]:
    """errors.py's docstring tree: each error's parent, status and code, as drawn."""
    tree: dict[str, tuple[str | None, int, str]] = {}
    parents: list[str] = []
    for line in (errors.__doc__ or "").splitlines():
        match = TREE_LINE.match(line)
        if match is None:
            continue
        depth = len(match["branches"]) // 4
        del parents[depth:]
        parent = parents[-1] if parents else None
        tree[match["name"]] = (parent, int(match["status"]), match["code"])
        parents.append(match["name"])
    return tree


def test_every_error_is_defined_in_errors_and_drawn_in_its_docstring_tree() -> None:
    classes = error_classes()
    assert {cls.__module__ for cls in classes} == {"movietickets.errors"}
    actual = {
        cls.__name__: (
            None if cls is AppError else cls.__mro__[1].__name__,
            cls.status_code,
            cls.code,
        )
        for cls in classes
    }
    assert documented_tree() == actual


def test_the_code_enum_lists_exactly_the_codes_the_service_sends() -> None:
    sent = codes_sent()
    # Domain errors, and the codes the framework handlers and the middleware write.
    assert {"idempotency_key_reused", "idempotency_key_in_use", "malformed_callback"} <= sent
    assert {"malformed_json", "database_down", "internal_error", "payload_too_large"} <= sent
    assert {code.value for code in ErrorCode} == sent

    schemas = document()["components"]["schemas"]
    assert schemas["ErrorBody"]["properties"]["code"]["$ref"] == "#/components/schemas/ErrorCode"
    assert sorted(schemas["ErrorCode"]["enum"]) == sorted(sent)
    assert schemas["ErrorCode"]["type"] == "string"


def code_statuses() -> dict[str, set[int]]:
    """The statuses each code is sent with."""
    statuses: dict[str, set[int]] = {}
    for cls in error_classes():
        statuses.setdefault(cls.code, set()).add(cls.status_code)
    for status, code in errors._HTTP_CODES.items():
        statuses.setdefault(code, set()).add(status)
    framework = {"malformed_json": 400, "validation_error": 422, "payload_too_large": 413}
    framework |= {"database_down": 503, "internal_error": 500}
    for code, status in framework.items():
        statuses.setdefault(code, set()).add(status)
    return statuses


def test_every_error_status_shows_examples_of_its_own() -> None:
    statuses = code_statuses()
    for method, path, op in operations():
        seen: dict[str, str] = {}
        for status, response in op["responses"].items():
            if not status.startswith(("4", "5")):
                continue
            content = response["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
            shown = examples(response)
            assert shown, (method, path, status)
            for value in shown:
                body = errors.ErrorBody.model_validate(value)
                assert int(status) in statuses[body.code], (method, path, status, body.code)
                assert body.model_dump(mode="json", exclude_none=True) == value
                key = repr(sorted(value.items()))
                assert key not in seen, f"{method} {path}: {status} repeats {seen.get(key)}"
                seen[key] = status
                assert f"`{body.code}`" in response["description"]

    sold_out = examples(operation("makePayment")["responses"]["409"])
    assert {"error": "Only 3 seats left for movie 1", "code": "sold_out", "seatsAvailable": 3} in (
        sold_out
    )
    callback_400 = examples(operation("receivePaymentCallback")["responses"]["400"])
    assert [value["code"] for value in callback_400] == ["malformed_callback"]
    for op_id in ("receivePaymentCallback", "receiveMpesaCallback"):
        assert set(operation(op_id)["responses"]) == {"200", "400", "403", "413", "422", "429"}


def test_no_response_documents_fastapis_validation_error() -> None:
    schema = document()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert "ValidationError" not in schema["components"]["schemas"]
    for method, path, op in operations():
        if "422" in op["responses"]:
            assert examples(op["responses"]["422"]), (method, path)


def test_headers_are_declared_where_they_are_sent() -> None:
    schema = document()
    assert set(schema["components"]["headers"]) == {
        "X-Request-ID",
        "Retry-After",
        "WWW-Authenticate",
        "Idempotent-Replayed",
    }
    for method, path, op in operations():
        for status, response in op["responses"].items():
            headers = response["headers"]
            assert headers["X-Request-ID"] == {"$ref": "#/components/headers/X-Request-ID"}
            for ref in headers.values():
                assert (
                    ref["$ref"].removeprefix("#/components/headers/")
                    in (schema["components"]["headers"])
                )
            if status.startswith(("4", "5")):
                codes = {value["code"] for value in examples(response)}
                for code, names in errors.CODE_HEADERS.items():
                    if code in codes:
                        assert set(names) <= set(headers), (method, path, status, code)
            if status in ("429",):
                assert "Retry-After" in headers
    payment = operation("makePayment")["responses"]
    assert "Idempotent-Replayed" in payment["200"]["headers"]
    assert "Retry-After" in payment["409"]["headers"]
    assert "Retry-After" in payment["503"]["headers"]
    assert "Idempotent-Replayed" not in operation("queryPaymentStatus")["responses"]["200"].get(
        "headers", {}
    )


def documented(operation_id: str, status: int, code: str) -> list[dict[str, Any]]:
    """The documented examples of that status with that code."""
    return [
        value
        for value in examples(operation(operation_id)["responses"][str(status)])
        if value["code"] == code
    ]


async def test_documented_examples_are_what_the_service_answers(
    client: httpx.AsyncClient, anonymous_client: httpx.AsyncClient
) -> None:
    not_json = await client.post(
        "/api/make-payment", content=b"{", headers={"content-type": "application/json"}
    )
    assert not_json.json() in documented("makePayment", 400, "malformed_json")

    for path in ("/api/payment-callback", "/api/mpesa-callback"):
        op_id = "receivePaymentCallback" if "payment-" in path else "receiveMpesaCallback"
        malformed = await client.post(path, json={"Body": {}})
        assert malformed.status_code == 400
        assert malformed.json() in documented(op_id, 400, "malformed_callback")
        long_token = await client.post(path, params={"token": "x" * 257}, json={})
        assert long_token.status_code == 422
        assert long_token.json() in documented(op_id, 422, "validation_error")

    bad_id = await client.get("/api/tickets/0")
    assert bad_id.json() in documented("getTicket", 422, "validation_error")
    assert (await client.get("/api/movies/0")).json() in documented(
        "getMovie", 422, "validation_error"
    )
    assert (await client.get("/api/tickets/42")).json() in documented("getTicket", 404, "not_found")
    assert (await client.get("/api/movies/42")).json() in documented("getMovie", 404, "not_found")

    no_token = await anonymous_client.get("/api/admin/sales")
    assert no_token.json() in documented("getSalesReport", 401, "unauthorized")
    assert no_token.headers["WWW-Authenticate"] == "Bearer"
    bad_time = await client.get("/api/admin/sales", params={"from": "yesterday"})
    assert bad_time.json() in documented("getSalesReport", 422, "validation_error")

    no_username = await anonymous_client.post("/api/auth/token", data={"password": "x"})
    assert no_username.json() in documented("createAccessToken", 422, "validation_error")
    wrong = await anonymous_client.post(
        "/api/auth/token", data={"username": "nobody", "password": "not the password"}
    )
    assert wrong.json() in documented("createAccessToken", 401, "unauthorized")
    assert wrong.headers["WWW-Authenticate"] == "Bearer"

    movie = await create_movie(client, max_tickets=4)
    assert (await buy(client, movie["movieId"])).status_code == 200
    sold_out = await buy(client, movie["movieId"], phone="0712349003", quantity=5)
    (example,) = documented("makePayment", 409, "sold_out")
    assert sold_out.json() == {
        **example,
        "error": example["error"].replace("movie 1", f"movie {movie['movieId']}"),
    }
    bad_phone = await buy(client, movie["movieId"], phone="12345")
    assert bad_phone.json() == next(
        value
        for value in examples(operation("makePayment")["responses"]["422"])
        if value.get("details", [{}])[0].get("field") == "body.phoneNumber"
    )
