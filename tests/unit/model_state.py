"""A model config and a state folder for one test, without a stack."""

from pipelines.config import StatePaths


def state_with_model(tmp_path, monkeypatch, name: str, config_text: str) -> StatePaths:
    """One model config ``name`` in this test's include folder, and this test's state folder (no stack)."""
    (tmp_path / "include" / "models").mkdir(parents=True)
    (tmp_path / "include" / "models" / f"{name}.yaml").write_text(config_text)
    monkeypatch.setenv("MLOPS_INCLUDE_DIR", str(tmp_path / "include"))
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))
    return StatePaths(root=tmp_path / "state")
