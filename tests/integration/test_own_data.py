"""A user's own tables through the whole loop: a binary table with no time and missing numbers, a regression
with an event time, multiclass tables of three and four classes, and a wide, sparse regression (74 columns,
text columns empty in most rows, booleans, numbers and dates written as text). `mlops-loop init` drafts the
config and suite (no edit), the training DAG (dag.test) makes a champion against a real MLflow server, one
prediction service serves the five side by side as `mlflow models serve` would, the outcomes land, and the
monitoring DAG measures the window's realized metrics."""

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


def sales(n: int = 2930, seed: int = 2) -> pd.DataFrame:
    """A wide, sparse regression like a county's house sales (74 columns): several text columns empty in
    most rows (one in every row the logged input example takes), booleans, integers with missing values,
    an area written as text ("11,622"), a sale date as ISO text (the event time) and a listing date as
    US-style text, a column empty in every row, and the sale price to predict."""
    rng = np.random.default_rng(seed)

    def pick(values, p=None, missing=0.0):
        column = rng.choice(np.asarray(values, dtype=object), size=n, p=p)
        column[rng.random(n) < missing] = None
        return column

    def ints(low, high, missing=0.0):
        column = rng.integers(low, high, size=n).astype(float)
        column[rng.random(n) < missing] = np.nan
        return column

    quality = rng.integers(1, 11, size=n)
    living = rng.normal(1500, 450, size=n).clip(400).round()
    lot = rng.lognormal(9.1, 0.45, size=n).round().astype(int)
    built = rng.integers(1880, 2010, size=n)
    neighborhood = pick([f"N{i:02d}" for i in range(25)])
    sold = pd.Timestamp("2010-01-04") + pd.to_timedelta(np.sort(rng.integers(0, 30, size=n)), unit="D")
    garage_cars = ints(0, 4, missing=0.001)
    premium = pd.Series(neighborhood).map({f"N{i:02d}": 2_000 * i for i in range(25)}).to_numpy()
    price = (20_000 + 18_000 * quality + 55 * living + 1.2 * lot + 300 * (built - 1880) + premium
             + 9_000 * np.nan_to_num(garage_cars) + rng.normal(0, 15_000, size=n)).round()
    pool = np.full(n, None, dtype=object)
    pool[:12] = rng.choice(["Ex", "Gd", "TA", "Fa"], size=12)  # the earliest sales: none in validation rows
    frame = {
        "PID": 526_300_000 + rng.choice(400_000_000, size=n, replace=False),
        "MS SubClass": pick([20, 30, 50, 60, 70, 80, 90, 120, 160, 190]),
        "MS Zoning": pick(["RL", "RM", "FV", "RH", "C (all)"], p=[0.77, 0.16, 0.04, 0.02, 0.01]),
        "Lot Frontage": ints(21, 200, missing=0.17),
        "Lot Area": [f"{v:,}" for v in lot],
        "Street": pick(["Pave", "Grvl"], p=[0.996, 0.004]),
        "Alley": pick(["Grvl", "Pave"], missing=0.93),
        "Lot Shape": pick(["Reg", "IR1", "IR2", "IR3"], p=[0.63, 0.33, 0.03, 0.01]),
        "Land Contour": pick(["Lvl", "HLS", "Bnk", "Low"], p=[0.9, 0.04, 0.04, 0.02]),
        "Lot Config": pick(["Inside", "Corner", "CulDSac", "FR2", "FR3"], p=[0.73, 0.17, 0.06, 0.03, 0.01]),
        "Land Slope": pick(["Gtl", "Mod", "Sev"], p=[0.95, 0.04, 0.01]),
        "Neighborhood": neighborhood,
        "Condition 1": pick(["Norm", "Feedr", "Artery", "RRAn", "PosN"], p=[0.86, 0.06, 0.03, 0.03, 0.02]),
        "Bldg Type": pick(["1Fam", "TwnhsE", "Duplex", "Twnhs", "2fmCon"], p=[0.83, 0.08, 0.04, 0.03, 0.02]),
        "House Style": pick(["1Story", "2Story", "1.5Fin", "SLvl", "SFoyer"], p=[0.5, 0.3, 0.11, 0.05, 0.04]),
        "Overall Qual": quality,
        "Overall Cond": ints(1, 10),
        "Year Built": built,
        "Year Remod/Add": np.maximum(built, rng.integers(1950, 2011, size=n)),
        "Roof Style": pick(["Gable", "Hip", "Gambrel", "Flat"], p=[0.79, 0.19, 0.01, 0.01]),
        "Exterior 1st": pick(["VinylSd", "MetalSd", "HdBoard", "Wd Sdng", "Plywood", "CemntBd"]),
        "Exterior 2nd": pick(["VinylSd", "MetalSd", "HdBoard", "Wd Sdng", "Plywood", "CmentBd"]),
        "Mas Vnr Type": pick(["BrkFace", "Stone", "BrkCmn"], p=[0.75, 0.22, 0.03], missing=0.6),
        "Mas Vnr Area": ints(0, 1000, missing=0.008),
        "Exter Qual": pick(["TA", "Gd", "Ex", "Fa"], p=[0.61, 0.34, 0.04, 0.01]),
        "Exter Cond": pick(["TA", "Gd", "Fa", "Ex"], p=[0.87, 0.1, 0.02, 0.01]),
        "Foundation": pick(["PConc", "CBlock", "BrkTil", "Slab"], p=[0.45, 0.42, 0.11, 0.02]),
        "Bsmt Qual": pick(["TA", "Gd", "Ex", "Fa"], p=[0.44, 0.42, 0.1, 0.04], missing=0.03),
        "Bsmt Cond": pick(["TA", "Gd", "Fa", "Po"], p=[0.92, 0.04, 0.035, 0.005], missing=0.03),
        "Bsmt Exposure": pick(["No", "Av", "Gd", "Mn"], p=[0.67, 0.15, 0.1, 0.08], missing=0.03),
        "BsmtFin Type 1": pick(["GLQ", "Unf", "ALQ", "Rec", "BLQ", "LwQ"], missing=0.03),
        "BsmtFin SF 1": ints(0, 2000, missing=0.0005),
        "BsmtFin Type 2": pick(["Unf", "Rec", "LwQ", "BLQ", "ALQ", "GLQ"], missing=0.03),
        "BsmtFin SF 2": ints(0, 300, missing=0.0005),
        "Bsmt Unf SF": ints(0, 1500, missing=0.0005),
        "Total Bsmt SF": ints(0, 3000, missing=0.0005),
        "Heating QC": pick(["Ex", "TA", "Gd", "Fa", "Po"], p=[0.51, 0.29, 0.16, 0.03, 0.01]),
        "Central Air": rng.random(n) < 0.93,  # True/False in the file
        "Electrical": pick(["SBrkr", "FuseA", "FuseF", "FuseP"], p=[0.91, 0.06, 0.025, 0.005], missing=0.0005),
        "1st Flr SF": ints(300, 3000),
        "2nd Flr SF": ints(0, 1500),
        "Gr Liv Area": living,
        "Bsmt Full Bath": ints(0, 3, missing=0.001),
        "Bsmt Half Bath": ints(0, 2, missing=0.001),
        "Full Bath": ints(0, 4),
        "Half Bath": ints(0, 3),
        "Bedroom AbvGr": ints(0, 7),
        "Kitchen Qual": pick(["TA", "Gd", "Ex", "Fa"], p=[0.5, 0.4, 0.07, 0.03]),
        "TotRms AbvGrd": ints(2, 14),
        "Functional": pick(["Typ", "Min2", "Min1", "Mod", "Maj1"], p=[0.93, 0.025, 0.022, 0.013, 0.01]),
        "Fireplaces": ints(0, 4),
        "Fireplace Qu": pick(["Gd", "TA", "Fa", "Po", "Ex"], p=[0.5, 0.4, 0.04, 0.03, 0.03], missing=0.49),
        "Garage Type": pick(["Attchd", "Detchd", "BuiltIn", "Basment"], p=[0.62, 0.28, 0.07, 0.03], missing=0.054),
        "Garage Yr Blt": ints(1900, 2011, missing=0.054),
        "Garage Finish": pick(["Unf", "RFn", "Fin"], missing=0.054),
        "Garage Cars": garage_cars,
        "Garage Area": ints(0, 1400, missing=0.0005),
        "Paved Drive": pick(["Y", "N", "P"], p=[0.9, 0.08, 0.02]),
        "Wood Deck SF": ints(0, 800),
        "Open Porch SF": ints(0, 500),
        "Enclosed Porch": ints(0, 400),
        "Screen Porch": ints(0, 400),
        "Pool Area": np.where(pool == None, 0, rng.integers(400, 800, size=n)),  # noqa: E711
        "Pool QC": pool,
        "Fence": pick(["MnPrv", "GdPrv", "GdWo", "MnWw"], missing=0.8),
        "Misc Feature": pick(["Shed", "Gar2", "Othr"], p=[0.9, 0.05, 0.05], missing=0.96),
        "Misc Val": ints(0, 2000),
        "Waterfront": np.where(rng.random(n) < 0.1, None, rng.random(n) < 0.05),  # True/False, 10% missing
        "Notes": np.full(n, None, dtype=object),  # empty in every row
        "Listed": (sold - pd.to_timedelta(rng.integers(5, 120, size=n), unit="D")).strftime("%m/%d/%Y"),
        "Sale Date": sold.strftime("%Y-%m-%d"),
        "Sale Type": pick(["WD ", "New", "COD", "ConLD"], p=[0.86, 0.08, 0.04, 0.02]),
        "Sale Condition": pick(["Normal", "Partial", "Abnorml", "Family"], p=[0.82, 0.08, 0.07, 0.03]),
        "SalePrice": price,
    }
    return pd.DataFrame(frame)


