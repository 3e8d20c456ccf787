"""The operator pages as a FastAPI app: ``/models``, ``/models/{name}``, ``/models/{name}/versions/{v}`` (and
its batch's validation report), ``/models/{name}/monitoring`` (the timeline, and each window's Evidently
report), ``/lineage?request_id=`` (a prediction back to its data and code) and ``/dags/{dag_id}`` (a model's
page, as a tab on each of its DAGs).

``create_app`` takes the dependencies every route must pass: the Airflow plugin gives Airflow's own
``requires_authenticated()``, so a page answers only a user logged in to the UI (the UI's token cookie
reaches the page's frame) or a request with an Airflow API token. The app itself knows nothing of Airflow.

Every answer carries the headers of ``browser_policy`` (the pages run only their own script; the reports are
sandboxed documents), and a model name or version the registry could not hold is a 404 before any registry
call (MLflow's server answers some of them with a 500 that its client retries for minutes).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.params import Depends
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from pipelines.config import StatePaths
from pipelines.operator_ui import browser_policy, lineage_view, monitoring_view, pages, registry_view
from pipelines.registry import MAX_VERSION, is_model_name, is_version_number
from pipelines.tracking import mlflow_ui_url
from pipelines.training_outcomes import run_verdicts, training_outcomes

# The DAGs of one model config, as the operator pages link to them (label, DAG id prefix).
MODEL_DAGS = (("Retrain", "train"), ("Promote or retire", "promote"), ("Roll back", "rollback"),
              ("Monitoring", "monitor"), ("Batch scoring", "score"))


ICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="#51504f" stroke-width="2" '
        'stroke-linejoin="round"><path d="M12 3 3 7.5l9 4.5 9-4.5z"/><path d="m3 12 9 4.5 9-4.5"/>'
        '<path d="m3 16.5 9 4.5 9-4.5"/></svg>')
STATIC = Path(__file__).parent / "static"  # the pages' one script and one stylesheet (no inline ones)
# A monitoring store's window id: beyond int64 SQLite raises (a 500) rather than finding nothing.
WindowId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]


def create_app(dependencies: Sequence[Depends] = (), url_prefix: str = "/mlops") -> FastAPI:
    app = FastAPI(title="MLOps operator pages", dependencies=list(dependencies), docs_url=None, redoc_url=None,
                  openapi_url=None)
    links = {"base": url_prefix, "mlflow_ui": mlflow_ui_url()}

    @app.middleware("http")
    async def browser_headers(request: Request, call_next) -> Response:
        """A page's policy on every answer that does not carry its own (the reports do)."""
        response = await call_next(request)
        for header, value in browser_policy.PAGE.items():
            response.headers.setdefault(header, value)
        return response

    async def read(fn, *args) -> Any:
        """Registry reads off the API server's event loop: a 404 for what the registry does not hold, a 403 for
        what it does not let this server's MLflow user read."""
        from pipelines.registry import is_denied, is_missing
        from pipelines.tracking import mlflow_client

        try:
            return await asyncio.to_thread(fn, mlflow_client(), *args)
        except Exception as exc:
            if is_missing(exc):
                raise HTTPException(404, f"not in the registry: {' '.join(map(str, args))}") from None
            if is_denied(exc):
                raise HTTPException(403, f"the registry does not let this server's MLflow user read "
                                         f"{' '.join(map(str, args)) or 'the models'}: {exc}") from None
            raise

    @app.get("/pages.js")
    async def script() -> Response:
        return Response(_static("pages.js"), media_type="text/javascript")

    @app.get("/pages.css")
    async def stylesheet() -> Response:
        return Response(_static("pages.css"), media_type="text/css")

    @app.get("/models", response_class=HTMLResponse)
    async def all_models() -> str:
        listed = functools.partial(registry_view.models, configured=await asyncio.to_thread(_configured_models))
        models = await read(listed)
        states = await asyncio.to_thread(_model_states, {m.name: bool(m.versions) for m in models})
        return pages.render("models.html", models=models, states=states, **links)

    @app.get("/models/{name}", response_class=HTMLResponse)
    async def one_model(name: str) -> str:
        _check_name(name)
        listed = functools.partial(registry_view.models, configured=await asyncio.to_thread(_configured_models))
        model = (await read(listed, name))[0]
        cfg = await asyncio.to_thread(_find_config, name)
        dags = [(label, f"{prefix}_{cfg.name}") for label, prefix in MODEL_DAGS] if cfg else []
        challenger = await asyncio.to_thread(_challenger_status, cfg, model.aliases.get("challenger"))
        return pages.render("model.html", model=model, alias_order=registry_view.ALIAS_ORDER, dags=dags,
                            config_name=cfg.name if cfg else None, challenger=challenger,
                            approval_required=bool(cfg and cfg.serving.approval == "required"), **links)

    @app.get("/models/{name}/versions/{version}", response_class=HTMLResponse)
    async def one_version(name: str, version: str) -> str:
        _check_name(name, version)
        detail = await read(registry_view.version_detail, name, version)
        from pipelines.prediction_store import latest_requests, logged_rows

        served = await asyncio.to_thread(logged_rows, None, name, version)
        latest = await asyncio.to_thread(latest_requests, None, name, version) if served else []
        cfg = await asyncio.to_thread(_find_config, name)
        report = cfg and registry_view.validation_report_path(detail.summary, _reports_root() / cfg.name)
        return pages.render("version.html", detail=detail, served_rows=served, latest_requests=latest,
                            config_name=cfg.name if cfg else None, validation_report=bool(report), **links)

    @app.get("/models/{name}/versions/{version}/validation")
    async def validation_report(name: str, version: str) -> FileResponse:
        _check_name(name, version)
        summary = await read(registry_view.version_summary, name, version)
        cfg = await asyncio.to_thread(_config_of_model, name)
        path = registry_view.validation_report_path(summary, _reports_root() / cfg.name)
        if path is None:
            raise HTTPException(404, f"{name} v{version} has no validation report under {_reports_root()}")
        return FileResponse(path, media_type="text/html", headers=browser_policy.REPORT)

    @app.get("/models/{name}/monitoring", response_class=HTMLResponse)
    async def monitoring(name: str) -> str:
        _check_name(name)
        cfg = await asyncio.to_thread(_config_of_model, name)
        bounds = monitoring_view.Bounds.of(cfg)
        stored = await asyncio.to_thread(monitoring_view.rows, _monitoring_engine(), cfg.name)
        timeline = monitoring_view.windows_of(stored, bounds)
        retrains = [w.triggered_run_id for w in timeline if w.triggered_run_id]
        outcomes = await read(training_outcomes, name, cfg.name, retrains) if retrains else {}
        verdicts = await asyncio.to_thread(run_verdicts, StatePaths.from_env(), cfg.name, retrains)
        said = monitoring_view.retrain_status(retrains, outcomes, verdicts)
        chart = await asyncio.to_thread(_monitoring_chart, name, stored, monitoring_view.retrains(timeline, outcomes,
                                                                                                 said),
                                        bounds.drift_share)
        return pages.render("monitoring.html", model=name, config=cfg.name, windows=timeline, bounds=bounds,
                            said=said, realized=sorted({metric for w in timeline for metric in w.realized}),
                            key_features=sorted(bounds.key_features), chart=chart, **links)

    @app.get("/models/{name}/monitoring/{window_id}/report")
    async def monitoring_report(name: str, window_id: WindowId) -> FileResponse:
        _check_name(name)
        cfg = await asyncio.to_thread(_config_of_model, name)
        path = await asyncio.to_thread(monitoring_view.report_path, _monitoring_engine(), cfg.name, window_id,
                                       _reports_root())
        if path is None:
            raise HTTPException(404, f"window {window_id} of {name} has no drift report")
        return FileResponse(path, media_type="text/html", headers=browser_policy.SCRIPTED_REPORT)

    @app.get("/lineage", response_class=HTMLResponse)
    async def lineage(request_id: str = "") -> str:
        request_id = request_id.strip()
        found = await read(lineage_view.lineage, request_id) if request_id else None
        return pages.render("lineage.html", request_id=request_id, lineage=found, **links)

    @app.get("/icon.svg")
    async def icon() -> Response:
        """The Models entry's icon in the UI's navigation (a model's layers)."""
        return Response(ICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    @app.get("/dags/{dag_id}")
    async def model_of_dag(dag_id: str) -> RedirectResponse:
        name = await asyncio.to_thread(_model_of_dag, dag_id)
        if name is None:
            raise HTTPException(404, f"{dag_id} is not the DAG of a model config")
        return RedirectResponse(f"{url_prefix}/models/{quote(name, safe='')}", status_code=307)

    return app


def _monitoring_chart(model: str, stored: list[dict], retrains, default_drift_limit: float | None):
    from pipelines.operator_ui.monitoring_chart import monitoring_chart
    from pipelines.timeline import windows_frame

    return monitoring_chart(model, windows_frame(stored), retrains, default_drift_limit)


def _check_name(name: str, version: str | None = None) -> None:
    """A 404 for a model name or version the registry cannot hold, before anything asks the registry."""
    if not is_model_name(name):
        raise HTTPException(404, f"no model {name[:300]!r}: not a name MLflow's registry accepts")
    if version is not None and not is_version_number(version):
        raise HTTPException(404, f"no version {version[:40]!r} of {name}: a version is a whole number up to "
                                 f"{MAX_VERSION}, in ASCII digits")


@functools.cache
def _static(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def _config_files():
    """Every file of include/models, loaded or not, read again only when one of them changes."""
    from pipelines.config import include_dir, model_configs_stamp

    folder = include_dir() / "models"
    return _config_files_as_of(folder, model_configs_stamp(folder))


@functools.lru_cache(maxsize=4)
def _config_files_as_of(folder, _files: tuple):
    from pipelines.config import read_model_configs

    return tuple(read_model_configs(folder))


def _configs():
    """The valid model configs."""
    return [entry.config for entry in _config_files() if entry.config is not None]


def _configured_models():
    """Each model config with its training DAG's last verdict (read at each call: a run may have ended)."""
    from pipelines.config import StatePaths

    return registry_view.configured_models(_config_files(), StatePaths.from_env())


def _model_states(has_version: dict[str, bool]) -> dict[str, tuple[str, str]]:
    """Each configured model's state at a glance (``monitoring_view.state_of``), by registered model name."""
    from pipelines.operator_ui import monitoring_view

    engine = _monitoring_engine()
    states = {}
    for cfg in _configs():
        latest = monitoring_view.windows(engine, cfg.name, limit=1)
        states[cfg.model_name] = monitoring_view.state_of(latest[0] if latest else None,
                                                          has_version.get(cfg.model_name, False))
    return states


def _find_config(model_name: str):
    return next((cfg for cfg in _configs() if cfg.model_name == model_name), None)


def _config_of_model(model_name: str):
    cfg = _find_config(model_name)
    if cfg is None:
        raise HTTPException(404, f"no model config in include/models serves the registered model {model_name!r}")
    return cfg


@functools.cache
def _engine_for(url: str):
    from pipelines import monitoring_store

    return monitoring_store.engine(url)


def _monitoring_engine():
    from pipelines import monitoring_store

    return _engine_for(monitoring_store.default_url())


def _challenger_status(cfg, version: str | None) -> dict | None:
    """The monitoring DAG's last comparison of the challenger ``version`` with the champion (None without a
    challenger, or when the last comparison was of another version)."""
    if cfg is None or version is None:
        return None
    from pipelines.config import StatePaths
    from pipelines.monitoring_tasks import challenger_status

    status = challenger_status(cfg, StatePaths.from_env())
    return status if status and status.get("challenger_version") == str(version) else None


def _reports_root():
    from pipelines.config import StatePaths

    return StatePaths.from_env().reports_root


def _model_of_dag(dag_id: str) -> str | None:
    return next((cfg.model_name for cfg in _configs()
                 if dag_id in {f"{prefix}_{cfg.name}" for _, prefix in MODEL_DAGS}), None)
