# syntax=docker/dockerfile:1.7
# Kanal: one image for the operator (`kanal operator`) and the workers (`kanal worker`,
# `kanal standalone`). Multi-stage: the build stage makes a virtualenv with Kanal and its
# dependencies (every dependency ships manylinux wheels; a C compiler builds Kanal's
# extensions: the native fetch, map rebuild and printer); the runtime stage copies only
# that virtualenv onto the same slim Python base, without the compiler.
#
#   make image        builds kanal:<version> with Docker or podman (see dev/image.sh)
#   docker build -t kanal:dev .
#   docker run --rm --read-only --tmpfs /tmp kanal:dev --help
#
# Runs as UID/GID 10001 (numeric, so Kubernetes' runAsNonRoot can verify it) and with a
# read-only root filesystem: nothing is written outside /tmp (mount an emptyDir there),
# Python writes no bytecode (it is compiled at build time), HOME is /tmp.
# Pin the base by digest in your CI (e.g. python:3.11.14-slim-bookworm@sha256:...) or
# let a dependency bot bump it: PYTHON_IMAGE is a build argument for that.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# gcc for kanal_worker.native (a sink task's polls as buffers, its maps and its lines),
# and the Python headers where the base has none (the public python images ship them).
# The compiler stays in this stage, so bookworm's current gcc is as good as a pinned one.
# hadolint ignore=DL3008
RUN apt-get update -q \
    && apt-get install -y -q --no-install-recommends gcc libc6-dev \
    && { python -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
         || apt-get install -y -q --no-install-recommends python3-dev; } \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/kanal
# Dependencies first (a layer that survives source edits): exactly the versions and files
# of the lock file (`make lock` regenerates it), every extra included.
COPY requirements.lock ./
RUN /opt/kanal/bin/pip install --no-cache-dir --require-hashes -r requirements.lock
# Then Kanal itself (not editable), built with the locked setuptools from a tree that no
# earlier step has built in, and compiled to bytecode now: the root filesystem is
# read-only at run time.
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY operator ./operator
RUN /opt/kanal/bin/pip install --no-cache-dir --no-deps --no-build-isolation . \
    && /opt/kanal/bin/python -m compileall -q /opt/kanal/lib \
    && /opt/kanal/bin/python -c 'from kanal_worker.native import _fetch, _maps, _text' \
    && /opt/kanal/bin/kanal --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
ARG KANAL_UID=10001
LABEL org.opencontainers.image.title="kanal" \
      org.opencontainers.image.description="Kafka Connect rebuilt Kubernetes-native in Python: operator and worker" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid "${KANAL_UID}" kanal \
    && useradd --system --uid "${KANAL_UID}" --gid "${KANAL_UID}" --home-dir /tmp \
       --no-create-home --shell /usr/sbin/nologin kanal
COPY --from=build /opt/kanal /opt/kanal
ENV PATH=/opt/kanal/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
WORKDIR /tmp
USER 10001:10001
# 8083: Kafka Connect REST API (workers); 9404: Prometheus metrics (workers, operator).
EXPOSE 8083 9404
# For `docker run` and Compose. Kubernetes ignores HEALTHCHECK: the chart and the
# operator set HTTP probes instead (workers: GET /health on 8083; operator: /healthz on
# its health port). KANAL_HEALTH_URL points the check elsewhere (e.g. the operator).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('KANAL_HEALTH_URL', 'http://127.0.0.1:8083/'), timeout=4)"]
ENTRYPOINT ["kanal"]
CMD ["--help"]
