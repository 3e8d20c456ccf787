"""Deploy: tell the prediction service to follow the registry's aliases, and wait until every worker does.

Used by the training DAG's ``deploy`` task and by the release DAGs (rollback, promote).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pipelines.config import ModelConfig, StatePaths
from pipelines.settings import stack_settings

log = logging.getLogger(__name__)


def serving_url(cfg: ModelConfig) -> str:
    return stack_settings().prediction_service_url(cfg.serving.url)


def deploy(cfg: ModelConfig, promotion: dict, state: StatePaths | None = None) -> dict:
    """Tell the prediction service to follow the aliases ``promotion`` moved, and wait until every worker
    serves the registry's ``champion`` (and ``challenger``, when there is one).

    If the service does not get there in ``serving.reload_timeout_s``, the aliases are put back as they were
    before the move (the service keeps, or returns to, the model it served) and the task fails with the
    service's last answer: a failed deploy never leaves ``champion`` on a version nobody serves. The task
    has no retries: a retry would read the restored aliases and report the old state as deployed; it already
    retries the service for ``reload_timeout_s``."""
    import mlflow

    from pipelines.registry import CHALLENGER, CHAMPION, alias_version, restore_aliases
    from pipelines.tracking import configure_mlflow

    configure_mlflow(state)
    client = mlflow.MlflowClient()
    wanted = {"version": alias_version(client, cfg.model_name, CHAMPION),
              "challenger_version": alias_version(client, cfg.model_name, CHALLENGER)}
    url = serving_url(cfg)
    try:
        answer = wait_until_served(cfg, url, wanted)
    except Exception:  # whatever went wrong (timeout, a garbled answer), the service did not follow
        if promotion.get("before") is not None:
            restore_aliases(client, cfg.model_name, promotion["before"])
            log.error("deploy failed: %s aliases restored to %s", cfg.model_name, promotion["before"])
        raise
    log.info("prediction service at %s serves %s v%s (challenger %s) on all %s worker(s)", url, cfg.model_name,
             wanted["version"], wanted["challenger_version"], answer.get("workers", 1))
    return answer


def admin_headers() -> dict[str, str]:
    """The prediction service's admin token (``$MLOPS_SERVING_ADMIN_TOKEN``), as /admin/* requires it."""
    from pipelines.serving.settings import ServingSettings

    token = ServingSettings().admin_token  # empty or unset: no header
    return {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}


def serves(answer: dict, wanted: dict[str, str | None]) -> bool:
    """Does one worker's /admin/reload answer show the wanted champion (and challenger, unless it runs none)?"""
    if str(answer.get("version")) != str(wanted["version"]):
        return False
    if answer.get("challenger_mode", "off") == "off":
        return True
    served = answer.get("challenger_version")
    return (None if served is None else str(served)) == wanted["challenger_version"]


def wait_until_served(cfg: ModelConfig, url: str, wanted: dict[str, str | None]) -> dict:
    """POST /admin/reload until every worker process has answered with the wanted versions.

    Each call opens a new connection, so the kernel hands it to any of the service's workers; a worker
    that has not loaded the versions yet loads them on that call."""
    import httpx

    deadline = time.monotonic() + cfg.serving.reload_timeout_s
    ready: set[int] = set()
    last: Any = None
    while time.monotonic() < deadline:
        try:
            response = httpx.post(f"{url}/admin/reload", params={"model": cfg.model_name}, timeout=30,
                                  headers=admin_headers())
            last = response.json() if response.headers.get("content-type", "").startswith("application/json") \
                else response.text
            if response.status_code == 200 and isinstance(last, dict) and serves(last, wanted):
                ready.add(last.get("pid", 0))
                if len(ready) >= int(last.get("workers", 1)):
                    return last
                time.sleep(0.05)
                continue
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(1)
    raise RuntimeError(f"prediction service at {url} did not serve {cfg.model_name} {wanted} on every worker "
                       f"within {cfg.serving.reload_timeout_s:.0f}s (last answer: {last})")


