def test_plugin_links_to_mlflow_and_the_service(monkeypatch):
    import importlib.util
    from pathlib import Path

    monkeypatch.setenv("MLOPS_SERVING_URL", "http://svc:8000")
    path = Path(__file__).resolve().parents[2] / "plugins" / "mlops_links.py"
    spec = importlib.util.spec_from_file_location("mlops_links_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    views = {v["name"]: v for v in module.MlopsLinksPlugin.external_views}
    assert views["Prediction service"]["href"] == "http://svc:8000/health"
    assert views["MLflow"]["href"].startswith("http")