def tickets(n: int = 1200, seed: int = 3) -> pd.DataFrame:
    """Multiclass with four classes, no time: support tickets and the priority grade (1-4) they were given."""
    rng = np.random.default_rng(seed)
    channel = rng.choice(["email", "phone", "chat"], size=n)
    customers = rng.integers(1, 500, size=n)
    outage = rng.random(n) < 0.2
    words = rng.poisson(80, size=n)
    urgency = 1.5 * outage + np.log(customers) / 2 + (channel == "phone") * 0.8 + rng.normal(0, 0.5, size=n)
    grade = np.digitize(urgency, np.quantile(urgency, [0.4, 0.7, 0.9])) + 1
    return pd.DataFrame({"channel": channel, "customers_affected": customers, "outage": outage, "words": words,
                         "grade": grade})


def penguins() -> pd.DataFrame:
    """Multiclass, no time: the table the palmerpenguins package ships (344 birds, 3 species)."""
    from pipelines.landing import package_data

    return pd.read_csv(package_data("palmerpenguins", "penguins.csv"))


TABLES = {"churn": (customers, "churn", "binary", "roc_auc"),
          "house_prices": (houses, "price", "regression", "rmse"),
          "species": (penguins, "species", "multiclass", "macro_f1"),
          "grades": (tickets, "grade", "multiclass", "macro_f1"),
          "sales": (sales, "SalePrice", "regression", "rmse")}


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
    assert drafted["grades"].features.classes == ["1", "2", "3", "4"]
    sales = drafted["sales"]
    assert sales.features.event_time == "Sale Date" and sales.features.example_id == "PID"
    assert {"Lot Area", "Lot Frontage", "Garage Yr Blt"} <= set(sales.features.numeric)  # text, gaps
    assert {"Pool QC", "Misc Feature", "Central Air", "Waterfront"} <= set(sales.features.categorical)
    assert not {"Notes", "Listed"} & set(sales.features.inputs)  # empty; dates as text, not ISO 8601


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
            if name == "sales":  # a column missing in every row of the logged example keeps its declared type
                folder = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version.version}")
                logged = mlflow.models.Model.load(folder)
                assert logged.load_input_example(folder)["Pool QC"].isna().all()
                assert {c.name: c.type.name for c in logged.signature.inputs.inputs}["Pool QC"] == "string"
            assert served.ndim == (1 if cfg.task == "regression" else 2)
            if cfg.task == "multiclass":
                assert served.shape == (len(rows), len(cfg.features.classes))
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


