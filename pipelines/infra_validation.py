"""Infra validation: before promotion, the candidate runs in a staging instance of the prediction service
and must answer its own serving input example and a sample of holdout rows, sent as a client would send
them (JSON over the service's ASGI stack), with the predictions it got in evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class InfraValidation:
    passed: bool
    reason: str
    rows_checked: int = 0
    max_abs_diff: float | None = None


def validate_in_staging(model_name: str, model_uri: str, sample: pd.DataFrame, expected: np.ndarray,
                        serving_example: str | None, tolerance: float = 1e-6) -> InfraValidation:
    """``sample`` holds model inputs; ``expected`` the output evaluation computed for them (class
    probabilities, or values);
    ``serving_example`` the raw body MLflow saved beside the model (it may hold NaN tokens)."""
    import orjson
    from fastapi.testclient import TestClient

    from pipelines.serving.app import create_app

    app = create_app(model_name, model_uri=model_uri, poll_seconds=0, log_predictions=False)
    try:
        with TestClient(app) as client:
            if client.get("/ping").status_code != 200:
                return InfraValidation(False, f"the service could not load {model_uri} (/ping is not 200)")
            if serving_example is not None:
                answer = client.post("/invocations", content=serving_example,
                                     headers={"Content-Type": "application/json"})
                if answer.status_code != 200:
                    return InfraValidation(False, f"the model's own input example got HTTP {answer.status_code}: "
                                                  f"{answer.text[:500]}")
            records = sample.astype(object).where(sample.notna(), None).to_dict(orient="records")
            body = orjson.dumps({"dataframe_records": records})  # full float precision, NaN as null
            answer = client.post("/invocations", content=body, headers={"Content-Type": "application/json"})
            if answer.status_code != 200:
                return InfraValidation(False, f"holdout sample got HTTP {answer.status_code}: {answer.text[:500]}")
            served = np.asarray(answer.json()["predictions"], dtype=float)
    except Exception as exc:  # anything that stops the service from serving is a failed validation
        return InfraValidation(False, f"the staging service failed: {type(exc).__name__}: {exc}")
    if served.shape != expected.shape:
        return InfraValidation(False, f"served {served.shape[0]} predictions for {expected.shape[0]} rows")
    errors = np.abs(served - expected)
    diff = float(errors.max()) if served.size else 0.0
    if not diff <= tolerance:
        worst = int(np.unravel_index(errors.argmax(), errors.shape)[0])
        return InfraValidation(False, f"served predictions differ from evaluation by up to {diff:.3g} "
                                      f"(row {worst}: served {served[worst]}, evaluated {expected[worst]})",
                               len(served), diff)
    return InfraValidation(True, f"{len(served)} holdout rows and the input example served with the evaluated "
                                 f"predictions (max difference {diff:.1e})", len(served), diff)


def serving_example_of(model_uri: str) -> str | None:
    """The request body MLflow saved beside the model (``serving_input_example.json``), if any."""
    import mlflow.artifacts

    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    path = folder / "serving_input_example.json"
    return path.read_text() if path.exists() else None
