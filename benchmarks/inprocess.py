"""The training steps called one after another in this process, as the training DAG wires them, each timed:
the reference the DAG benchmarks compare Airflow's wall time with."""

from __future__ import annotations

import time


def run_training_steps(cfg, ctx, state) -> tuple[dict[str, float], dict]:
    """Seconds per step (the candidates summed under ``train``, the deploy's model load under ``deploy``),
    and the outcome: promoted or not, the gate's summary and the holdout metric."""
    from pipelines.serving.models import load_registered
    from pipelines.training_steps.candidates import train
    from pipelines.training_steps.data import ingest, snapshot, split, validate
    from pipelines.training_steps.evaluation import evaluate
    from pipelines.training_steps.promotion import gate, infra_validate, register

    timings: dict[str, float] = {}

    def timed(name, fn, *args):
        started = time.perf_counter()
        result = fn(*args)
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started
        return result

    ingested = timed("ingest", ingest, cfg, ctx, state)
    validated = timed("validate", validate, cfg, ctx, state, ingested)
    data = timed("version", snapshot, cfg, ctx, state, validated)
    splits = timed("split", split, cfg, ctx, state, data)
    candidates = [timed("train", train, cfg, ctx, state, splits, params) for params in cfg.search.candidates()]
    evaluation = timed("evaluate", evaluate, cfg, ctx, state, splits, candidates)
    decision = timed("gate", gate, cfg, ctx, state, splits, evaluation)
    metric = cfg.selection_metric
    outcome = {"promote": decision.promote, "summary": decision.summary,
               "holdout": f"{metric} {evaluation.candidate.metrics[metric]:.3f}"}
    if decision.promote:
        outcome["infra"] = timed("infra_validate", infra_validate, cfg, ctx, state, splits, evaluation).to_dict()
        if outcome["infra"]["passed"]:
            timed("register", register, cfg, ctx, state, splits, evaluation, decision)
            timed("deploy", load_registered, cfg.model_name, "champion")
    return timings, outcome
