"""Validate: run a Great Expectations suite from include/ over one batch of examples."""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.errors import DataError

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    observed: Any
    kwargs: dict[str, Any]

    def describe(self) -> str:
        where = f" on {self.column!r}" if self.column else ""
        return f"{self.expectation}{where}: observed {self.observed}"


@dataclass(frozen=True)
class ValidationOutcome:
    suite: str
    success: bool
    evaluated: int
    outcomes: list[ExpectationOutcome] = field(default_factory=list)

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def with_failure(self, check: str, column: str | None, observed: str) -> ValidationOutcome:
        """This outcome with one more failed check (a rule of the project, not of the suite)."""
        failed = ExpectationOutcome(check, column, False, observed, {})
        return ValidationOutcome(self.suite, False, self.evaluated + 1, [failed, *self.outcomes])

    def failure_message(self) -> str:
        lines = [f"{len(self.failures)} of {self.evaluated} expectations of suite {self.suite!r} failed:"]
        lines += [f"  - {o.describe()}" for o in self.failures]
        return "\n".join(lines)


class DataValidationError(DataError):
    def __init__(self, outcome: ValidationOutcome, report_path: Path | None = None, source: str = ""):
        self.outcome = outcome
        self.report_path = report_path
        prefix = f"{source}: " if source else ""
        suffix = f"\nreport: {report_path}" if report_path else ""
        super().__init__(prefix + outcome.failure_message() + suffix)


def load_suite_spec(path: Path) -> dict[str, Any]:
    spec = json.loads(Path(path).read_text())
    if "name" not in spec or not isinstance(spec.get("expectations"), list):
        raise ValueError(f"{path}: not an expectation suite (needs 'name' and a list of 'expectations')")
    for number, expectation in enumerate(spec["expectations"]):
        if not isinstance(expectation.get("type"), str) or not isinstance(expectation.get("kwargs"), dict):
            raise ValueError(f"{path}: expectation #{number} needs a 'type' string and a 'kwargs' object, "
                             f"got {expectation}")
    return spec


def _observed(result: dict[str, Any]) -> Any:
    if "observed_value" in result:
        return result["observed_value"]
    if "unexpected_percent" in result:
        shown = result.get("partial_unexpected_list", [])[:5]
        return (
            f"{result.get('unexpected_count')} unexpected rows "
            f"({result['unexpected_percent']:.2f}%), e.g. {shown}"
        )
    return result or None


def validate_frame(frame: pd.DataFrame, suite_spec: dict[str, Any]) -> ValidationOutcome:
    """Run every expectation of ``suite_spec`` over ``frame`` with an ephemeral GX context."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    context = gx.get_context(mode="ephemeral")
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except Exception:  # progress bars are cosmetic
        pass
    batch_definition = (
        context.data_sources.add_pandas("examples")
        .add_dataframe_asset("batch")
        .add_batch_definition_whole_dataframe("whole")
    )
    suite = gx.ExpectationSuite(
        name=suite_spec["name"],
        expectations=[
            ExpectationConfiguration(type=e["type"], kwargs=e["kwargs"], meta=e.get("meta", {})).to_domain_obj()
            for e in suite_spec["expectations"]
        ],
    )
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(suite, result_format="SUMMARY")
    outcomes = [
        ExpectationOutcome(
            expectation=r.expectation_config.type,
            column=r.expectation_config.kwargs.get("column"),
            success=bool(r.success),
            observed=_observed(r.result or {}) if not r.success else (r.result or {}).get("observed_value"),
            kwargs={k: v for k, v in r.expectation_config.kwargs.items() if k not in ("batch_id",)},
        )
        for r in result.results
    ]
    return ValidationOutcome(
        suite=suite_spec["name"], success=bool(result.success), evaluated=len(outcomes), outcomes=outcomes
    )


def with_batch_checks(outcome: ValidationOutcome, examples: pd.DataFrame, task, days: int,
                      usual_rows_per_day: float | None, min_volume_ratio: float | None,
                      lookback: str = "") -> ValidationOutcome:
    """The suite's outcome with the project's own checks of a batch: the target fits the model's task
    type, and the batch's rows per day are not a collapse against the recent ``usual_rows_per_day``."""
    target = task.features.target
    problem = (f"target column {target!r} is missing" if target not in examples
               else task.target_problem(examples[target]))
    if problem:
        outcome = outcome.with_failure("target_fits_task", target, f"does not fit task {task.name!r}: {problem}")
    rows_per_day = len(examples) / max(1, days)
    if usual_rows_per_day is not None and min_volume_ratio and rows_per_day < min_volume_ratio * usual_rows_per_day:
        outcome = outcome.with_failure(
            "row_volume", None, f"{rows_per_day:,.0f} rows per day, below {min_volume_ratio:.0%} of the "
            f"{usual_rows_per_day:,.0f} per day of the batches validated {lookback} (a feed cut short?)")
    return outcome


def render_report(outcome: ValidationOutcome, title: str) -> str:
    """A self-contained HTML page: one row per expectation, failures first."""
    rows = []
    for o in sorted(outcome.outcomes, key=lambda o: o.success):
        status = "PASS" if o.success else "FAIL"
        rows.append(
            f"<tr class='{status.lower()}'><td>{status}</td><td>{html.escape(o.expectation)}</td>"
            f"<td>{html.escape(str(o.column or ''))}</td>"
            f"<td><code>{html.escape(json.dumps(o.kwargs, default=str))}</code></td>"
            f"<td>{html.escape(str(o.observed))}</td></tr>"
        )
    verdict = "passed" if outcome.success else f"FAILED ({len(outcome.failures)} of {outcome.evaluated})"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}
tr.fail td:first-child{{background:#f8d7da}}tr.pass td:first-child{{background:#d4edda}}
code{{font-size:85%}}</style></head><body>
<h1>{html.escape(title)}</h1><p>Suite <b>{html.escape(outcome.suite)}</b>: {verdict}.</p>
<table><tr><th>status</th><th>expectation</th><th>column</th><th>arguments</th><th>observed</th></tr>
{''.join(rows)}</table></body></html>
"""
