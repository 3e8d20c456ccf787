"""A model's monitoring timeline for the operator's pages: one row per monitored window from the monitoring
store, newest first: drift share, the key features' drift against their limits, prediction drift, realized
metrics against their floors and ceilings, the signals raised, the decision and its reason, the champion
changing between windows, the retrain it triggered (with what became of it), and the window's Evidently
report."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipelines.timeline import Retrain


@dataclass(frozen=True)
class Window:
    id: int
    start: date
    end: date
    rows: int
    model_version: str | None
    drift_share: float | None
    dataset_drift: bool | None
    prediction_drift: float | None
    realized: dict[str, float]  # the realized metrics the window could measure (labels arrived)
    labelled_rows: int
    data_valid: bool | None
    decision: str
    reason: str
    triggered_run_id: str | None
    has_report: bool
    key_feature_drift: dict[str, float] = field(default_factory=dict)  # key feature -> drift score
    signals: list[str] = field(default_factory=list)  # the policy's signals the window raised
    flagged: frozenset[tuple[str, str]] = frozenset()  # (signal, the column or metric it is about)
    champion_change: str | None = None  # "v3 -> v4" when the version served differs from the window before
    retrain_outcome: str | None = None  # what the triggered retrain made of it (filled in by the page)
    metric: str | None = None  # the model's primary metric, and its value...
    estimated: float | None = None  # ...estimated from the scores before the labels land
    baseline: float | None = None  # ...on the champion's holdout
    drift_share_limit: float | None = None  # the dataset-drift limit the window was judged with


@dataclass(frozen=True)
class Bounds:
    """What the timeline judges against: the key features' drift limits, realized floors and ceilings."""

    key_features: dict[str, float]
    floors: dict[str, float]
    ceilings: dict[str, float]
    drift_share: float | None = None  # the config's dataset-drift limit, for a window stored without its own

    @classmethod
    def of(cls, cfg) -> Bounds:
        return cls(dict(cfg.monitoring.drift.key_features), cfg.realized_floors, cfg.realized_ceilings,
                   cfg.monitoring.drift.drift_share)


def windows(engine, model_name: str, bounds: Bounds | None = None, limit: int = 400) -> list[Window]:
    """The model's latest ``limit`` windows (a year of daily ones and more), newest first."""
    return windows_of(rows(engine, model_name, limit), bounds)


def rows(engine, model_name: str, limit: int = 400) -> list[dict[str, Any]]:
    """The monitoring store's rows of the model's latest ``limit`` windows, newest first."""
    from pipelines.monitoring_store import load_windows

    with engine.connect() as connection:
        return load_windows(connection, model_name, latest=limit)


def windows_of(stored: list[dict[str, Any]], bounds: Bounds | None = None) -> list[Window]:
    """The windows of the store's rows (newest first), each marked where the champion changed."""
    bounds = bounds or Bounds({}, {}, {})
    timeline = [_window(row, bounds) for row in stored]
    marked = []
    for newer, older in zip(timeline, [*timeline[1:], None][:len(timeline)], strict=True):
        if older and older.model_version and newer.model_version and older.model_version != newer.model_version:
            newer = replace(newer, champion_change=f"v{older.model_version} → v{newer.model_version}")
        marked.append(newer)
    return marked


def _window(row: dict[str, Any], bounds: Bounds) -> Window:
    details = json.loads(row.get("details") or "{}")
    realized = {row["metric"]: row["realized"]} if row.get("metric") and row.get("realized") is not None else {}
    realized.update({k: v for k, v in (details.get("realized") or {}).items() if isinstance(v, int | float)})
    scores = details.get("drift_scores") or {}
    signals = [s for s in details.get("signals") or [] if isinstance(s, dict) and "name" in s]
    return Window(row["id"], row["window_start"], row["window_end"], row["rows"], row["model_version"],
                  row["drift_share"], row["dataset_drift"], row["prediction_drift"], realized,
                  row["labelled_rows"] or 0, row["data_valid"], row["decision"], row["reason"] or "",
                  row["triggered_run_id"], bool(row["report_path"]),
                  key_feature_drift={c: scores[c] for c in bounds.key_features if c in scores},
                  signals=[s["name"] for s in signals],
                  flagged=frozenset((s["name"], s["subject"]) for s in signals if s.get("subject")),
                  metric=row.get("metric"), estimated=row.get("estimated"), baseline=row.get("baseline"),
                  drift_share_limit=details.get("drift_share_limit"))


def retrains(timeline: list[Window], outcomes: dict, said: dict[str, str]) -> list[Retrain]:
    """Each retrain a window started, oldest first, with what it made (``training_outcomes``) when known and
    what the run says of itself (``retrain_status``) as its state."""
    from pipelines.timeline import Retrain

    started = []
    for w in reversed(timeline):
        if w.triggered_run_id:
            started.append(Retrain.started(w.end, w.reason, w.triggered_run_id, said.get(w.triggered_run_id, ""),
                                           outcomes.get(w.triggered_run_id)))
    return started


NO_VERDICT = "no verdict yet: queued or running"


def retrain_status(run_ids: list[str], outcomes: dict, verdicts: dict) -> dict[str, str]:
    """One line per retrain run: its verdict (which step decided and why, ``training_outcomes.RunVerdict``),
    else what MLflow recorded of it, else that it has not decided yet (queued or running)."""
    said = {}
    for run_id in run_ids:
        verdict, outcome = verdicts.get(run_id), outcomes.get(run_id)
        said[run_id] = verdict.line if verdict else outcome.summary() if outcome else NO_VERDICT
    return said


DRIFT_SIGNALS = {"dataset_drift", "key_feature_drift", "prediction_drift"}
PERFORMANCE_SIGNALS = {"performance", "estimated_performance"}


def state_of(latest: Window | None, has_version: bool) -> tuple[str, str]:
    """A model's state at a glance, from its newest monitored window: ok, drifting, degraded, invalid data,
    retraining, no version yet (or not monitored yet), and why."""
    if not has_version:
        return "no version yet", "no version registered: train it"
    if latest is None:
        return "not monitored yet", "no window has been monitored"
    why = f"{latest.start} → {latest.end}: {latest.reason}"
    if latest.decision == "retrain":
        return "retraining", why
    if latest.decision == "invalid_data":
        return "invalid data", why
    if PERFORMANCE_SIGNALS & set(latest.signals):
        return "degraded", why
    if DRIFT_SIGNALS & set(latest.signals):
        return "drifting", why
    return "ok", why


def report_path(engine, model_name: str, window_id: int, reports_root: Path) -> Path | None:
    """The window's Evidently report, only when it lies under this model's reports folder (the store's path
    is never followed elsewhere)."""
    import sqlalchemy as sa

    from pipelines.monitoring_store import WINDOWS

    with engine.connect() as connection:
        stored = connection.execute(sa.select(WINDOWS.c.report_path).where(
            (WINDOWS.c.id == window_id) & (WINDOWS.c.model_name == model_name))).scalar()
    if not stored:
        return None
    path, root = Path(stored).resolve(), reports_root.resolve()
    return path if path.is_relative_to(root) and path.is_file() else None
