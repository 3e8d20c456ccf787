"""Which statistic compares two models on each metric: the paired test on the shared holdout
(``pipelines.paired_tests``) and the per-row loss a live challenger is judged on (``pipelines.sequential_tests``).

Plain tables with no imports, so the model config validates a gate or challenger policy against them at DAG
parse without loading numpy or scipy.
"""

# metric -> the paired test that fits it on the holdout (``paired_tests.compare_metric`` dispatches on it)
TEST_OF_METRIC: dict[str, str] = {
    "roc_auc": "delong", "log_loss": "paired_z", "brier": "paired_z", "rmse": "paired_z", "r2": "paired_z",
    "mae": "paired_z", "pr_auc": "paired_bootstrap", "f1": "paired_bootstrap", "macro_f1": "paired_bootstrap",
    "accuracy": "mcnemar",  # McNemar at margin 0, else a paired z on per-row correctness
}

# metric -> the per-row loss whose mean it is a monotone function of (what a live challenger is judged on;
# each task type says which of them its logged scores allow: ``TaskType.challenger_metrics``)
LOSS_OF_METRIC: dict[str, str] = {
    "rmse": "squared_error", "r2": "squared_error", "mae": "absolute_error", "log_loss": "log_loss",
    "brier": "brier", "accuracy": "error",  # error: 1 where the predicted class is not the outcome
}
