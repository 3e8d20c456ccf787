"""Register and promote with MLflow Model Registry aliases (stages are deprecated and never used).

Aliases: ``challenger`` marks a version on its way in, ``champion`` is served, ``previous`` is the
champion it replaced (for rollback).
"""

from __future__ import annotations

from dataclasses import dataclass

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"


@dataclass(frozen=True)
class Promotion:
    model_name: str
    version: str
    previous_version: str | None
    alias: str = CHAMPION
    # The aliases as they were before the move, so a deploy that fails can put them back.
    before: dict[str, str | None] | None = None
    rollout: str = "direct"


class AliasMoveError(ValueError):
    """An operator asked for an alias move that cannot be made (nothing to roll back to, no challenger...)."""


def aliases(client, model_name: str) -> dict[str, str | None]:
    return {a: alias_version(client, model_name, a) for a in (CHAMPION, PREVIOUS, CHALLENGER)}


def restore_aliases(client, model_name: str, before: dict[str, str | None]) -> None:
    """Put ``champion``/``previous``/``challenger`` back as they were (champion first: it is what is served)."""
    for alias in (CHAMPION, PREVIOUS, CHALLENGER):
        version = before.get(alias)
        if version is None:
            if alias_version(client, model_name, alias) is not None:
                client.delete_registered_model_alias(model_name, alias)
        else:
            client.set_registered_model_alias(model_name, alias, version)


def alias_version(client, model_name: str, alias: str) -> str | None:
    """The version behind ``alias``, None when the model or alias does not exist. Any other error (store
    down, permission) propagates: "cannot tell" must never be read as "no champion"."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException as exc:
        if is_missing(exc):
            return None
        if is_denied(exc) and not _model_exists(client, model_name):
            return None  # MLflow's basic-auth app denies the alias of a model that does not exist yet
        raise


# The largest version the registry's store can be asked for: past int64 MLflow's server fails with a 500 ("Python
# int too large to convert to SQLite INTEGER"), which its client retries for minutes, instead of "not found".
MAX_VERSION = 2**63 - 1
MAX_NAME_LENGTH = 256  # the registry's name columns (String(256))


def is_version_number(text: str) -> bool:
    """Whether ``text`` can name a version in the registry: ASCII digits within int64. ``str.isdigit`` alone also
    takes ``²`` or ``٣``, which MLflow's server refuses as "must be an integer" (a 400, not a "not found")."""
    return 0 < len(text) <= len(str(MAX_VERSION)) and text.isascii() and text.isdigit() and int(text) <= MAX_VERSION


def is_model_name(text: str) -> bool:
    """Whether MLflow's registry accepts ``text`` as a model name (``mlflow.utils.validation._validate_model_name``:
    not blank, no ``/`` or ``:``, not ``.`` or ``..``-led), within the registry's name column."""
    return (bool(text.strip()) and len(text) <= MAX_NAME_LENGTH and not any(c in text for c in "/:")
            and text != "." and not text.startswith(".."))


def is_missing(exc: Exception) -> bool:
    """Whether an MLflow error says the model, version or alias does not exist (the stores word it two ways)."""
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and (
        exc.error_code == "RESOURCE_DOES_NOT_EXIST"
        or (exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc)))


def is_denied(exc: Exception) -> bool:
    """Whether an MLflow error says the user may not do this (MLflow's basic-auth app)."""
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code == "PERMISSION_DENIED"


