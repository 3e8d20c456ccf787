"""An MLflow server that goes away in the middle of a registration (a real `mlflow server`, reached through a
loopback proxy the test cuts): the task fails cleanly, the aliases stay as they were, no alias points at the
half-made version, and the task's retry completes the registration with no duplicate version."""

from __future__ import annotations

import pytest

from tests.mlflow_server import running_mlflow_server
from tests.unit.tcp_proxy import TcpProxy


@pytest.fixture(scope="module")
def mlflow_port(tmp_path_factory, empty_mlflow_db):
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow_server"), empty_mlflow_db) as url:
        yield int(url.rsplit(":", 1)[1])


@pytest.fixture()
def proxy(mlflow_port):
    """The loopback proxy the test reaches the server through, and cuts."""
    proxy = TcpProxy(mlflow_port).start()
    yield proxy
    proxy.stop()


@pytest.mark.parametrize("cut_before", ["register", "previous", "champion"])
def test_the_registry_gone_mid_registration_leaves_the_aliases_and_a_retry_completes(proxy, tmp_path, monkeypatch,
                                                                                   cut_before):
    from pipelines.registry import aliases, promote_version, register_version
    from tests.unit.toy_models import ToyRegistry

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail at once rather than back off for minutes
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    name = f"outage_{cut_before}"
    registry = ToyRegistry(tmp_path, experiment=name)
    client = registry.client
    v1 = registry.register(name, registry.log_constant())
    promote_version(client, name, v1)
    candidate = registry.log_constant()
    tags = {"airflow_dag_id": "train_x", "airflow_run_id": "run-2"}

    def register_and_promote():
        """What the training DAG's register task does."""
        return promote_version(client, name, register_version(client, name, candidate.uri, tags))

    real_set = client.set_registered_model_alias

    def set_alias(model, alias, version):
        if alias == cut_before:
            proxy.stop()
        return real_set(model, alias, version)

    if cut_before == "register":
        proxy.stop()
    monkeypatch.setattr(client, "set_registered_model_alias", set_alias)
    with pytest.raises(Exception, match="Connection refused|Max retries|ConnectionError|API request"):
        register_and_promote()
    monkeypatch.setattr(client, "set_registered_model_alias", real_set)
    proxy.start()

    after = aliases(client, name)
    assert after["champion"] == v1 and after["challenger"] is None  # served as before; nothing dangling
    assert after["previous"] in (None, v1)  # at most a move that names what is still served
    versions = {str(v.version) for v in client.search_model_versions(f"name = '{name}'")}
    assert len(versions) == (1 if cut_before == "register" else 2)

    promotion = register_and_promote()  # the task's retry
    assert aliases(client, name) == {"champion": promotion.version, "previous": v1, "challenger": None}
    assert {str(v.version) for v in client.search_model_versions(f"name = '{name}'")} == {v1, promotion.version}
