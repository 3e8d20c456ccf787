"""The deploy task: waits for every worker, and a deploy that cannot complete puts the aliases back."""

import pytest

from pipelines.config import ModelConfig, ServingConfig
from pipelines.deployment import deploy, serves
from pipelines.registry import alias_version, promote_version, register_version


@pytest.fixture()
def client(toy_registry):
    """A registry client with one logged model (``client.model_uri``) to register versions of."""
    client = toy_registry.client
    client.model_uri = toy_registry.log_constant().uri
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


def fake_service(answers):
    """An HTTP server whose /admin/reload answers come from ``answers`` in turn (one per call)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    calls = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            answer = answers[len(calls) % len(answers)]
            calls.append(answer["pid"])
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, calls


def test_deploy_waits_until_every_worker_serves_the_version(flights_config):
    from pipelines.deployment import wait_until_served

    worker = {"version": "3", "challenger_mode": "off", "workers": 2}
    # Worker 11 already serves v3; worker 12 answers v2 once (still loading), then v3.
    server, calls = fake_service([{**worker, "pid": 11}, {**worker, "pid": 12, "version": "2"}, {**worker, "pid": 11},
                                  {**worker, "pid": 12}])
    cfg = flights_config.model_copy(update={"serving": ServingConfig(reload_timeout_s=10)})
    answer = wait_until_served(cfg, f"http://127.0.0.1:{server.server_port}", {"version": "3",
                                                                                 "challenger_version": None})
    server.shutdown()
    assert answer["pid"] == 12 and calls == [11, 12, 11, 12]


def test_deploy_fails_when_a_worker_never_follows(flights_config):
    from pipelines.deployment import wait_until_served

    worker = {"version": "3", "challenger_mode": "off", "workers": 2, "pid": 11}
    server, _ = fake_service([worker])  # the second worker never answers with v3
    cfg = flights_config.model_copy(update={"serving": ServingConfig(reload_timeout_s=1.0)})
    with pytest.raises(RuntimeError, match="on every worker"):
        wait_until_served(cfg, f"http://127.0.0.1:{server.server_port}", {"version": "3", "challenger_version": None})
    server.shutdown()
