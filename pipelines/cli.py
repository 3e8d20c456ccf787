"""``mlops-loop``: bring your own table, train it, land more of it.

    mlops-loop init DATA --target COLUMN --name NAME [--task TASK]
    mlops-loop train NAME [--start YYYY-MM-DD --end YYYY-MM-DD] [--reason TEXT]
    mlops-loop land NAME DATA [--day YYYY-MM-DD] [--replace]
    mlops-loop replay NAME [--source [FEED=]FILE] [--start DAY --end DAY --every N --label-delay-days D]
                           [--shift SPEC] [--replace]
    mlops-loop models [NAME]
    mlops-loop lineage REQUEST_ID
    mlops-loop status

``init`` drafts ``include/models/<name>.yaml`` and ``include/expectations/<name>.json`` from the table for
you to review, and lands the table. ``land`` checks a later batch as ingest would, then lands it; a day
already landed is replaced only with ``--replace``, its old file kept. ``replay`` replays the model's later
history (``--source``: a file of the table ``init`` was given, or one per feed) through the running stack
window by window, with a known change injected for drills (``--shift``). ``train`` starts ``train_<name>``
on the running stack, follows it and says what it made: the version registered, or which step refused
the candidate or failed, and why. ``make init`` and ``make train`` call these. ``models`` lists every
configured or registered model, its last training run's verdict, its aliases and each version's gate
verdict; ``lineage`` follows a prediction from its request id to the model version, data, runs and
commit; ``status`` says what runs, the champions, and each
training DAG's last run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path

from pipelines.config import StatePaths, include_dir, training_dag_id
from pipelines.settings import stack_settings


def init(data: Path, target: str, name: str, task: str | None, force: bool, include: Path | None = None,
         state: StatePaths | None = None) -> dict:
    """Draft the model config and suite from ``data``, check that they load, and land the table. Days already
    landed with other rows are refused, unless ``force``: then they are replaced and their old files kept."""
    import json

    from pipelines.config import load_model_config
    from pipelines.drafting import draft_model, render_config, with_event_time
    from pipelines.ingest import LandingFileError
    from pipelines.landing import DayLandedError, land_table, read_table
    from pipelines.storage import write_text_atomic

    state = state or StatePaths.from_env()
    include = include or include_dir()
    config_path = include / "models" / f"{name}.yaml"
    suite_path = include / "expectations" / f"{name}.json"
    existing = [str(p) for p in (config_path, suite_path) if p.exists()]
    if existing and not force:
        raise SystemExit(f"{', '.join(existing)} already exist: review and edit them, or pass --force to draft "
                         "them again")
    started = time.perf_counter()
    frame, event_time = with_event_time(read_table(data), target)
    step(f"read {data}: {len(frame):,} rows, {len(frame.columns)} columns ({time.perf_counter() - started:.1f}s)")
    draft = draft_model(frame, target, name, task)
    step(f"task {draft.task} ({draft.task_reason}); "
         + (f"event time {draft.event_time!r}: time-based split" if draft.event_time
            else "no event time: seeded random split"))
    for column in draft.columns:
        if column.role in ("dropped", "id", "time_like"):
            step(f"  {column.name}: {column.role}, {column.why}")
    write_text_atomic(json.dumps(draft.suite, indent=2) + "\n", suite_path)
    write_text_atomic(render_config(draft, Path(data).name), config_path)
    try:
        cfg = load_model_config(config_path)
    except ValueError as exc:  # a draft that does not load is a bug here, never the user's to fix
        config_path.unlink()
        suite_path.unlink()
        raise SystemExit(f"the drafted config does not load (nothing written): {exc}") from exc
    step(f"wrote {config_path} and {suite_path} ({len(draft.suite['expectations'])} expectations)")
    folder = state.landing(cfg.landing_name, cfg.feeds[0].name)
    keep = state.replaced_landing(cfg.landing_name, cfg.feeds[0].name)
    try:
        landed = land_table(frame, folder, event_time, source=data, keep_replaced_in=keep if force else None)
    except LandingFileError as exc:
        if not force:  # the drafts are this run's own (else it stopped above): leave nothing behind
            config_path.unlink()
            suite_path.unlink()
        hint = f": pass --force to replace them (the old files are then kept under {keep})" \
            if isinstance(exc, DayLandedError) else ""
        raise SystemExit(f"error: {exc}{hint}; nothing landed" + ("" if force else ", no draft written")) from exc
    report_landing(cfg, landed, folder, state, f" ({time.perf_counter() - started:.1f}s in all)")
    print(f"\nReview {config_path}, then train it:  make train MODEL={name}")
    return {"config": config_path, "suite": suite_path, "landed": landed.written, "task": draft.task}


def train(name: str, start: date | None, end: date | None, reason: str | None) -> int:
    """Trigger ``train_<name>`` on the running stack, follow it task by task, and say what it made."""
    from pipelines.airflow_edge.airflow_api import AirflowApi

    api = AirflowApi()
    conf = {"reason": reason or "mlops-loop train"}
    if start:
        conf["data_interval_start"] = start.isoformat()
    if end:
        conf["data_interval_end"] = end.isoformat()
    dag_id = training_dag_id(name)
    run_id = api.trigger(dag_id, conf)
    step(f"triggered {dag_id} run {run_id}; following it (also in the Airflow UI)")
    run = api.wait([(dag_id, run_id)], progress=lambda dag, message: step(f"  {message}"))[dag_id]
    return report_runs({dag_id: run})


def report_runs(runs: dict[str, dict], state: StatePaths | None = None) -> int:
    """One line per training run ``train_<model>``: its state and the verdict it recorded (which step refused
    the candidate or failed, and why; ``pipelines.training_outcomes``)."""
    from pipelines.training_outcomes import FAILED, NOT_PROMOTED, REGISTERED, run_verdict, verdict_path

    state = state or StatePaths.from_env()
    failed = 0
    for dag_id, run in runs.items():
        tasks, run_id, model = run["tasks"], run["dag_run_id"], dag_id.removeprefix("train_")
        try:
            verdict = run_verdict(state, model, run_id)
            unexplained = f"its last verdict: {verdict.line}" if verdict else \
                f"no verdict recorded at {verdict_path(state, model, run_id)}"
        except ValueError as exc:
            verdict, unexplained = None, str(exc)
        if run["state"] == "awaiting_input":
            waiting = [t for t, s in tasks.items() if s == "awaiting_input"]
            step(f"{dag_id}: run {run_id} waits in {', '.join(waiting)} for a person: approve or reject "
                 "the candidate under Required Actions in the Airflow UI")
        elif run["state"] != "success":
            failed += 1
            if verdict and verdict.outcome == FAILED:
                step(f"{dag_id}: run {run_id} {verdict.line}")
            else:
                broken = [t for t, s in tasks.items() if s in ("failed", "upstream_failed")]
                step(f"{dag_id}: run {run_id} FAILED at {', '.join(broken) or '?'} ({unexplained}): the task log "
                     "says why (Airflow UI, or .state/airflow/logs)")
        elif tasks.get("register") == "skipped":
            step(f"{dag_id}: {verdict.line}" if verdict and verdict.outcome == NOT_PROMOTED else
                 f"{dag_id}: not promoted ({unexplained}): the gate and infra_validate task logs say why")
        else:
            step(f"{dag_id}: {verdict.line if verdict and verdict.outcome == REGISTERED else 'registered'}, "
                 "and deployed")
    return 1 if failed else 0


def land(name: str, data: Path, day: date | None, replace: bool = False) -> None:
    """Land a later batch of a single-table model (one file per event day, or one for ``day``), read and
    checked as ingest reads a landed file, every day before any is written. A day already landed with other
    rows is refused (LandingFileError names the file, the columns and the cause), unless ``replace``: then
    its old file is kept under the feed's ``replaced/`` folder."""
    from pipelines.config import load_model_config
    from pipelines.ingest import LandingFileError
    from pipelines.landing import DayLandedError, land_table, read_batch

    cfg = load_model_config(name)
    state = StatePaths.from_env()
    if cfg.features.builder is not None or len(cfg.feeds) != 1:
        raise SystemExit(f"{name} has several feeds or a builder: land each feed's daily files under "
                         f"{state.landing_root(cfg.landing_name)}/<feed>/")
    feed = cfg.feeds[0]
    folder, keep = state.landing(cfg.landing_name, feed.name), state.replaced_landing(cfg.landing_name, feed.name)
    try:
        landed = land_table(read_batch(data, feed), folder, cfg.features.event_time, day, source=data,
                            keep_replaced_in=keep if replace else None)
    except LandingFileError as exc:
        hint = (f": pass --replace to replace it (the old file is then kept under {keep})"
                + ("" if cfg.features.event_time else ", or --day to land it as another day's batch")) \
            if isinstance(exc, DayLandedError) else ""
        raise type(exc)(f"{exc.cause}{hint}; nothing landed", exc.file, exc.columns) from exc
    report_landing(cfg, landed, folder, state)


