"""The deploy task: waits for every worker, and a deploy that cannot complete puts the aliases back."""

import mlflow
import pytest
from sklearn.dummy import DummyClassifier

from pipelines.config import ModelConfig, ServingConfig
from pipelines.registry import alias_version, promote_version, register_version
from pipelines.tracking import configure_mlflow
from pipelines.training_tasks import deploy, serves


@pytest.fixture()
def client(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    configure_mlflow()  # tracking and registry: an earlier test may have left another registry URI set
    experiment = mlflow.create_experiment("deploy_test", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(DummyClassifier().fit([[0], [1]], [0, 1]), name="model",
                                        serialization_format="cloudpickle")
    client = mlflow.MlflowClient()
    client.model_uri = info.model_uri
    return client


def test_a_failed_deploy_restores_the_aliases(client, monkeypatch, flights_config: ModelConfig):
    versions = [register_version(client, flights_config.model_name, client.model_uri,
                                 {"airflow_dag_id": "d", "airflow_run_id": str(i)}) for i in (1, 2)]
    promote_version(client, flights_config.model_name, versions[0])
    promotion = promote_version(client, flights_config.model_name, versions[1])
    monkeypatch.setenv("MLOPS_SERVING_URL", "http://127.0.0.1:9")  # nothing listens: the service never follows
    cfg = flights_config.model_copy(update={"serving": ServingConfig(reload_timeout_s=1.5)})
    with pytest.raises(RuntimeError, match="did not serve"):
        deploy(cfg, {"version": promotion.version, "before": promotion.before})
    assert alias_version(client, cfg.model_name, "champion") == versions[0]
    assert alias_version(client, cfg.model_name, "previous") is None


@pytest.mark.parametrize(("answer", "expected"), [
    ({"version": "3", "challenger_mode": "off", "challenger_version": None}, True),
    ({"version": "3", "challenger_mode": "shadow", "challenger_version": "4"}, True),
    ({"version": "3", "challenger_mode": "shadow", "challenger_version": "2"}, False),
    ({"version": "2", "challenger_mode": "off"}, False),
    ({"version": "3", "challenger_mode": "off", "challenger_version": None, "forced": "off"}, True),
])
def test_serves_compares_champion_and_challenger(answer, expected):
    assert serves(answer, {"version": "3", "challenger_version": "4"}) is expected
