# syntax=docker/dockerfile:1
# The bandit-router image: the `bandit-router` console script, installed with exactly the
# versions in uv.lock, run as an unprivileged user. Every `serve` flag has a BANDIT_ROUTER_*
# variable, so configure it with `docker run -e ...` (docs/deploying.md).
#
# No image is built where this project is tested (no engine, no registry), so this file is
# checked by construction instead: tests/test_deploy_image.py lints it with hadolint, runs its
# build stage's RUN lines in a clean copy of the build context (what .dockerignore lets
# through), then starts the ENTRYPOINT + CMD with the ENV below and asks the HEALTHCHECK.
# The image's prefix, /opt/bandit-router, is the one path the test relocates.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY . .
RUN sh deploy/docker/install.sh /opt/bandit-router

FROM ${PYTHON_IMAGE}
# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 bandit-router \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin bandit-router
# The same path as in the build stage: a virtual environment is not relocatable.
COPY --from=build /opt/bandit-router /opt/bandit-router
ENV PATH=/opt/bandit-router/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BANDIT_ROUTER_LISTEN=0.0.0.0:50051 \
    BANDIT_ROUTER_METRICS_ADDRESS=0.0.0.0:9464
USER 10001:10001
# gRPC (Router, Admin, grpc.health.v1, reflection) and Prometheus /metrics.
EXPOSE 50051 9464
# Plaintext gRPC health on the loopback; with TLS on, disable it (docs/deploying.md).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/opt/bandit-router/healthcheck.py"]
ENTRYPOINT ["bandit-router"]
CMD ["serve"]
