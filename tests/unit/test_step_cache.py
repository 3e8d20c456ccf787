"""Cached steps: the store itself, and the training steps rerun on unchanged and changed inputs."""

import json
import textwrap
from datetime import date

import numpy as np
import pandas as pd
import pytest

from pipelines.step_cache import StepCache, StepInputs, code_digest


def _write(text: str):
    def compute(folder):
        (folder / "out.txt").write_text(text)
        (folder / "sub").mkdir()
        (folder / "sub" / "more.txt").write_text(text * 2)
        return {"length": len(text)}
    return compute


def test_a_second_run_with_the_same_inputs_reuses_the_stored_outputs(tmp_path):
    cache = StepCache(tmp_path / "cache")
    inputs = StepInputs("step", {"data": "d1", "code": "c1"})
    first = cache.run(inputs, _write("abc"), run_id="run 1")
    second = cache.run(inputs, _write("never computed"), run_id="run 2")

    assert first.note.status == "miss" and first.note.detail == "computed: no earlier run"
    assert second.note.status == "hit" and "run 1" in second.note.detail
    assert second.result == {"length": 3}
    placed = second.place(tmp_path / "work" / "step")
    assert (placed / "out.txt").read_text() == "abc" and (placed / "sub" / "more.txt").read_text() == "abcabc"
    # Placed as hard links: the cache costs no copy of the outputs.
    assert (placed / "out.txt").stat().st_ino == second.path("out.txt").stat().st_ino


def test_a_miss_names_the_inputs_that_changed(tmp_path):
    cache = StepCache(tmp_path)
    cache.run(StepInputs("step", {"data": "d1", "config": "x", "code": "c1"}), _write("a"), run_id="r1")
    changed = cache.run(StepInputs("step", {"data": "d2", "config": "x", "code": "c2"}), _write("b"), run_id="r2")
    assert changed.note.status == "miss" and changed.note.detail == "computed: code, data changed"
    # Each candidate is explained against its own earlier run, not against another candidate's.
    cache.run(StepInputs("train", {"data": "d", "params": "p1"}, identity=("params",)), _write("1"), run_id="r1")
    cache.run(StepInputs("train", {"data": "d", "params": "p2"}, identity=("params",)), _write("2"), run_id="r1")
    again = cache.run(StepInputs("train", {"data": "e", "params": "p1"}, identity=("params",)), _write("1"),
                      run_id="r2")
    assert again.note.detail == "computed: data changed"


def test_force_recomputes_and_replaces_the_entry(tmp_path):
    cache = StepCache(tmp_path)
    inputs = StepInputs("step", {"data": "d1"})
    cache.run(inputs, _write("old"), run_id="r1")
    forced = cache.run(inputs, _write("new"), run_id="r2", force=True)
    assert forced.note.status == "forced" and forced.result == {"length": 3}
    assert cache.run(inputs, _write("unused"), run_id="r3").path("out.txt").read_text() == "new"


def test_a_failing_step_stores_nothing_and_an_unusable_entry_is_recomputed(tmp_path):
    cache = StepCache(tmp_path)
    inputs = StepInputs("step", {"data": "d1"})

    def fail(folder):
        (folder / "half.txt").write_text("half")
        raise ValueError("bad batch")

    with pytest.raises(ValueError, match="bad batch"):
        cache.run(inputs, fail, run_id="r1")
    assert cache.run(inputs, _write("ok"), run_id="r2").note.status == "miss"
    assert not list((tmp_path / "step").glob(".*.tmp"))
    stale = cache.run(inputs, _write("again"), run_id="r3", usable=lambda result: False)
    assert stale.note.status == "miss" and stale.path("out.txt").read_text() == "again"


def test_entries_beyond_the_limit_are_dropped_least_recently_used_first(tmp_path):
    cache = StepCache(tmp_path, keep=2)
    for n in range(3):
        cache.run(StepInputs("step", {"data": str(n)}), _write(str(n)), run_id=f"r{n}")
    assert cache.run(StepInputs("step", {"data": "0"}), _write("0"), run_id="r4").note.status == "miss"
    assert cache.run(StepInputs("step", {"data": "2"}), _write("2"), run_id="r5").note.status == "hit"