def later_houses(n: int = 3000, seed: int = 7) -> pd.DataFrame:
    """The sales after those `init` was given (which end on 2024-03-30): 15 days from 2024-04-01, the same
    market."""
    frame = houses(n, seed)
    sold = pd.to_datetime(frame["sold_at"], utc=True)
    later = pd.Timestamp("2024-04-01", tz="UTC") + (sold - pd.Timestamp("2024-01-01", tz="UTC")) / 6
    return frame.assign(sold_at=later.dt.strftime("%Y-%m-%dT%H:%M:%S+00:00"))


class InProcessRuns:
    """The replay's monitoring runs in this process (dag.test), as the module's other runs; a retrain they
    start is queued in Airflow's database, and nobody runs it here."""

    def __init__(self, cfg, monitoring):
        self.cfg, self.dag = cfg, monitoring.build_monitoring_dag(cfg)

    def monitor(self, window_start, window_end) -> str:
        run = self.dag.test(run_conf={"window_start": window_start.isoformat(), "window_end": window_end.isoformat(),
                                      "reason": "replay test"})
        return str(getattr(run.state, "value", run.state))

    def follow_training(self, run_id: str) -> str:
        return self.training_state(run_id) or "not started"

    def training_state(self, run_id: str) -> str | None:
        from airflow.models import DagRun
        from airflow.utils.session import create_session

        with create_session() as session:
            run = session.query(DagRun).filter(DagRun.dag_id == f"train_{self.cfg.name}",
                                               DagRun.run_id == run_id).one_or_none()
            return str(getattr(run.state, "value", run.state)) if run else None


