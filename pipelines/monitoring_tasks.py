"""The monitoring DAG's steps at the I/O edge: read the prediction log, the landed labels and the champion's
snapshot; call the pure steps of ``pipelines.monitoring``; write the time series, reports and alerts.

Each function takes the typed config, a ``MonitorContext`` and the state paths, and returns a small
JSON-able dict (XCom). Heavy imports stay inside the functions.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from pipelines.config import ModelConfig, StatePaths
from pipelines.run_context import as_date, history_start, run_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorContext:
    dag_id: str
    run_id: str
    start: date
    end: date
    reason: str = ""

    @property
    def window_key(self) -> str:
        return f"{self.start.isoformat()}_{self.end.isoformat()}"

    @property
    def retrain_run_id(self) -> str:
        return f"retrain__{self.dag_id}__{self.window_key}"


def monitor_context_from(context: dict[str, Any], cfg: ModelConfig) -> MonitorContext:
    """A scheduled run judges the ``window_days`` that end with its data interval (a trailing window); a
    manual one the ``window_start``/``window_end`` Params, or the ``window_days`` before ``window_end`` or
    its logical date."""
    params = dict(context.get("params") or {})
    dag_run = context.get("dag_run")
    run_type = getattr(dag_run, "run_type", None)
    run_type = str(getattr(run_type, "value", run_type) or "")
    start, end = as_date(params.get("window_start")), as_date(params.get("window_end"))
    if run_type in ("scheduled", "backfill") and context.get("data_interval_end") is not None:
        start, end = None, as_date(context["data_interval_end"])
    if end is None:
        end = as_date(context.get("data_interval_end") or context.get("logical_date")) or datetime.now(UTC).date()
    if start is None:
        start = end - timedelta(days=cfg.monitoring.window_days)
    if start >= end:
        raise ValueError(f"monitoring window [{start}, {end}) is empty: give window_start < window_end")
    dag = context.get("dag")
    return MonitorContext(getattr(dag, "dag_id", None) or context.get("dag_id", "manual"),
                          str(context.get("run_id", "manual")), start, end, str(params.get("reason") or ""))


def day_start(day: date) -> datetime:
    """The first instant (UTC) of ``day``: where a window of days starts and ends in the prediction log."""
    return datetime.combine(day, time(0), tzinfo=UTC)


def monitoring_dir(cfg: ModelConfig, state: StatePaths) -> Path:
    return state.monitoring(cfg.name)


# champion and reference ----------------------------------------------------------------------------------
def champion_version(cfg: ModelConfig, state: StatePaths):
    import mlflow

    from pipelines.registry import CHAMPION
    from pipelines.tracking import configure_mlflow

    configure_mlflow(state)
    try:
        return mlflow.MlflowClient().get_model_version_by_alias(cfg.model_name, CHAMPION)
    except mlflow.exceptions.MlflowException as exc:
        raise LookupError(f"{cfg.model_name} has no champion yet: nothing to monitor") from exc


def snapshot_path(state: StatePaths, tags: dict[str, str]) -> Path:
    """The champion's exact training snapshot, found by its DVC data hash: the object in the DVC remote
    (or, when the remote is not a local folder, fetched at the recorded git revision of the DVC repo)."""
    md5 = tags.get("data_hash") or ""
    local = state.dvc_remote / "files" / "md5" / md5[:2] / md5[2:]
    if len(md5) == 32 and local.is_file():
        return local
    import dvc.api

    from pipelines.storage import write_atomic

    target = monitoring_dir_for_hash(state, md5)
    if not target.is_file():
        def copy(tmp: Path) -> None:
            source = dvc.api.open(tags["data_path"], repo=str(state.dvc_repo), rev=tags.get("data_rev"), mode="rb")
            with source as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out)

        write_atomic(target, copy)
    return target


def monitoring_dir_for_hash(state: StatePaths, md5: str) -> Path:
    return state.monitoring_snapshots / f"{md5}.parquet"


def reference_profile(cfg: ModelConfig, state: StatePaths, version) -> Path:
    """The reference profile of a champion version, built once (evidently#506) and cached beside the
    monitoring state: per-column value counts of its training snapshot, and of its own scores on it."""
    import pandas as pd

    from pipelines.drift import ColumnProfile, ReferenceProfile, profile_reference, value_counts
    from pipelines.monitoring import PREDICTION, prediction_values
    from pipelines.task_types import model_classes
    from pipelines.tracking import load_sklearn_model
    from pipelines.training import model_inputs

    path = monitoring_dir(cfg, state) / "reference" / f"v{version.version}_{version.tags.get('data_hash')}.parquet"
    if path.is_file():
        return path
    snapshot = pd.read_parquet(snapshot_path(state, dict(version.tags)))
    profile = profile_reference(snapshot, cfg.features.numeric, cfg.features.categorical)
    model = load_sklearn_model(f"models:/{cfg.model_name}/{version.version}")
    task = cfg.task_type
    scores = task.scores(task.output(model, model_inputs(snapshot, cfg.features)), model_classes(model))
    kind = task.prediction_kind
    values, counts = value_counts(prediction_values(scores, kind), kind)
    profile = ReferenceProfile({**profile.columns, PREDICTION: ColumnProfile(PREDICTION, kind, values, counts)},
                               profile.rows)
    profile.save(path)
    log.info("reference profile of %s v%s: %d rows of snapshot %s -> %s", cfg.model_name, version.version,
             len(snapshot), version.tags.get("data_hash"), path)
    return path


def calibration_for(cfg: ModelConfig, snapshot, holdout, model, threshold: float | None = None):
    """The version's monitoring calibration (``pipelines.calibration.calibrate``): ``model`` scored on
    its training ``snapshot`` (the reference) and on its ``holdout``, judged at its decision ``threshold``."""
    from pipelines.calibration import calibrate
    from pipelines.task_types import model_classes
    from pipelines.training import model_inputs

    task = cfg.task_type
    classes = model_classes(model)

    def scores(frame):
        return task.scores(task.output(model, model_inputs(frame, cfg.features)), classes)

    importance = feature_importance(cfg, model, holdout) if task.estimate_reads_features and len(holdout) else None
    return calibrate(cfg, snapshot, scores(snapshot), task.labels(holdout[cfg.features.target]), scores(holdout),
                     classes, threshold, holdout=holdout, importance=importance)


IMPORTANCE_ROWS = 3000


def feature_importance(cfg: ModelConfig, model, holdout, seed: int = 0) -> dict[str, float]:
    """Each feature's permutation importance for ``model`` on (up to ``IMPORTANCE_ROWS`` of) the holdout: how
    much the model's own score (R² for a regressor, accuracy for a classifier) drops when the feature's values
    are shuffled."""
    from sklearn.inspection import permutation_importance

    from pipelines.training import model_inputs

    task = cfg.task_type
    sample = holdout.sample(min(len(holdout), IMPORTANCE_ROWS), random_state=seed)
    inputs = model_inputs(sample, cfg.features)
    found = permutation_importance(model, inputs, task.labels(sample[cfg.features.target]), n_repeats=2,
                                   random_state=seed)
    return {column: round(float(value), 6) for column, value in zip(inputs.columns, found.importances_mean,
                                                                    strict=True)}


LIMITS_ARTIFACT = "monitoring/limits.json"


def champion_limits(cfg: ModelConfig, state: StatePaths, version):
    """The limits a window of ``version`` is judged with: its calibration (logged with the version at
    training), with the config's overrides. A version without one, or whose calibration was made for another
    monitoring window than the config's, is calibrated now from its snapshot (and logged to its run)."""
    import mlflow

    from pipelines.monitoring_limits import Calibration, resolve
    from pipelines.storage import write_text_atomic
    from pipelines.tracking import configure_mlflow

    window_days = cfg.monitoring.window_days
    name = f"v{version.version}_{version.tags.get('data_hash')}_{window_days}d_limits.json"
    cached = monitoring_dir(cfg, state) / "reference" / name
    if not cached.is_file():
        configure_mlflow(state)
        try:
            calibration = Calibration.from_dict(json.loads(mlflow.artifacts.load_text(
                f"runs:/{version.run_id}/{LIMITS_ARTIFACT}")))
        except Exception:  # noqa: BLE001 - a version registered without a calibration
            calibration = None
        if calibration is None or calibration.window_days != window_days:
            calibration = _calibrate_version(cfg, state, version)
        write_text_atomic(json.dumps(calibration.as_dict()), cached)
    return resolve(cfg, Calibration.from_dict(json.loads(cached.read_text())))


def _calibrate_version(cfg: ModelConfig, state: StatePaths, version):
    import mlflow
    import pandas as pd

    from pipelines.tracking import load_sklearn_model

    snapshot = pd.read_parquet(snapshot_path(state, dict(version.tags)))
    holdout = _holdout_of(cfg, snapshot, version.tags.get("holdout_start"))
    model = load_sklearn_model(f"models:/{cfg.model_name}/{version.version}")
    threshold = float(version.tags["threshold"]) if version.tags.get("threshold") else None
    calibration = calibration_for(cfg, snapshot, holdout, model, threshold)
    artifact = LIMITS_ARTIFACT.replace(".json", f"_{cfg.monitoring.window_days}d.json")
    try:
        mlflow.MlflowClient().log_text(version.run_id, json.dumps(calibration.as_dict()), artifact)
    except mlflow.exceptions.MlflowException:
        log.exception("could not log the calibration of %s v%s", cfg.model_name, version.version)
    log.info("calibrated %s v%s for %d-day windows: %s", cfg.model_name, version.version,
             cfg.monitoring.window_days, calibration.tags())
    return calibration


def _holdout_of(cfg: ModelConfig, snapshot, holdout_start: str | None):
    """The version's holdout rows within its snapshot: from its holdout start on (by event time), else the
    last fifth of the rows."""
    import pandas as pd

    if holdout_start and cfg.features.event_time in snapshot.columns:
        times = pd.to_datetime(snapshot[cfg.features.event_time], utc=True)
        return snapshot[times >= pd.Timestamp(holdout_start, tz="UTC")]
    return snapshot.iloc[len(snapshot) * 4 // 5:]


# reading the window ---------------------------------------------------------------------------------------
def read_window(cfg: ModelConfig, start: date, end: date, url: str | None = None, chunk_rows: int = 200_000):
    """The rows the champion answered (canary and shadow rows are the challenger's) for [start, end) of
    event time (serving time for rows sent without one), in frames of about ``chunk_rows`` rows: features,
    prediction, request id, row index, model version. Streamed from the log segment by segment, so a window's
    size is bounded by disk, not memory. Text columns come as categoricals."""
    from pipelines.prediction_store import read_segments, reader

    columns = ["request_id", "row_index", "model_version", *cfg.features.numeric, *cfg.features.categorical,
               "prediction"]
    pending, rows = [], 0
    for table in read_segments(reader(url), cfg.model_name, day_start(start), day_start(end), route="champion"):
        pending.append(_select(table, columns, cfg.features.numeric))
        rows += table.num_rows
        if rows >= chunk_rows:
            yield _frame(pending)
            pending, rows = [], 0
    if pending:
        yield _frame(pending)


def _select(table, columns: list[str], numeric: list[str]):
    """The window's columns of one segment; a feature the segment lacks (logged before the model used it) as
    missing values."""
    import pyarrow as pa

    present = set(table.column_names)
    return pa.table({c: table[c] if c in present else pa.nulls(table.num_rows, pa.float64() if c in numeric
                                                                 else pa.string()) for c in columns})


def _frame(tables):
    import pyarrow as pa

    return pa.concat_tables(tables, promote_options="permissive").to_pandas()


def scan_window(cfg: ModelConfig, start: date, end: date, sample_rows: int | None = None):
    from pipelines.monitoring import scan_chunks

    return scan_chunks(cfg, read_window(cfg, start, end), sample_rows or cfg.monitoring.report_sample_rows)


def read_labels(cfg: ModelConfig, state: StatePaths, start: date, end: date):
    """Outcomes landed as ``landing/<model>/<labels_feed>/YYYY-MM-DD.csv|parquet`` for days in [start, end):
    request_id, row_index and the target column."""
    import pandas as pd

    folder = state.landing(cfg.name, cfg.monitoring.labels_feed)
    target = cfg.features.target
    frames = []
    for path in sorted(folder.glob("*.*")) if folder.is_dir() else []:
        try:
            day = date.fromisoformat(path.name.split(".")[0])
        except ValueError:
            continue
        if not start <= day < end:
            continue
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"request_id": str})
        missing = {"request_id", "row_index", target} - set(frame.columns)
        if missing:
            raise ValueError(f"labels file {path} lacks columns {sorted(missing)}: it needs request_id, row_index "
                             f"and {target}")
        frames.append(frame[["request_id", "row_index", target]])
    if not frames:
        return pd.DataFrame({"request_id": pd.Series(dtype=str), "row_index": pd.Series(dtype="int64"),
                             target: pd.Series(dtype=object)})
    return pd.concat(frames, ignore_index=True)


