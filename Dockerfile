# The one image every process of the Procfile runs from (infra/k8s names it `cloud-trade-copier`):
# the hub (uvicorn), the worker pools (rq worker-pool), the reaper and the Deriv simulator, each
# chosen by the pod's command. Not built on the machine this was written on (no container engine
# there); see infra/k8s/README.md.
#
#   docker build -t ghcr.io/example/cloud-trade-copier:0.1.0 .

# -- the web app: a static build the hub can serve (production serves it from S3/CloudFront) ----
FROM node:20-bookworm-slim AS web
WORKDIR /web
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npm run build

# -- the Python packages, built into a virtual environment that the last stage copies ----------
FROM python:3.12-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core/ core/
COPY signal_hub/ signal_hub/
COPY broker_workers/ broker_workers/
COPY bench/ bench/
COPY infra/ infra/
RUN pip install .

# -- what runs: no compiler, no source tree, any non-root user (the manifests use 10001) -------
FROM python:3.12-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    FRONTEND_DIR=/app/frontend/dist
COPY --from=build /opt/venv /opt/venv
COPY --from=web /web/dist /app/frontend/dist
COPY Procfile /app/Procfile
WORKDIR /app
# Any uid works (the files are world-readable and nothing is written outside /tmp, which the
# manifests mount as an emptyDir on a read-only root filesystem); 10001 when run by hand.
USER 10001:10001
EXPOSE 8000 9100
# The hub by default, as the Procfile's `web`; the manifests set each pod's own command.
CMD ["sh", "-c", "exec uvicorn signal_hub.app:app --host ${HOST:-0.0.0.0} --port ${PORT:-8000} --no-access-log --forwarded-allow-ips \"${FORWARDED_ALLOW_IPS:-}\""]