def test_a_replay_of_the_later_history_of_a_drafted_table_goes_through_the_live_loop(
        drafted, champions, service, state_root, dag_file, tmp_path):
    from pipelines import monitoring_store as store
    from pipelines.config import StatePaths
    from pipelines.replay import ReplayPlan, default_start, replay_source, replay_windows, write_replay_report

    cfg, state = drafted["house_prices"], StatePaths.from_env()
    later = tmp_path / "later_houses.csv"
    history = later_houses()
    history.to_csv(later, index=False)
    source = replay_source(cfg, [str(later)])
    assert default_start(cfg, state, source) == date(2024, 4, 1)  # the first day init did not land
    plan = ReplayPlan(date(2024, 4, 1), date(2024, 4, 5), every=2, label_delay_days=1)
    runs = InProcessRuns(cfg, dag_file("monitoring"))
    replayed = replay_windows(cfg, state, source, service, plan, runs, say=lambda line: None)

    day = pd.to_datetime(history["sold_at"], utc=True).dt.strftime("%Y-%m-%d")
    per_day = day.value_counts()
    expected = [int(per_day[["2024-04-01", "2024-04-02"]].sum()), int(per_day[["2024-04-03", "2024-04-04"]].sum())]
    assert [w.served for w in replayed] == expected and min(expected) >= cfg.monitoring.min_rows
    assert [w.monitor_state for w in replayed] == ["success", "success"]
    landing = state.landing("house_prices", "house_prices")
    for stamp in ("2024-04-01", "2024-04-02", "2024-04-03", "2024-04-04"):
        assert len(pd.read_parquet(landing / f"{stamp}.parquet")) == per_day[stamp]
        outcomes = pd.read_parquet(state.landing("house_prices", "outcomes") / f"{stamp}.parquet")
        assert len(outcomes) == per_day[stamp] and outcomes["price"].notna().all()
    assert not (landing / "2024-04-05.parquet").exists()
    engine = store.engine()
    with engine.connect() as connection:
        rows = {(str(r["window_start"]), str(r["window_end"])): r
                for r in store.load_windows(connection, "house_prices", since=date(2024, 4, 1))
                if r["window_end"] <= plan.end}  # not the window of today the test above judged
    engine.dispose()
    assert set(rows) == {("2024-04-01", "2024-04-03"), ("2024-04-03", "2024-04-05")}
    assert [rows[k]["rows"] for k in sorted(rows)] == expected
    # The first window's last day was labelled only once the next day had been served.
    first = rows[("2024-04-01", "2024-04-03")]
    assert first["labelled_rows"] + first["pending_labels"] == first["rows"] and first["labelled_rows"] > 0
    assert rows[("2024-04-03", "2024-04-05")]["pending_labels"] == per_day["2024-04-04"]
    report = write_replay_report(cfg, state, plan, runs)
    assert len(report["windows"]) == 2
    assert report["paths"]["png"].read_bytes().startswith(b"\x89PNG")
    assert "house_prices: monitoring timeline" in report["paths"]["html"].read_text()
