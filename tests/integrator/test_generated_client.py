"""What an integrator does: generate a Python client from the live `/openapi.json` with
openapi-python-client (no warning allowed), then buy tickets through it against the service
as it ships (uvicorn, migrations, the built-in Daraja simulator calling back over HTTP)."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from movietickets.db.engine import create_engine, create_sessionmaker
from tests.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, admin_headers, make_settings
from tests.live_server import live_server

PACKAGE = "movietickets_client"


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The client is what is tested here, not the database: SQLite only."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('integrator') / 'movietickets.db'}"


@pytest.fixture(scope="module")
def server(database: str) -> Iterator[str]:
    with live_server(
        database, SIMULATOR_CALLBACK_DELAY_SECONDS="0.2", MPESA_CALLBACK_TOKEN="integrator-secret"
    ) as base_url:
        yield base_url


@pytest.fixture(scope="module")
async def admin(server: str, database: str) -> AsyncIterator[None]:
    """The test admin, in the live server's database (which the server has migrated)."""
    settings = make_settings(database)
    engine = create_engine(settings)
    try:
        await admin_headers(create_sessionmaker(engine), settings)
        yield
    finally:
        await engine.dispose()


def generate(document: Path, output: Path) -> str:
    """Runs the generator as an integrator would, offline; returns what it printed."""
    bin_dir = Path(sys.executable).parent
    completed = subprocess.run(  # noqa: S603 (the dev dependency, on our own document)
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(document),
            "--output-path",
            str(output),
            "--meta",
            "none",
            "--fail-on-warning",
        ],
        # The generator formats its output with ruff, found on PATH.
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    printed = completed.stdout + completed.stderr
    assert completed.returncode == 0, printed
    return printed


@pytest.fixture(scope="module")
def spec(server: str) -> dict[str, Any]:
    """The document, as the live server serves it."""
    response = httpx.get(f"{server}/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


@pytest.fixture(scope="module")
def sdk(spec: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    workdir = tmp_path_factory.mktemp("sdk")
    document = workdir / "openapi.json"
    document.write_text(json.dumps(spec))
    printed = generate(document, workdir / PACKAGE)
    assert "warning" not in printed.lower(), printed
    assert "error" not in printed.lower(), printed
    sys.path.insert(0, str(workdir))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(workdir))
        for name in [name for name in sys.modules if name.partition(".")[0] == PACKAGE]:
            del sys.modules[name]


def endpoint(sdk: ModuleType, name: str) -> Any:
    """An operation's module, `sdk.api.<tag>.<operation>`."""
    (module,) = [
        importlib.import_module(f"{sdk.__name__}.api.{tag}.{name}")
        for tag in ("movies", "tickets", "payments", "auth", "admin", "system")
        if importlib.util.find_spec(f"{sdk.__name__}.api.{tag}.{name}") is not None
    ]
    return module


def body_type(operation: Any) -> Any:
    """The request body's model class, whatever the document names it."""
    return inspect.signature(operation.asyncio).parameters["body"].annotation


async def test_purchase_through_the_generated_client(
    sdk: ModuleType, spec: dict[str, Any], server: str, admin: None
) -> None:
    timeout = httpx.Timeout(10)
    async with (
        sdk.Client(base_url=server, timeout=timeout) as anonymous,
        sdk.AuthenticatedClient(
            base_url=server, timeout=timeout, token=await sign_in(sdk, anonymous)
        ) as operator,
    ):
        await purchase(sdk, spec, anonymous, operator)


async def sign_in(sdk: ModuleType, client: Any) -> str:
    create_access_token = endpoint(sdk, "create_access_token")
    form = body_type(create_access_token)(username=ADMIN_USERNAME, password=ADMIN_PASSWORD)
    token = await create_access_token.asyncio(client=client, body=form)
    assert token.token_type == "bearer", token
    access_token: str = token.access_token
    return access_token


async def purchase(sdk: ModuleType, spec: dict[str, Any], anonymous: Any, operator: Any) -> None:
    models = importlib.import_module(f"{sdk.__name__}.models")

    # The documented example of a new movie, as Swagger UI offers it.
    example = spec["components"]["schemas"]["MovieCreate"]["examples"][0]
    create_movie = endpoint(sdk, "create_movie")
    new_movie = body_type(create_movie).from_dict
    movie = (await create_movie.asyncio(client=operator, body=new_movie(example))).movie
    assert movie.title == example["title"]

    listed = await endpoint(sdk, "list_movies").asyncio(client=anonymous)
    assert movie.movie_id in [item.movie_id for item in listed.movies]

    make_payment = endpoint(sdk, "make_payment")
    order = body_type(make_payment)(
        movie_id=movie.movie_id,
        customer_name="Jane Wanjiru",
        phone_number="0712 345 678",
        quantity=2,
    )
    key = str(uuid.uuid4())
    answer = await make_payment.asyncio_detailed(client=anonymous, body=order, idempotency_key=key)
    assert answer.status_code == 200, answer.content
    initiated = answer.parsed
    assert initiated.payment_status == models.PaymentStatus.PENDING
    assert answer.headers["X-Request-ID"]
    replayed = await make_payment.asyncio_detailed(
        client=anonymous, body=order, idempotency_key=key
    )
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.parsed.ticket_id == initiated.ticket_id

    get_ticket = endpoint(sdk, "get_ticket")
    for _ in range(200):  # the simulator calls back after 0.2 s
        envelope = await get_ticket.asyncio(
            initiated.ticket_id, client=anonymous, x_ticket_token=initiated.ticket_access_token
        )
        if envelope.ticket.payment_status != models.PaymentStatus.PENDING:
            break
        await asyncio.sleep(0.05)
    ticket = envelope.ticket
    assert ticket.payment_status == models.PaymentStatus.PAID
    assert ticket.mpesa_receipt_number
    assert ticket.total_amount == 2 * movie.price
    assert (ticket.customer_name, ticket.phone_number) == ("Jane Wanjiru", "254712345678")
    assert ticket.pii_masked is False
    masked = await get_ticket.asyncio(initiated.ticket_id, client=anonymous)
    assert masked.ticket.pii_masked is True

    query = endpoint(sdk, "query_payment_status")
    status = await query.asyncio(
        client=anonymous,
        body=body_type(query)(checkout_request_id=initiated.checkout_request_id),
    )
    assert status.checkout_request_id == initiated.checkout_request_id
    assert status.ticket_id == initiated.ticket_id
    assert status.result_code == "0"
    assert status.payment_status == models.PaymentStatus.PAID

    # Errors come back typed, their code an enum a client can switch on.
    small = await create_movie.asyncio(
        client=operator, body=new_movie({**example, "max_tickets": 3})
    )
    too_many = body_type(make_payment)(
        movie_id=small.movie.movie_id,
        customer_name="Jane Wanjiru",
        phone_number="0712349003",
        quantity=5,
    )
    refused = await make_payment.asyncio_detailed(client=anonymous, body=too_many)
    assert refused.status_code == 409
    assert refused.parsed.code == models.ErrorCode.SOLD_OUT
    assert refused.parsed.seats_available == 3
