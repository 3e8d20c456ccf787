"""Scoring: MLflow's protocol on ``/invocations`` and the typed ``/predict``, for the default model and for
every served model under ``/models/{name}/``.

The request body is read raw (no FastAPI body model): parsing, checking and converting it is the
protocol's job, and the typed request's schema is the served model's, which changes with the champion.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from pipelines.serving.access import bearer_matches
from pipelines.serving.errors import SCORING_ERRORS, error_response, error_responses, no_model_loaded, unknown_model
from pipelines.serving.models import ModelSlot
from pipelines.serving.protocol import LARGE_BODY_BYTES, BadRequest, UnsupportedMediaType, read_request
from pipelines.serving.service import PredictionService
from pipelines.serving.typed_request import InvalidRequest, read_typed_request

router = APIRouter(tags=["scoring"])
log = logging.getLogger("pipelines.serving")

Handler = Callable[[PredictionService, ModelSlot, Request, str], Awaitable[Response]]
T = TypeVar("T")

# Read by the route itself (see ``_answer``), not by FastAPI: documented here.
REQUEST_ID = {"name": "X-Request-ID", "in": "header", "required": False,
              "description": "The request's id, echoed and logged with its rows; made by the service when absent. "
                             "Each request needs its own (a 409 otherwise).",
              "schema": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[ -~]+$"}}
# The body is read raw (see the module's docstring): its formats documented here.
MLFLOW_BODY = {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "description": "Exactly one of `dataframe_split`, "
                                    "`dataframe_records`, `instances` or `inputs`, as `mlflow models serve` takes"}},
    "text/csv": {"schema": {"type": "string", "description": "A header row naming the columns, then the rows"}}}}
INVOCATIONS = {"openapi_extra": {"parameters": [REQUEST_ID], "requestBody": MLFLOW_BODY}, "responses": {
    200: {"description": "What `mlflow models serve` answers (`predictions`: the class probabilities, or the "
                         "predicted values), and the `request_id`"},
    **error_responses(*SCORING_ERRORS)}}


@router.post("/invocations", summary="Score rows with the default model (MLflow's scoring protocol)", **INVOCATIONS)
async def invocations(request: Request) -> Response:
    service: PredictionService = request.app.state.service
    return await _instrumented(service, service.models.default_slot, request, _score)


@router.post("/models/{name}/invocations", summary="Score rows with the named model (MLflow's scoring protocol)",
             openapi_extra=INVOCATIONS["openapi_extra"], responses={**INVOCATIONS["responses"], **error_responses(404)})
async def model_invocations(name: str, request: Request) -> Response:
    return await _score_named(name, request, _score)


@router.post("/predict", summary="Score rows typed by the default model's signature",
             openapi_extra={"parameters": [REQUEST_ID]}, responses={
                 200: {"description": "Per row: the class probabilities with the class names, or the predicted "
                                      "value; the model version and request id"},
                 **error_responses(*SCORING_ERRORS, 422)})
async def predict(request: Request) -> Response:
    service: PredictionService = request.app.state.service
    return await _instrumented(service, service.models.default_slot, request, _typed_score)


# In the OpenAPI document as one path per served model, each with that model's request schema.
@router.post("/models/{name}/predict", include_in_schema=False)
async def model_predict(name: str, request: Request) -> Response:
    return await _score_named(name, request, _typed_score)


async def _score_named(name: str, request: Request, handler: Handler) -> Response:
    """An unknown model is a 404 naming the served ones (not counted in the scoring metrics)."""
    service: PredictionService = request.app.state.service
    slot = service.models.get(name)
    if slot is None:
        return _unauthenticated(service, request) or unknown_model(service.models, name)
    return await _instrumented(service, slot, request, handler)


async def _instrumented(service: PredictionService, slot: ModelSlot, request: Request, handler: Handler) -> Response:
    """Latency and status metrics for every scoring request; the token is checked before anything the request
    sends is read."""
    started = time.perf_counter()
    response = _unauthenticated(service, request) or await _answer(service, slot, request, handler)
    service.metrics.of(slot.name).request(response.status_code, time.perf_counter() - started)
    return response


async def _answer(service: PredictionService, slot: ModelSlot, request: Request, handler: Handler) -> Response:
    """The handler's answer, under the request's id (sent as ``X-Request-ID`` or made here, and echoed). An
    id is answered once (``request_ids``): a request with an id taken in the last window gets a 409; one that
    is refused gives its id back."""
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    if len(request_id) > MAX_REQUEST_ID or not (request_id.isascii() and request_id.isprintable()):
        return error_response(400, f"X-Request-ID must be 1 to {MAX_REQUEST_ID} printable ASCII characters",
                              "INVALID_PARAMETER_VALUE")
    if not service.request_ids.claim(request_id):  # lineage would show the two requests as one
        response = error_response(
            409, f"request id {request_id!r} was already sent (ids are remembered for "
                 f"{service.settings.request_id_window_s:g} s): send each request with its own X-Request-ID, or "
                 "none to have one made", "DUPLICATE_REQUEST_ID", request_id=request_id)
        response.headers["X-Request-ID"] = request_id
        return response
    prediction_log = service.prediction_log
    if prediction_log is not None and not prediction_log.admit():
        # Every row served is logged: rather than grow the queue past its bound, refuse until it drains.
        response = error_response(503, "the prediction log is behind (its store is down and its spill cannot be "
                                  "written); retry later", "PREDICTION_LOG_FULL")
        response.headers["Retry-After"] = "5"
    else:
        try:
            response = await handler(service, slot, request, request_id)
        except Exception:  # a bug, not the client's fault: answered, logged and counted like any other
            log.exception("request %s to %s failed", request_id, slot.name)
            response = error_response(500, "internal error scoring this request; it is logged with its request id",
                                      "INTERNAL_ERROR")
    if response.status_code != 200:  # nothing of it was logged: the id may be sent again
        service.request_ids.release(request_id)
    response.headers["X-Request-ID"] = request_id
    return response


MAX_REQUEST_ID = 64  # the prediction log's request_id column


def _unauthenticated(service: PredictionService, request: Request) -> Response | None:
    """A 401 when a predict token is configured and the request does not carry it."""
    token = service.settings.predict_token
    if token is None or bearer_matches(request, token):
        return None
    response = error_response(401, "a valid token is required (Authorization: Bearer <token>)", "UNAUTHENTICATED")
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def _read_body(service: PredictionService, request: Request) -> bytes | Response:
    """The body, refused with a 413 as soon as it passes the limit: a declared length over it is never read,
    and a body sent without one is read only up to it."""
    limit = service.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return _too_large(limit)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:  # counted as the client's error, not the service's
        return error_response(400, "the client disconnected before sending the whole body", "CLIENT_DISCONNECTED")
    return b"".join(chunks)


def _too_large(limit: int) -> Response:
    return error_response(413, f"request body over the {limit}-byte limit", "REQUEST_TOO_LARGE")


def _json_content(request: Request) -> Response | None:
    """A 415 unless the body is declared JSON: a browser page can post text/plain to any origin without
    asking, never application/json."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return error_response(415, "send the rows as application/json", "UNSUPPORTED_MEDIA_TYPE")
    return None


