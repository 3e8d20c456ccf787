"""ASGI prediction service speaking MLflow's scoring protocol on ``POST /invocations``.

The champion is resolved through the registry alias; ``POST /admin/reload`` (called by the deploy task)
and a background poll pick up a new champion without a restart: the new model is loaded beside the old
one and swapped in with one reference assignment, so no request ever sees a half-loaded model.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import os
import threading
import time
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np
import orjson
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from pipelines.registry import CHALLENGER, CHAMPION
from pipelines.serving.batching import MicroBatcher
from pipelines.serving.prediction_log import PredictionLog, ServedBatch, now
from pipelines.task_types import TaskType

log = logging.getLogger("pipelines.serving")


class BadRequest(ValueError):
    pass


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    alias: str
    model: Any
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    tags: dict[str, str]
    loaded_at: str
    task: TaskType
    classes: list[str] | None  # a classifier's classes, in the order of its probability columns

    @property
    def columns(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    @cached_property
    def request_schema(self):
        """The typed ``/predict`` request, built once per loaded model (not per request)."""
        return request_model(self)

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "model": self.name, "version": self.version, "alias": self.alias,
                "task": self.task.name, "classes": self.classes,
                "data_hash": self.tags.get("data_hash"), "git_commit": self.tags.get("git_commit"),
                "threshold": self.tags.get("threshold"), "loaded_at": self.loaded_at}


def request_model(model: LoadedModel):
    """The typed ``/predict`` request for this model's signature (pydantic; unknown fields are refused)."""
    from pydantic import ConfigDict, Field, create_model

    row_fields = {c: (float | None, Field(...)) for c in model.numeric}
    row_fields.update({c: (str | None, Field(...)) for c in model.categorical})
    row = create_model(f"{model.name}_row", __config__=ConfigDict(extra="forbid"), **row_fields)
    return create_model("PredictRequest", __config__=ConfigDict(extra="forbid"),
                        rows=(list[row], Field(..., min_length=1, description="One object per row to score")))


def load_model_uri(name: str, uri: str, version: str, alias: str, tags: dict[str, str]) -> LoadedModel:
    import mlflow

    from pipelines.task_types import task_type_of_model
    from pipelines.training import model_classes

    model = mlflow.sklearn.load_model(uri)
    info = mlflow.models.get_model_info(uri)
    schema = info.signature.inputs
    numeric = tuple(c.name for c in schema.inputs if c.type.name in ("double", "float", "long", "integer"))
    categorical = tuple(c.name for c in schema.inputs if c.name not in numeric)
    task = task_type_of_model(info.metadata, model, list(numeric), list(categorical))
    return LoadedModel(name, version, alias, model, numeric, categorical, tags,
                       datetime.now(UTC).isoformat(timespec="seconds"), task, model_classes(model))


def load_registered(name: str, alias: str) -> LoadedModel:
    import mlflow

    from pipelines.tracking import configure_mlflow

    configure_mlflow()
    version = mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    return load_model_uri(name, f"models:/{name}/{version.version}", str(version.version), alias,
                          dict(version.tags))


def current_alias_version(name: str, alias: str) -> str | None:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow.MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


@dataclass(frozen=True)
class Columns:
    """One request's rows, column by column: plain lists, no DataFrame per request."""

    names: list[str]
    values: dict[str, list]
    rows: int
    numeric: tuple[str, ...] = ()  # set once conformed to the model: these hold floats


_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def _from_records(records: Any, key: str) -> Columns:
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise BadRequest(f"{key} must be a list of objects (one per row, keyed by column)")
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    return Columns(list(names), {n: [r.get(n) for r in records] for n in names}, len(records))