# 1. validate the window's new data ------------------------------------------------------------------------
def validate_window(cfg: ModelConfig, mctx: MonitorContext, state: StatePaths) -> dict:
    """The window's landed data against the model's expectation suite. Only data that passes can start a
    retrain; a failure is reported and alerted, never raised (the drift numbers are still worth having)."""
    from pipelines.ingest import LandingFileError, NothingLandedError, ingest_model_examples
    from pipelines.storage import fresh_temp_dir, write_text_atomic
    from pipelines.validation import load_suite_spec, render_report, validate_frame

    work = monitoring_dir(cfg, state) / "work" / run_key(mctx.run_id)
    scratch = fresh_temp_dir(work)
    report = state.reports(cfg.name) / "monitoring" / mctx.window_key / "validation.html"
    try:
        _, examples = ingest_model_examples(cfg, state, mctx.start, mctx.end, scratch)
    except (NothingLandedError, FileNotFoundError) as exc:  # nothing landed: nothing to validate or retrain on
        return {"valid": None, "summary": f"no landed data for {mctx.window_key}: {exc}", "report": None}
    except (LandingFileError, ValueError) as exc:
        return {"valid": False, "summary": f"the landed data for {mctx.window_key} was refused: {exc}",
                "report": None}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    outcome = validate_frame(examples, load_suite_spec(cfg.expectation_suite_path))
    write_text_atomic(render_report(outcome, f"{cfg.name} window {mctx.window_key}"), report)
    summary = "passed" if outcome.success else \
        f"failed: {'; '.join(o.describe() for o in outcome.failures)[:800]}"
    if not outcome.success:
        from pipelines.alerts import alert

        alert(cfg, "data_validation_failed", f"{cfg.name} window {mctx.window_key}: landed data {summary}",
              {"report": str(report)})
    return {"valid": bool(outcome.success), "summary": summary, "report": str(report), "rows": len(examples)}