async def _score(service: PredictionService, slot: ModelSlot, request: Request, request_id: str) -> Response:
    serving = slot.serving
    route, model = serving.route_for(request_id)
    if model is None:
        return no_model_loaded(slot)
    body = await _read_body(service, request)
    if isinstance(body, Response):
        return body
    try:
        read = await _read(read_request, body, request.headers.get("content-type", ""), model, slot.event_time)
    except UnsupportedMediaType as exc:
        return error_response(415, str(exc), "UNSUPPORTED_MEDIA_TYPE")
    except BadRequest as exc:
        return error_response(400, str(exc))
    try:
        output = await service.score(model, route, read.columns, request_id, read.event_times)
    except (ValueError, TypeError) as exc:
        return error_response(400, f"the model cannot score this input: {exc}")
    shadow = serving.shadow
    if shadow is not None:
        service.shadow(shadow, read, request_id)
    # What `mlflow models serve` answers for this model (class probabilities, or values), plus the request id.
    return Response(_predictions_json(output, request_id), media_type="application/json",
                    headers={"X-Model-Version": model.version, "X-Model-Route": route})


async def _read(read: Callable[..., T], body: bytes, *args) -> T:
    """``read(body, *args)``: in a worker thread when the body is large (read there in pieces, so the event
    loop keeps answering other requests meanwhile), with the garbage collector paused, else here (a thread
    would cost a small request more than the read)."""
    if len(body) > LARGE_BODY_BYTES:
        return await run_in_threadpool(_collector_paused, read, body, *args)
    return read(body, *args)


_paused_reads = 0
_pause_lock = threading.Lock()


def _collector_paused(read: Callable[..., T], *args) -> T:
    """``read(*args)`` with Python's cyclic garbage collector off (while any such read runs). A large body
    becomes a million objects, most of them alive until the read ends: each full collection in that time walks
    them all, holding the interpreter for a few hundred milliseconds, and the read makes several. What the read
    frees goes by reference counting, without the collector."""
    global _paused_reads
    with _pause_lock:
        pause = _paused_reads > 0 or gc.isenabled()  # off for another reason: left to whoever did that
        if pause:
            _paused_reads += 1
            gc.disable()
    if not pause:
        return read(*args)
    try:
        return read(*args)
    finally:
        with _pause_lock:
            _paused_reads -= 1
            if _paused_reads == 0:
                gc.enable()


NATIVE_OUTPUT = frozenset({np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.bool_)})


def _predictions_json(output: np.ndarray, request_id: str) -> bytes:
    """``{"predictions": ..., "request_id": ...}``: a float64, int64 or bool array serialized by orjson as it
    is (no Python value per element, the same JSON); any other output (class names, float32, a strided
    slice) through Python values, as ``mlflow models serve`` answers it."""
    if output.dtype in NATIVE_OUTPUT and output.flags.c_contiguous:
        return orjson.dumps({"predictions": output, "request_id": request_id}, option=orjson.OPT_SERIALIZE_NUMPY)
    return orjson.dumps({"predictions": output.tolist(), "request_id": request_id})


async def _typed_score(service: PredictionService, slot: ModelSlot, request: Request, request_id: str) -> Response:
    model = slot.champion
    if model is None:
        return no_model_loaded(slot)
    refused = _json_content(request)
    if refused is not None:
        return refused
    body = await _read_body(service, request)
    if isinstance(body, Response):
        return body
    try:
        columns = await _read(read_typed_request, body, model)
    except InvalidRequest as exc:
        return error_response(422, exc.message, "INVALID_INPUT", detail=exc.detail)
    try:
        output = await service.score(model, "champion", columns, request_id)
    except (ValueError, TypeError) as exc:
        return error_response(400, f"the model cannot score this input: {exc}")
    return Response(orjson.dumps({"request_id": request_id, "model": model.name, "model_version": model.version,
                                  **model.task.answer(output, model.classes)}),
                    media_type="application/json")
