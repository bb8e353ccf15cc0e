"""`uvicorn movietickets.main:app` and `fastapi run`, what FastAPI users type first, serve
after a migration."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from tests.helpers import buy, create_movie, wait_for_status
from tests.live_server import free_port, running_server, server_environment

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def fastapi_table() -> str:
    """The repository's own `[tool.fastapi]` table, as `fastapi run` reads it."""
    table = tomllib.loads(PYPROJECT.read_text())["tool"]["fastapi"]
    return "[tool.fastapi]\n" + "".join(f'{key} = "{value}"\n' for key, value in table.items())


@pytest.mark.parametrize("server", ["uvicorn", "fastapi run"])
async def test_the_module_level_app_serves_after_a_migration(tmp_path: Path, server: str) -> None:
    port = free_port()
    env = server_environment(
        f"sqlite+aiosqlite:///{tmp_path / 'movietickets.db'}",
        port,
        SIMULATOR_CALLBACK_DELAY_SECONDS="0.2",
    )

    def movietickets(*args: str, stdin: str = "") -> None:
        subprocess.run(  # noqa: S603  (the service's own command)
            [sys.executable, "-m", "movietickets.cli", *args],
            input=stdin,
            env=env,
            cwd=tmp_path,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )

    movietickets("migrate")
    password = "a long enough password"
    movietickets("create-admin", "operator", "--password-stdin", stdin=password + "\n")
    if server == "uvicorn":
        command = [sys.executable, "-m", "uvicorn", "movietickets.main:app", "--port", str(port)]
    else:
        # No app named on the command line: fastapi-cli finds it in pyproject.toml.
        (tmp_path / "pyproject.toml").write_text(fastapi_table())
        command = [sys.executable, "-m", "fastapi", "run", "--host", "127.0.0.1", "--port"]
        command.append(str(port))
    with running_server(command, port=port, env=env, cwd=tmp_path) as running:
        async with httpx.AsyncClient(base_url=running.url, timeout=10) as http:
            assert (await http.get("/readyz")).json() == {"status": "ready"}
            signed_in = await http.post(
                "/api/auth/token", data={"username": "operator", "password": password}
            )
            assert signed_in.status_code == 200, signed_in.text
            http.headers["Authorization"] = f"Bearer {signed_in.json()['access_token']}"
            movie = await create_movie(http)
            # The built-in simulator, mounted in the app, calls the app back over HTTP.
            response = await buy(http, movie["movieId"])
            assert response.status_code == 200, response.text
            paid = await wait_for_status(http, response.json()["ticketId"], "Paid")
            assert paid["mpesaReceiptNumber"]
