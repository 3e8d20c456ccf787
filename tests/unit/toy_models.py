"""Tiny real models for the serving tests: trained with the project's own training step, logged and
registered in a throw-away SQLite MLflow store, so the service loads them exactly as it loads a champion."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from pipelines.config import FeaturesConfig, SearchConfig
from pipelines.task_types import BinaryClassification
from pipelines.tracking import log_sklearn_model
from pipelines.training import model_inputs, train_candidate

FEATURES = FeaturesConfig(numeric=["signal"], categorical=["group"], target="label", event_time="t")
WITH_NOISE = FeaturesConfig(numeric=["signal", "noise"], categorical=["group"], target="label",
                            event_time="t")


def toy_frame(n: int, seed: int, *, flip: bool = False, noise: bool = False, missing: bool = False) -> pd.DataFrame:
    """``label`` follows the sign of ``signal`` (reversed with ``flip``, so two models visibly disagree);
    ``missing`` blanks every 17th signal and some groups; ``noise`` adds an uninformative column."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    if missing:
        signal[::17] = np.nan
    known = np.nan_to_num(signal)
    frame = pd.DataFrame({"signal": signal})
    if noise:
        frame["noise"] = rng.normal(size=n)
    frame["group"] = rng.choice(["a", "b", None] if missing else ["a", "b"], size=n)
    frame["label"] = ((known < 0) if flip else (known > 0)).astype(int)
    return frame


@dataclass(frozen=True)
class LoggedModel:
    uri: str
    model: Any  # the fitted sklearn pipeline, to compare the service's answers with


class ToyRegistry:
    """An MLflow tracking store and registry in ``root`` (SQLite and a local artifact folder)."""

    def __init__(self, root: Path, experiment: str = "toy"):
        from pipelines.tracking import configure_mlflow

        configure_mlflow()  # tracking and registry: an earlier test may have left another registry URI set
        self.experiment = mlflow.create_experiment(experiment, artifact_location=(root / "artifacts").as_uri())
        self.client = mlflow.MlflowClient()

    def log(self, *, seed: int = 0, flip: bool = False, noise: bool = False, missing: bool = False,
            rows: int = 400, features: FeaturesConfig = FEATURES) -> LoggedModel:
        def frame(n: int, s: int) -> pd.DataFrame:
            return toy_frame(n, s, flip=flip, noise=noise, missing=missing)

        task = BinaryClassification(features)
        trained = train_candidate(frame(rows, seed), frame(100, 100 + seed), task, SearchConfig(), {})
        with mlflow.start_run(experiment_id=self.experiment):
            info = log_sklearn_model(trained.model, model_inputs(frame(5, 5), features), task)
        return LoggedModel(info.model_uri, trained.model)

    def log_constant(self) -> LoggedModel:
        """The smallest loggable model (a DummyClassifier), for tests about the registry, not predictions."""
        from sklearn.dummy import DummyClassifier

        model = DummyClassifier().fit([[0], [1]], [0, 1])
        with mlflow.start_run(experiment_id=self.experiment):
            info = mlflow.sklearn.log_model(model, name="model", serialization_format="skops")
        return LoggedModel(info.model_uri, model)

    def register(self, name: str, logged: LoggedModel, tags: dict[str, str] | None = None) -> str:
        from pipelines.registry import register_version

        return register_version(self.client, name, logged.uri,
                                {"airflow_dag_id": "d", "airflow_run_id": logged.uri, **(tags or {})})


@contextlib.contextmanager
def registry_to_copy(folder: Path, empty_store: Path) -> Iterator[ToyRegistry]:
    """A ToyRegistry on a store of its own in ``folder`` (a copy of ``empty_store``, conftest's ``empty_mlflow_db``)
    while the block runs: what a module's tests share, each on its own copy of the store (``use_copy_of``)."""
    import pytest

    shutil.copyfile(empty_store, folder / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        yield ToyRegistry(folder)


def use_copy_of(folder: Path, into: Path, monkeypatch) -> str:
    """A copy of the store ``registry_to_copy`` made in ``folder``, in ``into``, as this test's tracking store and
    registry: what a test changes stays in its copy (the copy's models keep their artifacts in ``folder``)."""
    from pipelines.tracking import configure_mlflow

    shutil.copyfile(folder / "mlflow.db", into / "mlflow.db")
    uri = f"sqlite:///{into / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    configure_mlflow()
    return uri
