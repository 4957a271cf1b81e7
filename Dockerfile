# syntax=docker/dockerfile:1
# One image for every service. Each container picks its service by command:
#   python -m services.<ledger|pie|order|window|margin|notification|market>
# (docker-compose.yml and deploy/k8s/ set it), and the m1 CLI is installed beside them.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services
COPY m1 ./m1
# The project and all its dependencies as wheels: the runtime stage installs without a compiler.
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    M1_HTTP_HOST=0.0.0.0
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels m1-backoffice \
 && groupadd --system --gid 10001 m1 \
 && useradd --system --uid 10001 --gid m1 --no-create-home --shell /usr/sbin/nologin m1
# Numeric user, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
# /health and /metrics: 8101 ledger, 8102 pie, 8103 order, 8104 window, 8105 margin,
# 8106 notification, 8107 market (shared/settings.py SERVICE_PORTS; M1_HTTP_PORT overrides).
EXPOSE 8101 8102 8103 8104 8105 8106 8107
# No service by default: the container's command chooses one.
CMD ["python", "-c", "print('m1 back office image: run python -m services.<name> or m1 --help')"]
