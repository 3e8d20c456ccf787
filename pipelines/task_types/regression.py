"""Regression: a value per row, judged by RMSE (and MAE, R²)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.task_types.base import PairedInputs, TargetShape, TaskType

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from pipelines.task_types.estimation import ErrorProfile


class Regression(TaskType):
    name = "regression"
    metrics = {"rmse": False, "mae": False, "r2": True}
    selection_metric = "rmse"
    default_floors = {"r2": 0.0}  # at least as good as predicting the mean
    realized_metrics = frozenset(metrics)
    challenger_metrics = ("rmse", "r2", "mae")
    predict_method = "predict"
    prediction_kind = "numeric"
    is_classifier = False
    estimate_unavailable = ("a regression's error cannot be read off its predictions alone: it is estimated "
                            "from the holdout's error per stratum of the key features, which needs the holdout "
                            "and the features' importance")

    @classmethod
    def target_fit(cls, shape: TargetShape) -> tuple[bool, str]:
        if shape.kind == "continuous" or shape.many_numbers:
            return True, f"holds numbers with {shape.distinct} distinct values"
        if not shape.numeric:
            return False, "it holds text, not numbers"
        return False, f"its {shape.distinct} distinct whole numbers are classes, not a quantity"

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

    def loss_truth(self, values: pd.Series, classes: list[str] | None) -> np.ndarray:
        import numpy as np

        return np.asarray(self.labels(values), dtype=float)

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

    def paired_columns(self, truth, outputs) -> dict[str, np.ndarray]:
        """Per model, ``<model>_prediction``: the value it answers."""
        return {f"{model}_prediction": self.scores(output, classes) for model, (output, classes, _) in outputs.items()}

    def paired_inputs(self, frame, metric, models) -> PairedInputs:
        return PairedInputs(frame["truth"].to_numpy(dtype=float),
                            tuple(frame[f"{model}_prediction"].to_numpy(dtype=float) for model in models))

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

    # performance estimation ------------------------------------------------------------------------------
    ESTIMABLE = ("rmse",)
    KEY_FEATURES = 3  # the features of highest permutation importance whose error profile is tried
    STRATA = 10  # a numeric feature is cut at the holdout's deciles
    MIN_STRATUM_ROWS = 30  # fewer holdout rows: the stratum's error is not known
    MIN_HOLDOUT_ROWS = 1000
    MAX_CHECK_ERROR = 0.15  # mean relative error on held-out days above which a feature's profile is refused
    MIN_COVERAGE = 0.8  # share of a window's rows that must fall in strata whose error the holdout knows
    estimate_reads_features = True

    def fit_estimator(self, truth, scores, classes, metric, seed=0, holdout=None, importance=None):
        """The RMSE the holdout would have at a window's mix of a key feature: the holdout's mean squared error
        per stratum of the feature (its deciles, or its values), weighted by the window's share of rows in
        each stratum (importance weighting on that feature). The window's estimate is the worst over the key
        features, the ``KEY_FEATURES`` of highest permutation importance. It sees what a shift in a feature
        the model relies on does to the error (more flights late in the day: more delay, more error), and
        nothing else: a change in the relation itself is left to the labels.

        Checked per feature on the holdout: the profile measured on one half of the holdout's days estimates
        the other half's RMSE on its rows in the feature's lower strata and in its upper strata (a number
        shifting towards either end), or on its rows of each value (a category's share growing), and the
        other way round; a feature is kept when the mean relative error, weighted by rows, is at most
        ``MAX_CHECK_ERROR``. Days go alternately to the halves, since the errors of one day's rows move
        together (a storm); without an event time the rows are split at random."""
        import numpy as np

        from pipelines.task_types.estimation import Estimator

        if metric not in self.ESTIMABLE:
            return None, f"not estimated: {metric} has no estimate before the labels (only {', '.join(self.ESTIMABLE)})"
        if holdout is None or not importance:
            return None, f"not estimated: {self.estimate_unavailable}"
        squared = (np.asarray(truth, dtype=float) - np.asarray(scores, dtype=float)) ** 2
        if squared.size < self.MIN_HOLDOUT_ROWS or not np.isfinite(squared).all():
            return None, (f"not estimated: the holdout has fewer than {self.MIN_HOLDOUT_ROWS} rows with a value, too "
                          "few to check an estimate of the error")
        holdout = holdout.reset_index(drop=True)
        halves = self.holdout_halves(holdout, seed)
        ranked = sorted((f for f, v in importance.items() if v > 0 and f in holdout.columns),
                        key=lambda f: -importance[f])[:self.KEY_FEATURES]
        kept, refused = [], []
        for feature in ranked:
            profile, problem = self._error_profile(feature, holdout[feature], squared, importance[feature], halves)
            if problem:
                refused.append(f"{feature} ({problem})")
            else:
                kept.append(profile)
        if not kept:
            note = ("no key feature's error per stratum held on held-out days of the holdout: "
                    f"{'; '.join(refused) or 'no feature the model relies on'}")
            return Estimator(metric, [], [], 1.0, False, note), note  # 1.0: no error it can vouch for
        error = float(max(p.check_error for p in kept))  # the worst feature's estimate: its check's error
        note = (f"estimated {metric}: the holdout's error at the window's mix of "
                f"{', '.join(f'{p.feature} (off by {p.check_error:.0%} on held-out days)' for p in kept)}, the worst"
                + (f"; refused: {'; '.join(refused)}" if refused else ""))
        return Estimator(metric, [], [], round(error, 6), True, note, kept, relative_error=True), note

    def _error_profile(self, feature: str, values, squared, importance: float, halves):
        """The feature's ``ErrorProfile`` on the whole holdout, or why it is refused."""
        import numpy as np

        from pipelines.task_types.estimation import ErrorProfile

        kind = "categorical" if feature in self.features.categorical else "numeric"
        if kind == "numeric":
            numbers = np.asarray(values, dtype=float)
            edges = [float(e) for e in np.unique(np.nanquantile(numbers, np.linspace(0, 1, self.STRATA + 1))[1:-1])] \
                if np.isfinite(numbers).any() else []
            categories: list[str] = []
        else:
            edges, categories = [], sorted(values.dropna().astype(str).unique())
        shape = ErrorProfile(feature, kind, edges, categories, [], importance, 0.0)
        strata = strata_of(shape, values)
        count = len(edges) + 1 if kind == "numeric" else len(categories)

        def mse_of(rows):
            return np.array([squared[rows & (strata == i)].mean()
                             if (rows & (strata == i)).sum() >= self.MIN_STRATUM_ROWS else np.nan
                             for i in range(count)])

        whole = mse_of(np.ones(len(strata), dtype=bool))
        if np.isfinite(whole).sum() < 2:
            return None, "fewer than two strata with enough rows: a shift along it cannot be seen"
        # A shift moves a number towards one end (its lower or upper strata), a category towards any one value.
        known = np.flatnonzero(np.isfinite(whole))
        parts = (known[:len(known) // 2], known[len(known) // 2:]) if kind == "numeric" else [[i] for i in known]
        errors, weights = [], []
        for fit, check in ((halves, ~halves), (~halves, halves)):
            fitted = mse_of(fit)
            for part in parts:
                rows = check & np.isin(strata, part) & np.isfinite(fitted[np.clip(strata, 0, None)]) & (strata >= 0)
                if rows.sum() < self.MIN_STRATUM_ROWS:
                    continue
                estimated = np.sqrt(fitted[strata[rows]].mean())
                realized = np.sqrt(squared[rows].mean())
                errors.append(abs(estimated - realized) / realized if realized > 0 else 0.0)
                weights.append(rows.sum())
        if len(errors) < 2:
            return None, "too few rows on held-out days to check it"
        check_error = float(np.average(errors, weights=weights))
        if check_error > self.MAX_CHECK_ERROR:
            return None, f"off by {check_error:.0%} on held-out days, more than {self.MAX_CHECK_ERROR:.0%}"
        mse = [None if np.isnan(v) else round(float(v), 6) for v in whole]
        return ErrorProfile(feature, kind, edges, categories, mse, importance, round(check_error, 6)), None

    def estimate(self, scores, estimator, profile=None) -> float:
        import numpy as np

        worst = float("nan")
        if profile is None:
            return worst
        for stratified in estimator.profiles:
            column = profile.columns.get(stratified.feature)
            if column is None or column.rows == 0:
                continue
            value = stratified_rmse(stratified, column.values, column.counts, self.MIN_COVERAGE)
            if np.isfinite(value) and (np.isnan(worst) or value > worst):
                worst = value
        return worst

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


def strata_of(profile: ErrorProfile, values) -> np.ndarray:
    """Each value's stratum in ``profile`` (-1: missing, or a category the holdout did not have)."""
    import numpy as np
    import pandas as pd

    if profile.kind == "numeric":
        numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
        strata = np.searchsorted(np.asarray(profile.edges, dtype=float), numbers, side="right")
        return np.where(np.isfinite(numbers), strata, -1)
    texts = pd.Series(values, dtype=object)
    return pd.Categorical(texts.where(texts.isna(), texts.astype(str)), categories=profile.categories).codes.astype(int)


def stratified_rmse(profile: ErrorProfile, values, counts, min_coverage: float) -> float:
    """The RMSE of the holdout reweighted to a window whose feature holds ``values`` ``counts`` times: the
    holdout's mean squared error per stratum, weighted by the window's rows in it; NaN when fewer than
    ``min_coverage`` of the window's rows fall in strata whose error the holdout knows."""
    import numpy as np

    counts = np.asarray(counts, dtype=float)
    if counts.sum() <= 0:
        return float("nan")
    mse = np.array([np.nan if v is None else v for v in profile.mse], dtype=float)
    strata = strata_of(profile, values)
    known = strata >= 0
    known[known] = np.isfinite(mse[strata[known]])
    if counts[known].sum() < min_coverage * counts.sum():
        return float("nan")
    return float(np.sqrt((counts[known] * mse[strata[known]]).sum() / counts[known].sum()))
