"""The CLI's registry commands against an MLflow that does not answer: one clear line, no traceback, no
minutes of MLflow's retries."""

import pytest

from tests.mlflow_server import free_port


def test_models_with_mlflow_down_says_so_and_exits_nonzero(monkeypatch, tmp_path):
    import os

    from pipelines.cli import main

    # The command sets MLflow's retry defaults in its process; here they stay in this test's copy.
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP")})
    monkeypatch.setenv("MLOPS_INCLUDE_DIR", str(tmp_path / "include"))
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    with pytest.raises(SystemExit) as refused:
        main(["models"])
    message = str(refused.value.code)
    assert message.startswith(f"error: MLflow at {url} cannot be read (is the stack up?"), message
    assert "Connection refused" in message or "Max retries" in message
