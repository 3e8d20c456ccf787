"""Liveness, health per model, version and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from pipelines.serving.errors import error_responses, unknown_model
from pipelines.serving.service import PredictionService

router = APIRouter(tags=["health"])


STATE = {"description": "No version of the model loaded yet: its state, as a 200 answers it"}


@router.get("/ping", summary="200 when at least one model is served (an empty body)", response_class=Response,
            responses={503: {"description": "No model is served yet (an empty body)"}})
async def ping(request: Request) -> Response:
    service: PredictionService = request.app.state.service
    return Response(status_code=200 if service.models.served() else 503)


@router.get("/health", summary="The default model's state, and every model's under `models`", responses={503: STATE})
async def health(request: Request) -> JSONResponse:
    """503 while the default model has no champion (the other models' states say whether they are served)."""
    service: PredictionService = request.app.state.service
    return JSONResponse(service.states(), status_code=200 if service.models.default_slot.champion is not None
                        else 503)


@router.get("/models/{name}/health", summary="One model's state: version, lineage, challenger",
            responses={**error_responses(404), 503: STATE})
async def model_health(name: str, request: Request) -> JSONResponse:
    service: PredictionService = request.app.state.service
    slot = service.models.get(name)
    if slot is None:
        return unknown_model(service.models, name)
    return JSONResponse(service.state_of(slot), status_code=200 if slot.champion is not None else 503)


@router.get("/version")
async def version(request: Request) -> dict:
    from importlib import metadata

    service: PredictionService = request.app.state.service
    versions = {slot.name: slot.champion.version if slot.champion else None for slot in service.models}
    return {"service": request.app.version, "mlflow": metadata.version("mlflow"),
            "model_version": versions[service.models.default], "model_versions": versions}


@router.get("/metrics", summary="Prometheus metrics, labelled by model", response_class=PlainTextResponse)
async def prometheus_metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    service: PredictionService = request.app.state.service
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