def parse_columns(body: bytes, content_type: str) -> Columns:
    """Every input format of ``mlflow models serve``: dataframe_split, dataframe_records, instances,
    inputs (JSON) and CSV."""
    content_type = (content_type or "").split(";")[0].strip().lower()
    if content_type == "text/csv":
        try:
            frame = pd.read_csv(io.BytesIO(body))
        except Exception as exc:
            raise BadRequest(f"malformed CSV body: {exc}") from exc
        frame = frame.astype(object).where(frame.notna(), None)
        return Columns([str(c) for c in frame.columns], {str(c): frame[c].tolist() for c in frame.columns}, len(frame))
    if content_type != "application/json":
        raise BadRequest("unsupported content type: use application/json or text/csv")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:  # MLflow clients (and its saved input examples) may send NaN / Infinity tokens
            payload = json.loads(body)
        except ValueError:
            raise BadRequest(f"malformed JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise BadRequest("the JSON body must be an object with one of " + ", ".join(_FORMATS))
    keys = [k for k in _FORMATS if k in payload]
    if len(keys) != 1:
        raise BadRequest(f"give exactly one of {', '.join(_FORMATS)} (got {keys})")
    key, data = keys[0], payload[keys[0]]
    if key == "dataframe_split":
        if not isinstance(data, dict) or not isinstance(data.get("columns"), list) \
                or not isinstance(data.get("data"), list):
            raise BadRequest("dataframe_split needs 'columns' (a list of names) and 'data' (a list of rows)")
        names, rows = [str(c) for c in data["columns"]], data["data"]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise BadRequest(f"duplicate columns {duplicated}")
        if not all(isinstance(r, list) and len(r) == len(names) for r in rows):
            raise BadRequest(f"every row of dataframe_split.data must be a list of {len(names)} values")
        transposed = list(zip(*rows, strict=True)) if rows else [()] * len(names)
        return Columns(names, {n: list(v) for n, v in zip(names, transposed, strict=True)}, len(rows))
    if key == "inputs" and isinstance(data, dict):
        values = {str(k): v if isinstance(v, list) else [v] for k, v in data.items()}
        lengths = {len(v) for v in values.values()}
        if len(lengths) > 1:
            raise BadRequest(f"every column of inputs must have the same length, got lengths {sorted(lengths)}")
        return Columns(list(values), values, lengths.pop() if lengths else 0)
    return _from_records(data, key)


def _as_float(value: Any, column: str) -> float:
    if value is None:
        return float("nan")
    if type(value) in (float, int, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise BadRequest(f"column {column!r} must be numeric, got {value!r}")


def _as_category(value: Any, column: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if type(value) in (int, float, bool):
        return None if value != value else str(value)  # NaN is missing
    raise BadRequest(f"column {column!r} must hold scalar values, got {value!r}")


def split_event_time(columns: Columns, column: str | None) -> tuple[Columns, list[datetime | None] | None]:
    """Take the optional event-time column out of the request (it is logged, never scored)."""
    if not column or column not in columns.values:
        return columns, None
    times = []
    for value in columns.values[column]:
        if value is None:
            times.append(None)
            continue
        try:
            stamp = datetime.fromtimestamp(value, UTC) if type(value) in (int, float) \
                else datetime.fromisoformat(value)
        except (TypeError, ValueError, OverflowError, OSError):
            raise BadRequest(f"column {column!r} must be an ISO 8601 time or epoch seconds, got {value!r}") from None
        # Stored in UTC: SQLite keeps a timestamp's wall time and drops its offset.
        times.append(stamp.astimezone(UTC) if stamp.tzinfo else stamp.replace(tzinfo=UTC))
    names = [n for n in columns.names if n != column]
    return Columns(names, {n: columns.values[n] for n in names}, columns.rows, columns.numeric), times


def event_time_column(model_name: str) -> str | None:
    """``$MLOPS_SERVING_EVENT_TIME_COLUMN``, else the event time of the model's config, if there is one."""
    if "MLOPS_SERVING_EVENT_TIME_COLUMN" in os.environ:
        return os.environ["MLOPS_SERVING_EVENT_TIME_COLUMN"] or None
    from pipelines.config import MODELS_DIR, load_model_config

    path = MODELS_DIR / f"{model_name}.yaml"
    return load_model_config(path).features.event_time if path.is_file() else None


def conform_columns(columns: Columns, model: LoadedModel) -> Columns:
    """Check the request against the model signature and convert every value, naming the first bad field."""
    missing = [c for c in model.columns if c not in columns.values]
    if missing:
        raise BadRequest(f"missing columns {missing}; the model needs {list(model.columns)}")
    unknown = [c for c in columns.names if c not in model.columns]
    if unknown:
        raise BadRequest(f"unknown columns {unknown}; the model needs {list(model.columns)}")
    if columns.rows == 0:
        raise BadRequest("no rows to score")
    values = {c: [_as_float(v, c) for v in columns.values[c]] for c in model.numeric}
    values.update({c: [_as_category(v, c) for v in columns.values[c]] for c in model.categorical})
    return Columns(list(model.columns), values, columns.rows, model.numeric)


def columns_to_frame(batch: list[Columns]) -> pd.DataFrame:
    """One DataFrame for a whole micro-batch (runs in the scoring thread)."""
    first = batch[0]
    if len(batch) == 1:
        merged = first.values
    else:
        merged = {n: [v for part in batch for v in part.values[n]] for n in first.names}
    return pd.DataFrame(
        {n: np.asarray(merged[n], dtype=np.float64 if n in first.numeric else object) for n in first.names},
        columns=first.names,
    )


def parse_frame(body: bytes, content_type: str) -> pd.DataFrame:
    """The request as a DataFrame (for callers outside the serving hot path)."""
    columns = parse_columns(body, content_type)
    return pd.DataFrame(columns.values, columns=columns.names)


def conform(frame: pd.DataFrame, model: LoadedModel) -> pd.DataFrame:
    if frame.columns.duplicated().any():
        raise BadRequest(f"duplicate columns {sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})}")
    frame = frame.astype(object).where(frame.notna(), None)
    columns = Columns([str(c) for c in frame.columns], {str(c): frame[c].tolist() for c in frame.columns}, len(frame))
    return columns_to_frame([conform_columns(columns, model)])


class ServiceMetrics:
    """Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

    def __init__(self, prediction_log: PredictionLog | None):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("prediction_requests", "Scoring requests by HTTP status", ["status"],
                                registry=self.registry)
        self.rows = Counter("prediction_rows", "Rows scored and returned", registry=self.registry)
        self.latency = Histogram("prediction_latency_seconds", "Time to answer a scoring request",
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                                 registry=self.registry)
        self.model_version = Gauge("prediction_model_version", "Registry version being served", ["model"],
                                   registry=self.registry)
        if prediction_log is not None:
            Gauge("prediction_log_backlog_rows", "Rows served but not yet written to the prediction log",
                  registry=self.registry).set_function(lambda: prediction_log.backlog)
            Gauge("prediction_log_rows_written", "Rows written to the prediction log",
                  registry=self.registry).set_function(lambda: prediction_log.rows_written)
            Gauge("prediction_log_rows_failed", "Rows the prediction log could not write (not transient)",
                  registry=self.registry).set_function(lambda: prediction_log.rows_failed)


def create_app(model_name: str | None = None, alias: str | None = None, poll_seconds: float | None = None,
               prediction_log: PredictionLog | None = None, log_predictions: bool | None = None,
               max_body_bytes: int | None = None, model_uri: str | None = None,
               challenger_mode: str | None = None, canary_share: float | None = None,
               event_time: str | None = None) -> FastAPI:
    """The service for ``model_name@alias``; with ``model_uri`` a staging instance serving that one model
    (no registry alias, no polling): what infra validation runs a candidate in before promotion.

    The ``challenger`` alias, when set, runs as its version's ``rollout`` tag says (set by the training DAG
    from ``serving.rollout``): ``shadow``: it scores every request too, logged with route ``shadow`` and never
    returned; ``canary``: its ``canary_share`` tag of the requests (sticky by request id) are answered by it.
    ``challenger_mode`` / ``$MLOPS_SERVING_CHALLENGER`` (``off``, ``shadow``, ``canary``) and ``canary_share``
    / ``$MLOPS_SERVING_CANARY_SHARE`` override the tags; ``registry`` (the default) follows them."""
    from pipelines.tracking import configure_mlflow

    configure_mlflow()  # the same store as the DAG, whatever the working directory
    model_name = model_name or os.environ.get("MLOPS_SERVING_MODEL", "flights_delay")
    alias = alias or os.environ.get("MLOPS_SERVING_ALIAS", CHAMPION)
    poll_seconds = float(os.environ.get("MLOPS_SERVING_POLL_S", "30") if poll_seconds is None else poll_seconds)
    if log_predictions is None:
        log_predictions = os.environ.get("MLOPS_PREDICTION_LOG", "on").lower() not in ("off", "0", "false")
    if log_predictions and prediction_log is None:
        prediction_log = PredictionLog()
    max_body_bytes = max_body_bytes or int(os.environ.get("MLOPS_SERVING_MAX_BODY_BYTES", 10 * 1024 * 1024))
    challenger_mode = challenger_mode or os.environ.get("MLOPS_SERVING_CHALLENGER", "registry")
    if challenger_mode not in ("registry", "off", "shadow", "canary"):
        raise ValueError(f"challenger mode must be registry, off, shadow or canary, got {challenger_mode!r}")
    if canary_share is None and os.environ.get("MLOPS_SERVING_CANARY_SHARE"):
        canary_share = float(os.environ["MLOPS_SERVING_CANARY_SHARE"])
    workers = int(os.environ.get("MLOPS_SERVING_WORKERS", "1"))
    event_time = event_time or event_time_column(model_name)
    app = FastAPI(title=f"{model_name} prediction service", version="0.1.0")
    app.state.prediction_log = prediction_log
    batcher = MicroBatcher(combine=columns_to_frame,
                           model_threads=int(os.environ.get("MLOPS_SERVING_MODEL_THREADS", "1")))
    app.state.batcher = batcher
    metrics = ServiceMetrics(prediction_log)
    state: dict[str, Any] = {"model": None, "challenger": None, "route": "off", "share": 0.0}
    swap_lock = threading.Lock()
    shadow_tasks: set[asyncio.Task] = set()

    def refresh_challenger() -> None:
        if challenger_mode == "off" or model_uri is not None:
            return
        wanted = current_alias_version(model_name, CHALLENGER)
        served = state["challenger"]
        if wanted is None:
            state["challenger"], state["route"] = None, "off"
            return
        if served is None or served.version != wanted:
            served = load_registered(model_name, CHALLENGER)
        tags = served.tags
        route = challenger_mode if challenger_mode != "registry" else tags.get("rollout", "shadow")
        share = canary_share if canary_share is not None else float(tags.get("canary_share") or 0.1)
        if route not in ("shadow", "canary"):
            route = "shadow"  # an unknown tag never sends live traffic to a challenger
        if state["challenger"] is not served or (state["route"], state["share"]) != (route, share):
            log.info("challenger %s v%s in %s mode (canary share %.2f)", model_name, served.version, route, share)
        state["challenger"], state["route"], state["share"] = served, route, share

    def refresh() -> LoadedModel | None:
        """Load the alias's version if it differs from the one served. Safe to call concurrently."""
        with swap_lock:
            if model_uri is not None:
                if state["model"] is None:
                    state["model"] = load_model_uri(model_name, model_uri, "candidate", "staging", {})
                return state["model"]
            refresh_challenger()
            wanted = current_alias_version(model_name, alias)
            served = state["model"]
            if wanted is None or (served is not None and served.version == wanted):
                return served
            loaded = load_registered(model_name, alias)
            state["model"] = loaded
            # The model's objects live as long as it is served: keep them out of every GC pass
            # (full collections over a loaded sklearn pipeline showed up as tail latency).
            gc.collect()
            gc.freeze()
            if loaded.version.isdigit():
                metrics.model_version.labels(model_name).set(float(loaded.version))
            log.info("now serving %s v%s (@%s)", model_name, loaded.version, alias)
            return loaded

    async def poll() -> None:
        while True:
            await asyncio.sleep(poll_seconds)
            try:
                await asyncio.to_thread(refresh)
            except Exception:
                log.exception("registry poll failed; still serving the loaded model")

    @app.on_event("startup")
    async def _startup() -> None:
        batcher.start()
        try:
            await asyncio.to_thread(refresh)
        except Exception:
            log.exception("no model loaded at startup; /ping answers 503 until a champion exists")
        if poll_seconds > 0:
            app.state.poller = asyncio.create_task(poll())

    def error(status: int, message: str, code: str = "BAD_REQUEST") -> JSONResponse:
        return JSONResponse({"error_code": code, "message": message}, status_code=status)

    @app.on_event("shutdown")
    async def _shutdown() -> None:
        if shadow_tasks:
            await asyncio.gather(*shadow_tasks, return_exceptions=True)
        await batcher.stop()
        if prediction_log is not None:
            await asyncio.to_thread(prediction_log.close)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/ping")
    async def ping() -> Response:
        return Response(status_code=200 if state["model"] else 503)

    @app.get("/health")
    async def health() -> JSONResponse:
        model = state["model"]
        if model is None:
            return JSONResponse({"status": "no_model", "model": model_name, "alias": alias}, status_code=503)
        return JSONResponse(serving_state(model))

    def serving_state(model: LoadedModel) -> dict[str, Any]:
        challenger = state["challenger"]
        return {**model.health(), "challenger_mode": state["route"],
                "challenger_version": challenger.version if challenger else None,
                "canary_share": state["share"] if state["route"] == "canary" else None,
                "pid": os.getpid(), "workers": workers}

    @app.get("/version")
    async def version() -> dict:
        from importlib import metadata

        return {"service": app.version, "mlflow": metadata.version("mlflow"),
                "model_version": state["model"].version if state["model"] else None}

    @app.post("/admin/reload")
    async def reload(model: str | None = None) -> JSONResponse:
        if model and model != model_name:
            return error(404, f"this service serves {model_name!r}, not {model!r}", "RESOURCE_DOES_NOT_EXIST")
        try:
            loaded = await asyncio.to_thread(refresh)
        except Exception as exc:
            return error(503, f"reload failed, still serving the previous model: {exc}", "RELOAD_FAILED")
        if loaded is None:
            return error(503, f"{model_name}@{alias} does not exist yet", "RESOURCE_DOES_NOT_EXIST")
        return JSONResponse(serving_state(loaded))

    def openapi_with_signature() -> dict:
        """The OpenAPI document, with /predict's request schema taken from the served model's signature."""
        from fastapi.openapi.utils import get_openapi

        document = get_openapi(title=app.title, version=app.version, routes=app.routes)
        model = state["model"]
        if model is not None:
            schema = model.request_schema.model_json_schema(ref_template="#/components/schemas/{model}")
            components = document.setdefault("components", {}).setdefault("schemas", {})
            components.update(schema.pop("$defs", {}))
            components["PredictRequest"] = schema
            document["paths"]["/predict"]["post"]["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
            }
        return document

    app.openapi = openapi_with_signature

    async def instrumented(request: Request, handler) -> Response:
        """Request id, latency and status metrics for every scoring endpoint."""
        started = time.perf_counter()
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        response = await handler(request, request_id)
        metrics.requests.labels(str(response.status_code)).inc()
        metrics.latency.observe(time.perf_counter() - started)
        response.headers["X-Request-ID"] = request_id
        return response

    async def read_body(request: Request) -> bytes | Response:
        too_large = error(413, f"request body over the {max_body_bytes}-byte limit", "REQUEST_TOO_LARGE")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            return too_large
        body = await request.body()
        return too_large if len(body) > max_body_bytes else body

    async def score_and_log(model: LoadedModel, route: str, columns: Columns, request_id: str,
                            event_times: list[datetime | None] | None = None):
        """Batched with concurrent requests, scored off the event loop, and handed to the prediction log."""
        output = await batcher.predict(model.model, columns, columns.rows, model.task.predict_method)
        if prediction_log is not None:
            prediction_log.submit(ServedBatch(request_id, now(), model.name, model.version, route, columns.values,
                                              model.task.scores(output, model.classes).tolist(), event_times))
        metrics.rows.inc(columns.rows)
        return output

    @app.post("/predict", summary="Score rows typed by the model signature",
              responses={200: {"description": "Per row: the class probabilities with the class names, or the "
                                              "predicted value; the model version and request id"},
                         422: {"description": "A row does not match the signature: the field is named"}})
    async def predict(request: Request) -> Response:
        return await instrumented(request, typed_score)

    async def typed_score(request: Request, request_id: str) -> Response:
        from pydantic import ValidationError

        model = state["model"]
        if model is None:
            return error(503, f"no {model_name}@{alias} loaded yet", "MODEL_NOT_LOADED")
        body = await read_body(request)
        if isinstance(body, Response):
            return body
        try:
            rows = model.request_schema.model_validate_json(body).rows
        except ValidationError as exc:
            detail = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
            return JSONResponse({"error_code": "INVALID_INPUT", "message": f"{len(detail)} invalid field(s)",
                                 "detail": detail[:20]}, status_code=422)
        columns = conform_columns(Columns(list(model.columns), {c: [getattr(r, c) for r in rows]
                                                                for c in model.columns}, len(rows)), model)
        try:
            output = await score_and_log(model, "champion", columns, request_id)
        except (ValueError, TypeError) as exc:
            return error(400, f"the model cannot score this input: {exc}")
        return Response(orjson.dumps({"request_id": request_id, "model": model.name, "model_version": model.version,
                                      **model.task.answer(output, model.classes)}),
                        media_type="application/json")

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        return await instrumented(request, score)

    def route_for(request_id: str) -> tuple[str, LoadedModel | None]:
        challenger = state["challenger"]
        if state["route"] == "canary" and challenger is not None \
                and zlib.crc32(request_id.encode()) % 10_000 < state["share"] * 10_000:
            return "canary", challenger
        return "champion", state["model"]

    async def shadow(columns: Columns, request_id: str, event_times: list[datetime | None] | None) -> None:
        challenger = state["challenger"]
        try:
            await score_and_log(challenger, "shadow", conform_columns(columns, challenger), request_id, event_times)
        except Exception as exc:  # the shadow never affects the caller; say why it could not score
            log.warning("shadow %s v%s could not score request %s: %s", model_name, challenger.version,
                        request_id, exc)

    async def score(request: Request, request_id: str) -> Response:
        route, model = route_for(request_id)
        if model is None:
            return error(503, f"no {model_name}@{alias} loaded yet", "MODEL_NOT_LOADED")
        body = await read_body(request)
        if isinstance(body, Response):
            return body
        try:
            parsed, event_times = split_event_time(parse_columns(body, request.headers.get("content-type", "")),
                                                   event_time)
            columns = conform_columns(parsed, model)
        except BadRequest as exc:
            return error(400, str(exc))
        try:
            output = await score_and_log(model, route, columns, request_id, event_times)
        except (ValueError, TypeError) as exc:
            return error(400, f"the model cannot score this input: {exc}")
        if state["route"] == "shadow" and state["challenger"] is not None:
            task = asyncio.get_running_loop().create_task(shadow(parsed, request_id, event_times))
            shadow_tasks.add(task)
            task.add_done_callback(shadow_tasks.discard)
        return Response(orjson.dumps({"predictions": output.tolist(), "request_id": request_id},
                                     option=orjson.OPT_SERIALIZE_NUMPY),
                        media_type="application/json",
                        headers={"X-Model-Version": model.version, "X-Model-Route": route})

    return app
