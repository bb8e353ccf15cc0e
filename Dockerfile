# The wheel is built in its own stage: the image holds the installed package (migrations
# included, as movietickets._migrations), not the sources.
FROM python:3.12-slim AS build
ENV PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE ./
COPY src ./src
COPY alembic ./alembic
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels && useradd --create-home --uid 10001 app \
    && mkdir -p /var/lib/movietickets/journal && chown app /var/lib/movietickets/journal

USER app
WORKDIR /home/app
# Callbacks and accepted pushes wait here while the database is away: keep it on a volume.
ENV HOST=0.0.0.0 PORT=8000 JOURNAL_DIR=/var/lib/movietickets/journal
VOLUME /var/lib/movietickets/journal
EXPOSE 8000
# Whatever PORT the container is given (shell form: $PORT is read when the check runs).
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${PORT:-8000}/healthz', timeout=2)"
# `serve` applies the migrations before it starts serving.
CMD ["movietickets", "serve"]
