# Amoeba on the CPU: orchestrator, migrations, CPU workers and every other `amoeba` command.
# Build: docker build -t amoeba:latest .        (docker-compose.yml builds it for you)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, read from pyproject.toml, so editing the source does not reinstall them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project itself (what .dockerignore lets through), installed from pyproject.toml like any package.
COPY . .
RUN pip install --no-deps . \
    && useradd --create-home --uid 1000 amoeba \
    && mkdir -p /data \
    && chown amoeba /data

# /data: datasets (CIFAR-10, ImageNet); AMOEBA_CACHE holds downloads and the JAX compilation cache.
ENV AMOEBA_CACHE=/data/cache
VOLUME ["/data"]
USER amoeba
EXPOSE 50051
CMD ["amoeba", "--help"]
