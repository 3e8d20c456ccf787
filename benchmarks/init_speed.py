"""`mlops-loop init` (what `make init` runs) end to end on a 1M-row table, against the 30 s goal.

    uv run python benchmarks/init_speed.py                     # 1,000,000 rows, CSV with and without time
    uv run python benchmarks/init_speed.py --rows 200000 --parquet

Generates a seeded table of customer records with numpy: an id, 11 numeric columns (some with missing
values), 7 text categories (five of 3 to 8 values, two of 120 and 150), an event time written as ISO
strings and two targets. Each case writes the columns it needs to a file, then runs the command as a user
does, in its own process: `.venv/bin/mlops-loop init FILE --target COL --name NAME --force`, with
MLOPS_HOME and MLOPS_INCLUDE_DIR in a scratch folder (the repository's include/ is never written).
The time is the whole command, interpreter start and imports included; peak memory is the command's own
(ru_maxrss from wait4). A case counts only if the command succeeds, its drafted config loads
(`load_model_config`) with the expected task and event time, and the landed files hold every row.

Cases: CSV without an event time (binary target: one landed file), CSV with an event time (regression
target: one landed file per day, 365 days), and with --parquet the second table as Parquet (its time a
timestamp column).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from scratch import finish

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_SECONDS = 30.0
DAYS = 365


@dataclass(frozen=True)
class Case:
    label: str
    name: str
    target: str
    task: str
    event_time: str | None
    fmt: str


CASES = [
    Case("csv, no time", "bench_init_notime", "churned", "binary", None, "csv"),
    Case("csv, event time", "bench_init_time", "next_month_spend", "regression", "order_time", "csv"),
    Case("parquet, event time", "bench_init_time_pq", "next_month_spend", "regression", "order_time", "parquet"),
]


def make_table(rows: int, seed: int = 0):
    """Customer records: what a user's export looks like. Both targets are there; each case drops the
    one it does not predict (and the event time when it has none)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)

    def with_missing(values, share):
        values = values.astype(float)
        values[rng.random(rows) < share] = np.nan
        return values

    def zipf_choice(prefix: str, count: int):
        weights = 1.0 / np.arange(1, count + 1) ** 0.8
        return rng.choice(np.array([f"{prefix}_{i:03d}" for i in range(count)], dtype=object),
                          p=weights / weights.sum(), size=rows)

    plan = rng.choice(np.array(["basic", "standard", "premium", "family"], dtype=object), p=[.4, .3, .2, .1],
                      size=rows)
    tenure = rng.integers(0, 120, rows)
    support_calls = rng.poisson(1.2, rows)
    satisfaction = with_missing(rng.integers(1, 6, rows), 0.10)
    monthly_spend = np.round(rng.gamma(2.0, 30.0, rows), 2)
    device = rng.choice(np.array(["ios", "android", "desktop"], dtype=object), size=rows)
    device[rng.random(rows) < 0.02] = None
    start = np.datetime64("2024-01-01T00:00:00", "s")
    order_time = start + rng.integers(0, DAYS * 86400, rows).astype("timedelta64[s]")

    logit = -1.2 + 0.8 * (plan == "basic") - 0.015 * tenure + 0.35 * support_calls \
        - 0.3 * (np.nan_to_num(satisfaction, nan=3.0) - 3)
    churned = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    next_month_spend = np.round(monthly_spend * (0.85 + 0.2 * (plan == "premium")) + rng.normal(0, 12, rows), 2)

    return pd.DataFrame({
        "customer_id": rng.permutation(rows) + 1_000_000,
        "order_time": np.datetime_as_string(order_time, timezone="UTC"),
        "age": rng.integers(18, 90, rows),
        "tenure_months": tenure,
        "income": np.round(with_missing(rng.lognormal(10.8, 0.5, rows), 0.04), 2),
        "monthly_spend": with_missing(monthly_spend, 0.01),
        "balance": np.round(rng.normal(1500, 900, rows), 2),
        "logins_30d": rng.poisson(12, rows),
        "session_minutes": np.round(with_missing(rng.exponential(25, rows), 0.08), 1),
        "discount_rate": rng.choice([0.0, 0.05, 0.1, 0.15, 0.2, 0.25], size=rows),
        "satisfaction": satisfaction,
        "support_calls": support_calls,
        "days_since_last_order": with_missing(rng.integers(0, 400, rows), 0.05),
        "plan": plan,
        "region": rng.choice(np.array(["north", "south", "east", "west", "central", "coast", "mountain",
                                       "islands"], dtype=object), size=rows),
        "channel": rng.choice(np.array(["web", "app", "store", "phone", "partner"], dtype=object), size=rows),
        "device": device,
        "payment_method": rng.choice(np.array(["card", "debit", "paypal", "transfer", "cash", "voucher"],
                                              dtype=object), size=rows),
        "city": zipf_choice("city", 150),
        "referrer": zipf_choice("campaign", 120),
        "churned": churned,
        "next_month_spend": next_month_spend,
    })


