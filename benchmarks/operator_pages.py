"""How fast the operator pages answer with a long history: one model with 100 registered versions (each tagged
as the training DAG tags it, with a training run holding the gate's decision) and a year of daily
monitoring windows, in a throw-away MLflow store (SQLite) and monitoring store under a temp folder.

Each page is rendered through the app (no network, no Airflow): the median and worst of 5 loads.
Goal: every page in <= 1 s.

    uv run python benchmarks/operator_pages.py [--versions 100] [--days 365]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path


def populate(root: Path, versions: int, days: int) -> None:
    import mlflow
    from sklearn.dummy import DummyClassifier

    from pipelines import monitoring_store
    from pipelines.registry import promote_version

    client = mlflow.MlflowClient()
    experiment = mlflow.create_experiment("pages", artifact_location=(root / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        model_uri = mlflow.sklearn.log_model(DummyClassifier().fit([[0], [1]], [0, 1]), name="model",
                                             serialization_format="skops").model_uri
    for n in range(1, versions + 1):
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.log_metrics({"holdout_roc_auc": 0.70, "holdout_pr_auc": 0.40, "holdout_brier": 0.16})
            mlflow.log_dict({"promote": True, "verdict": "approved", "summary": "approved: all 7 checks passed",
                             "champion_note": f"v{n - 1}", "reasons": [
                                 {"check": f"floor:m{k}", "passed": True, "observed": 0.7, "required": ">= 0.6",
                                  "message": f"m{k} 0.7000 meets floor 0.6000"} for k in range(7)]},
                            "gate/decision.json")
        version = mlflow.register_model(model_uri, "pages_model", tags={
            "airflow_dag_id": "train_pages", "airflow_run_id": f"scheduled__{n}", "gate_decision": "approved",
            "gate_summary": "approved: all 7 checks passed", "mlflow_parent_run_id": run.info.run_id,
            "data_hash": f"{n:032d}", "data_rows": "80000", "git_commit": "0" * 40,
            "training_reason": "scheduled"}).version
        promote_version(client, "pages_model", str(version))
    engine = monitoring_store.engine()
    with engine.begin() as connection:
        first = date(2013, 1, 1)
        for day in range(days):
            start = first + timedelta(days=day)
            monitoring_store.save_window(connection, {
                "model_name": "pages", "window_start": start, "window_end": start + timedelta(days=1),
                "model_version": str(1 + day * versions // days), "rows": 900, "drift_share": 0.1,
                "dataset_drift": False, "prediction_drift": 0.02, "labelled_rows": 800, "pending_labels": 0,
                "metric": "roc_auc", "realized": 0.7, "estimated": 0.71, "baseline": 0.72, "breached": False,
                "cleared": True, "decision": "ok", "reason": "within",
                # a retrain a month, half of them registered as a version, the rest stopped by the gate
                "triggered_run_id": f"scheduled__{day // 30 if day % 60 else 10_000 + day}" if day % 30 == 0 else None,
                "report_path": None, "details": {"drift_scores": {f"c{k}": 0.01 for k in range(14)},
                                                 "signals": [], "realized": {"roc_auc": 0.7, "pr_auc": 0.4},
                                                 "drift_share_limit": 0.3, "baseline_band": 0.03}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, default=100)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_pages_"))
    try:
        os.environ.update(MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}", MLOPS_HOME=str(root / "state"),
                          MLOPS_MONITORING_DB_URL=f"sqlite:///{root / 'monitoring.db'}")
        started = time.perf_counter()
        populate(root, args.versions, args.days)
        print(f"{args.versions} versions and {args.days} daily windows written in "
              f"{time.perf_counter() - started:.0f} s", flush=True)

        from types import SimpleNamespace

        from fastapi.testclient import TestClient

        from pipelines.operator_ui import app as operator_app

        operator_app._configs = lambda: [SimpleNamespace(
            name="pages", model_name="pages_model", monitoring=SimpleNamespace(drift=SimpleNamespace(
                key_features={"c1": 0.1, "c2": 0.1}, drift_share=None)), realized_floors={"roc_auc": 0.6},
            realized_ceilings={}, serving=SimpleNamespace(approval="none"))]
        client = TestClient(operator_app.create_app())
        slowest = 0.0
        for path in ("/models", "/models/pages_model", f"/models/pages_model/versions/{args.versions}",
                     "/models/pages_model/monitoring"):
            client.get(path).raise_for_status()  # first load: imports and connections
            times = []
            for _ in range(5):
                started = time.perf_counter()
                response = client.get(path)
                times.append(time.perf_counter() - started)
                response.raise_for_status()
            slowest = max(slowest, max(times))
            print(f"{path}: median {statistics.median(times) * 1000:.0f} ms, worst {max(times) * 1000:.0f} ms, "
                  f"{len(response.content) / 1024:.0f} KiB")
        print(f"slowest page load: {slowest * 1000:.0f} ms (goal <= 1,000 ms)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
