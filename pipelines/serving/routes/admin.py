"""``POST /admin/reload``: follow the registry's aliases now (the deploy task calls it; a poll does it too).

Every ``/admin`` route needs ``Authorization: Bearer <MLOPS_SERVING_ADMIN_TOKEN>``; without a configured token
they are refused."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from pipelines.serving.access import bearer_matches
from pipelines.serving.errors import Refused, error_response, error_responses, unknown_model
from pipelines.serving.service import PredictionService


def require_admin_token(request: Request) -> None:
    token = request.app.state.service.settings.admin_token
    if token is None:
        raise Refused(403, "admin endpoints are off: set MLOPS_SERVING_ADMIN_TOKEN to use them", "ADMIN_DISABLED")
    if not bearer_matches(request, token):
        raise Refused(401, "a valid admin token is required (Authorization: Bearer <token>)", "UNAUTHENTICATED",
                      headers={"WWW-Authenticate": "Bearer"})


router = APIRouter(tags=["admin"], dependencies=[Depends(require_admin_token)], responses=error_responses(
    401, 403, described={401: "The request lacks `Authorization: Bearer <MLOPS_SERVING_ADMIN_TOKEN>`",
                         403: "No admin token is configured: the admin endpoints are off"}))


@router.post("/admin/reload", summary="Load the versions the aliases name, for one model or all",
             responses=error_responses(404, 503, described={
                 503: "A reload failed (each model keeps what it served; without `model`, the body holds every "
                      "model's state too), or the model's alias does not exist yet"}))
async def reload(request: Request, model: str | None = None) -> JSONResponse:
    """With ``model``: that model's state once it follows its aliases (``version``, ``challenger_mode``,
    ``challenger_version``, ``pid``, ``workers``: deploy calls this until every worker serves the registry's
    versions). Without: every model is reloaded; the default model's state, and each model's under
    ``models`` (a 503 when one failed to load)."""
    service: PredictionService = request.app.state.service
    if model is None:
        return await _reload_all(service)
    slot = service.models.get(model)
    if slot is None:  # a model config added since the service started?
        await asyncio.to_thread(service.models.discover, True)
        slot = service.models.get(model)
    if slot is None:
        return unknown_model(service.models, model)
    try:
        loaded = await service.reload(slot)
    except Exception as exc:
        return error_response(503, f"reload of {model} failed, still serving the previous model: {exc}",
                              "RELOAD_FAILED")
    if loaded is None:
        return error_response(503, f"{model}@{slot.alias} does not exist yet", "RESOURCE_DOES_NOT_EXIST")
    return JSONResponse(service.state_of(slot))


async def _reload_all(service: PredictionService) -> JSONResponse:
    outcomes = await service.reload_all()
    failed = [name for name, outcome in outcomes.items() if isinstance(outcome, Exception)]
    body = service.states()
    if failed:
        body.update(error_code="RELOAD_FAILED", message=f"reload of {failed} failed; each still serves the "
                                                        "model it served before")
    return JSONResponse(body, status_code=503 if failed else 200)