def write_case_file(table, case: Case, folder: Path) -> Path:
    import pandas as pd

    drop = [c for c in ("churned", "next_month_spend") if c != case.target]
    if case.event_time is None:
        drop.append("order_time")
    frame = table.drop(columns=drop)
    path = folder / f"{case.name}.{case.fmt}"
    if case.fmt == "csv":
        frame.to_csv(path, index=False)
    else:  # a Parquet export keeps its times typed
        frame.assign(order_time=pd.to_datetime(frame["order_time"], utc=True)).to_parquet(path, index=False)
    return path


def run_init(case: Case, path: Path, scratch: Path) -> tuple[float, float, str]:
    """Run the command as a user does; returns seconds, the child's peak RSS in MB, and its output."""
    command = [str(Path(sys.prefix) / "bin" / "mlops-loop"), "init", str(path), "--target", case.target,
               "--name", case.name, "--force"]
    env = {**os.environ, "MLOPS_HOME": str(scratch / "state"), "MLOPS_INCLUDE_DIR": str(scratch / "include")}
    log = scratch / f"{case.name}.log"
    with log.open("w") as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage, not the sum of all children
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    output = log.read_text()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{output}")
    return seconds, usage.ru_maxrss / 1024, output


def check_result(case: Case, rows: int, scratch: Path) -> tuple[int, str]:
    """The run worked: the drafted config loads as expected and the landed files hold every row."""
    import pyarrow.parquet as pq

    from pipelines.config import StatePaths, load_model_config

    cfg = load_model_config(scratch / "include" / "models" / f"{case.name}.yaml")
    if cfg.task != case.task or cfg.features.event_time != case.event_time:
        raise SystemExit(f"{case.label}: drafted task {cfg.task}, event time {cfg.features.event_time!r}; "
                         f"expected {case.task}, {case.event_time!r}")
    if not cfg.expectation_suite_path.is_file():
        raise SystemExit(f"{case.label}: no suite at {cfg.expectation_suite_path}")
    landed = sorted(StatePaths(root=scratch / "state").landing(cfg.landing_name, cfg.feeds[0].name)
                    .glob("*.parquet"))
    landed_rows = sum(pq.read_metadata(f).num_rows for f in landed)
    if landed_rows != rows:
        raise SystemExit(f"{case.label}: {landed_rows:,} rows landed in {len(landed)} files, expected {rows:,}")
    features = len(cfg.features.numeric) + len(cfg.features.categorical)
    return len(landed), f"{cfg.task}, {features} features, {len(landed)} landed file(s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the table")
    parser.add_argument("--parquet", action="store_true", help="also time the event-time table as Parquet")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (data, drafts, logs)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench_init_"))
    # Before pipelines.config is imported here, so the checks read the drafts where the command wrote them.
    os.environ["MLOPS_INCLUDE_DIR"] = str(scratch / "include")
    cases = [c for c in CASES if c.fmt == "csv" or args.parquet]
    try:
        started = time.perf_counter()
        table = make_table(args.rows)
        files = {c.name: write_case_file(table, c, scratch) for c in cases}
        del table
        sizes = ", ".join(f"{p.name} {p.stat().st_size / 2**20:,.0f} MB" for p in files.values())
        print(f"generated {args.rows:,} rows in {time.perf_counter() - started:.1f} s: {sizes}")
        for case in cases:
            seconds, peak_mb, _ = run_init(case, files[case.name], scratch)
            _, what = check_result(case, args.rows, scratch)
            print(f"init {args.rows:,} rows {case.label}: {seconds:.1f} s ({seconds / GOAL_SECONDS:.2f}x of the "
                  f"{GOAL_SECONDS:.0f} s goal), peak RSS {peak_mb:,.0f} MB; {what}", flush=True)
    finally:
        finish(scratch, args.keep)


if __name__ == "__main__":
    main()
