"""The prediction service: an ASGI app serving every model that has a champion, each on its own routes,
with MLflow's scoring protocol (``/models/<name>/invocations``) and a typed ``/models/<name>/predict``;
``/invocations`` and ``/predict`` answer for the default model.

Each model follows its registry aliases without a restart (``POST /admin/reload`` and a poll): a new version
is loaded beside the served one and swapped in with one reference assignment (see ``models``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from pipelines.config import model_configs_stamp
from pipelines.serving.errors import Refused
from pipelines.serving.metrics import ServiceMetrics
from pipelines.serving.models import ModelSlot, ServedModels
from pipelines.serving.openapi import openapi_with_signatures
from pipelines.serving.prediction_log import PredictionLog
from pipelines.serving.routes import admin, health, scoring
from pipelines.serving.service import PredictionService
from pipelines.serving.settings import ServingSettings, models_to_serve


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: PredictionService = app.state.service
    await service.start()
    try:
        yield
    finally:
        await service.stop()


def create_app(model_name: str | None = None, *, model_uri: str | None = None,
               prediction_log: PredictionLog | None = None, **overrides: Any) -> FastAPI:
    """The service for ``model_name`` (default ``$MLOPS_SERVING_MODEL``) and every other model the settings
    name; ``overrides`` set fields of ``ServingSettings`` by name (``poll_seconds=0``), the rest come from the
    environment. With ``model_uri``: a staging instance serving that one model as ``model_name`` (no registry
    alias, no polling): what infra validation runs a candidate in before promotion."""
    from pipelines.tracking import configure_mlflow

    configure_mlflow()  # the same store as the DAG, whatever the working directory
    if model_name is not None:
        overrides["model_name"] = model_name
    if model_uri is not None:
        overrides.update(models=(), configured_models=False, poll_seconds=0)
    settings = ServingSettings(**overrides)
    if settings.log_predictions and prediction_log is None:
        prediction_log = PredictionLog(flush_seconds=settings.log_flush_seconds)
    metrics = ServiceMetrics(prediction_log)

    read_stamp: list[tuple] = []

    def find_slots(force: bool = False) -> list[ModelSlot]:
        """The slots of every model to serve; unless ``force``d, none when the model config files have not
        changed since the last look (a poll then costs one directory listing, not a parse of every config)."""
        stamp = model_configs_stamp()
        if not force and read_stamp and read_stamp[-1] == stamp:
            return []
        read_stamp[:] = [stamp]
        return [ModelSlot(name, alias=settings.alias, event_time=event_time, model_uri=model_uri,
                          challenger_mode=settings.challenger_mode, canary_share=settings.canary_share)
                for name, event_time in models_to_serve(settings, read_configs=model_uri is None).items()]

    models = ServedModels(settings.model_name, find_slots(), None if model_uri is not None else find_slots)
    app = FastAPI(title="Prediction service", version="0.2.0", lifespan=lifespan,
                  description=f"Serves the `{settings.alias}` of each registered model; `{settings.model_name}` "
                              "answers `/invocations` and `/predict`.")
    app.state.service = PredictionService(settings, models, prediction_log, metrics)
    app.add_exception_handler(Refused, lambda _request, refused: refused.response())
    app.include_router(scoring.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.openapi = openapi_with_signatures(app)
    return app


