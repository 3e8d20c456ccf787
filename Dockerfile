# One image for every component of the production topology (docker-compose.yaml).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git make && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir uv
WORKDIR /opt/mlops
ENV UV_COMPILE_BYTECODE=1 UV_PROJECT_ENVIRONMENT=/opt/venv PATH=/opt/venv/bin:$PATH
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --extra production --no-install-project
COPY . .
RUN uv sync --frozen --no-dev --extra production
# Every component runs as an unprivileged user; the named volumes take the ownership of these folders.
RUN useradd --uid 50000 --create-home mlops \
    && mkdir -p /var/lib/mlops /var/lib/mlflow /opt/airflow/logs /opt/airflow/secrets \
    && chown -R mlops /var/lib/mlops /var/lib/mlflow /opt/airflow
USER mlops