def replay(name: str, sources: list[str], start: date | None, end: date | None, every: int | None,
           label_delay_days: int, shift_spec: str | None, replace: bool = False) -> int:
    """Replay the model's history through the running stack (``pipelines.replay``): land each day, serve it
    to the model's route with its event time, land the outcomes ``label_delay_days`` later, run
    ``monitor_<name>`` on every window of ``every`` days, follow the retrains it starts; then write the
    timeline and the retrains table. The history is ``sources`` (files of the model's feeds), or the built-in
    2013 of the flights models. Default days: from the first day of the history not landed yet to its end."""
    import httpx

    from pipelines.airflow_edge.stack_runs import StackRuns
    from pipelines.config import load_model_config
    from pipelines.progress import progress_bar
    from pipelines.replay import (
        ReplayPlan,
        check_shift,
        default_start,
        model_route,
        replay_source,
        replay_windows,
        write_replay_report,
    )
    from pipelines.shifts import parse_shift

    cfg = load_model_config(name)
    state = StatePaths.from_env()
    shift = parse_shift(shift_spec) if shift_spec else None
    if shift:
        check_shift(cfg, shift)
    source = replay_source(cfg, sources, shift, replace)
    settings = stack_settings()
    url = settings.prediction_service_url()
    from pipelines.serving.settings import ServingSettings

    token = ServingSettings().predict_token  # empty or unset: no header
    client = httpx.Client(headers={"Authorization": f"Bearer {token.get_secret_value()}"} if token else {})
    try:
        health = client.get(f"{url}/models/{cfg.model_name}/health", timeout=10)
    except httpx.HTTPError as exc:
        raise SystemExit(f"error: the prediction service at {url} does not answer ({exc}): is the stack up? "
                         "(`make up`)") from None
    if health.status_code != 200:
        raise SystemExit(f"error: the prediction service at {url} serves no champion of {cfg.model_name} "
                         f"({health.status_code}): train it first (`make train MODEL={name}`)")
    days = source.days()
    plan = ReplayPlan(start or default_start(cfg, state, source), end or date.fromordinal(days[-1].toordinal() + 1),
                      every or cfg.monitoring.window_days, label_delay_days)
    windows = plan.windows()
    step(f"replaying {name} {plan.start} .. {plan.end} in {len(windows)} window(s) of {plan.every} day(s) through "
         f"{model_route(url, cfg)}; outcomes land {plan.label_delay_days} day(s) later"
         + (f"; shift {shift.spec}" if shift else ""))
    started = time.monotonic()
    runs = StackRuns(cfg)
    bar = progress_bar((plan.end - plan.start).days, f"replay {name}", "day")
    try:
        replay_windows(cfg, state, source, url, plan, runs, say=bar.write, tick=bar.update, client=client)
    finally:
        bar.close()
        client.close()
    report = write_replay_report(cfg, state, plan, runs)
    step(f"\n{len(report['windows'])} windows, {len(report['retrains'])} retrains in "
         f"{(time.monotonic() - started) / 60:.1f} min")
    for retrain in report["retrains"]:
        step(f"  {retrain.window_end}: {retrain.gate_decision or retrain.run_state} "
             f"{'-> v' + retrain.version if retrain.version else ''}  ({retrain.reason[:120]})")
    for kind, path in report["paths"].items():
        step(f"  {kind}: {path}")
    return 0


