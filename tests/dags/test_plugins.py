import importlib.util
from pathlib import Path

from fastapi.testclient import TestClient


def load_plugin(monkeypatch):
    monkeypatch.setenv("MLOPS_SERVING_URL", "http://svc:8000")
    path = Path(__file__).resolve().parents[2] / "plugins" / "mlops_ui.py"
    spec = importlib.util.spec_from_file_location("mlops_ui_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MlopsUiPlugin


def test_the_plugin_shows_the_operator_pages_and_links_to_mlflow_and_the_service(monkeypatch):
    plugin = load_plugin(monkeypatch)
    views = {v["name"]: v for v in plugin.external_views}
    assert views["Models"]["href"] == "/mlops/models" and views["Models"]["url_route"]
    assert views["Model"]["href"] == "/mlops/dags/{DAG_ID}" and views["Model"]["destination"] == "dag"
    assert views["Prediction service"]["href"] == "http://svc:8000/health"
    # MLflow refuses to be framed by another origin: a plain link, never a page inside the UI.
    assert views["MLflow"]["href"].startswith("http") and "url_route" not in views["MLflow"]
    assert [app["url_prefix"] for app in plugin.fastapi_apps] == ["/mlops"]


def test_the_mounted_app_answers_only_an_airflow_login(monkeypatch):
    """Airflow's own requires_authenticated() guards every route: no cookie or token, no page."""
    app = load_plugin(monkeypatch).fastapi_apps[0]["app"]
    guards = [d.dependency.__qualname__ for d in app.router.dependencies]
    assert guards == ["requires_authenticated.<locals>.inner"]
    client = TestClient(app)
    for path in ("/models", "/models/x", "/models/x/versions/1", "/dags/train_x"):
        assert client.get(path).status_code == 401, path
