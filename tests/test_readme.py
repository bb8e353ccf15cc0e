"""The README's purchase walkthrough runs as written, and answers what it shows.

Each `curl` of "A purchase with curl" is sent to a service set up as `make run` sets it up
(sample movies, the built-in simulator); the `# {...}` lines after it are its documented
answer: every field they name must be in the real answer, with the value shown unless that
value differs from run to run. A walkthrough that leaves out the ticket token, or the answer
of query-payment-status, fails here.
"""

from __future__ import annotations

import asyncio
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from movietickets.catalogue.seed import seed_sample_movies
from movietickets.db import migrations
from movietickets.db.engine import create_engine, create_sessionmaker
from tests.conftest import loopback_app, make_settings
from tests.helpers import wait_for_status

README = Path(__file__).resolve().parents[1] / "README.md"

# Values made anew on every run: only their presence is checked.
RUN_DEPENDENT = {
    "ticketAccessToken",
    "checkoutRequestId",
    "CheckoutRequestID",
    "MerchantRequestID",
    "mpesaReceiptNumber",
}
# A documented `"name":value` (a JSON scalar), and any quoted text.
DOCUMENTED_FIELD = re.compile(r'"(\w+)":("(?:[^"\\]|\\.)*"|-?\d+|true|false|null)')
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass
class Step:
    """One curl of the walkthrough, and the answer documented after it."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    documented: str = ""


def walkthrough() -> list[Step]:
    section = README.read_text().split("## A purchase with curl\n", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    steps: list[Step] = []
    for line in block.replace("\\\n", " ").splitlines():
        if line.startswith("#"):
            steps[-1].documented += line.lstrip("# ")
        elif line.startswith("curl "):
            command, _, comment = line.partition("   # ")
            steps.append(parse_curl(command))
            steps[-1].documented = comment
    return steps


def parse_curl(command: str) -> Step:
    words = iter(shlex.split(command)[1:])
    step = Step(method="GET", url="")
    for word in words:
        if word == "-X":
            step.method = next(words)
        elif word == "-H":
            name, _, value = next(words).partition(":")
            step.headers[name.strip()] = value.strip()
        elif word == "-d":
            step.body = next(words)
        elif word.startswith("http"):
            step.url = word
        else:
            assert word == "-s", f"an option this test does not know: {word}"
    return step


def documented_fields(text: str) -> dict[str, str]:
    return {name: value for name, value in DOCUMENTED_FIELD.findall(text)}


def documented_texts(text: str) -> list[str]:
    """Quoted texts that stand alone, as in `without the token: "J*** W***"`."""
    fields_removed = DOCUMENTED_FIELD.sub("", text)
    return [
        quoted
        for quoted in QUOTED.findall(fields_removed)
        if not re.fullmatch(r"\w+", quoted) and "..." not in quoted
    ]


def scalars(value: Any) -> Iterator[tuple[str | None, Any]]:
    """Every (field name, scalar value) in a JSON answer, at any depth."""
    if isinstance(value, dict):
        for name, inner in value.items():
            if isinstance(inner, dict | list):
                yield from scalars(inner)
            else:
                yield name, inner
    elif isinstance(value, list):
        for inner in value:
            yield from scalars(inner)


def as_json_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def check_answer(step: Step, answer: Any) -> None:
    found = list(scalars(answer))
    # The README shows the first of a list (the first movie) and the outer field of a name
    # used twice (the ticket's movieId before its movie's).
    first: dict[str | None, Any] = {}
    for name, value in found:
        first.setdefault(name, value)
    for name, shown in documented_fields(step.documented).items():
        assert name in first, f"{step.method} {step.url}: no {name} in {answer}"
        if name in RUN_DEPENDENT or "..." in shown:
            continue
        actual = as_json_text(first[name])
        assert actual == shown, f"{step.method} {step.url}: {name} is {actual}, shown {shown}"
    texts = {value for _, value in found if isinstance(value, str)}
    for text in documented_texts(step.documented):
        assert text in texts, f"{step.method} {step.url}: {text!r} is not in {answer}"


def substitute(step: Step, shown_to_real: dict[str, str]) -> Step:
    """The step with the values the README shows (a token, an id) replaced by this run's."""

    def real(text: str) -> str:
        for shown, actual in shown_to_real.items():
            text = text.replace(shown, actual)
        return text

    return Step(
        method=step.method,
        url=real(step.url),
        headers={name: real(value) for name, value in step.headers.items()},
        body=real(step.body) if step.body is not None else None,
        documented=step.documented,
    )


def test_the_walkthrough_shows_the_ticket_token_and_the_status_query() -> None:
    steps = walkthrough()
    reads = [step for step in steps if "/api/tickets/" in step.url]
    with_token = [step for step in reads if "X-Ticket-Token" in step.headers]
    assert any(step.documented for step in with_token), "no ticket read with its token, answered"
    without = [step for step in reads if "X-Ticket-Token" not in step.headers]
    assert any(step.documented for step in without), "no ticket read without a token, answered"
    queries = [step for step in steps if step.url.endswith("/api/query-payment-status")]
    assert queries, "no query-payment-status"
    for step in queries:
        assert step.body, "query-payment-status without its body"
        assert documented_fields(step.documented), "query-payment-status without its answer"


async def test_the_walkthrough_answers_what_the_readme_shows(tmp_path: Path) -> None:
    # The simulator calls back after the answer to make-payment (documented as Pending).
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'movietickets.db'}",
        simulator_callback_delay_seconds=0.5,
    )
    await asyncio.to_thread(migrations.upgrade, settings)
    engine = create_engine(settings)
    try:
        assert await seed_sample_movies(create_sessionmaker(engine)) > 0
    finally:
        await engine.dispose()
    shown_to_real: dict[str, str] = {}
    async with loopback_app(settings) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1:8000"
        ) as client:
            for documented_step in walkthrough():
                step = substitute(documented_step, shown_to_real)
                if "/api/tickets/" in step.url:
                    # In place of the README's `sleep`: the simulator's callback has come.
                    ticket_id = int(step.url.rsplit("/", 1)[1])
                    await wait_for_status(client, ticket_id, "Paid")
                response = await client.request(
                    step.method,
                    step.url,
                    headers=step.headers,
                    content=step.body.encode() if step.body is not None else None,
                )
                assert response.status_code == 200, (step.method, step.url, response.text)
                answer = response.json()
                check_answer(step, answer)
                # What later steps quote from this answer, as shown, is this run's value.
                for name, shown in documented_fields(step.documented).items():
                    if name in RUN_DEPENDENT and isinstance(answer.get(name), str):
                        shown_to_real[shown.strip('"')] = answer[name]