def report_landing(cfg, landed, folder: Path, state: StatePaths, note: str = "") -> None:
    """Say what a landing wrote, replaced (and where the old file is kept) and left as it was; tell Airflow
    of the days written."""
    for old, kept in landed.kept.items():
        step(f"replaced {old} (the old file is kept as {kept})")
    if not landed.written:
        step(f"{len(landed.unchanged)} day(s) already landed with these rows: nothing written, Airflow not told")
        return
    unchanged = f"; {len(landed.unchanged)} day(s) already held these rows" if landed.unchanged else ""
    step(f"landed {len(landed.written)} file(s) under {folder}{unchanged}{note}")
    step(announce_landing(cfg, landed.written, state))


def announce_landing(cfg, landed: list[Path], state: StatePaths) -> str:
    """Tell Airflow that data landed: an event of the model's landed-data Asset, naming the days (a model
    with ``train_on_landing`` starts training on them). Landing does not need Airflow: without a reachable
    stack the event is skipped, and said so."""
    import httpx

    from pipelines.airflow_edge import assets
    from pipelines.airflow_edge.airflow_api import AirflowApi, admin_password, admin_password_file

    days = sorted(date.fromisoformat(path.stem) for path in landed)
    extra = {"start": days[0].isoformat(), "end": date.fromordinal(days[-1].toordinal() + 1).isoformat(),
             "files": len(landed)}
    uri = assets.landed_data(cfg)
    if not (stack_settings().airflow_admin_password or admin_password_file(state.root).exists()):
        return f"Airflow not told (no stack login here): Asset {uri} not updated"
    try:
        AirflowApi(password=admin_password(state.root)).asset_event(uri, extra)
    except (httpx.HTTPError, LookupError) as exc:
        return f"Airflow not told ({exc}): Asset {uri} not updated"
    return f"Airflow told: Asset {uri} updated for [{extra['start']}, {extra['end']})" + (
        f"; {training_dag_id(cfg.name)} starts on it" if cfg.train_on_landing else "")


