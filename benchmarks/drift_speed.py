"""The monitoring DAG's drift step against a plain Evidently DataDriftPreset run, same data side by side.

    uv run python benchmarks/drift_speed.py                    # 1M rows per side x 20 columns
    uv run python benchmarks/drift_speed.py --rows 10000000 --skip-evidently   # does a 10M-row window fit?

Each contender runs in its own process (fresh interpreter, data generated there from the same seed), so
peak memory (ru_maxrss) is its own. Prints time, peak memory, their ratios, and the per-column verdicts
of both with their agreement.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NUMERIC = [f"num_{i}" for i in range(14)]
CATEGORICAL = [f"cat_{i}" for i in range(6)]


def make_data(rows: int, seed: int, drifted: bool):
    """14 numeric columns (normal, skewed, low-cardinality, with NaNs) and 6 categorical ones; when
    ``drifted``, a third of the columns shift by various amounts (some below Evidently's threshold)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    data = {}
    for i, name in enumerate(NUMERIC):
        shift = (0.06 * (i % 5)) if drifted and i % 2 == 0 else 0.0
        kind = i % 4
        if kind == 0:
            column = rng.normal(loc=shift, size=rows)
        elif kind == 1:
            column = rng.gamma(2.0 + 4 * shift, size=rows)
        elif kind == 2:
            column = rng.integers(0, 24, size=rows).astype(float) + (shift > 0.1)
        else:
            column = np.round(rng.normal(loc=10 + shift, scale=3, size=rows), 1)
            column[rng.random(rows) < 0.05] = np.nan
        data[name] = column
    categories = np.array(["UA", "B6", "EV", "DL", "AA", "MQ", "US", "9E", "WN", "VX"], dtype=object)
    for i, name in enumerate(CATEGORICAL):
        p = np.linspace(1, 2, len(categories))
        if drifted and i % 2 == 0:
            p = p[::-1] ** (1 + 0.5 * i)
        data[name] = rng.choice(categories, p=p / p.sum(), size=rows)
    return pd.DataFrame(data)


def run_evidently(rows: int) -> dict:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference, current = make_data(rows, 1, False), make_data(rows, 2, True)
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    started = time.perf_counter()
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition))
    result = json.loads(snapshot.json())
    seconds = time.perf_counter() - started
    verdicts = {t["metric_config"]["params"]["column"]: t["status"] == "FAIL" for t in result["tests"]
                if "column" in t.get("metric_config", {}).get("params", {})}
    return {"seconds": seconds, "verdicts": verdicts}


def run_profile(rows: int) -> dict:
    """What the monitoring DAG does: the reference profile is built once per champion version (timed
    separately), the window is reduced to value counts and compared."""
    from pipelines.drift import dataset_drift, profile_reference

    reference, current = make_data(rows, 1, False), make_data(rows, 2, True)
    started = time.perf_counter()
    profile = profile_reference(reference, NUMERIC, CATEGORICAL)
    profile_seconds = time.perf_counter() - started
    del reference
    started = time.perf_counter()
    summary = dataset_drift(profile, current)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "profile_seconds": profile_seconds,
            "verdicts": {c.column: c.drifted for c in summary.columns}}


def child(contender: str, rows: int) -> None:
    result = run_evidently(rows) if contender == "evidently" else run_profile(rows)
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def measure(contender: str, rows: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", contender, "--rows", str(rows)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def baseline_mb() -> float:
    """Peak memory of a process that only makes the data (what both contenders must hold anyway)."""
    out = subprocess.run([sys.executable, __file__, "--child", "data", "--rows", str(ARGS.rows)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per side")
    parser.add_argument("--skip-evidently", action="store_true", help="only the monitoring DAG's drift step")
    parser.add_argument("--child", choices=["evidently", "profile", "data"])
    ARGS = parser.parse_args()
    if ARGS.child == "data":
        make_data(ARGS.rows, 1, False), make_data(ARGS.rows, 2, True)
        print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    elif ARGS.child:
        child(ARGS.child, ARGS.rows)
    else:
        print(f"{ARGS.rows:,} rows per side x {len(NUMERIC)} numeric + {len(CATEGORICAL)} categorical columns")
        data_mb = baseline_mb()
        print(f"  the two frames alone: peak {data_mb:,.0f} MB")
        ours = measure("profile", ARGS.rows)
        print(f"  monitoring drift step: {ours['seconds']:.2f} s (reference profile, once per champion "
              f"version: {ours['profile_seconds']:.2f} s), peak {ours['peak_mb']:,.0f} MB")
        if not ARGS.skip_evidently:
            theirs = measure("evidently", ARGS.rows)
            print(f"  Evidently DataDriftPreset: {theirs['seconds']:.2f} s, peak {theirs['peak_mb']:,.0f} MB")
            total = ours["seconds"] + ours["profile_seconds"]
            print(f"  speed-up: {theirs['seconds'] / ours['seconds']:.1f}x per window "
                  f"({theirs['seconds'] / total:.1f}x even when the profile is built in the same run)")
            extra_ours, extra_theirs = max(0.0, ours["peak_mb"] - data_mb), max(0.0, theirs["peak_mb"] - data_mb)
            print(f"  peak memory: {ours['peak_mb'] / theirs['peak_mb']:.2f} of Evidently's "
                  f"(above the data itself: {extra_ours:,.0f} vs {extra_theirs:,.0f} MB)")
            agree = [c for c in theirs["verdicts"] if theirs["verdicts"][c] == ours["verdicts"].get(c)]
            print(f"  verdicts agree on {len(agree)} of {len(theirs['verdicts'])} columns")
            for column in NUMERIC + CATEGORICAL:
                print(f"    {column:8s} evidently={'DRIFT' if theirs['verdicts'][column] else 'ok':5s} "
                      f"ours={'DRIFT' if ours['verdicts'][column] else 'ok'}")
