# The service's image: `docker build -t mlserve .`, or `docker compose build` (compose.yaml).
# Two stages: the dependencies go into a virtualenv in a builder, and only that virtualenv and the
# code reach the runtime image (no pip cache, no build layers). The image holds no model files:
# they are registered into MODEL_DIR, a volume (README, "Models").

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements-pip.txt requirements.txt /tmp/
RUN /opt/venv/bin/pip install --require-hashes -r /tmp/requirements-pip.txt \
    && /opt/venv/bin/pip install --require-hashes -r /tmp/requirements.txt

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=project.settings.prod \
    MODEL_DIR=/var/lib/mlserve/models
# A user of its own, who cannot write the code. The model store is the one directory it writes
# (a named volume in compose.yaml: Docker gives a new volume the owner of the directory it covers).
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin mlserve \
 && mkdir -p /var/lib/mlserve/models \
 && chown mlserve:mlserve /var/lib/mlserve/models
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY . .
# Static files collected once, into the image (whitenoise serves them), and the code compiled so
# workers start without doing it. Production settings refuse to load without their secrets, so
# this one command gets throwaway values: nothing connects to them and none stays in the image.
RUN DJANGO_SECRET_KEY=build-only-collectstatic-not-a-secret-0123456789abcdef \
    DATABASE_URL=postgres://build@127.0.0.1:5432/build \
    REDIS_URL=redis://127.0.0.1:6379/0 \
    python manage.py collectstatic --noinput \
 && python -m compileall -q project accounts analytics inference
USER mlserve
EXPOSE 8000
# GET /healthz with the first of DJANGO_ALLOWED_HOSTS as its Host (the app answers any other host
# with a 400), on BIND's port. Python's urllib: the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('BIND', '0.0.0.0:8000').rpartition(':')[2]; host = os.environ.get('DJANGO_ALLOWED_HOSTS', '').split(',')[0].strip().lstrip('.').replace('*', '') or 'localhost'; urllib.request.urlopen(urllib.request.Request(f'http://127.0.0.1:{port}/healthz', headers={'Host': host}), timeout=4)"]
# The Procfile's web process: granian, one worker per core unless WEB_CONCURRENCY says otherwise.
CMD ["python", "-m", "project.serve"]