# 2. measure -----------------------------------------------------------------------------------------------
def measure(cfg: ModelConfig, mctx: MonitorContext, state: StatePaths) -> dict:
    """Drift, prediction drift, data quality and realized performance of the window; late labels update the
    realized metrics of the ``label_lookback_days`` before it."""
    from pipelines.drift import ReferenceProfile
    from pipelines.monitoring import PREDICTION, estimate_performance, measure_window
    from pipelines.storage import write_parquet_atomic

    version = champion_version(cfg, state)
    profile = ReferenceProfile.load(reference_profile(cfg, state, version))
    limits = champion_limits(cfg, state, version)
    scan = scan_window(cfg, mctx.start, mctx.end)
    measurement = measure_window(cfg, scan, profile, mctx.start, mctx.end, str(version.version), limits)
    estimate_performance(cfg, measurement, scan.served[PREDICTION], limits, scan.profile)
    scoring = champion_scoring(dict(version.tags))
    _add_realized(cfg, state, measurement, scan.served, scoring)
    sample_path = write_parquet_atomic(scan.sample, monitoring_dir(cfg, state) / "work" / run_key(mctx.run_id)
                                       / "window_sample.parquet")
    log.info("window %s: %d rows, drift share %s, prediction drift %s, realized %s (%d labelled, %d pending), "
             "estimated %s; limits %s", mctx.window_key, measurement.rows, measurement.drift_share,
             measurement.prediction_drift, measurement.realized.get(cfg.margin_metric), measurement.labelled_rows,
             measurement.pending_labels, measurement.estimated.get(cfg.margin_metric), limits.source)
    return {**json.loads(json.dumps(measurement.as_dict(), default=str)), "sample_path": str(sample_path),
            "champion_run_id": version.run_id, "scoring": scoring}


