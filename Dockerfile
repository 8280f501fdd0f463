# syntax=docker/dockerfile:1
# The service's image; the compose stack also runs the emulator and the migration from it.
#   docker build -t payments-service .
#   docker run -p 8000:8000 -e DATABASE_URL=… -e STRIPE_SECRET_KEY=… -e STRIPE_WEBHOOK_SECRET=… \
#       -e API_KEYS=… payments-service

# Build stage: a virtualenv with the dependencies in their own cached layer, then the project.
FROM python:3.11-slim AS build
WORKDIR /build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /venv
COPY pyproject.toml README.md ./
# Only pyproject.toml reaches this layer: a code change does not reinstall the dependencies.
RUN mkdir -p app emulator stripe_search \
    && touch app/__init__.py emulator/__init__.py stripe_search/__init__.py \
    && /venv/bin/pip install . \
    && /venv/bin/pip uninstall -y payments-service
COPY app ./app
COPY emulator ./emulator
COPY stripe_search ./stripe_search
RUN /venv/bin/pip install --no-deps . \
    && /venv/bin/pip uninstall -y pip setuptools

# Final stage: the slim base, the virtualenv, the migrations; no compiler, no pip, not root.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /srv --no-create-home payments
WORKDIR /srv
COPY --from=build /venv /venv
COPY alembic.ini ./
COPY migrations ./migrations
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# Files stay root's (read-only to the service); numeric so Kubernetes' runAsNonRoot can check it.
USER 10001:10001
EXPOSE 8000
# /health/live: the process answers. Readiness (database, migrations, Stripe) is /health/ready,
# for a load balancer or an orchestrator's readiness probe.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2)"]
# The command the tests run; the database is migrated beforehand by `python -m app migrate`.
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]
