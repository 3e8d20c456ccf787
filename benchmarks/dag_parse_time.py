"""DAG parse time per file, against the same DAG with its heavy imports at top level.

Each parse runs in a fresh interpreter that has already imported what Airflow's DAG-file processor has
when it parses a file (``airflow.dag_processing.processor``: the Task SDK, ``airflow.models``) and has
frozen that heap out of the garbage collector, as the processor's manager does before it forks a parser,
so the figure is what the file itself costs. The heavy variant is the same file with the libraries its
tasks use imported at the top, as many public MLOps examples do. Runs alternate, side by side.

    uv run python benchmarks/dag_parse_time.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY_IMPORTS = """\
import pandas, numpy, sklearn.ensemble, sklearn.metrics, mlflow, mlflow.sklearn, skops.io  # noqa
import great_expectations, dvc.repo, matplotlib.pyplot  # noqa
from pipelines import training, validation, evaluation, versioning, tracking  # noqa
from pipelines.training_steps import pipeline  # noqa
"""
PROBE = """
import sys, time, runpy
import gc
import airflow.dag_processing.processor  # already loaded where the DAG processor parses a file
gc.freeze()  # as the DAG processor's manager does before it forks a parser (DagFileProcessorManager.before_run)
t = time.perf_counter()
runpy.run_path(sys.argv[1])
print(f"PARSE_SECONDS={time.perf_counter() - t:.4f}")
"""


def parse_seconds(path: Path, env: dict) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, env=env,
                         check=True).stdout
    return float(next(line.split("=")[1] for line in out.splitlines() if line.startswith("PARSE_SECONDS=")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_parse_") as scratch:
        env = {**os.environ, "AIRFLOW_HOME": str(Path(scratch) / "airflow"),
               "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "GX_ANALYTICS_ENABLED": "false"}
        for dag_file in sorted((ROOT / "dags").glob("*.py")):
            heavy = Path(scratch) / f"heavy_{dag_file.name}"
            source = dag_file.read_text()
            marker = "from airflow.sdk import"
            heavy.write_text(source.replace(marker, HEAVY_IMPORTS + marker, 1))
            lean_times, heavy_times = [], []
            for _ in range(args.runs):
                lean_times.append(parse_seconds(dag_file, env))
                heavy_times.append(parse_seconds(heavy, env))
            lean, fat = statistics.median(lean_times), statistics.median(heavy_times)
            print(f"{dag_file.name}: parse {lean:.3f} s (median of {args.runs}; goal < 0.2 s) | "
                  f"heavy top-level imports {fat:.3f} s | ratio {fat / lean:.1f}x faster (goal >= 10x)")


if __name__ == "__main__":
    main()