def champion_scoring(tags: dict[str, str]) -> dict[str, Any]:
    """What the champion's logged scores need to be judged: its classes (in the order of its probability
    columns) and its decision threshold, from its version tags."""
    return {"classes": json.loads(tags["classes"]) if tags.get("classes") else None,
            "threshold": float(tags["threshold"]) if tags.get("threshold") else None}


def _add_realized(cfg: ModelConfig, state: StatePaths, measurement, window, scoring: dict[str, Any]) -> None:
    from pipelines.monitoring import join_labels, realized_performance

    # Label files are dated by the data's own calendar day, windows by UTC event time: look a day either side.
    horizon = measurement.window_end + timedelta(days=cfg.monitoring.label_lookback_days + 1)
    labels = read_labels(cfg, state, measurement.window_start - timedelta(days=1), horizon)
    labelled, pending = join_labels(window, labels, cfg.features.target)
    measurement.labelled_rows, measurement.pending_labels = len(labelled), pending
    measurement.realized, measurement.realized_slices = realized_performance(labelled, cfg, scoring["classes"],
                                                                             scoring["threshold"])


def refresh_late_labels(cfg: ModelConfig, mctx: MonitorContext, state: StatePaths, scoring: dict[str, Any],
                        limits) -> int:
    """Recompute the realized metrics of earlier windows that were still waiting for labels, re-evaluate
    every rule on them, and how those windows count in later decisions (a late breach joins the streak)."""
    from pipelines import monitoring_store as store
    from pipelines.monitoring import Decision, Signal, record_of

    engine = store.engine()
    since = mctx.start - timedelta(days=cfg.monitoring.label_lookback_days)
    with engine.connect() as connection:
        rows = [r for r in store.load_windows(connection, cfg.name, since=since)
                if r["window_end"] <= mctx.start and r["pending_labels"] > 0]
    updates = []  # computed outside any transaction: scanning a window can take a while
    for row in rows:
        scan = scan_window(cfg, row["window_start"], row["window_end"], sample_rows=1)
        m = measurement_of(row)
        m.rows = scan.rows
        labelled = m.labelled_rows
        _add_realized(cfg, state, m, scan.served, scoring)
        if m.labelled_rows == labelled:
            continue
        details = json.loads(row["details"] or "{}")
        kept = [Signal(**s) for s in details.get("signals") or [] if s.get("name") == "validation"]
        from pipelines.monitoring import signals as rule_signals

        decision = Decision(row["decision"], [*kept, *rule_signals(m, limits)], 0, row["reason"] or "")
        update = window_row(cfg, m, decision, record_of(m, cfg, row["decision"], limits), limits,
                            run_id=row["airflow_run_id"], validation=details.get("validation") or {},
                            triggered_run_id=row["triggered_run_id"], report_path=row["report_path"])
        if "challenger" in details:  # recorded by compare_challenger after the window was decided
            update["details"]["challenger"] = details["challenger"]
        updates.append(update)
    with engine.begin() as connection:
        for update in updates:
            store.save_window(connection, update)
    engine.dispose()
    return len(updates)


