# Fovea dashboard with the embedded demo models and the ImageNet model (EfficientNet-Lite2, whose weights come
# with the imagenet extra). CPU by default; on a CUDA host run with --gpus all (docs/distributed.md).
FROM python:3.11-slim

# The package's extras: add `ray` for an image that also runs `fovea index --ray` and its Ray workers
# (docker build --build-arg EXTRAS=imagenet,ray).
ARG EXTRAS=imagenet

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    FOVEA_HOST=0.0.0.0 FOVEA_PORT=8000 FOVEA_DATA_DIR=/data

WORKDIR /srv/fovea
COPY pyproject.toml hatch_build.py README.md ./
COPY app ./app
COPY frontend ./frontend
COPY model_store ./model_store
RUN pip install -e ".[${EXTRAS}]" && useradd --create-home fovea && mkdir -p /data && chown fovea /data

USER fovea
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health')"
CMD ["fovea", "serve"]
