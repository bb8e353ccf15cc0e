"""`movietickets serve --host/--port/--workers` mean exactly what HOST, PORT and WORKERS mean."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from tests.helpers import buy, wait_for_status
from tests.live_server import free_port, running_server, server_environment


async def test_purchase_through_the_simulator_on_the_port_given(tmp_path: Path) -> None:
    """PORT names a port where nothing listens and WORKERS says one: the simulator, the
    callback and both workers must use the command line's instead (development, as
    `make run` and a first try with `--port` are)."""
    port, elsewhere = free_port(), free_port()
    command = [sys.executable, "-m", "movietickets.cli", "serve"]
    env = server_environment(
        f"sqlite+aiosqlite:///{tmp_path / 'movietickets.db'}",
        elsewhere,
        HOST="localhost",
        WORKERS="1",
        ENVIRONMENT="development",
        SEED_SAMPLE_MOVIES="true",
        SIMULATOR_CALLBACK_DELAY_SECONDS="0.2",
    )
    with running_server(
        [*command, "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        port=port,
        env=env,
    ) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            movie = (await http.get("/api/movies")).json()["movies"][0]
            response = await buy(http, movie["movieId"])
            assert response.status_code == 200, response.text
            paid = await wait_for_status(http, response.json()["ticketId"], "Paid")
            assert paid["mpesaReceiptNumber"]