def _model_exists(client, model_name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(model_name)
        return True
    except MlflowException as exc:
        if is_missing(exc):
            return False
        raise


def register_version(client, model_name: str, model_uri: str, tags: dict[str, str],
                     description: str = "") -> str:
    """Register ``model_uri`` once per Airflow run: a retried task finds and reuses its own version."""
    import mlflow

    run_filter = tags.get("airflow_run_id")
    if run_filter:
        for existing in client.search_model_versions(f"name='{model_name}'"):
            if existing.tags.get("airflow_run_id") == run_filter and existing.tags.get(
                "airflow_dag_id"
            ) == tags.get("airflow_dag_id"):
                return str(existing.version)
    # mlflow.register_model resolves MLflow 3 logged-model URIs (models:/m-...) on every store, local or
    # server, and waits until the version is READY.
    version = mlflow.register_model(model_uri, model_name, tags=tags)
    if description:
        client.update_model_version(model_name, version.version, description=description)
    return str(version.version)


def promote_version(client, model_name: str, version: str) -> Promotion:
    """``version`` -> champion; the former champion keeps ``previous``. Each alias move is one atomic write,
    ordered so that a move cut short (the registry gone between two writes) leaves ``champion`` where it was
    and no alias it did not have before, and a retry completes it: ``previous`` first (it then names the
    champion still served), ``champion`` last. A staged challenger that becomes champion stops being one."""
    before = aliases(client, model_name)
    current = before[CHAMPION]
    if current == version:
        return Promotion(model_name, version, before[PREVIOUS], before=before)
    if current is not None:
        client.set_registered_model_alias(model_name, PREVIOUS, current)
    client.set_registered_model_alias(model_name, CHAMPION, version)
    if before[CHALLENGER] == version:
        client.delete_registered_model_alias(model_name, CHALLENGER)
    return Promotion(model_name, version, current, before=before)


def stage_challenger(client, model_name: str, version: str, rollout: str, canary_share: float) -> Promotion:
    """Make ``version`` the ``challenger``: the service scores it in shadow, or answers ``canary_share`` of
    the traffic with it, as its version tags say. ``champion`` does not move until it is promoted."""
    if rollout not in ("shadow", "canary"):
        raise ValueError(f"a challenger rolls out in shadow or canary, not {rollout!r}")
    before = aliases(client, model_name)
    client.set_model_version_tag(model_name, version, "rollout", rollout)
    client.set_model_version_tag(model_name, version, "canary_share", f"{canary_share:g}")
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    return Promotion(model_name, version, before[CHAMPION], alias=CHALLENGER, before=before, rollout=rollout)


def promote_challenger(client, model_name: str, reason: str) -> Promotion:
    """The operator's verdict on a shadow or canary rollout: ``challenger`` becomes ``champion``."""
    version = alias_version(client, model_name, CHALLENGER)
    if version is None:
        raise AliasMoveError(f"{model_name} has no '{CHALLENGER}' version to promote")
    client.set_model_version_tag(model_name, version, "promotion_reason", reason[:4900])
    return promote_version(client, model_name, version)


def retire_challenger(client, model_name: str, reason: str) -> Promotion:
    """The other verdict: the challenger stops being scored; ``champion`` is untouched."""
    before = aliases(client, model_name)
    version = before[CHALLENGER]
    if version is None:
        raise AliasMoveError(f"{model_name} has no '{CHALLENGER}' version to retire")
    client.set_model_version_tag(model_name, version, "retired_reason", reason[:4900])
    client.delete_registered_model_alias(model_name, CHALLENGER)
    return Promotion(model_name, before[CHAMPION] or "", before[PREVIOUS], before=before, rollout="retired")


def rollback(client, model_name: str, reason: str, to_version: str | None = None) -> Promotion:
    """Move ``champion`` back to ``previous`` (or to ``to_version``). The demoted version becomes
    ``previous``, so a rollback can itself be undone; both versions record why."""
    before = aliases(client, model_name)
    current = before[CHAMPION]
    target = str(to_version) if to_version else before[PREVIOUS]
    if target is None:
        raise AliasMoveError(f"{model_name} has no '{PREVIOUS}' version to roll back to: name a version")
    try:
        client.get_model_version(model_name, target)
    except Exception as exc:
        raise AliasMoveError(f"{model_name} version {target} does not exist") from exc
    if target == current:
        raise AliasMoveError(f"{model_name} version {target} is already the champion")
    client.set_registered_model_alias(model_name, CHAMPION, target)
    if current is not None:
        client.set_registered_model_alias(model_name, PREVIOUS, current)
        client.set_model_version_tag(model_name, current, "demoted_reason", reason[:4900])
    client.set_model_version_tag(model_name, target, "rollback_reason", reason[:4900])
    client.set_model_version_tag(model_name, target, "rolled_back_from", str(current))
    return Promotion(model_name, target, current, before=before)


def search_quoted(value: str) -> str:
    """A value inside a quoted MLflow search filter."""
    return value.replace("'", "\\'")
