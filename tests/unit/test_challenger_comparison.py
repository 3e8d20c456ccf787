"""The monitoring DAG's comparison of a shadow or canary challenger with the champion, on a synthetic
prediction log and landed labels."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pipelines.challenger_comparison import describe_status
from pipelines.config import ModelConfig, StatePaths
from pipelines.monitoring_tasks import MonitorContext, challenger_status, compare_challenger
from pipelines.prediction_store import ServedBatch, create_tables, encode_segment, insert_segments

DAY = date(2026, 3, 2)
CHAMPION = SimpleNamespace(version="1", tags={})


def regression_cfg(**serving) -> ModelConfig:
    return ModelConfig(name="toy", task="regression", feeds=[{"name": "rows", "columns": {"x": "float", "y": "float"}}],
                       features={"numeric": ["x"], "target": "y"}, serving=serving)


def binary_cfg() -> ModelConfig:
    return ModelConfig(name="toy", feeds=[{"name": "rows", "columns": {"x": "float", "y": "string"}}],
                       features={"numeric": ["x"], "target": "y", "positive_class": "yes"})


def challenger(version="2", rollout="shadow", share=0.3):
    return SimpleNamespace(version=version, tags={"rollout": rollout, "canary_share": str(share)})


def window(day: date = DAY) -> MonitorContext:
    return MonitorContext("monitor_toy", f"run_{day}", day, day + timedelta(days=1))


class Log:
    def __init__(self, tmp_path, cfg):
        self.url = f"sqlite:///{tmp_path / 'log.db'}"
        self.engine = sa.create_engine(self.url)
        create_tables(self.engine)
        self.cfg = cfg

    def write(self, day: date, version: str, route: str, ids: list[str], predictions, hour: int = 1) -> None:
        when = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=hour)
        predictions = np.asarray(predictions, dtype=float)
        batch = ServedBatch(tuple(ids), when, self.cfg.model_name, version, route,
                            {"x": np.zeros(len(ids))}, predictions, event_times=[when] * len(ids),
                            request_rows=(1,) * len(ids))
        with self.engine.begin() as connection:
            insert_segments(connection, [encode_segment([batch])])


def land_labels(cfg: ModelConfig, state: StatePaths, day: date, ids, values) -> None:
    folder = state.landing(cfg.name, cfg.monitoring.labels_feed)
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"request_id": list(ids), "row_index": 0, cfg.features.target: list(values)}).to_parquet(
        folder / f"{day.isoformat()}.parquet", index=False)


def shadow_day(log: Log, cfg, state, day: date, rows: int, seed: int, label: bool = True, version: str = "2"):
    rng = np.random.default_rng(seed)
    ids = [f"{day}-{i}" for i in range(rows)]
    truth = rng.normal(size=rows)
    log.write(day, "1", "champion", ids, truth + rng.normal(scale=1.0, size=rows))
    log.write(day, version, "shadow", ids, truth + rng.normal(scale=0.5, size=rows))
    if label:
        land_labels(cfg, state, day, ids, truth)
    return ids, truth


def test_without_a_challenger_nothing_is_compared(tmp_path):
    cfg, state = regression_cfg(), StatePaths(root=tmp_path)
    assert compare_challenger(cfg, window(), state, versions=(CHAMPION, None), url="sqlite://") == {"challenger": None}
    assert challenger_status(cfg, state) is None


def test_a_better_shadow_challenger_is_promoted_and_a_rerun_window_counts_once(tmp_path):
    cfg, state = regression_cfg(), StatePaths(root=tmp_path)
    log = Log(tmp_path, cfg)
    shadow_day(log, cfg, state, DAY, 1500, seed=1)
    first = compare_challenger(cfg, window(), state, versions=(CHAMPION, challenger()), url=log.url)["challenger"]
    assert cfg.challenger_metric == "rmse" and first["metric"] == "rmse" and first["feed"] == "shadow"
    assert first["rows"] == 1500 and first["pending"] == 0
    assert first["decision"] == "promote" and first["interval"][0] > 0 and first["mean"] > 0
    again = compare_challenger(cfg, window(), state, versions=(CHAMPION, challenger()), url=log.url)["challenger"]
    assert again["rows"] == 1500 and again["interval"] == first["interval"]  # the window's cohort is replaced
    shadow_day(log, cfg, state, DAY + timedelta(days=1), 500, seed=2)
    second = compare_challenger(cfg, window(DAY + timedelta(days=1)), state, versions=(CHAMPION, challenger()),
                                url=log.url)["challenger"]
    assert second["rows"] == 2000 and second["windows"] == 2
    assert challenger_status(cfg, state)["rows"] == 2000
    assert "2000 labelled requests" in describe_status(second) and "decision: promote" in describe_status(second)


def test_a_new_challenger_version_starts_a_new_comparison(tmp_path):
    cfg, state = regression_cfg(), StatePaths(root=tmp_path)
    log = Log(tmp_path, cfg)
    shadow_day(log, cfg, state, DAY, 300, seed=1)
    assert compare_challenger(cfg, window(), state, versions=(CHAMPION, challenger()), url=log.url)[
        "challenger"]["rows"] == 300
    shadow_day(log, cfg, state, DAY + timedelta(days=1), 200, seed=2, version="3")
    later = window(DAY + timedelta(days=1))
    status = compare_challenger(cfg, later, state, versions=(CHAMPION, challenger("3")), url=log.url)["challenger"]
    assert status["challenger_version"] == "3" and status["rows"] == 200 and status["windows"] == 1
    assert status["decision"] == "continue"  # under min_rows
    # a new champion too: the rows of champion v1 do not count for champion v4
    status = compare_challenger(cfg, later, state, versions=(SimpleNamespace(version="4", tags={}), challenger("3")),
                                url=log.url)["challenger"]
    assert status["rows"] == 0 and status["interval"] == [None, None]
    assert "no interval yet" in describe_status(status)


def test_late_labels_update_the_earlier_windows_cohort(tmp_path):
    cfg, state = regression_cfg(), StatePaths(root=tmp_path)
    log = Log(tmp_path, cfg)
    ids, truth = shadow_day(log, cfg, state, DAY, 400, seed=1, label=False)
    first = compare_challenger(cfg, window(), state, versions=(CHAMPION, challenger()), url=log.url)["challenger"]
    assert first["rows"] == 0 and first["pending"] == 400
    land_labels(cfg, state, DAY, ids, truth)
    shadow_day(log, cfg, state, DAY + timedelta(days=1), 100, seed=2)
    second = compare_challenger(cfg, window(DAY + timedelta(days=1)), state, versions=(CHAMPION, challenger()),
                                url=log.url)["challenger"]
    assert second["rows"] == 500 and second["pending"] == 0


def test_a_canary_is_judged_on_the_rows_each_model_answered(tmp_path):
    cfg, state = binary_cfg(), StatePaths(root=tmp_path)
    log = Log(tmp_path, cfg)
    rng = np.random.default_rng(3)
    rows, share = 4000, 0.3
    ids = [f"r{i}" for i in range(rows)]
    canary = np.array([zlib.crc32(i.encode()) % 10_000 < share * 10_000 for i in ids])
    signal = rng.uniform(size=rows)
    truth = np.where(rng.uniform(size=rows) < signal, "yes", "no")
    served = np.asarray(ids)
    log.write(DAY, "1", "champion", list(served[~canary]), np.full((~canary).sum(), 0.5))
    log.write(DAY, "2", "canary", list(served[canary]), signal[canary])
    labelled = rows * 3 // 4
    land_labels(cfg, state, DAY, ids[:labelled], truth[:labelled])
    champion = SimpleNamespace(version="1", tags={"classes": json.dumps(["no", "yes"])})
    status = compare_challenger(cfg, window(), state, versions=(champion, challenger(rollout="canary", share=share)),
                                url=log.url)["challenger"]
    assert cfg.challenger_metric == "log_loss" and status["feed"] == "canary"
    assert status["rows"] == labelled and status["pending"] == rows - labelled
    assert status["mean"] > 0  # the canary's scores carry the signal, the champion's coin does not


def test_propose_starts_the_release_with_the_decision(tmp_path):
    cfg, state = regression_cfg(challenger={"act": "propose"}), StatePaths(root=tmp_path)
    log = Log(tmp_path, cfg)
    shadow_day(log, cfg, state, DAY, 1500, seed=1)
    out = compare_challenger(cfg, window(), state, versions=(CHAMPION, challenger()), url=log.url)
    assert out["propose"] is True
    assert out["propose_conf"]["action"] == "promote" and out["propose_conf"]["version"] == "2"
    assert "promote" in out["propose_run_id"] and len(out["propose_conf"]["reason"]) <= 480
    assert out["propose_conf"]["proposed_by"] == f"{window().dag_id} {window().window_key}"
    # one proposal per challenger version and decision: a later window that reaches it again starts no second run
    assert out["propose_run_id"] == "promote__monitor_toy__v2"
    assert compare_challenger(regression_cfg(), window(), state, versions=(CHAMPION, challenger()),
                              url=log.url)["propose"] is False  # act: none only reports


def multiclass_cfg(**gate) -> ModelConfig:
    return ModelConfig(name="toy", task="multiclass", features={"numeric": ["x"], "target": "y"}, gate=gate,
                       feeds=[{"name": "rows", "columns": {"x": "float", "y": "string"}}])


def test_a_multiclass_challenger_is_judged_on_accuracy_from_the_logged_classes(tmp_path):
    """The log keeps a multiclass model's predicted class (its index): the per-row loss is the error, and the
    improvement is the challenger's accuracy minus the champion's."""
    cfg, state = multiclass_cfg(margin_metric="log_loss"), StatePaths(root=tmp_path)
    assert cfg.challenger_metric == "accuracy"  # log loss needs probabilities the log does not keep
    classes = ["p", "q", "r"]
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 3, size=2000)
    champion = np.where(rng.random(2000) < 0.6, truth, (truth + 1) % 3)  # right 60% of the time
    better = np.where(rng.random(2000) < 0.8, truth, (truth + 2) % 3)  # right 80% of the time
    ids = [f"r{i}" for i in range(2000)]
    log = Log(tmp_path, cfg)
    log.write(DAY, "1", "champion", ids, champion)
    log.write(DAY, "2", "shadow", ids, better)
    land_labels(cfg, state, DAY, ids, [classes[t] for t in truth])
    tagged = SimpleNamespace(version="1", tags={"classes": json.dumps(classes)})
    status = compare_challenger(cfg, window(), state, versions=(tagged, challenger()), url=log.url)["challenger"]
    assert status["metric"] == "accuracy" and status["rows"] == 2000
    observed = (better == truth).mean() - (champion == truth).mean()
    assert status["mean"] == pytest.approx(observed) and status["decision"] == "promote"
    lower, upper = status["interval"]
    assert 0 < lower < observed < upper


def test_each_model_is_read_against_its_own_classes(tmp_path):
    """A retrain that saw a class the champion never did logs indices into a longer list: each model's
    predicted class is read against its own classes, so a perfect challenger is not judged worse."""
    cfg, state = multiclass_cfg(), StatePaths(root=tmp_path)
    outcomes = ["a", "c", "c", "b"] * 300
    champion_classes, challenger_classes = ["a", "c"], ["a", "b", "c"]
    champion = [champion_classes.index(o) if o in champion_classes else 1 for o in outcomes]  # right but on b
    perfect = [challenger_classes.index(o) for o in outcomes]
    ids = [f"r{i}" for i in range(len(outcomes))]
    log = Log(tmp_path, cfg)
    log.write(DAY, "1", "champion", ids, champion)
    log.write(DAY, "2", "shadow", ids, perfect)
    land_labels(cfg, state, DAY, ids, outcomes)
    versions = (SimpleNamespace(version="1", tags={"classes": json.dumps(champion_classes)}),
                SimpleNamespace(version="2", tags={"rollout": "shadow", "classes": json.dumps(challenger_classes)}))
    status = compare_challenger(cfg, window(), state, versions=versions, url=log.url)["challenger"]
    assert status["mean"] == pytest.approx(0.25) and status["decision"] == "promote"  # 100% against 75%


def test_a_canary_staged_partway_through_a_window_is_judged_only_where_it_was_answering(tmp_path):
    """The champion alone answered the window's first hours (harder traffic: larger errors); then the canary
    took 30% of the requests. Equal models: only the rows served while the canary was live are compared, so the
    early rows neither bias the weights nor the losses."""
    cfg, state = regression_cfg(), StatePaths(root=tmp_path)
    rng = np.random.default_rng(11)
    log = Log(tmp_path, cfg)
    early = [f"early-{i}" for i in range(4000)]
    truth_early = rng.normal(size=4000)
    log.write(DAY, "1", "champion", early, truth_early + rng.normal(scale=2.0, size=4000), hour=1)
    late = np.array([f"late-{i}" for i in range(6000)])
    truth_late = rng.normal(size=6000)
    canary = rng.random(6000) < 0.3
    predictions = truth_late + rng.normal(scale=1.0, size=6000)  # the same error for both models
    log.write(DAY, "1", "champion", list(late[~canary]), predictions[~canary], hour=12)
    log.write(DAY, "2", "canary", list(late[canary]), predictions[canary], hour=12)
    land_labels(cfg, state, DAY, [*early, *late], [*truth_early, *truth_late])
    status = compare_challenger(cfg, window(), state, versions=(CHAMPION, challenger(rollout="canary")),
                                url=log.url)["challenger"]
    assert status["rows"] == 6000  # the early rows are left out
    lower, upper = status["interval"]
    assert lower < 0 < upper and status["decision"] == "continue"


def test_a_challenger_that_cannot_be_judged_is_reported_not_failed(tmp_path):
    cfg, state = multiclass_cfg(), StatePaths(root=tmp_path)
    log = Log(tmp_path, cfg)
    log.write(DAY, "1", "champion", ["a", "b"], [0, 1])
    log.write(DAY, "2", "shadow", ["a", "b"], [0, 1])
    land_labels(cfg, state, DAY, ["a", "b"], ["p", "q"])
    untagged = SimpleNamespace(version="1", tags={})  # a version registered without its classes
    status = compare_challenger(cfg, window(), state, versions=(untagged, challenger()), url=log.url)["challenger"]
    assert "classes are unknown" in status["error"]
    assert describe_status(status).startswith("not compared")


def test_the_challenger_metric_must_be_a_mean_of_row_losses():
    with pytest.raises(ValueError, match="not a mean of per-row losses"):
        ModelConfig(name="toy", feeds=[{"name": "rows", "columns": {"x": "float", "y": "int"}}],
                    features={"numeric": ["x"], "target": "y"}, serving={"challenger": {"metric": "roc_auc"}})
    with pytest.raises(ValueError, match="what a binary model logs"):  # its log keeps probabilities, not classes
        ModelConfig(name="toy", feeds=[{"name": "rows", "columns": {"x": "float", "y": "int"}}],
                    features={"numeric": ["x"], "target": "y"}, serving={"challenger": {"metric": "accuracy"}})
    assert binary_cfg().model_copy(update={}).challenger_metric == "log_loss"


def test_a_state_rebuilt_from_cohort_summaries_equals_one_fed_row_by_cohort():
    from pipelines.sequential_tests import SequentialState, cohort_summary

    rng = np.random.default_rng(0)
    parts = [rng.normal(0.1, 1, size=n) for n in (5, 300, 1)]
    fed, rebuilt = SequentialState("shadow", "rmse"), SequentialState("shadow", "rmse")
    for part in parts:
        fed.update_shadow(part, np.zeros_like(part))
        rebuilt.add_summary(*cohort_summary(part))
    assert rebuilt.rows == fed.rows and rebuilt.mean == pytest.approx(fed.mean)
    assert rebuilt.sum_squares == pytest.approx(fed.sum_squares)
    with pytest.raises(ValueError, match="corrupt"):
        rebuilt.add_summary(3, 0.0, -1.0)


def test_the_comparison_is_recorded_in_the_windows_details(tmp_path, monkeypatch):
    from pipelines import monitoring_store as store
    from pipelines.monitoring_tasks import record_challenger

    monkeypatch.setenv("MLOPS_MONITORING_DB_URL", f"sqlite:///{tmp_path / 'monitoring.db'}")
    cfg, mctx = regression_cfg(), window()
    engine = store.engine()
    with engine.begin() as connection:
        store.save_window(connection, {
            "model_name": cfg.name, "window_start": mctx.start, "window_end": mctx.end, "rows": 10,
            "labelled_rows": 0, "pending_labels": 10, "breached": False, "cleared": True, "decision": "ok",
            "reason": "", "details": {"drift_scores": {"x": 0.1}}})
    record_challenger(cfg, mctx, {"challenger": None})  # no challenger: nothing written
    record_challenger(cfg, mctx, {"challenger": {"rows": 12, "decision": "continue"}})
    with engine.connect() as connection:
        details = json.loads(store.load_windows(connection, cfg.name)[0]["details"])
    engine.dispose()
    assert details == {"drift_scores": {"x": 0.1}, "challenger": {"rows": 12, "decision": "continue"}}


def test_a_canary_is_weighted_by_the_share_it_was_served_not_the_configured_one(tmp_path):
    # The service's share can be overridden (MLOPS_SERVING_CANARY_SHARE): here the canary answered 30% of the
    # requests while its tag and the config say 10%. Both models are equally good, so the improvement is 0;
    # weighting by 10% would put it near -2.2 times the mean loss.
    cfg, state = regression_cfg(), StatePaths(root=tmp_path)
    assert cfg.serving.canary_share == 0.1
    log = Log(tmp_path, cfg)
    rng = np.random.default_rng(11)
    rows = 6000
    ids = np.array([f"r{i}" for i in range(rows)])
    canary = np.array([zlib.crc32(i.encode()) % 10_000 < 3_000 for i in ids])
    truth = rng.normal(size=rows)
    answer = truth + rng.normal(size=rows)  # the same error distribution whichever model answered
    log.write(DAY, "1", "champion", list(ids[~canary]), answer[~canary])
    log.write(DAY, "2", "canary", list(ids[canary]), answer[canary])
    labelled = rows * 2 // 3  # the share counts every logged request, labelled or not
    land_labels(cfg, state, DAY, ids[:labelled], truth[:labelled])
    status = compare_challenger(cfg, window(), state, versions=(CHAMPION, challenger(rollout="canary", share=0.1)),
                                url=log.url)["challenger"]
    assert status["feed"] == "canary" and status["rows"] == labelled
    lower, upper = status["interval"]
    assert lower < 0 < upper and abs(status["mean"]) < 0.15  # mean squared error is about 1


def shadow_requests(requests: int, rows_per_request: int, rng, row_noise: float = 0.01):
    """Shadow frames of ``requests`` requests of ``rows_per_request`` rows each: each request's rows share
    their errors (the context is the request's) up to ``row_noise``."""
    request = np.repeat(np.arange(requests), rows_per_request)
    row_index = np.tile(np.arange(rows_per_request), requests)
    size = requests * rows_per_request
    champion_error = rng.normal(size=requests)[request] + rng.normal(scale=row_noise, size=size)
    challenger_error = rng.normal(scale=0.9, size=requests)[request] + rng.normal(scale=row_noise, size=size)
    ids = [f"q{r}" for r in request]
    frame = pd.DataFrame({"request_id": ids, "row_index": row_index})
    return (frame.assign(prediction=champion_error), frame.assign(prediction=challenger_error),
            frame.assign(y=0.0))


def test_a_multi_row_request_counts_once_in_the_confidence_sequence():
    from pipelines.challenger_comparison import shadow_cohort
    from pipelines.sequential_tests import SequentialState, cohort_summary

    cfg, rng = regression_cfg(), np.random.default_rng(5)
    grouped, pending = shadow_cohort(cfg, "rmse", *shadow_requests(200, 50, rng), classes=None)
    independent, _ = shadow_cohort(cfg, "rmse", *shadow_requests(10_000, 1, rng), classes=None)
    assert pending == 0 and grouped.size == 200 and independent.size == 10_000

    def width(differences):
        lower, upper = SequentialState("shadow", "rmse").add_summary(*cohort_summary(differences)).interval()
        return upper - lower

    assert width(grouped) > 5 * width(independent)  # 200 requests carry about 200 rows' evidence, not 10,000


def test_single_row_requests_are_their_own_units():
    from pipelines.challenger_comparison import shadow_cohort

    champion, challenger_rows, labels = shadow_requests(300, 1, np.random.default_rng(6))
    differences, _ = shadow_cohort(regression_cfg(), "rmse", champion, challenger_rows, labels, classes=None)
    np.testing.assert_allclose(differences, champion["prediction"] ** 2 - challenger_rows["prediction"] ** 2)