def models(name: str | None) -> None:
    """Every configured or registered model (or one): its last training run's verdict, its aliases and its
    versions with the gate's verdict."""
    from pipelines.challenger_comparison import describe_status
    from pipelines.config import read_model_configs
    from pipelines.monitoring_tasks import challenger_status
    from pipelines.operator_ui import registry_view
    from pipelines.registry import is_missing
    from pipelines.tracking import mlflow_client
    from pipelines.training_outcomes import one_line

    files, state = read_model_configs(), StatePaths.from_env()
    configured = registry_view.configured_models(files, state)
    configs = {entry.config.name: entry.config for entry in files if entry.config}
    try:
        summaries = registry_view.models(mlflow_client(), name, configured)
    except Exception as exc:
        if name and is_missing(exc):
            raise SystemExit(f"no model {name!r}: no config in {include_dir() / 'models'} trains it and the "
                             "registry does not hold it") from None
        raise
    if not summaries:
        step("no model is configured or registered yet: draft one (mlops-loop init DATA --target COLUMN --name NAME)")
    for model in summaries:
        aliases = ", ".join(f"{alias} v{version}" for alias, version in sorted(model.aliases.items()))
        step(f"{model.name}  ({aliases or 'no alias'})" if model.registered else
             f"{model.name}  (no version registered)")
        if model.configured and model.configured.error:
            step(f"  its config does not load: {one_line(model.configured.error)}")
        if model.last_run:
            step(f"  last training run {model.last_run.run_id}: {model.last_run.line}")
        challenger = model.aliases.get("challenger")
        cfg = configs.get(model.configured.config) if model.configured else None
        if challenger and cfg:
            status = challenger_status(cfg, state)
            current = status if status and status.get("challenger_version") == str(challenger) else None
            step(f"  challenger v{challenger} against the champion: {describe_status(current)}")
        for v in model.versions[: None if name else 5]:
            labels = f" [{', '.join(v.aliases)}]" if v.aliases else ""
            step(f"  v{v.version}{labels}  {v.created:%Y-%m-%d %H:%M}  {v.gate_summary or 'no gate decision'}"
                 f"  data {str(v.tags.get('data_hash', '?'))[:12]}  ({v.tags.get('training_reason', '')})")
            for note in v.status_notes:
                step(f"      {note}")


