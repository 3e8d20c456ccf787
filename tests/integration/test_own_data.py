"""A user's own tables, one per task type, through the whole loop: `mlops-loop init` drafts the config and
suite (no edit), the training DAG (dag.test) makes a champion against a real MLflow server, one prediction
service serves the three side by side as `mlflow models serve` would, the outcomes land, and the monitoring
DAG measures the window's realized metrics."""

import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.integration


def customers(n: int = 2400, seed: int = 0) -> pd.DataFrame:
    """Binary, no time: a customer id, a Yes/No target, text and numbers with missing values."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, size=n)
    contract = rng.choice(["Month-to-month", "One year", "Two year"], size=n, p=[0.5, 0.3, 0.2])
    charges = rng.normal(70, 20, size=n).round(2)
    charges[::29] = np.nan
    risk = np.where(contract == "Month-to-month", 0.5, 0.08) + 0.004 * (72 - tenure) - 0.2
    return pd.DataFrame({"customer_id": [f"C{i:05d}" for i in range(n)], "tenure": tenure, "contract": contract,
                         "monthly_charges": charges, "churn": np.where(rng.random(n) < risk, "Yes", "No")})


def houses(n: int = 3000, seed: int = 1) -> pd.DataFrame:
    """Regression with an event time: sale prices over 90 days of sales."""
    rng = np.random.default_rng(seed)
    area = rng.normal(140, 40, size=n).clip(30)
    rooms = rng.integers(1, 7, size=n)
    district = rng.choice(["north", "south", "east", "west"], size=n)
    premium = pd.Series(district).map({"north": 60_000, "south": 0, "east": 20_000, "west": 40_000}).to_numpy()
    price = 50_000 + 2_000 * area + 10_000 * rooms + premium + rng.normal(0, 20_000, size=n)
    sold = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.sort(rng.uniform(0, 90, size=n)), unit="D")
    return pd.DataFrame({"sold_at": sold.strftime("%Y-%m-%dT%H:%M:%S+00:00"), "area": area.round(1),
                         "rooms": rooms, "district": district, "price": price.round(0)})


def penguins() -> pd.DataFrame:
    """Multiclass, no time: the table the palmerpenguins package ships (344 birds, 3 species)."""
    from pipelines.landing import package_data

    return pd.read_csv(package_data("palmerpenguins", "penguins.csv"))


TABLES = {"churn": (customers, "churn", "binary", "roc_auc"),
          "house_prices": (houses, "price", "regression", "rmse"),
          "species": (penguins, "species", "multiclass", "macro_f1")}


@pytest.fixture(scope="module")
def drafted(tmp_path_factory, state_root, monkeypatch_module):
    """`mlops-loop init` on each table: the configs and suites as drafted, the tables landed. The module's
    include folder is a fresh one, as a user's would be, so the DAG files build these models' DAGs."""
    from pipelines.cli import init
    from pipelines.config import StatePaths, load_model_config

    folder = tmp_path_factory.mktemp("own_data")
    monkeypatch_module.setenv("MLOPS_INCLUDE_DIR", str(folder / "include"))
    configs = {}
    for name, (make, target, _, _) in TABLES.items():
        data = folder / f"{name}.csv"
        make().to_csv(data, index=False)
        made = init(data, target, name, None, False, state=StatePaths.from_env())
        configs[name] = load_model_config(made["config"])
    return configs


@pytest.fixture(scope="module")
def service(serve_on_loopback, mlflow_server):
    """One prediction service for the three models, where the training DAGs deploy."""
    from pipelines.serving.app import create_app

    return serve_on_loopback(create_app("churn", models=tuple(TABLES), configured_models=False, poll_seconds=0))


@pytest.fixture(scope="module")
def champions(drafted, service, airflow_db, dag_file):
    training = dag_file("training")
    runs = {}
    for name, cfg in drafted.items():
        run = training.build_training_dag(cfg).test(run_conf={"reason": "own data test"})
        runs[name] = run
    return runs


def test_init_infers_each_task_type_and_split(drafted):
    for name, (_, target, task, _) in TABLES.items():
        cfg = drafted[name]
        assert (cfg.task, cfg.features.target) == (task, target), name
    assert drafted["house_prices"].split_method == "time" and drafted["churn"].split_method == "random"
    assert drafted["churn"].features.positive_class == "Yes" and drafted["churn"].features.example_id == "customer_id"


def test_each_task_type_trains_a_champion_that_one_service_serves_like_mlflow(drafted, champions, service,
                                                                               state_root, dag_file):
    import httpx
    import mlflow

    from pipelines.tracking import configure_mlflow
    from pipelines.training import model_inputs

    for name, run in champions.items():
        assert run.state == "success", (name, {ti.task_id: str(ti.state) for ti in run.get_task_instances()})
    configure_mlflow()
    client = mlflow.MlflowClient()
    outcomes = {}
    with httpx.Client(base_url=service, timeout=60) as http:
        for name, cfg in drafted.items():
            version = client.get_model_version_by_alias(name, "champion")
            assert version.tags["task"] == cfg.task and version.tags["split_method"] == cfg.split_method
            snapshots = sorted((state_root / "work" / name).glob("*/snapshot/snapshot.parquet"))
            examples = pd.read_parquet(snapshots[-1]).head(300)
            rows = model_inputs(examples, cfg.features)  # the signature's types: numbers as floats
            records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
            answer = http.post(f"/models/{name}/invocations", json={"dataframe_records": records},
                                  headers={"X-Request-ID": f"own-{name}"})
            assert answer.status_code == 200, answer.text
            served = np.asarray(answer.json()["predictions"], dtype=float)
            # The same answer `mlflow models serve` gives for the same model: its pyfunc's prediction.
            expected = np.asarray(mlflow.pyfunc.load_model(f"models:/{name}/{version.version}").predict(rows))
            np.testing.assert_allclose(served, expected, atol=1e-9)
            assert served.ndim == (1 if cfg.task == "regression" else 2)
            if cfg.task == "multiclass":
                assert served.shape == (len(rows), 3)
            outcomes[name] = examples[cfg.features.target]
    _land_outcomes_and_monitor(drafted, outcomes, state_root, dag_file("monitoring"))


def _land_outcomes_and_monitor(drafted, outcomes, state_root, monitoring):
    from pipelines import monitoring_store as store
    from pipelines.storage import write_parquet_atomic

    today = datetime.now(UTC).date()
    for name, cfg in drafted.items():
        labels = pd.DataFrame({"request_id": f"own-{name}", "row_index": range(len(outcomes[name])),
                               cfg.features.target: outcomes[name].to_numpy()})
        write_parquet_atomic(labels, state_root / "landing" / name / "outcomes" / f"{today.isoformat()}.parquet")
        run = monitoring.build_monitoring_dag(cfg).test(run_conf={
            "window_start": today.isoformat(), "window_end": (today + timedelta(days=1)).isoformat(),
            "reason": "own data test"})
        assert run.state == "success", {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    engine = store.engine()
    with engine.connect() as connection:
        for name, (_, _, _, metric) in TABLES.items():
            [window] = store.load_windows(connection, name, since=date.fromordinal(today.toordinal()))
            assert window["rows"] == window["labelled_rows"] == 300, window
            realized = json.loads(window["details"])["realized"]
            assert realized.get(metric) is not None, (name, realized)
            assert window["prediction_drift"] is not None
    engine.dispose()
