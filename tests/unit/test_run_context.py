from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest

from pipelines.config import load_model_config
from pipelines.run_context import RunContext, history_start, run_context_from

CFG = load_model_config("flights_delay")


class FakeRunType:
    """Like the Task SDK's DagRunType: a str enum whose str() is not its value."""

    def __init__(self, value):
        self.value = value

    def __str__(self):
        return f"DagRunType.{self.value.upper()}"


def context(run_type: str, params: dict, interval=(datetime(2013, 5, 1, tzinfo=UTC), datetime(2013, 5, 8, tzinfo=UTC))):
    return {"params": params, "dag_run": SimpleNamespace(run_type=FakeRunType(run_type)), "run_id": f"{run_type}__x",
            "dag": SimpleNamespace(dag_id="train_flights_delay"),
            "data_interval_start": interval[0], "data_interval_end": interval[1]}


def test_scheduled_run_trains_on_its_interval_not_the_form_defaults():
    defaults = {"data_interval_start": "2013-01-01", "data_interval_end": "2013-04-01"}
    ctx = run_context_from(context("scheduled", defaults), CFG)
    assert (ctx.start, ctx.end) == (date(2013, 5, 1), date(2013, 5, 8))


def test_manual_run_takes_its_params():
    ctx = run_context_from(context("manual", {"data_interval_start": "2013-02-01", "data_interval_end": "2013-03-01",
                                              "reason": "new data", "gate_drill_shuffle_labels": True}), CFG)
    assert (ctx.start, ctx.end) == (date(2013, 2, 1), date(2013, 3, 1))
    assert ctx.reason == "new data" and ctx.shuffle_labels
    assert ctx.dag_id == "train_flights_delay" and ctx.interval_key == "2013-02-01_2013-03-01"


def test_manual_run_without_params_falls_back_to_the_default_interval():
    ctx = run_context_from(context("manual", {}), CFG)
    assert (ctx.start, ctx.end) == CFG.default_interval


def test_a_run_started_by_landed_data_trains_on_the_days_landed():
    """The land commands' Asset events carry the landed days; the run's reason says so."""
    events = {"x-mlops://landed/flights_delay": [SimpleNamespace(extra={"start": "2013-06-03", "end": "2013-06-05"}),
                                                 SimpleNamespace(extra={"start": "2013-06-01", "end": "2013-06-02"}),
                                                 SimpleNamespace(extra={"from_rest_api": True})]}
    ctx = run_context_from({**context("asset_triggered", {}), "triggering_asset_events": events}, CFG)
    assert (ctx.start, ctx.end) == (date(2013, 6, 1), date(2013, 6, 5))
    assert ctx.reason == "data landed for [2013-06-01, 2013-06-05)"
    # An event that names no days (posted by hand): the manual rules apply.
    unnamed = {"x-mlops://landed/flights_delay": [SimpleNamespace(extra={})]}
    ctx = run_context_from({**context("asset_triggered", {}), "triggering_asset_events": unnamed}, CFG)
    assert (ctx.start, ctx.end) == CFG.default_interval


def test_empty_interval_is_refused():
    with pytest.raises(ValueError, match="empty or unset"):
        same_day = {"data_interval_start": "2013-03-01", "data_interval_end": "2013-03-01"}
        run_context_from(context("manual", same_day), CFG)


def test_run_key_is_safe_for_paths_and_tags():
    key = RunContext("d", "manual__2013-01-01T00:00:00+00:00", date(2013, 1, 1), date(2013, 1, 2)).run_key
    assert key == "manual__2013-01-01T00_00_00_00_00"


def test_a_manual_run_without_any_interval_takes_every_day_landed_up_to_its_start():
    """A table without time (no default interval): a manual run's own interval is empty (start == end), so it
    trains on everything from the model's start date to the day the run was started."""
    cfg = load_model_config("penguins")
    started = datetime(2027, 3, 9, 14, 30, tzinfo=UTC)
    manual = {**context("manual", {}, interval=(started, started)), "dag_run": SimpleNamespace(
        run_type=FakeRunType("manual"), run_after=started)}
    ctx = run_context_from(manual, cfg)
    assert (ctx.start, ctx.end) == (cfg.start_date, date(2027, 3, 10))


def test_an_empty_interval_fails_as_bad_input_not_a_retryable_error():
    from pipelines.errors import InputError

    with pytest.raises(InputError, match="empty or unset"):
        run_context_from(context("manual", {"data_interval_start": "2013-02-01", "data_interval_end": "2013-01-01"}),
                         CFG)


def test_the_code_version_is_dirty_when_a_config_is_untracked(tmp_path, monkeypatch):
    """A model version trained from a config git does not know yet carries `-dirty`, like one trained from
    a changed tracked file; files outside the code (notes, state) do not count."""
    import subprocess

    from pipelines import run_context

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "step.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "first")
    monkeypatch.setattr(run_context, "PROJECT_ROOT", tmp_path)
    clean = run_context.git_commit()
    assert len(clean) == 40
    (tmp_path / "notes.txt").write_text("not code")
    assert run_context.git_commit() == clean
    (tmp_path / "include" / "models").mkdir(parents=True)
    (tmp_path / "include" / "models" / "churn.yaml").write_text("name: churn\n")
    assert run_context.git_commit() == clean + "-dirty"


def test_the_history_a_training_run_learns_from_starts_at_the_models_first_day_or_its_training_window():
    from pipelines.config import SplitConfig

    assert history_start(CFG, date(2013, 6, 8)) == CFG.default_interval[0] == date(2013, 1, 1)
    penguins = load_model_config("penguins")  # no default interval: its start date
    assert penguins.default_interval is None and history_start(penguins, date(2027, 1, 1)) == penguins.start_date
    windowed = CFG.model_copy(update={"split": SplitConfig(training_window_days=28)})
    assert history_start(windowed, date(2013, 6, 8)) == date(2013, 5, 11)
    assert history_start(windowed, date(2013, 1, 10)) == date(2013, 1, 1)  # never before the first day