# The measurement's fields that are columns of the monitoring table; the rest live in its ``details``.
ROW_FIELDS = ("window_start", "window_end", "model_version", "rows", "drift_share", "dataset_drift",
              "prediction_drift", "labelled_rows", "pending_labels")


def window_row(cfg: ModelConfig, m, decision, record, limits, *, run_id: str | None, validation: dict,
               triggered_run_id: str | None, report_path: str | None = None) -> dict:
    """The window's row of the monitoring table (task-neutral: the primary metric's realized, estimated and
    baseline values are columns; every metric, score and signal is in ``details``)."""
    metric = cfg.margin_metric
    baseline = limits.baselines.get(metric)
    measured = m.as_dict()
    return {
        "model_name": cfg.name, "airflow_run_id": run_id, **{k: measured[k] for k in ROW_FIELDS},
        "metric": metric, "realized": m.realized.get(metric), "estimated": m.estimated.get(metric),
        "baseline": baseline.value if baseline else None, "data_valid": bool(validation.get("valid")),
        "breached": record.breached, "cleared": record.cleared, "decision": decision.action,
        "reason": decision.reason, "triggered_run_id": triggered_run_id, "report_path": report_path,
        "details": {**{k: v for k, v in measured.items() if k not in ROW_FIELDS},
                    "signals": decision.as_dict()["signals"], "validation": validation, "limits": limits.source,
                    "drift_share_limit": limits.drift_share,
                    **({"baseline_band": baseline_band(limits, metric, m.labelled_rows or m.rows)} if baseline else {}),
                    # how far the estimate made before the labels was from the realized value, once they land
                    **({"estimate_error": m.estimated[metric] - m.realized[metric]}
                       if m.estimated.get(metric) is not None and m.realized.get(metric) is not None else {})},
        "computed_at": None,
    }


def baseline_band(limits, metric: str, rows: int) -> float:
    """How far from the champion's holdout value a window of ``rows`` rows may be before the performance
    rules call it worse: its noise at ``confidence_z`` or the practical margin, whichever is wider."""
    baseline = limits.baselines[metric]
    return round(max(limits.confidence_z * baseline.noise(rows), limits.practical_margin * abs(baseline.value)), 6)


def measurement_of(row: dict):
    """A stored window's measurement, as ``window_row`` wrote it."""
    from pipelines.monitoring import WindowMeasurement

    details = json.loads(row["details"] or "{}") if isinstance(row["details"], str) else dict(row["details"] or {})
    fields = set(WindowMeasurement.__dataclass_fields__)
    return WindowMeasurement(**{k: row[k] for k in ROW_FIELDS}, **{k: v for k, v in details.items()
                                                                   if k in fields and k not in ROW_FIELDS})


