"""The OpenAPI document with each served model's typed request: ``/models/<name>/predict`` for every model
with a champion (its request schema named after it, so two models' schemas never collide), and ``/predict``
with the default model's. It follows the champions; rebuilt only when one changes."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI

from pipelines.serving.models import LoadedModel, schema_name


def openapi_with_signatures(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The function to install as ``app.openapi``."""
    cached: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        models = app.state.service.models
        served = [(slot.name, slot.champion) for slot in models if slot.champion is not None]
        key = tuple((name, model.version, model.loaded_at) for name, model in served)
        if cached.get("key") != key:
            cached.update(key=key, document=_document(app, models.default, served))
        return cached["document"]

    return openapi


def _document(app: FastAPI, default: str, served: list[tuple[str, LoadedModel]]) -> dict[str, Any]:
    from fastapi.openapi.utils import get_openapi

    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = document.setdefault("components", {}).setdefault("schemas", {})
    # FastAPI lists its own 422 on every route with a path or query parameter; those are plain strings that
    # never fail, and the service checks its bodies itself (``errors``).
    for operation in (operation for item in document["paths"].values() for operation in item.values()):
        schema = operation["responses"].get("422", {}).get("content", {}).get("application/json", {}).get("schema")
        if schema == {"$ref": "#/components/schemas/HTTPValidationError"}:
            del operation["responses"]["422"]
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    predict = document["paths"]["/predict"]["post"]
    for name, model in served:
        body = _request_body(components, model)
        document["paths"][f"/models/{quote(name, safe='')}/predict"] = {"post": {
            **copy.deepcopy(predict), "summary": f"Score rows typed by {name}'s signature",
            "operationId": f"predict_{schema_name(name)}", "requestBody": body}}
    if default in dict(served):
        predict["requestBody"] = _request_body(components, dict(served)[default])
    return document


def _request_body(components: dict[str, Any], model: LoadedModel) -> dict[str, Any]:
    """Add the model's request schema (and its row's) to ``components``; the request body referring to it."""
    schema = model.request_schema.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    name = model.request_schema.__name__
    components[name] = schema
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}
