"""The training steps called one after another in this process, as the training pipeline orders them, each
timed: the reference the DAG benchmarks compare Airflow's wall time with."""

from __future__ import annotations

import time


def run_training_steps(cfg, ctx, state) -> tuple[dict[str, float], dict]:
    """Seconds per step (the candidates summed under ``train``, the deploy's model load under ``deploy``),
    and the outcome: promoted or not, the gate's summary and the holdout metric."""
    from pipelines.serving.models import load_registered
    from pipelines.training_steps.pipeline import run_in_process

    timings: dict[str, float] = {}

    def timed(name, call):
        started = time.perf_counter()
        result = call()
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started
        return result

    done = run_in_process(cfg, ctx, state, around=timed,
                          replace={"deploy": lambda cfg, ctx, state, promoted: load_registered(cfg.model_name,
                                                                                              "champion")})
    decision, metric = done["gate"], cfg.selection_metric
    outcome = {"promote": decision.promote, "summary": decision.summary,
               "holdout": f"{metric} {done['evaluate'].candidate.metrics[metric]:.3f}"}
    if "infra_validate" in done:
        outcome["infra"] = done["infra_validate"].to_dict()
    return timings, outcome