# 3. decide ------------------------------------------------------------------------------------------------
def decide(cfg: ModelConfig, mctx: MonitorContext, state: StatePaths, measured: dict, validation: dict) -> dict:
    """Apply the retrain policy to this window and its history, store the window's row, alert, and log the
    numbers to the champion's MLflow run. Returns the decision and, for a retrain, the training run's conf."""
    from pipelines import monitoring_store as store
    from pipelines.alerts import alert
    from pipelines.monitoring import WindowMeasurement, WindowRecord, record_of
    from pipelines.monitoring import decide as policy_decision

    fields = set(WindowMeasurement.__dataclass_fields__)
    m = WindowMeasurement(**{k: v for k, v in measured.items() if k in fields})
    m.window_start, m.window_end = as_date(m.window_start), as_date(m.window_end)
    limits = champion_limits(cfg, state, champion_version(cfg, state))
    refreshed = refresh_late_labels(cfg, mctx, state, measured.get("scoring") or champion_scoring({}), limits)
    failed = (validation.get("summary") or "failed") if validation.get("valid") is False else None
    engine = store.engine()
    with engine.begin() as connection:
        history = [WindowRecord(r["window_start"], r["window_end"], r["breached"], r["cleared"], r["decision"])
                   for r in store.load_windows(connection, cfg.name)
                   if (r["window_start"], r["window_end"]) != (m.window_start, m.window_end)]
        decision = policy_decision(cfg, m, history, limits, failed, landed=validation.get("valid") is not None)
        record = record_of(m, cfg, decision.action, limits)
        conf = retrain_conf(cfg, mctx, decision.reason) if decision.retrain else None
        store.save_window(connection, window_row(
            cfg, m, decision, record, limits, run_id=mctx.run_id, validation=validation,
            triggered_run_id=mctx.retrain_run_id if decision.retrain else None))
    engine.dispose()
    for signal in decision.signals:
        alert(cfg, signal.name, f"{cfg.name} window {mctx.window_key}: {signal.detail}",
              {"decision": decision.action, "window": mctx.window_key})
    if decision.retrain:
        alert(cfg, "retrain_triggered", f"{cfg.name}: retraining ({decision.reason})", conf)
    _log_to_mlflow(cfg, state, measured.get("champion_run_id"), m, decision.action)
    log.info("window %s decision %s: %s (late labels refreshed for %d windows)", mctx.window_key,
             decision.action, decision.reason, refreshed)
    return {**decision.as_dict(), "retrain": decision.retrain, "conf": conf, "window": mctx.window_key,
            "trigger_run_id": mctx.retrain_run_id}


def retrain_conf(cfg: ModelConfig, mctx: MonitorContext, reason: str) -> dict:
    """The training run's conf: the model's history up to this window's end (``history_start``), wherever the
    window lies against the champion's own data interval; the window itself when it ends before the model's
    first day."""
    start = history_start(cfg, mctx.end)
    if start >= mctx.end:
        start = mctx.start
    return {"data_interval_start": start.isoformat(), "data_interval_end": mctx.end.isoformat(),
            "reason": f"{mctx.dag_id} {mctx.window_key}: {reason}"[:480], "triggered_by": mctx.run_id}


def _log_to_mlflow(cfg: ModelConfig, state: StatePaths, run_id: str | None, m, action: str) -> None:
    """The window's numbers as metrics of the champion's run, stepped by day (the MLflow UI draws the series)."""
    if not run_id:
        return
    import mlflow
    from mlflow.entities import Metric

    from pipelines.tracking import configure_mlflow

    configure_mlflow(state)
    stamp = int(day_start(m.window_end).timestamp() * 1000)
    step = m.window_end.toordinal()
    values = {"monitor_rows": m.rows, "monitor_drift_share": m.drift_share,
              "monitor_prediction_drift": m.prediction_drift,
              "monitor_retrain": 1.0 if action == "retrain" else 0.0,
              **{f"monitor_realized_{k}": v for k, v in m.realized.items() if k in cfg.task_type.metrics},
              **{f"monitor_estimated_{k}": v for k, v in m.estimated.items() if k in cfg.task_type.metrics}}
    metrics = [Metric(k, float(v), stamp, step) for k, v in values.items() if v is not None]
    try:
        mlflow.MlflowClient().log_batch(run_id, metrics=metrics)
    except mlflow.exceptions.MlflowException:
        log.exception("could not log monitoring metrics to run %s", run_id)


