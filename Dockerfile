FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && useradd --create-home --uid 10001 app \
    && mkdir -p /var/lib/movietickets/journal && chown app /var/lib/movietickets/journal

# Migrations live beside alembic.ini in the working directory.
COPY alembic.ini ./
COPY alembic ./alembic

USER app
# Callbacks and accepted pushes wait here while the database is away: mount a volume on it.
ENV HOST=0.0.0.0 PORT=8000 JOURNAL_DIR=/var/lib/movietickets/journal
VOLUME /var/lib/movietickets/journal
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
# `serve` applies the migrations before it starts serving.
CMD ["movietickets", "serve"]
