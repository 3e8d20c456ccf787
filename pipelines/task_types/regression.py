"""Regression: a value per row, judged by RMSE (and MAE, R²)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.task_types.base import TaskType

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class Regression(TaskType):
    name = "regression"
    metrics = {"rmse": False, "mae": False, "r2": True}
    selection_metric = "rmse"
    default_floors = {"r2": 0.0}  # at least as good as predicting the mean
    realized_metrics = frozenset(metrics)
    predict_method = "predict"
    prediction_kind = "numeric"
    is_classifier = False
    estimate_unavailable = ("a regression's error cannot be read off its predictions alone (it would take a "
                            "second model of the error, NannyML's DLE): realized values judge it once labels land")

    def target_problem(self, values: pd.Series) -> str | None:
        import pandas as pd

        from pipelines.task_types.labels import describe_values

        missing = int(values.isna().sum())
        if missing:
            return f"{missing} rows have no value"
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.isna().any() or pd.api.types.is_bool_dtype(values):
            text = values[numbers.isna()] if numbers.isna().any() else values
            return f"a regression needs numbers, it holds text (e.g. {describe_values(text)})"
        if numbers.nunique() < 2:
            return f"every row holds the same value {numbers.iloc[0]!r}: there is nothing to learn"
        return None

    def labels(self, values: pd.Series) -> np.ndarray:
        import pandas as pd

        return pd.to_numeric(values, errors="raise").to_numpy(dtype="float64")

    def estimator(self, kind: str, params: dict[str, Any], categorical_mask: list[bool], random_state: int):
        from sklearn.ensemble import HistGradientBoostingRegressor
        from sklearn.linear_model import Ridge

        if kind == "gradient_boosting":
            return HistGradientBoostingRegressor(categorical_features=categorical_mask, random_state=random_state,
                                                 **params)
        return Ridge(**params)

    def scores(self, output: np.ndarray, classes: list[str] | None) -> np.ndarray:
        import numpy as np

        return np.asarray(output, dtype="float64").reshape(-1)

    def batch_columns(self, output: np.ndarray, classes: list[str] | None) -> dict[str, np.ndarray]:
        return {"prediction": self.scores(output, classes)}

    def evaluate(self, truth, output, classes, threshold) -> dict[str, float]:
        return self.realized(truth, self.scores(output, classes), classes, threshold)

    def realized(self, truth, scores, classes, threshold) -> dict[str, float]:
        import numpy as np
        from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

        truth, scores = np.asarray(truth, dtype=float), np.asarray(scores, dtype=float)
        if truth.size == 0:
            return {"rows": 0.0}
        return {
            "rmse": float(np.sqrt(mean_squared_error(truth, scores))),
            "mae": float(mean_absolute_error(truth, scores)),
            "r2": float(r2_score(truth, scores)) if truth.size > 1 else float("nan"),
            "mean_target": float(truth.mean()),
            "rows": float(truth.size),
        }

    def plot_evaluation(self, truth, output, classes, metrics, slices, folder: Path,
                        champion_output=None) -> list[Path]:
        import numpy as np

        from pipelines.task_types.plots import figure

        truth, predicted = np.asarray(truth, dtype=float), self.scores(output, classes)
        with figure(folder / "predicted_vs_actual.png") as ax:
            ax.scatter(truth, predicted, s=4, alpha=0.3, label="candidate")
            if champion_output is not None:
                ax.scatter(truth, self.scores(champion_output, classes), s=4, alpha=0.3, label="champion")
            low, high = float(np.nanmin(truth)), float(np.nanmax(truth))
            ax.plot([low, high], [low, high], "k:", lw=1)
            ax.set(xlabel="actual", ylabel="predicted", title=f"Predicted vs actual (RMSE {metrics['rmse']:.3g})")
            ax.legend()
        with figure(folder / "residuals.png") as ax:
            ax.hist(predicted - truth, bins=50)
            ax.set(xlabel="predicted - actual", ylabel="rows", title=f"Residuals (MAE {metrics['mae']:.3g})")
        return [folder / "predicted_vs_actual.png", folder / "residuals.png",
                *self.plot_slices(metrics, slices, folder)]
