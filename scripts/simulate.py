"""Replay 2013 through the running stack and let the monitoring and training DAGs do their work.

    make up                                   # the stack, with a champion trained on Jan-Mar 2013
    make simulate                             # = python scripts/simulate.py (Apr 1 2013 .. Jan 1 2014)
    python scripts/simulate.py --start 2013-06-01 --end 2013-08-01 --every 7

For every window of ``--every`` days: land each day's flights and weather as the provider would, send
each day's flights to the prediction service (with their scheduled hour as event time), land the actual
outcomes ``--label-delay-days`` later as the ``outcomes`` feed, then trigger ``monitor_<model>`` for the
window and wait for it. When the monitoring DAG decides to retrain, it starts ``train_<model>`` itself
(the scheduler runs it); the replay waits for that run before the next window, so the next window is
served by whatever champion the gate left in place.

Ends with ``timeline.png``, ``timeline.html`` and ``retrains.md`` under
``$MLOPS_HOME/reports/<model>/simulation/``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stack  # noqa: E402  (the stack's addresses, environment and REST helpers)


def api_headers() -> dict[str, str]:
    return stack.airflow_api().headers()


def run_state(dag_id: str, run_id: str) -> str | None:
    response = httpx.get(f"http://127.0.0.1:{stack.AIRFLOW_PORT}/api/v2/dags/{dag_id}/dagRuns/{run_id}",
                         headers=api_headers(), timeout=30)
    return response.json()["state"] if response.status_code == 200 else None


def wait_for_run(dag_id: str, run_id: str, timeout: float = 1800, appear_timeout: float = 120) -> str:
    deadline, appear_by = time.monotonic() + timeout, time.monotonic() + appear_timeout
    while time.monotonic() < deadline:
        state = run_state(dag_id, run_id)
        if state in ("success", "failed"):
            return state
        if state is None and time.monotonic() > appear_by:
            return "not started"
        time.sleep(2)
    return "timed out"


def trigger(dag_id: str, conf: dict) -> str:
    response = httpx.post(f"http://127.0.0.1:{stack.AIRFLOW_PORT}/api/v2/dags/{dag_id}/dagRuns",
                          headers=api_headers(), json={"logical_date": None, "conf": conf}, timeout=30)
    response.raise_for_status()
    return response.json()["dag_run_id"]


def champion_interval_end(cfg) -> date:
    from pipelines.monitoring_tasks import champion_version

    interval = champion_version(cfg, stack_state()).tags.get("data_interval", "")
    return date.fromisoformat(interval.split("_")[-1])


def stack_state():
    from pipelines.config import StatePaths

    return StatePaths.from_env()


def retrain_outcomes(cfg, rows: list[dict]):
    """Each retrain the monitoring DAG started: its run's state, the gate's decision, the new version."""
    from pipelines.timeline import Retrain
    from pipelines.tracking import mlflow_client
    from pipelines.training_outcomes import training_outcomes

    retrains = [row for row in rows if row["decision"] == "retrain" and row["triggered_run_id"]]
    made = training_outcomes(mlflow_client(), cfg.model_name, cfg.name, [r["triggered_run_id"] for r in retrains])
    outcomes = []
    for row in retrains:
        run_id = row["triggered_run_id"]
        outcomes.append(Retrain(str(row["window_end"]), row["reason"], run_id,
                                run_state(f"train_{cfg.name}", run_id) or "not started",
                                made[run_id].gate_decision, made[run_id].gate_summary[:300], made[run_id].version))
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=stack.MODEL)
    parser.add_argument("--start", type=date.fromisoformat, default=None,
                        help="first day to replay (default: the day the champion's training data ends)")
    parser.add_argument("--end", type=date.fromisoformat, default=date(2014, 1, 1), help="exclusive")
    parser.add_argument("--every", type=int, default=None, help="days per monitoring window (default: the "
                        "model's monitoring.window_days)")
    parser.add_argument("--label-delay-days", type=int, default=1,
                        help="the outcomes of day D land after day D + this many days have been served")
    args = parser.parse_args()
    os.environ.update(stack.stack_env())
    from pipelines import monitoring_store as store
    from pipelines.config import load_model_config
    from pipelines.features.flights import NycFlights13Replay
    from pipelines.progress import progress_bar
    from pipelines.replay import land_outcomes, send_examples
    from pipelines.timeline import windows_frame, write_timeline

    cfg = load_model_config(args.model)
    state = stack_state()
    url = os.environ["MLOPS_SERVING_URL"]
    if httpx.get(f"{url}/health", timeout=10).status_code != 200:
        raise SystemExit(f"no champion served at {url}: run `make up` first")
    start = args.start or champion_interval_end(cfg)
    every = args.every or cfg.monitoring.window_days
    source = NycFlights13Replay()
    pending: dict[date, object] = {}  # outcomes served but not landed yet
    print(f"replaying {start} .. {args.end} in windows of {every} days through {url}")
    started = time.monotonic()
    client = httpx.Client()
    days = progress_bar((args.end - start).days, "replay", "day")
    say = days.write  # lines above the bar (plain prints when the output is not a terminal)
    window_start = start
    while window_start < args.end:
        window_end = min(window_start + timedelta(days=every), args.end)
        source.land(state.landing_root(cfg.landing_name), window_start, window_end)
        served = 0
        for day in (window_start + timedelta(days=i) for i in range((window_end - window_start).days)):
            outcomes = send_examples(client, url, cfg, source.examples(day, day + timedelta(days=1)),
                                     request_prefix=day.isoformat())
            served += len(outcomes)
            pending[day] = outcomes
            for ready in [d for d in pending if d <= day - timedelta(days=args.label_delay_days)]:
                land_outcomes(cfg, state, ready, pending.pop(ready))
            days.update()
        run_id = trigger(f"monitor_{cfg.name}", {"window_start": window_start.isoformat(),
                                                 "window_end": window_end.isoformat(), "reason": "simulate"})
        monitor_state = wait_for_run(f"monitor_{cfg.name}", run_id)
        with store.engine().connect() as connection:
            row = next((r for r in store.load_windows(connection, cfg.name, since=window_end)
                        if r["window_start"] == window_start and r["window_end"] == window_end), None)
        line = (f"{window_start}..{window_end}: served {served:5d}, monitor {monitor_state}"
                + (f", drift share {row['drift_share']:.2f}, ROC AUC {row['realized_roc_auc'] or float('nan'):.3f}, "
                   f"champion v{row['model_version']}: {row['decision']}" if row else ""))
        say(line)
        if row and row["decision"] == "retrain":
            say(f"    retrain: {row['reason'][:200]}")
            outcome = wait_for_run(f"train_{cfg.name}", row["triggered_run_id"])
            health = httpx.get(f"{url}/health", timeout=10).json()
            say(f"    training run {row['triggered_run_id']}: {outcome}; serving v{health.get('version')}")
        window_start = window_end
    days.close()
    for ready in sorted(pending):
        land_outcomes(cfg, state, ready, pending.pop(ready))
    client.close()
    with store.engine().connect() as connection:
        rows = [r for r in store.load_windows(connection, cfg.name, since=start) if r["window_end"] <= args.end]
    windows = windows_frame(rows)
    retrains = retrain_outcomes(cfg, rows)
    paths = write_timeline(cfg, windows, retrains, state.reports(cfg.name) / "simulation")
    print(f"\n{len(windows)} windows, {len(retrains)} retrains in {(time.monotonic() - started) / 60:.1f} min")
    for retrain in retrains:
        print(f"  {retrain.window_end}: {retrain.gate_decision or retrain.run_state} "
              f"{'-> v' + retrain.version if retrain.version else ''}  ({retrain.reason[:120]})")
    for kind, path in paths.items():
        print(f"  {kind}: {path}")


if __name__ == "__main__":
    main()
