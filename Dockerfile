# syntax=docker/dockerfile:1
#
# cspm-watch as a container: the daemon by default (`cspm-watch run`, health and metrics on
# port 8080), or one cycle per run (`cspm-watch once --target NAME`) in a Kubernetes CronJob.
#
# The process runs as user 10001 and writes only under /data (a volume: the SQLite database
# when no PostgreSQL is configured), so the root filesystem can be read-only. It handles
# SIGTERM and SIGINT itself as PID 1 and starts no child processes, so no init is needed.
#
# tests/deploy/test_image.py runs the build stage's steps in a clean virtual environment and
# starts the command below, because no Docker engine runs where the tests run.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/cspm-watch/venv \
    APP_DIR=/opt/cspm-watch/app

RUN python -m venv "$VIRTUAL_ENV"

WORKDIR /opt/cspm-watch/app
COPY pyproject.toml constraints.txt README.md ./
COPY service ./service
COPY migrations ./migrations

# Dependencies come pinned from constraints.txt. The editable install keeps migrations/ beside
# the package, where service/storage/migrate.py looks for it; the byte code is compiled now
# because the root filesystem is read-only at run time.
RUN "$VIRTUAL_ENV/bin/pip" install --constraint constraints.txt --editable . \
    && "$VIRTUAL_ENV/bin/python" -m compileall -q "$APP_DIR/service" "$APP_DIR/migrations"

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV VIRTUAL_ENV=/opt/cspm-watch/venv \
    PATH=/opt/cspm-watch/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN groupadd --system --gid 10001 cspm-watch \
    && useradd --system --uid 10001 --gid cspm-watch --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin cspm-watch \
    && mkdir /data \
    && chown 10001:10001 /data

COPY --from=build /opt/cspm-watch /opt/cspm-watch

# The default database_url, sqlite+aiosqlite:///cspm-watch.db, is relative to this directory.
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001

EXPOSE 8080
# Requests /healthz on the port of CSPM_WATCH_LISTEN (8080 when unset).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "service.web"]

ENTRYPOINT ["cspm-watch"]
CMD ["run"]
