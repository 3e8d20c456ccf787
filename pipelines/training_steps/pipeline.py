"""The training pipeline: its steps in order, what each takes from the steps before it, and the checks that
may end a run early. The one definition both the DAG factory (``dags/training.py``: a task per step) and
in-process runs (``run_in_process``: tests, benchmarks) follow.

A step is ``run(cfg, ctx, state, *inputs)``: the results of the steps it names, in order. The DAG passes
results through XCom as ``to_payload`` makes them and rebuilds them with ``from_payload``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, is_dataclass
from functools import partial
from typing import Any

from pipelines.config import ModelConfig, StatePaths
from pipelines.registry import Promotion
from pipelines.run_context import RunContext
from pipelines.training_steps import candidates, data, evaluation, promotion
from pipelines.training_steps.results import (
    Candidate,
    Evaluation,
    GateDecision,
    InfraChecked,
    Ingested,
    Snapshot,
    Splits,
    Validated,
)


@dataclass(frozen=True)
class Step:
    name: str  # its task id
    run: Callable[..., Any] | None  # None: a person answers it, in Airflow (approve)
    inputs: tuple[str, ...] = ()  # the steps whose results it takes, in this order
    result: type | None = None  # the record it returns
    after: str | None = None  # a check it waits for without taking its result
    per_candidate: bool = False  # runs once per hyperparameter candidate (the last argument); takers get a list
    proceeds: Callable[[Any], bool] | None = None  # a check: whether the run goes on past it


def training_steps(cfg: ModelConfig) -> tuple[Step, ...]:
    """The steps of a training run of ``cfg``, in the order they run."""
    approval = cfg.serving.approval == "required"
    return (
        Step("ingest", data.ingest, (), Ingested),
        Step("validate", data.validate, ("ingest",), Validated),
        Step("version", data.snapshot, ("validate",), Snapshot),
        Step("split", data.split, ("version",), Splits),
        Step("train", candidates.train, ("split",), Candidate, per_candidate=True),
        Step("evaluate", evaluation.evaluate, ("split", "train"), Evaluation),
        Step("gate", promotion.gate, ("split", "evaluate"), GateDecision, proceeds=lambda d: d.promote),
        Step("infra_validate", promotion.infra_validate, ("split", "evaluate"), InfraChecked, after="gate",
             proceeds=lambda outcome: outcome.passed),
        # The approval operator reads the split, the gate's decision and the evaluation; its answer is the
        # tags register stores on the version.
        *([Step("approve", None, ("split", "gate", "evaluate"), after="infra_validate")] if approval else []),
        Step("register", promotion.register, ("split", "evaluate", "gate", *(["approve"] if approval else [])),
             Promotion, after="approve" if approval else "infra_validate"),
        Step("deploy", promotion.deploy, ("register",), dict),
    )


def to_payload(result: Any) -> Any:
    """A step's result as XCom carries it (JSON-able)."""
    return asdict(result) if is_dataclass(result) and not isinstance(result, type) else result


def from_payload(step: Step, payload: Any) -> Any:
    """A step's result rebuilt from its XCom payload (a per-candidate step's: each one's)."""
    if payload is None or step.result in (None, dict):
        return payload
    if step.per_candidate:
        return [_record(step.result, p) for p in payload]
    return _record(step.result, payload)


def _record(kind: type, payload: Mapping[str, Any]) -> Any:
    return kind.from_dict(payload) if hasattr(kind, "from_dict") else kind(**payload)


def run_step(cfg: ModelConfig, ctx: RunContext, state: StatePaths, step: Step, inputs: Mapping[str, Any],
             *candidate: Any) -> Any:
    """One step on the payloads of its inputs (by step name; missing: None), as a task runs it; its payload."""
    steps = {s.name: s for s in training_steps(cfg)}
    args = [from_payload(steps[name], inputs.get(name)) for name in step.inputs]
    return to_payload(step.run(cfg, ctx, state, *args, *candidate))


def run_in_process(cfg: ModelConfig, ctx: RunContext, state: StatePaths, *, until: str | None = None,
                   replace: Mapping[str, Callable[..., Any]] | None = None,
                   around: Callable[[str, Callable[[], Any]], Any] | None = None) -> dict[str, Any]:
    """Run the steps one after another in this process, as the DAG orders them; each step's result by name.

    Stops after ``until``, or after a check that ends the run. Nobody answers ``approve`` here: it is
    skipped and ``register`` gets no approval. ``replace`` runs another function for a step (same
    arguments); ``around(name, call)`` wraps each call (a timer)."""
    done: dict[str, Any] = {}
    for step in training_steps(cfg):
        if step.run is None:
            continue
        run = (replace or {}).get(step.name, step.run)
        args = [done.get(name) for name in step.inputs]
        calls = [[*args, params] for params in cfg.search.candidates()] if step.per_candidate else [args]
        results = [(around or _call)(step.name, partial(run, cfg, ctx, state, *each)) for each in calls]
        done[step.name] = results if step.per_candidate else results[0]
        if step.name == until or (step.proceeds and not step.proceeds(done[step.name])):
            break
    return done


def _call(_name: str, call: Callable[[], Any]) -> Any:
    return call()
