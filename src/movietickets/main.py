"""The application as a module-level ASGI app, for `uvicorn movietickets.main:app` and
`fastapi run` (pyproject.toml's [tool.fastapi] entrypoint).

Run `movietickets migrate` first: only `movietickets serve` migrates (and, in development,
seeds and creates the development admin) before it serves. The app's settings come from the
environment, as for `serve`; set PORT (or PUBLIC_BASE_URL) to the port the server listens on,
since the built-in simulator's and the callback's URLs are derived from it.
"""

from movietickets.app import create_app_from_env

app = create_app_from_env()
