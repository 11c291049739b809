# The service image: the same install steps as `./run setup` (and so CI):
# Debian's ffmpeg and espeak-ng, then `pip install .` with the pinned extras.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UPLOAD_DATA_DIR=/data REDIS_URL=redis://redis:6379/0

RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        ffmpeg espeak-ng nodejs npm \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY upload_service ./upload_service
COPY processors ./processors
COPY client_sdk ./client_sdk
COPY package.json* package-lock.json* ./
RUN pip install -q -U pip && pip install -q . \
 && if [ -f package.json ]; then npm ci --silent --no-audit --no-fund --omit=dev || npm install --silent --no-audit --no-fund; fi

RUN useradd --create-home --uid 10001 media && mkdir -p /data && chown media /data
USER media
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz')" || exit 1
CMD ["upload-service", "serve", "--host", "0.0.0.0", "--port", "8000"]
