"""The service's error answers, in MLflow's scoring-server shape: ``{"error_code": ..., "message": ...}``, some
with more fields; their schemas, and how each route documents the errors it answers (``error_responses``)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from pipelines.serving.models import ModelSlot, ServedModels


class ErrorBody(BaseModel):
    """An error answer. Some carry more fields: the models' states on a failed reload of every model."""

    model_config = ConfigDict(extra="allow", title="Error")
    error_code: str = Field(description="BAD_REQUEST, UNAUTHENTICATED, RESOURCE_DOES_NOT_EXIST, ...")
    message: str = Field(description="What is wrong, naming the field, column, header or model")


class FieldError(BaseModel):
    field: str = Field(description="`rows.<i>.<field>`, or the part of the body at fault")
    message: str


class InvalidFields(ErrorBody):
    model_config = ConfigDict(title="InvalidFields")
    detail: list[FieldError] = Field(description="Each invalid field (the first 20)")


class UnknownModel(ErrorBody):
    model_config = ConfigDict(title="UnknownModel")
    served_models: list[str]


class DuplicateRequestId(ErrorBody):
    model_config = ConfigDict(title="DuplicateRequestId")
    request_id: str


ERRORS: dict[int, tuple[type[ErrorBody], str]] = {
    400: (ErrorBody, "Bad input, named: a malformed body or column, a value the model cannot take, an invalid "
                     "X-Request-ID, a body cut short"),
    401: (ErrorBody, "A token is configured and the request lacks `Authorization: Bearer <token>`"),
    403: (ErrorBody, "Refused"),
    404: (UnknownModel, "This service does not serve that model; `served_models` lists those it does"),
    409: (DuplicateRequestId, "The X-Request-ID was already sent within the service's window "
                              "(MLOPS_SERVING_REQUEST_ID_WINDOW_S): each request needs its own"),
    413: (ErrorBody, "The body is over MLOPS_SERVING_MAX_BODY_BYTES"),
    415: (ErrorBody, "The body's content type is not one this route takes"),
    422: (InvalidFields, "Rows that do not match the model's signature; `detail` names each field"),
    500: (ErrorBody, "A failure of the service, logged with the request id"),
    503: (ErrorBody, "No version of the model loaded yet, or the prediction log is behind (with Retry-After)"),
}


def error_responses(*statuses: int, described: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses`` for the error ``statuses`` it answers, each with its body's schema; ``described``
    gives a route's own description of a status."""
    described = described or {}
    return {status: {"model": ERRORS[status][0], "description": described.get(status, ERRORS[status][1])}
            for status in statuses}


SCORING_ERRORS = (400, 401, 409, 413, 415, 500, 503)


class Refused(Exception):
    """Raised by a route's dependency: answered as ``error_response`` (see ``create_app``)."""

    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}

    def response(self) -> JSONResponse:
        response = error_response(self.status, self.message, self.code)
        response.headers.update(self.headers)
        return response


def error_response(status: int, message: str, code: str = "BAD_REQUEST", **extra) -> JSONResponse:
    return JSONResponse({"error_code": code, "message": message, **extra}, status_code=status)


def unknown_model(models: ServedModels, name: str) -> JSONResponse:
    served = models.served()
    return error_response(404, f"this service does not serve {name!r}; it serves {served}",
                          "RESOURCE_DOES_NOT_EXIST", served_models=served)


def no_model_loaded(slot: ModelSlot) -> JSONResponse:
    return error_response(503, f"no {slot.name}@{slot.alias} loaded yet", "MODEL_NOT_LOADED")