# 4. report ------------------------------------------------------------------------------------------------
def report(cfg: ModelConfig, mctx: MonitorContext, state: StatePaths, measured: dict) -> dict:
    """Evidently's full drift and data summary report (HTML) on a sample of each side, saved with the
    window and logged to the champion's MLflow run."""
    import mlflow
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    from pipelines import monitoring_store as store
    from pipelines.evidently_html import standalone_html
    from pipelines.storage import write_text_atomic
    from pipelines.tracking import configure_mlflow

    window = pd.read_parquet(measured["sample_path"])
    if window.empty:
        return {"report": None}
    version = champion_version(cfg, state)
    reference = pd.read_parquet(snapshot_path(state, dict(version.tags)))
    reference = reference.sample(n=min(len(reference), cfg.monitoring.report_sample_rows), random_state=0)
    columns = [*cfg.features.numeric, *cfg.features.categorical]
    definition = DataDefinition(numerical_columns=list(cfg.features.numeric),
                                categorical_columns=list(cfg.features.categorical))
    drift = cfg.monitoring.drift
    limits = champion_limits(cfg, state, version)
    snapshot = Report([DataDriftPreset(drift_share=limits.drift_share, per_column_method=drift.methods or None,
                                       per_column_threshold=limits.column_limits or None),
                       DataSummaryPreset()]).run(
        current_data=Dataset.from_pandas(window[columns], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns].reset_index(drop=True), data_definition=definition))
    path = state.reports(cfg.name) / "monitoring" / mctx.window_key / "drift_report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(standalone_html(snapshot), path)  # logged values stay data, never markup
    configure_mlflow(state)
    try:
        mlflow.MlflowClient().log_artifact(version.run_id, str(path), artifact_path=f"monitoring/{mctx.window_key}")
    except mlflow.exceptions.MlflowException:
        log.exception("could not log the drift report to run %s", version.run_id)
    engine = store.engine()
    with engine.begin() as connection:
        connection.execute(store.WINDOWS.update()
                           .where(store.WINDOWS.c.model_name == cfg.name)
                           .where(store.WINDOWS.c.window_start == mctx.start)
                           .where(store.WINDOWS.c.window_end == mctx.end).values(report_path=str(path)))
    engine.dispose()
    shutil.rmtree(Path(measured["sample_path"]).parent, ignore_errors=True)
    return {"report": str(path)}


# 5. challenger --------------------------------------------------------------------------------------------
CHALLENGER_STATUS = "status.json"


def challenger_dir(cfg: ModelConfig, state: StatePaths) -> Path:
    return monitoring_dir(cfg, state) / "challenger"


def challenger_versions(cfg: ModelConfig, state: StatePaths):
    """The champion's and the challenger's model versions (None for the challenger when there is none)."""
    import mlflow

    from pipelines.registry import CHALLENGER
    from pipelines.tracking import configure_mlflow

    champion = champion_version(cfg, state)
    configure_mlflow(state)
    try:
        challenger = mlflow.MlflowClient().get_model_version_by_alias(cfg.model_name, CHALLENGER)
    except mlflow.exceptions.MlflowException:
        challenger = None
    return champion, challenger


def read_route(cfg: ModelConfig, start: date, end: date, route: str, version: str, url: str | None = None):
    """Request id, row index, time served and prediction of the rows ``version`` answered (or scored) on
    ``route`` for [start, end) of event time."""
    import pandas as pd
    import pyarrow as pa

    from pipelines.prediction_store import read_segments, reader

    columns = ["request_id", "row_index", "served_at", "prediction"]
    tables = [t.select(columns) for t in read_segments(reader(url), cfg.model_name, day_start(start), day_start(end),
                                                       route=route)
              if t.num_rows and str(t["model_version"][0]) == str(version)]
    if not tables:
        return pd.DataFrame({"request_id": pd.Series(dtype=str), "row_index": pd.Series(dtype="int64"),
                             "served_at": pd.Series(dtype="datetime64[us, UTC]"),
                             "prediction": pd.Series(dtype=float)})
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    frame["request_id"] = frame["request_id"].astype(str)
    return frame