def test_code_digest_follows_the_source(tmp_path, monkeypatch):
    module = tmp_path / "user_steps.py"
    module.write_text("def build(feeds):\n    return feeds\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = code_digest("user_steps")
    assert code_digest("user_steps") == before
    module.write_text("def build(feeds):\n    return dict(feeds)\n")
    assert code_digest("user_steps") != before


def _package(root, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_a_step_misses_when_a_module_it_reaches_only_indirectly_changes(tmp_path, monkeypatch):
    """The step imports ``scoring`` lazily; ``scoring`` imports ``rules`` (relative, at its top); only an
    edit of what the step reaches changes its key."""
    code = tmp_path / "code"
    _package(code, {
        "userpkg/__init__.py": "",
        "userpkg/steps.py": "from userpkg import shared\n\n"
                            "def step(x):\n    from userpkg.scoring import score\n    return _scale(score(x))\n\n"
                            "def _scale(y):\n    return 2 * y\n\n"
                            "def other_step(x):\n    from userpkg import unrelated\n    return x\n",
        "userpkg/shared.py": "UNIT = 1\n",
        "userpkg/scoring.py": "from .rules import weight\n\ndef score(x):\n    return weight() * x\n",
        "userpkg/rules.py": "def weight():\n    return 1\n",
        "userpkg/unrelated.py": "VALUE = 1\n",
    })
    monkeypatch.syspath_prepend(str(code))
    from userpkg.steps import step

    from pipelines.code_reach import reached_sources

    assert set(reached_sources(step)) == {"userpkg.steps:step", "userpkg", "userpkg.shared", "userpkg.scoring",
                                          "userpkg.rules"}
    cache = StepCache(tmp_path / "cache")

    def run(run_id):
        return cache.run(StepInputs("score", {"data": "d", "code": code_digest(step)}), _write("x"),
                         run_id=run_id).note

    assert run("r1").status == "miss" and run("r2").status == "hit"
    (code / "userpkg/unrelated.py").write_text("VALUE = 2\n")  # reached by another step only
    (code / "userpkg/steps.py").write_text((code / "userpkg/steps.py").read_text().replace("return x", "return -x"))
    assert run("r3").status == "hit"
    (code / "userpkg/rules.py").write_text("def weight():\n    return 3\n")  # two imports away
    changed = run("r4")
    assert changed.status == "miss" and changed.detail == "computed: code changed"
    (code / "userpkg/steps.py").write_text((code / "userpkg/steps.py").read_text().replace("2 * y", "3 * y"))
    assert run("r5").status == "miss"  # a module-level helper the step calls


def test_each_training_step_digests_the_modules_it_calls():
    """The holdout scoring reaches the gate and the metrics through ``pipelines.evaluation``."""
    from pipelines.code_reach import reached_sources
    from pipelines.training_steps import evaluation, promotion

    scoring = reached_sources(evaluation._score_on_holdout)
    assert {"pipelines.evaluation", "pipelines.gate", "pipelines.metrics", "pipelines.training"} <= set(scoring)
    assert "pipelines.serving.app" not in scoring and "pipelines.training_steps.evaluation" not in scoring
    assert "pipelines.serving.app" in reached_sources(promotion.infra_validate)


# the training steps -----------------------------------------------------------------------------------------
def customers(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, size=n)
    contract = rng.choice(["monthly", "yearly"], size=n, p=[0.6, 0.4])
    charges = rng.normal(70, 20, size=n).round(2)
    risk = np.where(contract == "monthly", 0.5, 0.1) + 0.004 * (72 - tenure) - 0.2
    return pd.DataFrame({"customer_id": [f"C{i:05d}" for i in range(n)], "tenure": tenure, "contract": contract,
                         "monthly_charges": charges, "churn": np.where(rng.random(n) < risk, "Yes", "No")})


@pytest.fixture()
def churn(tmp_path, monkeypatch, fresh_mlflow_uri):
    """A drafted model on a landed table, with its own state folder, configs and MLflow store."""
    from pipelines.cli import init
    from pipelines.config import StatePaths

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("MLOPS_INCLUDE_DIR", str(tmp_path / "include"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fresh_mlflow_uri)
    data = tmp_path / "churn.csv"
    customers().to_csv(data, index=False)
    made = init(data, "churn", "churn", None, False, state=StatePaths.from_env())
    return made["config"]


GRID = "search:\n  grid:\n    max_depth: {}\n"


def _configure(path, edit):
    from pipelines.config import load_model_config

    path.write_text(edit(path.read_text()))
    return load_model_config(path)


def _run(cfg, run_id: str, force: bool = False) -> dict:
    """The steps from ingest to evaluate, as the DAG calls them; returns each step's cache notes."""
    from pipelines.config import StatePaths
    from pipelines.run_context import RunContext
    from pipelines.training_steps.pipeline import run_in_process

    ctx = RunContext(f"train_{cfg.name}", run_id, date(2000, 1, 1), date(2100, 1, 1), force=force)
    done = run_in_process(cfg, ctx, StatePaths.from_env(), until="evaluate")
    splits, evaluation = done["split"].to_dict(), done["evaluate"].to_dict()  # as XCom carries them
    candidates = [c.to_dict() for c in done["train"]]
    return {"splits": splits, "candidates": candidates, "evaluation": evaluation,
            "status": {**{step: note["status"] for step, note in evaluation["cache"].items()},
                       **{step: note["status"] for step, note in splits["cache"].items()},
                       **{f"train {c['params']}": c["cache"]["status"] for c in candidates}}}


def test_unchanged_inputs_reuse_every_step_and_changed_data_config_or_code_recompute_what_depends_on_them(
        churn, tmp_path, monkeypatch):
    """A rerun on unchanged inputs reuses every step and says so on its MLflow runs; a grown grid, a corrected
    landed file, a stricter split and an edited builder recompute what depends on them; force recomputes all."""
    import mlflow

    from pipelines.config import StatePaths

    drafted = churn.read_text()
    first = _run(_configure(churn, lambda text: drafted + GRID.format("[3]")), "first")
    assert set(first["status"].values()) == {"miss"}, first["status"]

    # One more candidate in the grid: only that candidate is trained.
    grown = _configure(churn, lambda text: drafted + GRID.format("[3, 5]"))
    one_more = _run(grown, "one more candidate")
    status = one_more["status"]
    assert status["train {'max_depth': 3}"] == "hit" and status["train {'max_depth': 5}"] == "miss"
    assert status["ingest"] == status["validate"] == status["version"] == status["split"] == "hit"

    # Unchanged inputs: every step reuses its outputs, recorded under the rerun's own MLflow runs.
    again = _run(grown, "again")
    assert set(again["status"].values()) == {"hit"}, again["status"]
    assert [c["model_uri"] for c in again["candidates"]] == [c["model_uri"] for c in one_more["candidates"]]
    assert again["evaluation"]["candidate"] == one_more["evaluation"]["candidate"]
    client = mlflow.MlflowClient()
    parent = client.get_run(again["splits"]["parent_run_id"]).data.tags
    assert parent["cache.ingest"].startswith("hit: inputs unchanged: reused the outputs of run first")
    assert {"cache.validate", "cache.version", "cache.split", "cache.evaluate.candidate"} <= set(parent)
    trained, reused = one_more["candidates"][1], again["candidates"][1]  # max_depth 5, trained by one_more
    child = client.get_run(reused["run_id"]).data.tags
    assert child["cache"].startswith("hit") and child["cached_from_run_id"] == trained["run_id"]
    metrics = client.get_run(reused["run_id"]).data.metrics
    assert {k: v for k, v in metrics.items() if k.startswith("val_")} == {
        f"val_{k}": v for k, v in trained["validation_metrics"].items() if v is not None}

    # A corrected landed file: every step from ingest on computes again, and says why.
    [landed] = (StatePaths.from_env().landing("churn", "churn")).glob("*.parquet")
    table = pd.read_parquet(landed)
    table.loc[0, "tenure"] = 71
    table.to_parquet(landed, index=False)
    rerun = _run(grown, "new data")
    assert rerun["splits"]["cache"]["ingest"]["detail"] == "computed: data:churn changed"
    assert set(rerun["status"].values()) == {"miss"}, rerun["status"]

    # Config: a stricter split changes the split and what follows it, not ingest or validation.
    split_changed = _configure(churn, lambda text: text + "split:\n  holdout_fraction: 0.2\n")
    status = _run(split_changed, "new split")["status"]
    assert status["ingest"] == status["validate"] == status["version"] == "hit"
    assert status["split"] == status["evaluate.candidate"] == "miss"

    # Code: the model's own builder module changed, so ingest runs again.
    module = tmp_path / "churn_builder.py"
    module.write_text(textwrap.dedent("""\
        from pipelines.features import single_table

        def build(feeds):
            return single_table(feeds)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    built = _configure(churn, lambda text: text.replace("features:\n", "features:\n  builder: churn_builder.build\n",
                                                        1))
    _run(built, "builder v1")
    module.write_text(module.read_text() + "\n# the same examples, other code\n")
    rerun = _run(built, "builder v2")
    assert rerun["splits"]["cache"]["ingest"]["detail"] == "computed: code changed"
    assert rerun["status"]["validate"] == "hit"  # the same examples came out

    forced = _run(built, "forced", force=True)
    assert set(forced["status"].values()) == {"forced"}, forced["status"]
    manifest = json.loads(next((StatePaths.from_env().cache("churn") / "ingest").glob("*/manifest.json")).read_text())
    assert manifest["step"] == "ingest" and manifest["files"]


def test_the_evaluation_keeps_both_models_predictions_per_row_and_the_gate_tests_them(churn):
    """With a champion, evaluate writes both models' per-row holdout predictions (keyed by the example id) on the
    candidate's run; the gate's paired test on them holds a candidate no better than the champion."""
    import mlflow

    from pipelines.config import StatePaths
    from pipelines.registry import promote_version, register_version
    from pipelines.run_context import RunContext
    from pipelines.training_steps.promotion import gate
    from pipelines.training_steps.results import Evaluation, Splits

    cfg = _configure(churn, lambda text: text + GRID.format("[3]"))
    first = _run(cfg, "first")
    assert first["evaluation"]["paired_predictions"] is None  # no champion: nothing to pair
    client = mlflow.MlflowClient()
    version = register_version(client, cfg.model_name, first["evaluation"]["model_uri"],
                               {"threshold": str(first["evaluation"]["threshold"]), "airflow_run_id": "first"})
    promote_version(client, cfg.model_name, version)

    second = _run(cfg, "second")  # the same data and model: the candidate is the champion again
    evaluation = second["evaluation"]
    pairs = pd.read_parquet(evaluation["paired_predictions"])
    holdout = pd.read_parquet(second["splits"]["holdout"])
    key = cfg.features.example_id or "example_id"
    assert pairs[key].tolist() == holdout[key].tolist()
    assert (pairs["candidate_score"] == pairs["champion_score"]).all()
    assert set(pairs["truth_positive"]) == {0, 1} and len(pairs) == len(holdout)
    logged = client.list_artifacts(evaluation["best_run_id"], "evaluation")
    assert "evaluation/paired_predictions.parquet" in [f.path for f in logged]

    ctx = RunContext(f"train_{cfg.name}", "second", date(2000, 1, 1), date(2100, 1, 1))
    decision = gate(cfg, ctx, StatePaths.from_env(), Splits.from_dict(second["splits"]),
                    Evaluation.from_dict(evaluation))
    assert not decision.promote
    [primary] = [r for r in decision.reasons if r["check"] == f"margin:{cfg.margin_metric}"]
    assert primary["comparison"]["difference"] == 0 and not primary["passed"]
    assert primary["comparison"]["rows"] == len(holdout) and decision.attempt == 1
