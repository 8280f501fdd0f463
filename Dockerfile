# syntax=docker/dockerfile:1
# Build stage: dependencies in their own cached layer, then the project.
FROM python:3.11-slim AS build
WORKDIR /build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /venv
COPY pyproject.toml README.md ./
# Install only the dependencies first, so code changes do not invalidate this layer.
RUN mkdir -p app emulator stripe_search \
    && touch app/__init__.py emulator/__init__.py stripe_search/__init__.py \
    && /venv/bin/pip install . \
    && /venv/bin/pip uninstall -y payments-service
COPY app ./app
COPY emulator ./emulator
COPY stripe_search ./stripe_search
RUN /venv/bin/pip install --no-deps .

# Final stage: the virtualenv, the migrations, a non-root user.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 payments
WORKDIR /srv
COPY --from=build /venv /venv
COPY alembic.ini ./
COPY migrations ./migrations
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1
USER payments
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]
