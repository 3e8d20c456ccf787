"""Release decisions an operator takes: roll the champion back, promote or retire a challenger."""

from __future__ import annotations

import logging
from dataclasses import asdict

from pipelines.config import ModelConfig, StatePaths

log = logging.getLogger(__name__)


def rollback(cfg: ModelConfig, state: StatePaths, reason: str, to_version: str | None) -> dict:
    import mlflow

    from pipelines.registry import rollback as move_back
    from pipelines.tracking import configure_mlflow

    if not reason or len(reason.strip()) < 3:
        raise ValueError("a rollback needs a reason (at least 3 characters): it is stored on both versions")
    configure_mlflow(state)
    promotion = move_back(mlflow.MlflowClient(), cfg.model_name, reason.strip(), to_version or None)
    log.warning("%s rolled back: champion is v%s (was v%s). Reason: %s", cfg.model_name, promotion.version,
                promotion.previous_version, reason)
    return asdict(promotion)


def release_challenger(cfg: ModelConfig, state: StatePaths, action: str, reason: str,
                       version: str | None = None) -> dict:
    """An operator's verdict on a shadow or canary rollout: ``promote`` the challenger to champion, or
    ``retire`` it (champion untouched). The reason is stored on the version. With ``version`` (the version the
    operator decided on), a different challenger is refused rather than moved."""
    import mlflow

    from pipelines.registry import CHALLENGER, AliasMoveError, alias_version, promote_challenger, retire_challenger
    from pipelines.tracking import configure_mlflow

    if not reason or len(reason.strip()) < 3:
        raise ValueError("a release decision needs a reason (at least 3 characters): it is stored on the version")
    if action not in ("promote", "retire"):
        raise ValueError(f"action must be promote or retire, got {action!r}")
    configure_mlflow(state)
    client = mlflow.MlflowClient()
    if version and alias_version(client, cfg.model_name, CHALLENGER) != str(version):
        raise AliasMoveError(f"v{version} is no longer the challenger of {cfg.model_name} (it is "
                             f"v{alias_version(client, cfg.model_name, CHALLENGER)}): nothing moved")
    move = promote_challenger if action == "promote" else retire_challenger
    promotion = move(client, cfg.model_name, reason.strip())
    log.warning("%s challenger %sd: champion is v%s. Reason: %s", cfg.model_name, action, promotion.version, reason)
    return asdict(promotion)
