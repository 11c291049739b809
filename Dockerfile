# The service image. It installs with the same functions of ./run that CI runs
# (`./run setup-system runtime`, `./run setup-python runtime`, `./run setup-node`),
# minus the test-only Debian packages (redis-server, chromium).
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 VENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH UPLOAD_DATA_DIR=/data REDIS_URL=redis://redis:6379/0

WORKDIR /app
COPY run pyproject.toml README.md package.json package-lock.json ./
RUN ./run setup-system runtime && rm -rf /var/lib/apt/lists/*
COPY upload_service ./upload_service
COPY processors ./processors
COPY client_sdk ./client_sdk
RUN ./run setup-python runtime && ./run setup-node && npm cache clean --force

RUN useradd --create-home --uid 10001 media && mkdir -p /data && chown media /data
USER media
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["upload-service", "serve", "--host", "0.0.0.0", "--port", "8000"]
