FROM python:3.11-slim
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
ENTRYPOINT ["vigil"]
