"""MLflow edges: where the tracking store is, experiments per model, and logging a sklearn model."""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

from pipelines.config import FeaturesConfig, StatePaths
from pipelines.settings import stack_settings

_MODEL_REQUIREMENTS = ("scikit-learn", "pandas", "numpy", "scipy", "skops")


def tracking_uri(state: StatePaths | None = None) -> str:
    """$MLFLOW_TRACKING_URI; else the stack's MLflow server (``http://127.0.0.1:$MLFLOW_PORT``, default 5000)
    when $MLOPS_HOME holds the pipeline's login `make up` made; else, with no stack, a SQLite store under
    $MLOPS_HOME/mlflow (never cwd-relative)."""
    settings = stack_settings()
    if settings.tracking_uri:
        return settings.tracking_uri
    state = state or StatePaths.from_env()
    if _stack_login(state):
        return settings.mlflow_server_url()
    state.mlflow.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{state.mlflow / 'mlflow.db'}"


def _stack_login(state: StatePaths) -> tuple[str, str] | None:
    """The pipeline's MLflow user and password, kept in the state folder of a stack `make up` brought up."""
    from pipelines.mlflow_auth import PIPELINE, secret_file

    path = secret_file(state.root, f"{PIPELINE}_password")
    return (PIPELINE, path.read_text().strip()) if path.exists() else None


def configure_mlflow(state: StatePaths | None = None) -> str:
    """Point MLflow at ``tracking_uri``; on the stack's server found through the state folder, with no login in
    the environment, log in as the pipeline's user (MLflow reads a login from the environment only)."""
    import mlflow

    uri = tracking_uri(state)
    settings = stack_settings()
    if not settings.tracking_uri and not settings.tracking_username \
            and (login := _stack_login(state or StatePaths.from_env())):
        os.environ.update(MLFLOW_TRACKING_USERNAME=login[0], MLFLOW_TRACKING_PASSWORD=login[1])
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def mlflow_client(state: StatePaths | None = None):
    """An MLflow client of the configured tracking store and registry."""
    import mlflow

    configure_mlflow(state)
    return mlflow.MlflowClient()


def mlflow_ui_url() -> str:
    """The MLflow UI as the operator's browser reaches it: $MLOPS_MLFLOW_UI_URL, else an http tracking URI, else
    the stack's own server."""
    settings = stack_settings()
    url = settings.mlflow_ui_url or settings.tracking_uri or ""
    return url.rstrip("/") if url.startswith("http") else settings.mlflow_server_url()


def mlflow_run_url(experiment_id: str | None, run_id: str) -> str:
    return f"{mlflow_ui_url()}/#/experiments/{experiment_id or 0}/runs/{run_id}"


def ensure_experiment(name: str, state: StatePaths | None = None) -> str:
    """Experiment id for ``name``; a local store keeps artifacts under $MLOPS_HOME, a server keeps its own."""
    import mlflow

    configure_mlflow(state)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if tracking_uri(state).startswith(("sqlite:", "file:", "/")):
        location = (Path((state or StatePaths.from_env()).mlflow) / "artifacts").as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except Exception:  # another task created it first
        return mlflow.get_experiment_by_name(name).experiment_id


def pip_requirements() -> list[str]:
    """Pinned requirements, given explicitly: inferring them costs ~8 s per model in a subprocess."""
    return [f"{name}=={metadata.version(name)}" for name in _MODEL_REQUIREMENTS]


def input_schema(features: FeaturesConfig):
    """The model's input signature from the config's declared features, never from a sample (a column
    missing in every sampled row would be typed ``any``): numeric features are doubles and categorical ones
    strings, as ``training.model_inputs`` gives them to the model; every column is required (the pipeline
    needs it), and any value may be missing."""
    from mlflow.types import ColSpec, DataType, Schema

    return Schema([*(ColSpec(DataType.double, name) for name in features.numeric),
                   *(ColSpec(DataType.string, name) for name in features.categorical)])


def log_sklearn_model(model, input_example, task, name: str = "model"):
    """Log a fitted Pipeline with signature and input example, saved with skops. Its input signature is the
    task's declared features (``input_schema``); its output is inferred from the model's answers. It is
    served (by pyfunc, ``mlflow models serve`` and our service) through the task type's ``predict_method``
    (``predict_proba`` for classifiers, ``predict`` for regressors), and its MLmodel metadata names the task
    type, target and classes, so whoever loads the model knows what its answers mean."""
    import mlflow
    import skops.io as sio
    from mlflow.models import ModelSignature, infer_signature

    from pipelines.task_types import model_classes

    trusted = sio.get_untrusted_types(data=sio.dumps(model))
    outputs = infer_signature(model_output=task.output(model, input_example)).outputs
    signature = ModelSignature(inputs=input_schema(task.features), outputs=outputs)
    return mlflow.sklearn.log_model(
        model,
        name=name,
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements(),
        serialization_format="skops",
        skops_trusted_types=trusted,
        pyfunc_predict_fn=task.predict_method,
        metadata=task.model_metadata(model_classes(model)),
    )


# What this project's models hold beyond what skops trusts by default (scikit-learn's estimators, numpy
# arrays, builtins): the histogram gradient boosting's tree predictors and its validation helper, and numpy
# dtypes. A model that needs any other type was not made by these pipelines and is refused, whatever its own
# MLmodel file lists as trusted.
TRUSTED_TYPES = (
    "functools.partial",
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
)


class UntrustedModelError(ValueError):
    """A model artifact that would need code this project does not trust to load."""


def load_sklearn_model(model_uri: str):
    """A scikit-learn model logged by ``log_sklearn_model``, loaded with the project's own trusted types.

    ``mlflow.sklearn.load_model`` trusts the types the artifact's MLmodel file lists, so anyone who can write
    a model version could make every loader run their code; and a pickled model runs any code it holds."""
    import mlflow
    import skops.io as sio
    import yaml

    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    flavor = (yaml.safe_load((folder / "MLmodel").read_text()).get("flavors") or {}).get("sklearn") or {}
    if flavor.get("serialization_format") != "skops" or not flavor.get("pickled_model"):
        raise UntrustedModelError(f"{model_uri}: not a skops-serialized scikit-learn model (serialization "
                                  f"{flavor.get('serialization_format')!r}): a pickle runs any code it holds")
    path = folder / flavor["pickled_model"]
    untrusted = sorted(set(sio.get_untrusted_types(file=path)) - set(TRUSTED_TYPES))
    if untrusted:
        raise UntrustedModelError(f"{model_uri}: the model holds types this project does not trust: {untrusted} "
                                  "(it was not made by these pipelines)")
    return sio.load(path, trusted=list(TRUSTED_TYPES))
