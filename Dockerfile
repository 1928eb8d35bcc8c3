# The vigil image: every role's command (`vigil …`), and the healthcheck docker-compose.yml uses.
FROM python:3.11.11-slim-bookworm
WORKDIR /app
# Which role's dependencies to install (pyproject extras): all, gateway, server, …
ARG EXTRAS=all
COPY pyproject.toml README.md ./
COPY contract contract
COPY infra infra
COPY simulator simulator
COPY gateway gateway
COPY ingest ingest
COPY rules rules
COPY service service
COPY vigil vigil
RUN pip install --no-cache-dir ".[${EXTRAS}]"
# Standard library only: `vigil-healthcheck connected PORT…` / `vigil-healthcheck http URL`.
COPY --chmod=755 deploy/healthcheck.py /usr/local/bin/vigil-healthcheck
ENTRYPOINT ["vigil"]
