"""The service's error answers, in MLflow's scoring-server shape: ``{"error_code": ..., "message": ...}``."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from pipelines.serving.models import ModelSlot, ServedModels


def error_response(status: int, message: str, code: str = "BAD_REQUEST", **extra) -> JSONResponse:
    return JSONResponse({"error_code": code, "message": message, **extra}, status_code=status)


def unknown_model(models: ServedModels, name: str) -> JSONResponse:
    served = models.served()
    return error_response(404, f"this service does not serve {name!r}; it serves {served}",
                          "RESOURCE_DOES_NOT_EXIST", served_models=served)


def no_model_loaded(slot: ModelSlot) -> JSONResponse:
    return error_response(503, f"no {slot.name}@{slot.alias} loaded yet", "MODEL_NOT_LOADED")