def lineage(request_id: str) -> int:
    """The rows logged for a request id, and the model version, data, runs and commit behind them."""
    from pipelines.operator_ui import lineage_view
    from pipelines.tracking import mlflow_client

    found = lineage_view.lineage(mlflow_client(), request_id)
    if not found.found:
        step(f"no prediction with request id {request_id!r} in the recent prediction log")
        return 1
    with_text = found.rows.astype(object).where(found.rows.notna(), None)
    step(with_text.to_string(index=False))
    for problem in found.problems:
        step(problem)
    for v in found.versions:
        step(f"\n{v.model} v{v.version}{' [' + ', '.join(v.aliases) + ']' if v.aliases else ''}: "
             f"{v.gate_summary or 'no gate decision'}")
        tags = v.tags
        step(f"  training data  {tags.get('data_hash', '?')} at {tags.get('data_path', '?')} (DVC rev "
             f"{tags.get('data_rev', '?')}, {tags.get('data_rows', '?')} rows, {tags.get('data_interval', '')})")
        step(f"  Airflow run    {' / '.join(v.airflow_run) if v.airflow_run else 'none'}")
        step(f"  MLflow run     {v.mlflow_run_id or 'none'}")
        step(f"  git commit     {tags.get('git_commit', 'not recorded')}")
    return 0


def status() -> int:
    """Each service of the stack, the champions, and each training DAG's last run."""
    import httpx

    from pipelines.airflow_edge.airflow_api import AirflowApi

    settings = stack_settings()
    services = {"Airflow API": f"{settings.airflow_url()}/api/v2/monitor/health",
                "MLflow": f"{_mlflow_url()}/health",
                "Prediction service": f"{settings.prediction_service_url()}/health"}
    down = 0
    for name, url in services.items():
        try:
            answer = httpx.get(url, timeout=5)
            step(f"{name:<20}{'up' if answer.status_code == 200 else f'answers {answer.status_code}'}  {url}")
        except httpx.HTTPError as exc:
            down += 1
            step(f"{name:<20}DOWN  {url}  ({type(exc).__name__})")
    if down == len(services):
        return 1
    try:
        models(None)
    except Exception as exc:
        step(f"the registry cannot be read: {exc}")
    try:
        api = AirflowApi()
        for dag in api.get("/dags?dag_id_pattern=train_%25&limit=100").json().get("dags", []):
            runs = api.get(f"/dags/{dag['dag_id']}/dagRuns?order_by=-run_after&limit=1").json()["dag_runs"]
            last = runs[0] if runs else None
            step(f"{dag['dag_id']:<32}" + (f"last run {last['dag_run_id']}: {last['state']}" if last else "no run yet"))
    except Exception as exc:
        step(f"Airflow's runs cannot be read: {exc}")
    return 0


def _mlflow_url() -> str:
    from pipelines.tracking import tracking_uri

    uri = tracking_uri()
    return uri.rstrip("/") if uri.startswith("http") else stack_settings().mlflow_server_url()


def step(message: str) -> None:
    print(message, flush=True)


