"""The training steps called one after another in this process, as the training DAG wires them, each timed:
the reference the DAG benchmarks compare Airflow's wall time with."""

from __future__ import annotations

import time


def run_training_steps(cfg, ctx, state) -> tuple[dict[str, float], dict]:
    """Seconds per step (the candidates summed under ``train``, the deploy's model load under ``deploy``),
    and the outcome: promoted or not, the gate's summary and the holdout metric."""
    from pipelines import training_tasks as t
    from pipelines.serving.models import load_registered

    timings: dict[str, float] = {}

    def timed(name, fn, *args):
        started = time.perf_counter()
        result = fn(*args)
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started
        return result

    ingested = timed("ingest", t.ingest, cfg, ctx, state)
    validated = timed("validate", t.validate, cfg, ctx, state, ingested)
    data = timed("version", t.snapshot, cfg, ctx, state, validated)
    splits = timed("split", t.split, cfg, ctx, state, data)
    candidates = [timed("train", t.train, cfg, ctx, state, splits, params) for params in cfg.search.candidates()]
    evaluation = timed("evaluate", t.evaluate, cfg, ctx, state, splits, candidates)
    decision = timed("gate", t.gate, cfg, ctx, state, splits, evaluation)
    metric = cfg.selection_metric
    outcome = {"promote": decision["promote"], "summary": decision["summary"],
               "holdout": f"{metric} {evaluation['candidate']['metrics'][metric]:.3f}"}
    if decision["promote"]:
        outcome["infra"] = timed("infra_validate", t.infra_validate, cfg, ctx, state, splits, evaluation)
        if outcome["infra"]["passed"]:
            timed("register", t.register, cfg, ctx, state, splits, evaluation, decision)
            timed("deploy", load_registered, cfg.model_name, "champion")
    return timings, outcome
