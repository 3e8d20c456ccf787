"""A shadow or canary challenger against the champion on labelled live rows, window by window.

Pure steps (frames in, numbers out) and the comparison's state: per monitoring window, one *cohort* summary
(rows, mean and sum of squared deviations of the per-row loss differences, ``pipelines.sequential_tests``),
keyed by the window and stored per (champion version, challenger version, feed, metric). Re-judging a window
(a re-run, or its late labels) replaces its cohort, so no row is counted twice; the confidence sequence is
rebuilt by adding the cohorts up (:meth:`ChallengerCohorts.state`). A new champion or challenger version
starts a new comparison (a new file).

Rows are joined to their outcome on (request id, row index); only rows whose label has landed count.

- **shadow**: the challenger scored every request beside the champion; its rows are paired with the
  champion's on (request id, row index), so ``d = champion loss - challenger loss`` per row.
- **canary**: each request was answered by one model; the rows are the champion's and the canary's together,
  with the served flag, and the inverse-propensity-weighted difference is used, with the share of the
  window's requests the canary actually answered as its propensity (see :func:`served_share`), over the
  span it was answering (:func:`canary_span`).

Each model's logged scores are read against its own classes (a multiclass model logs its predicted class's
index, and a retrain may have added or lost a class).

The unit of the confidence sequence is the *request*: the canary's assignment and the shadow's context are
drawn per request, so a request's rows are not independent draws. Each request's labelled rows are averaged
into one difference (``sequential_tests.unit_means``) before the cohort is summarised, and the cohort's
"rows" count requests; a request of one row (the usual case) is its own unit.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.sequential_tests import (
    SequentialState,
    canary_differences,
    cohort_summary,
    row_losses,
    shadow_differences,
    unit_means,
)

KEY = ["request_id", "row_index"]
COHORTS_VERSION = 1


def shadow_cohort(cfg, metric: str, champion: pd.DataFrame, challenger: pd.DataFrame, labels: pd.DataFrame,
                  classes: tuple[list[str] | None, list[str] | None]) -> tuple[np.ndarray, int]:
    """Per-request differences of the shadow rows whose label has landed, and how many paired rows still wait
    for theirs. ``champion`` and ``challenger``: request_id, row_index, prediction; ``classes``: the
    champion's and the challenger's (each model's logged scores read against its own)."""
    from pipelines.monitoring import join_labels

    target = cfg.features.target
    paired = champion[[*KEY, "prediction"]].drop_duplicates(KEY, keep="last").merge(
        challenger[[*KEY, "prediction"]].drop_duplicates(KEY, keep="last"), on=KEY, suffixes=("", "_challenger"))
    labelled, pending = join_labels(paired, labels, target)
    if labelled.empty:
        return np.empty(0), pending
    task = cfg.task_type
    champion_truth, challenger_truth = _truths(task, labelled[target], classes)
    differences = shadow_differences(
        row_losses(metric, champion_truth, labelled["prediction"].to_numpy(float)),
        row_losses(metric, challenger_truth, labelled["prediction_challenger"].to_numpy(float)))
    return unit_means(differences, labelled["request_id"].to_numpy()), pending


def _truths(task, outcomes: pd.Series, classes) -> tuple[np.ndarray, np.ndarray]:
    """The outcomes as each model's per-row losses take them, each against its own classes (a challenger
    version without a classes tag is read against the champion's)."""
    champion_classes, challenger_classes = classes or (None, None)
    return (task.loss_truth(outcomes, champion_classes),
            task.loss_truth(outcomes, challenger_classes or champion_classes))


def served_share(champion: pd.DataFrame, challenger: pd.DataFrame) -> float:
    """The share of the logged requests that the canary answered: distinct request ids on its route over
    distinct request ids on either route, every logged request counted, labelled or not.

    This, not the configured ``canary_share``, is the propensity the weights use: the service's share can be
    overridden (``MLOPS_SERVING_CANARY_SHARE``), and the log holds what was served. The assignment is a
    sticky hash of the request id, so the share of the requests it sent to the canary estimates its
    assignment probability within the sampling error of a share over that many requests (about 0.006 at 0.3
    over 6,000 requests). The share the service reports (``/health``) is not used: it is the setting at the
    instant it is asked, not what answered. One share holds only where the canary was live at a steady share:
    :func:`canary_span` keeps the rows served while it was."""
    answered = set(challenger["request_id"].astype(str))
    every = answered | set(champion["request_id"].astype(str))
    return len(answered) / len(every) if every else math.nan


def canary_span(champion: pd.DataFrame, challenger: pd.DataFrame) -> pd.DataFrame:
    """The champion's rows served while the canary was answering (from its first to its last row served in
    the window): a canary staged partway through a window (or retired before its end) leaves the champion's
    rows outside its span out, since traffic there was never split and its loss level may differ."""
    if "served_at" not in champion.columns or "served_at" not in challenger.columns or challenger.empty:
        return champion
    first, last = challenger["served_at"].min(), challenger["served_at"].max()
    return champion[(champion["served_at"] >= first) & (champion["served_at"] <= last)]


def canary_cohort(cfg, metric: str, champion: pd.DataFrame, challenger: pd.DataFrame, labels: pd.DataFrame,
                  classes: tuple[list[str] | None, list[str] | None]) -> tuple[np.ndarray, int]:
    """Per-request weighted differences of the canary rows (the champion's and the challenger's, each answered
    by one of them, within :func:`canary_span`) whose label has landed, weighted by :func:`served_share`, and
    how many rows still wait for their label. A window in which one model answered every request holds no
    comparison: no differences. ``classes``: the champion's and the challenger's."""
    from pipelines.monitoring import join_labels

    target = cfg.features.target
    champion = canary_span(champion, challenger)
    rows = pd.concat([champion[[*KEY, "prediction"]].assign(served=False),
                      challenger[[*KEY, "prediction"]].assign(served=True)], ignore_index=True)
    labelled, pending = join_labels(rows.drop_duplicates(KEY, keep="last"), labels, target)
    share = served_share(champion, challenger)
    if labelled.empty or not 0 < share < 1:
        return np.empty(0), pending
    task = cfg.task_type
    served = labelled["served"].to_numpy(bool)
    champion_truth, challenger_truth = _truths(task, labelled[target], classes)
    losses = row_losses(metric, np.where(served, challenger_truth, champion_truth),
                        labelled["prediction"].to_numpy(float))
    differences = canary_differences(losses, served, share)
    return unit_means(differences, labelled["request_id"].to_numpy()), pending


@dataclass
class Cohort:
    window_start: str
    window_end: str
    rows: int
    mean: float
    sum_squares: float
    pending: int = 0


@dataclass
class ChallengerCohorts:
    """The cohorts of one comparison: champion version against challenger version on one feed and metric."""

    champion_version: str
    challenger_version: str
    feed: str
    metric: str
    cohorts: dict[str, Cohort] = field(default_factory=dict)  # window key -> cohort

    @staticmethod
    def path(folder: Path, champion_version: str, challenger_version: str, feed: str, metric: str) -> Path:
        return folder / f"v{champion_version}_v{challenger_version}_{feed}_{metric}.json"

    @classmethod
    def load(cls, folder: Path, champion_version: str, challenger_version: str, feed: str,
             metric: str) -> ChallengerCohorts:
        path = cls.path(folder, champion_version, challenger_version, feed, metric)
        if not path.is_file():
            return cls(str(champion_version), str(challenger_version), feed, metric)
        data = json.loads(path.read_text())
        if data.get("version") != COHORTS_VERSION:
            raise ValueError(f"challenger cohorts {path} have version {data.get('version')}, not {COHORTS_VERSION}")
        return cls(data["champion_version"], data["challenger_version"], data["feed"], data["metric"],
                   {k: Cohort(**v) for k, v in data["cohorts"].items()})

    def save(self, folder: Path) -> Path:
        from pipelines.storage import write_text_atomic

        data = {"version": COHORTS_VERSION, **asdict(self)}
        path = self.path(folder, self.champion_version, self.challenger_version, self.feed, self.metric)
        return write_text_atomic(json.dumps(data, sort_keys=True, indent=1), path)

    def put(self, window_key: str, start: str, end: str, differences: np.ndarray, pending: int) -> Cohort:
        """Set (replace) the cohort of one window."""
        rows, mean, squares = cohort_summary(differences)
        cohort = Cohort(start, end, rows, mean, squares, int(pending))
        self.cohorts[window_key] = cohort
        return cohort

    def state(self, policy, framing: str) -> SequentialState:
        state = SequentialState(self.feed, self.metric, alpha=policy.alpha, framing=framing, margin=policy.margin,
                                min_rows=policy.min_rows)
        for key in sorted(self.cohorts):
            cohort = self.cohorts[key]
            state.add_summary(cohort.rows, cohort.mean, cohort.sum_squares)
        return state

    @property
    def pending(self) -> int:
        return sum(c.pending for c in self.cohorts.values())


def comparison_status(cohorts: ChallengerCohorts, policy, framing: str) -> dict[str, Any]:
    """The comparison as a small JSON-able dict: what the monitoring store, the operator page and the CLI show."""
    result = cohorts.state(policy, framing).result(effect=policy.effect)
    lower, upper = result.interval
    return {"champion_version": cohorts.champion_version, "challenger_version": cohorts.challenger_version,
            "feed": cohorts.feed, "metric": cohorts.metric, "rows": result.rows, "pending": cohorts.pending,
            "windows": len(cohorts.cohorts),
            "mean": _finite(result.mean_difference), "interval": [_finite(lower), _finite(upper)],
            "threshold": result.threshold, "alpha": result.alpha, "min_rows": result.min_rows,
            "decision": result.decision, "rows_needed": result.rows_needed, "summary": result.summary()}


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def describe_status(status: dict[str, Any] | None) -> str:
    """One line for a person: labelled requests (the sequence's unit), the interval, the decision when reached,
    the requests still needed."""
    if not status:
        return "no comparison yet"
    if status.get("error"):
        return f"not compared: {status['error']}"
    lower, upper = status.get("interval") or [None, None]
    interval = "no interval yet" if lower is None or upper is None else \
        f"improvement {status.get('mean') or 0:+.4g}, {1 - status['alpha']:.0%} interval [{lower:+.4g}, {upper:+.4g}]"
    text = f"{status['metric']} ({status['feed']}): {status['rows']} labelled requests, {interval}"
    if status["decision"] != "continue":
        text += f"; decision: {status['decision']}"
    elif status.get("rows_needed") is not None:
        text += f"; about {status['rows_needed']} more labelled requests needed"
    else:
        text += "; no decision yet"
    return text