def main(argv: list[str] | None = None) -> None:
    from pipelines.task_types import TASK_TYPES

    parser = argparse.ArgumentParser(prog="mlops-loop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("init", help="draft a model config and suite from a table, and land it")
    p.add_argument("data", type=Path, help="a .csv or .parquet table, one row per example")
    p.add_argument("--target", required=True, help="the column to predict")
    p.add_argument("--name", required=True, help="the model's name (lower case, digits, _)")
    p.add_argument("--task", choices=list(TASK_TYPES), help="default: inferred")
    p.add_argument("--force", action="store_true", help="draft again over an existing config and suite")
    p = commands.add_parser("train", help="run train_<name> on the stack and follow it")
    p.add_argument("name")
    p.add_argument("--start", type=date.fromisoformat, help="first day of data (default: the model's)")
    p.add_argument("--end", type=date.fromisoformat, help="day after the last day of data")
    p.add_argument("--reason", help="stored on the model version")
    p = commands.add_parser("land", help="land a later batch of a single-table model")
    p.add_argument("name")
    p.add_argument("data", type=Path)
    p.add_argument("--day", type=date.fromisoformat, help="the batch's day when the table has no event time")
    p.add_argument("--replace", action="store_true", help="replace days already landed with other rows (the "
                   "old files are kept in the feed's replaced/ folder)")
    p = commands.add_parser("replay", help="replay a model's history through the running stack, window by "
                                           "window, and draw the timeline")
    p.add_argument("name")
    p.add_argument("--source", action="append", default=[], metavar="[FEED=]FILE",
                   help="the history: a .csv or .parquet file of the model's table (FEED=FILE for each feed of a "
                   "model with several); default: the flights models' built-in 2013")
    p.add_argument("--start", type=date.fromisoformat, help="first day (default: the first day of the history "
                   "not landed yet)")
    p.add_argument("--end", type=date.fromisoformat, help="day after the last (default: the history's end)")
    p.add_argument("--every", type=int, help="days per monitoring window (default: monitoring.window_days)")
    p.add_argument("--label-delay-days", type=int, default=1,
                   help="the outcomes of day D land once day D + this many days has been served (default 1)")
    p.add_argument("--shift", metavar="SPEC", help="inject a known change from a day: COLUMN*FACTOR@DAY, "
                   "COLUMN+AMOUNT@DAY, COLUMN=VALUE:SHARE@DAY, label+AMOUNT@DAY, label:flipSHARE@DAY")
    p.add_argument("--replace", action="store_true", help="replace days already landed with other rows (the old "
                   "files are kept in the feed's replaced/ folder)")
    p = commands.add_parser("models", help="configured and registered models: last training verdict, aliases, "
                                           "versions and gate verdicts")
    p.add_argument("name", nargs="?", help="one model: all its versions")
    p = commands.add_parser("lineage", help="a prediction back to its model version, data, runs and commit")
    p.add_argument("request_id", help="the X-Request-ID of the answer")
    commands.add_parser("status", help="the stack's services, the champions, each training DAG's last run")
    args = parser.parse_args(argv)
    if args.command in ("models", "lineage", "status"):
        # A person waits on these: a registry that does not answer is said at once, not after MLflow's
        # retries (minutes of backoff when the stack is down).
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    try:
        if args.command == "init":
            init(args.data, args.target, args.name, args.task, args.force)
        elif args.command == "train":
            sys.exit(train(args.name, args.start, args.end, args.reason))
        elif args.command == "land":
            land(args.name, args.data, args.day, args.replace)
        elif args.command == "replay":
            sys.exit(replay(args.name, args.source, args.start, args.end, args.every, args.label_delay_days,
                            args.shift, args.replace))
        elif args.command == "models":
            models(args.name)
        elif args.command == "lineage":
            sys.exit(lineage(args.request_id))
        else:
            sys.exit(status())
    except ValueError as exc:  # bad input: say what and where, no traceback
        raise SystemExit(f"error: {exc}") from None
    except Exception as exc:
        if "mlflow" not in sys.modules or not isinstance(exc, sys.modules["mlflow"].exceptions.MlflowException):
            raise
        from pipelines.tracking import tracking_uri

        raise SystemExit(f"error: MLflow at {tracking_uri()} cannot be read (is the stack up? `make up`): "
                         f"{str(exc)[:300]}") from None


if __name__ == "__main__":
    main()

