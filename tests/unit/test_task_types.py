"""The task-type seam: what each task type accepts as a target, trains, answers, logs and measures."""

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.config import FeaturesConfig, ModelConfig, SearchConfig, load_model_config
from pipelines.task_types import (
    BinaryClassification,
    MulticlassClassification,
    Regression,
    TargetError,
    model_classes,
    task_type_of_model,
)
from pipelines.training import train_candidate

FEATURES = FeaturesConfig(numeric=["x", "z"], categorical=["g"], target="y")


def table(n: int, seed: int, task: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x, z = rng.normal(size=n), rng.normal(size=n)
    g = rng.choice(["a", "b", "c"], size=n)
    signal = x + 0.5 * (g == "a") + rng.normal(scale=0.5, size=n)
    if task == "binary":
        y = np.where(signal > 0.3, "Yes", "No")
    elif task == "multiclass":
        y = np.select([signal < -0.5, signal < 0.7], ["low", "mid"], "high")
    else:
        y = 200 + 50 * signal
    return pd.DataFrame({"x": x, "z": z, "g": g, "y": y})


@pytest.mark.parametrize(("task", "metric", "good"), [
    (BinaryClassification, "roc_auc", lambda v: v > 0.85),
    (MulticlassClassification, "macro_f1", lambda v: v > 0.6),
    (Regression, "rmse", lambda v: v < 40),  # the noise alone is 25
])
@pytest.mark.parametrize("estimator", ["gradient_boosting", "linear"])
def test_each_task_type_trains_both_estimators(task, metric, good, estimator):
    kind = task(FEATURES)
    trained = train_candidate(table(3000, 1, task.name), table(800, 2, task.name), kind,
                              SearchConfig(estimator=estimator), {})
    assert good(trained.validation_metrics[metric]), trained.validation_metrics
    assert set(task.metrics) <= set(trained.validation_metrics)
    rows = table(5, 3, task.name)[["x", "z", "g"]]
    output = kind.output(trained.model, rows)
    classes = model_classes(trained.model)
    assert kind.scores(output, classes).shape == (5,)  # one number per row for the prediction log
    if task is Regression:
        assert output.shape == (5,) and classes is None and trained.threshold is None
    else:
        assert output.shape == (5, len(classes)) and np.allclose(output.sum(axis=1), 1)


def test_binary_scores_the_positive_class_whatever_its_position():
    kind = BinaryClassification(FeaturesConfig(numeric=["x"], target="y", positive_class="churned"))
    output = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert kind.scores(output, ["churned", "stayed"]).tolist() == [0.9, 0.2]
    answer = kind.answer(output, ["churned", "stayed"])
    assert answer["classes"] == ["churned", "stayed"] and answer["positive_class"] == "churned"


def test_binary_infers_an_obvious_positive_class_and_asks_for_others():
    kind = BinaryClassification(FeaturesConfig(numeric=["x"], target="y"))
    assert kind.positive_class(["No", "Yes"]) == "Yes" and kind.positive_class(["0", "1"]) == "1"
    with pytest.raises(TargetError, match="set features.positive_class"):
        kind.positive_class(["cat", "dog"])


@pytest.mark.parametrize(("task", "values", "problem"), [
    (BinaryClassification, ["a", "b", "c", "a"], "3 distinct values"),
    (BinaryClassification, [1, 1, 1], "single class"),
    (BinaryClassification, [0, 1, None], "1 rows have no label"),
    (MulticlassClassification, list(range(914)), "914 distinct values"),
    (MulticlassClassification, ["x", "x"], "single class"),
    (Regression, ["12.5", "high", "3"], "it holds text"),
    (Regression, [4.0, 4.0, 4.0], "same value"),
])
def test_a_target_that_does_not_fit_the_task_is_refused_naming_column_and_task(task, values, problem):
    kind = task(FeaturesConfig(numeric=["x"], target="price"))
    with pytest.raises(TargetError, match=problem) as refused:
        kind.check_target(pd.Series(values), "batch 2013-01-01")
    assert "'price'" in str(refused.value) and f"task '{task.name}'" in str(refused.value)


def test_declared_classes_refuse_an_unknown_label():
    kind = MulticlassClassification(FeaturesConfig(numeric=["x"], target="y", classes=["a", "b"]))
    assert "['c']" in kind.target_problem(pd.Series(["a", "b", "c"]))


def test_labels_are_text_whatever_the_file_made_of_them():
    kind = BinaryClassification(FEATURES)
    assert kind.labels(pd.Series([1.0, 0.0])).tolist() == ["1", "0"]
    assert kind.labels(pd.Series([True, False])).tolist() == ["true", "false"]
    assert kind.labels(pd.Series(pd.array([1, 0], dtype="Int64"))).tolist() == ["1", "0"]


# The flights config as another task type would have it: no binary metrics, no positive class.
NEUTRAL = {"gate.floors": {}, "gate.ceilings": {}, "gate.slice_floors": [], "gate.margin_metric": None,
           "features.positive_class": None, "monitoring.performance_floors": None, "search.selection_metric": None}


def _config(**changes) -> dict:
    raw = yaml.safe_load(load_model_config("flights_delay").model_dump_json())
    for dotted, value in changes.items():
        node = raw
        *path, last = dotted.split(".")
        for key in path:
            node = node[key]
        node[last] = value
    return raw


@pytest.mark.parametrize(("changes", "message"), [
    ({"task": "regression", "gate.floors": {"roc_auc": 0.6}}, "'roc_auc' is not a regression metric"),
    ({**NEUTRAL, "task": "regression", "gate.floors": {"rmse": 10.0}}, "'rmse' is lower is better, so it takes a "
                                                                         "ceiling"),
    ({"gate.ceilings": {"roc_auc": 0.9}}, "'roc_auc' is higher is better, so it takes a floor"),
    ({"search.selection_metric": "accuracy_at_5"}, "not a binary metric"),
    ({**NEUTRAL, "task": "multiclass", "features.positive_class": "1"}, "positive_class only applies to binary"),
    ({**NEUTRAL, "task": "multiclass", "monitoring.performance_floors": {"log_loss": 1}},
     "'log_loss' is lower is better"),
])
def test_metrics_a_config_names_must_fit_its_task(changes, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig.model_validate(_config(**changes))


def test_a_task_the_registry_does_not_hold_is_refused_naming_those_it_does():
    with pytest.raises(ValueError, match=r"unknown task type 'ranking': use one of \['binary', 'multiclass', "
                                         r"'regression'\]"):
        ModelConfig.model_validate(_config(**{**NEUTRAL, "task": "ranking"}))


def test_a_task_type_registered_in_the_registry_is_one_a_config_and_the_command_line_take(monkeypatch, capsys):
    from pipelines.task_types import TASK_TYPES

    class Counts(Regression):
        name = "counts"

    monkeypatch.setitem(TASK_TYPES, Counts.name, Counts)
    cfg = ModelConfig.model_validate(_config(**{**NEUTRAL, "task": "counts"}))
    assert isinstance(cfg.task_type, Counts) and cfg.selection_metric == "rmse"
    with pytest.raises(ValueError, match="positive_class only applies to binary models, not counts"):
        ModelConfig.model_validate(_config(**{**NEUTRAL, "task": "counts", "features.positive_class": "1"}))
    from pipelines.cli import main

    with pytest.raises(SystemExit):
        main(["init", "table.csv", "--target", "y", "--name", "m", "--task", "ranking"])
    assert "'regression', 'counts')" in capsys.readouterr().err


def test_a_task_type_owns_the_columns_the_gate_pairs_and_reads_back():
    """The paired predictions hold what the task type writes (``paired_columns``) and the paired tests get what
    it reads back (``paired_inputs``): a made-up task type keeping its values under its own names needs no
    change to ``pipelines.holdout_pairs``."""
    from pipelines.holdout_pairs import HoldoutPairs, pair_predictions
    from pipelines.task_types.base import PairedInputs

    class Counts(Regression):
        name = "counts"

        def paired_columns(self, truth, outputs):
            return {f"{model}_count": np.rint(output) for model, (output, _, _) in outputs.items()}

        def paired_inputs(self, frame, metric, models):
            return PairedInputs(frame["truth"].to_numpy(float), tuple(frame[f"{m}_count"].to_numpy(float)
                                                                          for m in models))

    rng = np.random.default_rng(0)
    truth = rng.poisson(20, 500).astype(float)
    holdout = pd.DataFrame({"x": 0.0, "y": truth})
    outputs = {"candidate": (truth + rng.normal(0, 1, 500), None, None),
               "champion": (truth + rng.normal(0, 3, 500), None, None)}
    kind = Counts(FeaturesConfig(numeric=["x"], target="y"))
    frame = pair_predictions(kind, holdout, None, outputs)
    assert list(frame.columns) == ["holdout_row", "truth", "candidate_count", "champion_count"]
    result = HoldoutPairs(frame, kind).compare("mae", framing="superiority", margin=0.0, alpha=0.05, effect=None,
                                               power=0.8)
    assert result.passed and result.rows == 500 and result.candidate < result.champion


@pytest.mark.parametrize(("task", "columns"), [
    (BinaryClassification, ["truth_positive", "candidate_score", "candidate_predicted", "champion_score",
                            "champion_predicted"]),
    (MulticlassClassification, ["candidate_predicted", "candidate_p:no", "candidate_p:yes", "champion_predicted",
                                "champion_p:no", "champion_p:yes"]),
    (Regression, ["candidate_prediction", "champion_prediction"]),
])
def test_each_task_type_pairs_what_its_metrics_are_computed_from(task, columns):
    kind = task(FeaturesConfig(numeric=["x"], target="y", **({"positive_class": "yes"}
                                                                if task is BinaryClassification else {})))
    truth = kind.labels(pd.Series(["no", "yes", "yes"] if kind.is_classifier else [1.0, 2.0, 3.0]))
    output = np.array([[0.7, 0.3], [0.4, 0.6], [0.2, 0.8]]) if kind.is_classifier else np.array([1.5, 2.0, 2.5])
    classes = ["no", "yes"] if kind.is_classifier else None
    paired = kind.paired_columns(truth, {"candidate": (output, classes, 0.7), "champion": (output, classes, None)})
    assert list(paired) == columns
    frame = pd.DataFrame({"truth": truth, **paired})
    inputs = kind.paired_inputs(frame, kind.selection_metric, ("candidate", "champion"))
    assert len(inputs.values) == 2 and all(len(v) == 3 for v in inputs.values)
    if task is BinaryClassification:
        assert paired["truth_positive"].tolist() == [0, 1, 1]
        assert paired["candidate_predicted"].tolist() == [0, 0, 1]  # at its own threshold 0.7
        assert paired["champion_predicted"].tolist() == [0, 1, 1]  # at 0.5 without one
        assert inputs.threshold == 0.5 and inputs.values[0].tolist() == [0.3, 0.6, 0.8]


def test_multiclass_log_loss_needs_the_same_classes_from_both_models():
    kind = MulticlassClassification(FEATURES)
    frame = pd.DataFrame({"truth": ["a", "b"], "candidate_p:a": [0.6, 0.4], "candidate_p:b": [0.4, 0.6],
                          "champion_p:a": [0.5, 0.5], "champion_p:c": [0.5, 0.5]})
    with pytest.raises(ValueError, match="log loss cannot be compared row by row"):
        kind.paired_inputs(frame, "log_loss", ("candidate", "champion"))


@pytest.mark.parametrize(("values", "task"), [
    (["a", "b"] * 50, "binary"),
    ([0, 1] * 50, "binary"),
    (["a", "b", "c"] * 50, "multiclass"),
    (list(range(20)) * 5, "multiclass"),
    (list(range(21)) * 5, "regression"),
    ([0.5, 1.5, 2.0] * 50, "regression"),
    ([f"id{i}" for i in range(60)], None),  # too many classes, and no numbers
])
def test_at_most_one_task_type_fits_a_target_and_the_registry_names_it(values, task):
    from pipelines.task_types import TASK_TYPES, infer_task_type
    from pipelines.task_types.base import TargetShape

    series = pd.Series(values, name="y")
    fitting = [t.name for t in TASK_TYPES.values() if t.target_fit(TargetShape.of(series))[0]]
    assert fitting == ([task] if task else [])
    if task:
        assert infer_task_type(series)[0].name == task
    else:
        with pytest.raises(TargetError, match="'y' fits no task type .*multiclass: it holds 60 distinct values"):
            infer_task_type(series)


def test_defaults_come_from_the_task_type():
    raw = _config(**{**NEUTRAL, "task": "regression", "gate.floors": None})
    cfg = ModelConfig.model_validate(raw)
    assert cfg.selection_metric == "rmse" and cfg.margin_metric == "rmse"
    assert cfg.gate_policy.floors == {"r2": 0.0}
    assert cfg.realized_floors == {}  # a window's R² depends on its own spread: the holdout baseline judges it


def test_a_served_model_knows_its_task_from_its_metadata_or_its_estimator():
    from sklearn.dummy import DummyClassifier, DummyRegressor

    three = DummyClassifier().fit([[0], [1], [2]], ["a", "b", "c"])
    assert task_type_of_model({"task": "binary", "positive_class": "b"}, three, ["x"], []).name == "binary"
    assert task_type_of_model(None, three, ["x"], []).name == "multiclass"
    two = DummyClassifier().fit([[0], [1]], [0, 1])
    assert task_type_of_model(None, two, ["x"], []).features.positive_class == "1"
    assert task_type_of_model(None, DummyRegressor().fit([[0], [1]], [0.5, 2.0]), ["x"], []).name == "regression"


@pytest.mark.parametrize(("task", "columns"), [
    (BinaryClassification, {"score"}),
    (MulticlassClassification, {"predicted_class", "score"}),
    (Regression, {"prediction"}),
])
def test_batch_scoring_writes_the_task_types_columns(task, columns):
    from pipelines.batch_scoring import score_examples

    kind = task(FEATURES)
    trained = train_candidate(table(600, 1, task.name), table(200, 2, task.name), kind, SearchConfig(), {})
    examples = table(250, 3, task.name).set_index(pd.RangeIndex(1000, 1250))
    scored = score_examples(trained.model, examples, kind, chunk_rows=100)  # three chunks
    assert set(scored.columns) == columns and scored.index.equals(examples.index)
    inputs = examples[["x", "z", "g"]]
    if task is BinaryClassification:  # P(Yes): "Yes" sorts second
        np.testing.assert_allclose(scored["score"], trained.model.predict_proba(inputs)[:, 1])
    elif task is MulticlassClassification:
        assert (scored["predicted_class"] == trained.model.predict(inputs)).all()
        np.testing.assert_allclose(scored["score"], trained.model.predict_proba(inputs).max(axis=1))
    else:
        np.testing.assert_allclose(scored["prediction"], trained.model.predict(inputs))


def test_a_challenger_is_judged_on_a_per_row_loss_of_what_each_task_type_logs():
    """Each task type's challenger metrics are means of a per-row loss and measurable from the logged scores;
    its loss_truth turns the outcomes into what those losses take, and the losses of the logged scores give
    the metric the task type itself computes."""
    from pipelines.metric_tests import LOSS_OF_METRIC
    from pipelines.sequential_tests import row_losses
    from pipelines.task_types import TASK_TYPES

    for task_type in TASK_TYPES.values():
        assert task_type.challenger_metrics, task_type.name
        assert set(task_type.challenger_metrics) <= set(LOSS_OF_METRIC) & task_type.realized_metrics, task_type.name
    rng = np.random.default_rng(3)
    outcomes = pd.Series(rng.choice(["p", "q", "r"], size=300))
    multiclass = TASK_TYPES["multiclass"](FeaturesConfig(numeric=["x"], target="y"))
    classes = ["p", "q", "r"]
    output = rng.dirichlet([1, 1, 1], size=300)
    scores = multiclass.scores(output, classes)
    accuracy = multiclass.realized(outcomes.to_numpy(), scores, classes, None)["accuracy"]
    errors = row_losses("accuracy", multiclass.loss_truth(outcomes, classes), scores)
    assert 1 - errors.mean() == pytest.approx(accuracy)
    binary = TASK_TYPES["binary"](FeaturesConfig(numeric=["x"], target="y", positive_class="q"))
    assert list(binary.loss_truth(pd.Series(["q", "p", "q"]), ["p", "q"])) == [1, 0, 1]
    with pytest.raises(ValueError, match="classes are unknown"):
        binary.loss_truth(pd.Series(["q"]), None)
