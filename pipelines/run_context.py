"""Who runs a training step and on what: the Airflow run, its data interval and the code version.

Built from an Airflow task context by the DAG files (or from any mapping with the same keys in a test),
so the steps themselves never import Airflow.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from pipelines.config import PROJECT_ROOT, ModelConfig
from pipelines.errors import InputError
from pipelines.settings import stack_settings

# What a model version's code is: its steps, DAGs, plugins, configs and suites (not tests or docs).
CODE_PATHS = ("pipelines", "dags", "plugins", "include", "scripts", "pyproject.toml", "uv.lock")

@dataclass(frozen=True)
class RunContext:
    """Who is running and on what: the Airflow run id and the data interval [start, end)."""

    dag_id: str
    run_id: str
    start: date
    end: date
    reason: str = ""
    shuffle_labels: bool = False
    force: bool = False  # recompute every step, even when its inputs are unchanged

    @property
    def run_key(self) -> str:
        return run_key(self.run_id)

    @property
    def interval_key(self) -> str:
        return f"{self.start.isoformat()}_{self.end.isoformat()}"


def run_key(run_id: str) -> str:
    """An Airflow run id as a safe file or tag name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("_")


def as_date(value: Any) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def data_start(cfg: ModelConfig) -> date:
    """The first day of the model's data: the start of its ``default_interval``, else its ``start_date``. A
    run given no interval start begins there."""
    return cfg.default_interval[0] if cfg.default_interval is not None else cfg.start_date


def training_window_start(cfg: ModelConfig, end: date) -> date | None:
    """The first day of the training window that ends at ``end`` (``split.training_window_days``); None when
    the model learns from all its history."""
    days = cfg.split.training_window_days
    return end - timedelta(days=days) if days else None


def history_start(cfg: ModelConfig, end: date) -> date:
    """The first day of the history a training run of the model that ends at ``end`` learns from: its
    training window's first day, or the first day of its data when that is later or there is no window.
    A run on ``[history_start(cfg, end), end)`` ingests all of it as one batch, so its snapshot holds the
    history even where earlier batches end after ``end`` (the snapshot reads batches ending by ``end``)."""
    window = training_window_start(cfg, end)
    return max(data_start(cfg), window) if window else data_start(cfg)


def run_context_from(context: dict[str, Any], cfg: ModelConfig) -> RunContext:
    """Build a RunContext from an Airflow task context (any mapping with the same keys works).

    A scheduled or backfill run trains on its data interval; a run started by landed data (an Asset event of
    the land commands), on the days that were landed. Any other run (manual, triggered by another
    DAG) takes the ``data_interval_start``/``data_interval_end`` Params or conf, else the model's
    ``default_interval``, else every day from the model's ``start_date`` to the day the run was started.
    """
    params = dict(context.get("params") or {})
    dag_run = context.get("dag_run")
    run_type = getattr(dag_run, "run_type", None)
    run_type = str(getattr(run_type, "value", run_type) or "")
    landed = landed_days(context.get("triggering_asset_events")) if run_type == "asset_triggered" else None
    if run_type in ("scheduled", "backfill") and context.get("data_interval_start") is not None:
        # The schedule owns the interval; the Params' defaults only prefill the manual trigger form.
        start, end = as_date(context["data_interval_start"]), as_date(context["data_interval_end"])
    elif landed is not None:
        start, end = landed
    else:
        start, end = as_date(params.get("data_interval_start")), as_date(params.get("data_interval_end"))
        if (start is None or end is None) and cfg.default_interval is not None:
            start, end = start or data_start(cfg), end or cfg.default_interval[1]
        if start is None or end is None:
            given = as_date(context.get("data_interval_start")), as_date(context.get("data_interval_end"))
            if None not in given and given[0] < given[1]:  # a manual run's interval is empty (start == end)
                start, end = start or given[0], end or given[1]
        if start is None or end is None:
            # No interval anywhere: everything landed from the model's start date up to the day the run was
            # started (the run's own time, so a re-run covers the same days).
            started = as_date(getattr(dag_run, "run_after", None) or context.get("logical_date"))
            start = start or data_start(cfg)
            end = end or (started + timedelta(days=1) if started else None)
    if start is None or end is None or start >= end:
        raise InputError(f"data interval [{start}, {end}) is empty or unset: give data_interval_start < "
                         "data_interval_end (intervals are whole days; schedules run at most daily)")
    dag = context.get("dag")
    return RunContext(
        dag_id=getattr(dag, "dag_id", None) or context.get("dag_id", "manual"),
        run_id=str(context.get("run_id", "manual")),
        start=start,
        end=end,
        reason=str(params.get("reason") or (f"data landed for [{start}, {end})" if landed else "")),
        shuffle_labels=bool(params.get("gate_drill_shuffle_labels", False)),
        force=bool(params.get("force", False)),
    )


def landed_days(events: Any) -> tuple[date, date] | None:
    """[first, last + 1) of the days the triggering Asset events say were landed (their ``start``/``end``
    extras, written by the land commands); None when no event says."""
    days = [(as_date(event.extra.get("start")), as_date(event.extra.get("end")))
            for batch in (events or {}).values() for event in batch
            if isinstance(getattr(event, "extra", None), dict) and event.extra.get("start") and event.extra.get("end")]
    if not days:
        return None
    return min(start for start, _ in days), max(end for _, end in days)


def git_commit() -> str:
    """The project's code version, marked ``-dirty`` when the code or configs differ from the commit:
    changed tracked files, or files git does not track yet (a new model config, suite or module)."""
    try:
        head = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"],
                              check=True, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=all",
                                "--", *CODE_PATHS],
                               check=True, capture_output=True, text=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return stack_settings().git_commit


