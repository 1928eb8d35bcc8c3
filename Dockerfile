FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY contract contract
COPY simulator simulator
COPY gateway gateway
COPY ingest ingest
COPY rules rules
COPY service service
COPY vigil vigil
RUN pip install --no-cache-dir .
ENTRYPOINT ["vigil"]