def compare_challenger(cfg: ModelConfig, mctx: MonitorContext, state: StatePaths, *, versions=None,
                       url: str | None = None) -> dict:
    """The window's cohort of the shadow or canary challenger against the champion, and where the comparison
    stands (``pipelines.challenger_comparison``): rows, mean improvement, anytime-valid interval, decision
    and rows still needed. A no-op (``{"challenger": None}``) without a ``challenger`` alias.

    The window's cohort is stored under (window, champion version, challenger version), replacing an earlier
    one of the same window; the cohorts of the ``label_lookback_days`` before it that were still waiting for
    labels are recomputed too. ``versions``: (champion, challenger) model versions (objects with
    ``version`` and ``tags``), else read from the registry.
    """
    from pipelines.challenger_comparison import ChallengerCohorts, canary_cohort, comparison_status, shadow_cohort
    from pipelines.storage import write_text_atomic

    champion, challenger = versions if versions is not None else challenger_versions(cfg, state)
    folder = challenger_dir(cfg, state)
    if challenger is None:
        return {"challenger": None}
    tags = dict(challenger.tags or {})
    feed = tags.get("rollout", "shadow")
    policy = cfg.serving.challenger
    metric = cfg.challenger_metric
    framing = policy.framing or cfg.gate.framing
    base = {"champion_version": str(champion.version), "challenger_version": str(challenger.version),
            "feed": feed, "metric": metric, "act": policy.act}
    try:
        if feed not in ("shadow", "canary"):
            raise ValueError(f"the challenger's rollout tag is {feed!r}, not shadow or canary")
        classes = (champion_scoring(dict(champion.tags or {}))["classes"],
                   champion_scoring(tags)["classes"])  # each model's own: a retrain may add or lose a class
        cohorts = ChallengerCohorts.load(folder, str(champion.version), str(challenger.version), feed, metric)
        since = (mctx.start - timedelta(days=cfg.monitoring.label_lookback_days)).isoformat()
        windows = {key: (date.fromisoformat(c.window_start), date.fromisoformat(c.window_end))
                   for key, c in cohorts.cohorts.items() if c.pending > 0 and c.window_end > since}
        windows[mctx.window_key] = (mctx.start, mctx.end)
        for key, (start, end) in sorted(windows.items()):
            served = read_route(cfg, start, end, "champion", champion.version, url)
            scored = read_route(cfg, start, end, feed, challenger.version, url)
            labels = read_labels(cfg, state, start - timedelta(days=1),
                                 end + timedelta(days=cfg.monitoring.label_lookback_days + 1))
            differences, pending = (shadow_cohort(cfg, metric, served, scored, labels, classes) if feed == "shadow"
                                    else canary_cohort(cfg, metric, served, scored, labels, classes))
            cohorts.put(key, start.isoformat(), end.isoformat(), differences, pending)
        cohorts.save(folder)
        status = {**base, **comparison_status(cohorts, policy, framing)}
    except ValueError as exc:  # a model whose log cannot be judged row by row: reported, not a failure
        log.warning("challenger v%s of %s not compared: %s", challenger.version, cfg.model_name, exc)
        status = {**base, "error": str(exc)}
    status["window"] = mctx.window_key
    write_text_atomic(json.dumps(status, sort_keys=True), folder / CHALLENGER_STATUS)
    log.info("challenger %s", status.get("summary") or status.get("error"))
    return {"challenger": status, **propose_conf(cfg, mctx, status)}


def propose_conf(cfg: ModelConfig, mctx: MonitorContext, status: dict) -> dict:
    """With ``serving.challenger.act: propose`` and a decision reached: the ``promote_<model>`` run to start.
    Its run id is fixed per challenger version and decision, so the decision is proposed once: a retried
    task, or the windows after it that reach it again, start no second run (nor one a person rejected)."""
    decision = status.get("decision")
    if cfg.serving.challenger.act != "propose" or decision not in ("promote", "retire"):
        return {"propose": False}
    reason = f"{mctx.dag_id} {mctx.window_key}: {status['summary']}"[:480]
    return {"propose": True,
            "propose_run_id": f"{decision}__{mctx.dag_id}__v{status['challenger_version']}",
            "propose_conf": {"action": decision, "reason": reason, "version": status["challenger_version"],
                             "proposed_by": f"{mctx.dag_id} {mctx.window_key}"}}


def record_challenger(cfg: ModelConfig, mctx: MonitorContext, compared: dict) -> None:
    """The comparison in the window's ``details`` (``challenger``) in the monitoring store."""
    from pipelines import monitoring_store as store

    if not compared.get("challenger"):
        return
    engine = store.engine()
    query = (store.WINDOWS.c.model_name == cfg.name) & (store.WINDOWS.c.window_start == mctx.start) \
        & (store.WINDOWS.c.window_end == mctx.end)
    with engine.begin() as connection:
        row = connection.execute(store.WINDOWS.select().where(query)).mappings().first()
        if row is not None:
            details = json.loads(row["details"] or "{}")
            details["challenger"] = compared["challenger"]
            connection.execute(store.WINDOWS.update().where(query).values(details=json.dumps(details, default=str)))
    engine.dispose()


def challenger_status(cfg: ModelConfig, state: StatePaths) -> dict | None:
    """The last comparison written by the monitoring DAG (None before any)."""
    path = challenger_dir(cfg, state) / CHALLENGER_STATUS
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
