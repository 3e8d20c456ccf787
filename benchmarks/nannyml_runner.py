"""NannyML 0.13.1 over weekly chunks, run by ``benchmarks/monitoring_quality.py`` inside its own virtual
environment (NannyML's pins clash with the project's lock): reads Parquet files, writes Parquet files.

    python nannyml_runner.py SPEC.json

SPEC holds the task (binary, regression, multiclass), the column names, the reference file and a list of
analysis files. For each analysis file it writes ``<file>.nml.parquet``: one row per weekly chunk (weeks
from Monday, as ``chunk_period="W"`` cuts them) with the chunk's start, the estimated metric and its alert
(CBPE for classifiers, DLE for regression), the realized metric and its alert (PerformanceCalculator), and
the columns whose univariate drift (Jensen-Shannon) alerted; every threshold is NannyML's default, fitted
on the reference period's chunks.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import nannyml as nml  # noqa: E402
import pandas as pd  # noqa: E402


def per_chunk(result, metric: str) -> pd.DataFrame:
    frame = result.filter(period="analysis").to_df()
    return pd.DataFrame({"start": pd.to_datetime(frame[("chunk", "start_date")]).dt.tz_localize(None),
                         "value": frame[(metric, "value")].to_numpy(),
                         "alert": frame[(metric, "alert")].astype(bool).to_numpy()})


def main(spec_path: str) -> None:
    spec = json.loads(open(spec_path).read())
    task, ts, y, features = spec["task"], spec["timestamp"], spec["target"], spec["features"]
    reference = pd.read_parquet(spec["reference"])
    common = {"timestamp_column_name": ts, "chunk_period": "W"}
    if task == "binary":
        kind, metric = "classification_binary", "roc_auc"
        proba, pred = "proba", "pred"
    elif task == "multiclass":
        kind, metric = "classification_multiclass", "f1"
        proba, pred = {c: f"proba_{c}" for c in spec["classes"]}, "pred"
    else:
        kind, metric, proba, pred = "regression", "rmse", None, "pred"
    if task == "regression":
        estimator = nml.DLE(feature_column_names=features, y_pred=pred, y_true=y, metrics=[metric], **common)
        calculator = nml.PerformanceCalculator(y_pred=pred, y_true=y, problem_type=kind, metrics=[metric], **common)
    else:
        estimator = nml.CBPE(y_pred_proba=proba, y_pred=pred, y_true=y, problem_type=kind, metrics=[metric], **common)
        calculator = nml.PerformanceCalculator(y_pred_proba=proba, y_pred=pred, y_true=y, problem_type=kind,
                                               metrics=[metric], **common)
    drift = nml.UnivariateDriftCalculator(column_names=features, continuous_methods=["jensen_shannon"],
                                          categorical_methods=["jensen_shannon"], **common)
    estimator.fit(reference)
    calculator.fit(reference)
    drift.fit(reference)
    for path in spec["analysis"]:
        analysis = pd.read_parquet(path)
        estimated = per_chunk(estimator.estimate(analysis.drop(columns=[y])), metric)
        realized = per_chunk(calculator.calculate(analysis), metric)
        drifted = drift.calculate(analysis.drop(columns=[y])).filter(period="analysis").to_df()
        alerts = {c: drifted[(c, "jensen_shannon", "alert")].astype(bool).to_numpy() for c in features}
        out = estimated.rename(columns={"value": "estimated", "alert": "estimated_alert"})
        out["realized"] = realized["value"].to_numpy()
        out["realized_alert"] = realized["alert"].to_numpy()
        out["drift_alerts"] = [",".join(c for c in features if alerts[c][i]) for i in range(len(out))]
        out.to_parquet(path + ".nml.parquet", index=False)


if __name__ == "__main__":
    main(sys.argv[1])
