"""The operator pages: what the registry says about each model and version, shown to a logged-in user only."""

import re
from urllib.parse import quote

import mlflow
import pytest
from fastapi import Header, HTTPException
from fastapi.params import Depends
from fastapi.testclient import TestClient

from pipelines.operator_ui.app import create_app
from pipelines.registry import promote_version
from tests.unit.toy_models import registry_to_copy, use_copy_of

TOKEN = "operator-token"
HOSTILE = "</script><script>alert(1)</script><img src=x onerror=alert(2)>"


def logged_in(authorization: str | None = Header(None)) -> None:
    """Stands in for Airflow's requires_authenticated(): the plugin passes the real one."""
    if authorization != f"Bearer {TOKEN}":
        raise HTTPException(401, "Not authenticated")


def _paired_reason() -> dict:
    """The gate's comparison with the champion as ``gate.Reason.to_dict`` records it: a DeLong test on 2,000
    paired rows, with a hostile string where a metric's name goes."""
    import numpy as np

    from pipelines.gate import Reason
    from pipelines.paired_tests import delong_test

    rng = np.random.default_rng(0)
    truth = (rng.random(2000) < 0.3).astype(int)
    champion = truth + rng.normal(0, 1, 2000)
    result = delong_test(truth, champion + rng.normal(0, 0.5, 2000) + 0.1 * truth, champion, effect=0.01)
    return Reason(f"margin:{HOSTILE}", result.passed, result.difference, "better than champion v1",
                  f"roc_auc: {result.difference:+.4f}", result, "holdout too small to decide").to_dict()


@pytest.fixture(scope="module")
def pages_registry(tmp_path_factory, empty_mlflow_db):
    """A model with two versions made the way the training DAG makes them: a training run holding the gate's
    decision, versions tagged with their lineage and gate verdict, v2 the champion and v1 previous. Made once
    for the module (logging the models is the slow part); each test gets a copy of its store (``pages``)."""
    folder = tmp_path_factory.mktemp("operator_ui_registry")
    with registry_to_copy(folder, empty_mlflow_db) as registry:
        versions = []
        for n, (verdict, summary) in enumerate([("approved", "first model: no champion to beat"),
                                                ("approved", "beats the champion's roc_auc 0.7012 by 0.0310")]):
            logged = registry.log(seed=n)
            with mlflow.start_run(experiment_id=registry.experiment) as run:
                mlflow.log_metrics({"holdout_roc_auc": 0.70 + n / 10, "slice_origin_EWR_roc_auc": 0.66})
                mlflow.log_dict({"promote": True, "verdict": verdict, "summary": summary, "champion_note": "v1" if n
                                 else "no champion yet", "reasons": [
                                     {"check": "floor", "passed": True, "observed": 0.7 + n / 10,
                                      "required": ">= 0.6", "message": "holdout roc_auc meets floor 0.6000"},
                                     {"check": "slice_floor", "passed": True, "observed": 0.66, "required": ">= 0.5",
                                      "message": "weakest slice origin=EWR 0.6600 meets floor 0.5000"},
                                     *([_paired_reason()] if n else [])]},
                                "gate/decision.json")
            versions.append(registry.register("toy", logged, {
                "airflow_dag_id": "train_toy", "airflow_run_id": f"manual__2026-12-0{n + 1}",
                "gate_decision": verdict, "gate_summary": summary, "mlflow_parent_run_id": run.info.run_id,
                "data_hash": f"{n}" * 32, "data_rows": "4000", "git_commit": "abc1234",
                "training_reason": f"<b>reason {n}</b>"}))
            promote_version(registry.client, "toy", versions[-1])
    return folder, versions


@pytest.fixture()
def pages(pages_registry, tmp_path, monkeypatch):
    """The operator pages on this test's own copy of ``pages_registry``'s store."""
    folder, versions = pages_registry
    use_copy_of(folder, tmp_path, monkeypatch)
    app = create_app([Depends(logged_in)])
    yield TestClient(app), versions


def get(client, path):
    return client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})


def test_every_page_refuses_an_anonymous_request(pages):
    client, _ = pages
    for path in ("/models", "/models/toy", "/models/toy/versions/1", "/dags/train_toy", "/models/nope"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path


def test_the_models_page_shows_aliases_gate_verdicts_and_lineage(pages):
    client, versions = pages
    page = get(client, "/models")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "toy" in html and "beats the champion&#39;s roc_auc 0.7012 by 0.0310" in html
    assert 'class="alias champion">champion' in html and 'class="alias previous">previous' in html
    assert "/dags/train_toy/runs/manual__2026-12-02" in html  # the Airflow run, same origin
    assert "&lt;b&gt;reason 1&lt;/b&gt;" in html and "<b>reason 1</b>" not in html  # escaped


def test_a_version_page_shows_every_gate_reason_and_where_it_came_from(pages):
    client, _ = pages
    html = get(client, "/models/toy/versions/2").text
    assert "holdout roc_auc meets floor 0.6000" in html and "weakest slice origin=EWR" in html
    assert "Compared with: v1" in html and 'Gate: <span class="pass">approved</span>' in html
    assert "1" * 32 in html and "abc1234" in html and "4000 rows" in html
    assert "slice_origin_EWR_roc_auc" in html and "holdout_roc_auc" in html
    assert "manual__2026-12-02" in html


def test_a_version_page_shows_each_comparison_with_the_champion(pages):
    """Per paired check: the difference, its interval, the p-value, the decision and the rows needed; escaped."""
    from pipelines.gate import Reason

    client, _ = pages
    html = get(client, "/models/toy/versions/2").text
    comparison = Reason.from_dict(_paired_reason()).comparison
    table = html[html.index("Compared with the champion on the same holdout rows"):]
    lower, upper = comparison.interval
    assert f"{comparison.difference:+.4f}" in table and f"[{lower:+.4f}, {upper:+.4f}] (90%)" in table
    assert f"<td>{comparison.p_value:.3g}</td>" in table and "holdout too small to decide" in table
    assert f"{comparison.rows_needed:,} for +0.01 at 80% power" in table and "<td>2,000</td>" in table
    assert "delong, superiority, margin 0, alpha 0.05" in table
    assert HOSTILE not in html and "&lt;/script&gt;&lt;script&gt;alert(1)" in table
    assert "Compared with the champion" not in get(client, "/models/toy/versions/1").text


def test_a_version_without_a_training_run_says_so(pages, tmp_path):
    from tests.unit.toy_models import ToyRegistry

    client, _ = pages
    registry = ToyRegistry(tmp_path, experiment="bare")
    version = registry.register("bare", registry.log_constant())
    page = get(client, f"/models/bare/versions/{version}")
    assert page.status_code == 200 and "not registered by the training DAG" in page.text


def test_unknown_models_and_versions_are_404s(pages):
    client, _ = pages
    assert get(client, "/models/nope").status_code == 404
    assert get(client, "/models/toy/versions/99").status_code == 404
    assert get(client, "/models/toy/versions/latest").status_code == 404
    assert get(client, "/dags/some_other_dag").status_code == 404


def test_a_model_the_registry_does_not_let_this_server_read_is_a_403(pages, monkeypatch):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import PERMISSION_DENIED

    from pipelines.operator_ui import registry_view

    def denied(client, name=None, configured=()):
        raise MlflowException(f"Permission denied for {name}", error_code=PERMISSION_DENIED)

    monkeypatch.setattr(registry_view, "models", denied)
    client, _ = pages
    answer = get(client, "/models/toy")
    assert answer.status_code == 403 and "does not let this server's MLflow user read toy" in answer.text


@pytest.fixture()
def configured(tmp_path, monkeypatch):
    """include/models with a config that trains the registered ``toy``, two that train models not registered
    yet (one has run, one not) and a file that does not load; and the state folder the verdicts are in."""
    import shutil

    from pipelines.config import PROJECT_ROOT, StatePaths

    include = tmp_path / "include"
    (include / "models").mkdir(parents=True)
    (include / "expectations").mkdir()
    penguins = (PROJECT_ROOT / "include" / "models" / "penguins.yaml").read_text()
    for name, registered_as in (("penguins", None), ("fresh", None), ("toy_cfg", "toy")):
        (include / "models" / f"{name}.yaml").write_text(penguins.replace(
            "\nname: penguins\n", f"\nname: {name}\n" + (f"registered_model_name: {registered_as}\n"
                                                          if registered_as else ""), 1))
        shutil.copy(PROJECT_ROOT / "include" / "expectations" / "penguins.json",
                    include / "expectations" / f"{name}.json")
    (include / "models" / "broken.yaml").write_text(penguins.replace("\nname: penguins\n", "\nname: broken\n", 1)
                                                    .replace("task: multiclass", "task: clustering"))
    monkeypatch.setenv("MLOPS_INCLUDE_DIR", str(include))
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))
    return StatePaths.from_env()


def test_every_configured_model_is_listed_with_its_last_verdict_and_one_never_registered_has_a_page(
        pages, configured, capsys):
    from pipelines.cli import main
    from pipelines.training_outcomes import FAILED, NOT_PROMOTED, RunVerdict, record_verdict

    client, _ = pages
    record_verdict(configured, "penguins", RunVerdict(
        "train_penguins", "manual__2026-12-03", "ingest", FAILED,
        "no landed files for feed 'penguins' in [2026-12-01, 2026-12-03) under /state/landing/penguins/penguins"))
    record_verdict(configured, "toy_cfg", RunVerdict("train_toy_cfg", "scheduled__2026-12-04", "gate", NOT_PROMOTED,
                                                     "gate refused: accuracy 0.3100 is below floor 0.4400"))
    failed_ingest = ("FAILED at ingest: no landed files for feed &#39;penguins&#39; in [2026-12-01, 2026-12-03) "
                     "under /state/landing/penguins/penguins")

    listing = get(client, "/models")
    assert listing.status_code == 200
    html = listing.text
    assert html.index(">broken<") < html.index(">fresh<") < html.index(">penguins<") < html.index(">toy<")
    assert failed_ingest in html and "/dags/train_penguins/runs/manual__2026-12-03" in html
    assert "not promoted: gate refused: accuracy 0.3100 is below floor 0.4400" in html
    assert "beats the champion&#39;s roc_auc" in html  # the registered model's versions as before
    assert "No training run has recorded a verdict yet" in html and "/dags/train_fresh" in html
    assert "include/models/broken.yaml</code> does not load" in html and "clustering" in html

    page = get(client, "/models/penguins")
    assert page.status_code == 200
    assert "No version is registered yet." in page.text and "did not produce one:" in page.text
    assert failed_ingest in page.text and 'data-dag="train_penguins"' in page.text  # and it can be retrained
    assert "No training run has recorded a verdict yet" in get(client, "/models/fresh").text
    assert "does not load" in get(client, "/models/broken").text
    toy = get(client, "/models/toy").text
    assert "Last training verdict:" in toy and "gate refused: accuracy 0.3100" in toy and "v2" in toy
    assert get(client, "/models/nope").status_code == 404

    main(["models"])
    listed = capsys.readouterr().out
    assert "penguins  (no version registered)\n  last training run manual__2026-12-03: FAILED at ingest: no " \
           "landed files for feed 'penguins'" in listed
    assert "toy  (champion v2, previous v1)\n  last training run scheduled__2026-12-04: not promoted: gate " \
           "refused: accuracy 0.3100 is below floor 0.4400" in listed
    assert "fresh  (no version registered)\n" in listed
    assert "broken  (no version registered)\n  its config does not load: invalid model config" in listed
    main(["models", "penguins"])
    assert capsys.readouterr().out.startswith("penguins  (no version registered)\n  last training run")
    with pytest.raises(SystemExit, match="no model 'nope': no config in"):
        main(["models", "nope"])


def test_a_model_dag_tab_opens_its_model_page(pages):
    client, _ = pages
    answer = client.get("/dags/train_flights_delay", headers={"Authorization": f"Bearer {TOKEN}"},
                        follow_redirects=False)
    assert answer.status_code == 307 and answer.headers["location"] == "/mlops/models/flights_delay"


def test_the_monitoring_page_shows_each_window_and_opens_its_drift_report(pages, tmp_path, monkeypatch):
    from dataclasses import asdict
    from datetime import date
    from types import SimpleNamespace

    from pipelines import monitoring_store
    from pipelines.monitoring import Signal
    from pipelines.operator_ui import app as operator_app

    client, _ = pages
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("MLOPS_MONITORING_DB_URL", f"sqlite:///{tmp_path / 'monitoring.db'}")
    monitoring = SimpleNamespace(drift=SimpleNamespace(key_features={"signal": 0.3}, drift_share=0.5))
    monkeypatch.setattr(operator_app, "_configs", lambda: [SimpleNamespace(
        name="toy_cfg", model_name="toy", monitoring=monitoring, realized_floors={"roc_auc": 0.75},
        realized_ceilings={})])
    report = tmp_path / "state" / "reports" / "toy_cfg" / "monitoring" / "w2" / "drift_report.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html>evidently drift report</html>")
    outside = tmp_path / "elsewhere.html"
    outside.write_text("not a report")
    # The signals as the policy stored them: the page marks the cells they are about, and no other.
    signals = {1: [], 2: [Signal("dataset_drift", "x"), Signal("performance", "roc_auc 0.7 < 0.75", "roc_auc")],
               3: [Signal("key_feature_drift", "signal drift 0.300 >= 0.300", "signal")]}
    engine = monitoring_store.engine()
    with engine.begin() as connection:
        for day, drift, decision, path, triggered in [
                (1, 0.1, "ok", None, None), (2, 0.6, "retrain", report, "manual__2026-12-02"),
                (3, 0.2, "ok", outside, None)]:
            monitoring_store.save_window(connection, {
                "model_name": "toy_cfg", "window_start": date(2013, 6, day), "window_end": date(2013, 6, day + 1),
                "model_version": "1" if day < 3 else "2", "rows": 1000 * day, "drift_share": drift,
                "dataset_drift": drift > 0.5, "details": {"drift_scores": {"signal": 0.1 * day, "noise": 0.9},
                                                          "signals": [asdict(s) for s in signals[day]],
                                                          "baseline_band": 0.05,
                                                          **({"drift_share_limit": 0.4} if day > 1 else {})},
                "prediction_drift": 0.01 * day, "labelled_rows": 500, "pending_labels": 0,
                "metric": "roc_auc", "realized": 0.7, "estimated": 0.71 if day == 3 else None, "baseline": 0.78,
                "breached": decision == "retrain", "cleared": decision != "retrain", "decision": decision,
                "reason": f"drift share {drift}" + (HOSTILE if day == 2 else ""), "triggered_run_id": triggered,
                "report_path": str(path) if path else None})
    html = get(client, "/models/toy/monitoring").text
    table = html[html.index("<table>"):]
    assert table.index("2013-06-03 → 2013-06-04") < table.index("2013-06-01 → 2013-06-02")  # newest first
    assert "0.60 drift" in html and "drift share 0.6" in html and "roc_auc" in html
    assert "/dags/train_toy_cfg/runs/manual__2026-12-02" in html
    assert "retrain run</a>: registered v2" in html  # what the retrain it started made
    assert "roc_auc 0.7100" in html and html.count("baseline roc_auc 0.7800") == 3  # estimate beside baseline
    assert "v1 → v2" in table and table.count("v1 → v2") == 1  # the champion changed before the newest window
    assert "signal drift" in html and "limit 0.3" in html and "floor 0.75" in html
    assert '<td class="fail">0.300</td>' in html and '<td class="">0.200</td>' in html  # key feature past its limit
    # realized roc_auc under its floor where the policy raised it (day 2), not where it did not (too few rows)
    assert html.count('<td class="fail">0.7000</td>') == 1 and html.count('<td class="">0.7000</td>') == 2
    assert "(dataset_drift, performance)" in html
    # Above the table, the chart: each window's realized and estimated roc_auc against the baseline band, its drift
    # share against the limit it was judged with (the config's for the window stored without one), the retrain.
    chart = html[html.index('<figure class="chart">'):html.index("</figure>")]
    assert html.index("</figure>") < html.index("<table>")
    assert 'role="img"' in chart and "toy: roc_auc per window against the champion&#x27;s baseline band" in chart
    assert chart.count('<circle class="realized') == 3 and chart.count('<circle class="estimated') == 1
    assert chart.count('<circle class="drift"') == 2 and chart.count('<circle class="drift signal"') == 1
    assert "drift share 0.10 (limit 0.50)" in chart and "drift share 0.60 (limit 0.40)" in chart
    assert "baseline 0.7800 ± 0.0500" in chart
    assert '<g class="retrain registered" data-end="2013-06-03">' in chart and "↻ v2</text>" in chart
    assert "champion v1 → v2 from the window ending 2013-06-04" in chart
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/mlops/pages.js">']  # a stored reason runs nothing
    assert "<script>alert" not in html and "<img" not in html and "&lt;script&gt;alert(1)" in chart
    with engine.connect() as connection:
        ids = {row["window_start"].day: row["id"] for row in monitoring_store.load_windows(connection, "toy_cfg")}
    opened = get(client, f"/models/toy/monitoring/{ids[2]}/report")
    assert opened.status_code == 200 and "evidently drift report" in opened.text
    # Served as a sandboxed document (an opaque origin): its own scripts draw it, and may reach nothing.
    assert opened.headers["content-security-policy"].startswith("sandbox allow-scripts;")
    assert "connect-src 'none'" in opened.headers["content-security-policy"]
    assert opened.headers["x-content-type-options"] == "nosniff"
    # A stored path outside the reports folder is never served, nor a window without a report.
    assert get(client, f"/models/toy/monitoring/{ids[3]}/report").status_code == 404
    assert get(client, f"/models/toy/monitoring/{ids[1]}/report").status_code == 404
    assert client.get(f"/models/toy/monitoring/{ids[2]}/report").status_code == 401
    assert get(client, "/models/nope/monitoring").status_code == 404


def test_a_request_id_leads_to_its_prediction_model_version_data_and_run(pages, tmp_path, monkeypatch):
    import numpy as np

    from pipelines.prediction_store import ServedBatch
    from pipelines.serving.prediction_log import PredictionLog, now

    client, _ = pages
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    monkeypatch.setenv("MLOPS_PREDICTION_LOG_URL", url)
    log = PredictionLog(url, flush_seconds=0.01, spill_dir=tmp_path / "spill")
    for request_id, rows in (("req-before", 5), ("req-42", 2), ("req-after", 5)):
        log.submit(ServedBatch((request_id,), now(), "toy", "2", "champion",
                               {"signal": np.full(rows, 0.25), "group": np.array(["b"] * rows, dtype=object)},
                               np.full(rows, 0.875)))
    log.close()
    log.engine.dispose()

    html = get(client, "/lineage?request_id=req-42").text
    assert html.count("<td>req-42</td>") == 2 and "0.875" in html and "<td>b</td>" in html
    assert "toy v2" in html and "1" * 32 in html and "/dags/train_toy/runs/manual__2026-12-02" in html
    assert "abc1234" in html and "beats the champion" in html
    assert "No prediction with request id" in get(client, "/lineage?request_id=nobody").text
    assert get(client, "/lineage").status_code == 200  # the search form
    assert client.get("/lineage?request_id=req-42").status_code == 401
    # From the version: how many rows it served, and its latest requests (newest first), each a lineage search.
    version_page = get(client, "/models/toy/versions/2").text
    assert "12 rows in the prediction log" in version_page
    latest = version_page[version_page.index("Latest requests it answered"):]
    assert latest.index("req-after") < latest.index("req-42") < latest.index("req-before")
    assert "/lineage?request_id=req-42" in latest and "<td>5</td>" in latest and "<td>2</td>" in latest
    assert "Latest requests it answered" not in get(client, "/models/toy/versions/1").text


def test_the_command_line_lists_models_and_follows_a_request(pages, tmp_path, monkeypatch, capsys):
    import numpy as np

    from pipelines.cli import main
    from pipelines.prediction_store import ServedBatch
    from pipelines.serving.prediction_log import PredictionLog, now

    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    monkeypatch.setenv("MLOPS_PREDICTION_LOG_URL", url)
    log = PredictionLog(url, flush_seconds=0.01, spill_dir=tmp_path / "spill")
    log.submit(ServedBatch(("cli-1",), now(), "toy", "1", "champion",
                           {"signal": np.array([1.5]), "group": np.array(["a"], dtype=object)}, np.array([0.25])))
    log.close()
    log.engine.dispose()

    main(["models"])
    listed = capsys.readouterr().out
    assert "toy  (champion v2, previous v1)" in listed
    assert "v2 [champion]" in listed and "beats the champion's roc_auc" in listed
    with pytest.raises(SystemExit) as exit_code:
        main(["lineage", "cli-1"])
    assert exit_code.value.code == 0
    followed = capsys.readouterr().out
    assert "cli-1" in followed and "toy v1 [previous]" in followed and "0" * 32 in followed
    assert "train_toy / manual__2026-12-01" in followed and "abc1234" in followed
    with pytest.raises(SystemExit) as exit_code:
        main(["lineage", "nobody"])
    assert exit_code.value.code == 1 and "no prediction with request id" in capsys.readouterr().out


def test_a_versions_page_shows_its_approval_and_offers_the_actions_that_fit_it(pages, monkeypatch):
    """The champion gets no rollback form, an older version one that names it; a challenger gets promote and
    retire; the model page a retrain form. Each form names its DAG and the values it fills in."""
    from types import SimpleNamespace

    from pipelines.operator_ui import app as operator_app

    client, versions = pages
    registry = mlflow.MlflowClient()
    serving = SimpleNamespace(approval="required")
    monkeypatch.setattr(operator_app, "_configs",
                        lambda: [SimpleNamespace(name="toy_cfg", model_name="toy", serving=serving)])
    registry.set_model_version_tag("toy", versions[0], "approval", "approved")
    registry.set_model_version_tag("toy", versions[0], "approval_by", "ops")
    registry.set_model_version_tag("toy", versions[0], "approval_reason", "<i>fine</i>")

    older = get(client, f"/models/toy/versions/{versions[0]}").text
    assert "Approval: " in older and "approved by ops: &lt;i&gt;fine&lt;/i&gt;" in older
    assert """data-dag="rollback_toy_cfg" data-conf='{"to_version": "1"}'""" in older
    champion = get(client, f"/models/toy/versions/{versions[1]}").text
    assert 'data-dag="rollback_toy_cfg"' not in champion and "Approval:" not in champion

    registry.set_registered_model_alias("toy", "challenger", versions[0])
    challenger = get(client, f"/models/toy/versions/{versions[0]}").text
    assert challenger.count('data-dag="promote_toy_cfg"') == 2
    assert '{"action": "retire", "version": "1"}' in challenger and 'data-dag="rollback_toy_cfg"' not in challenger

    model = get(client, "/models/toy").text
    assert 'data-dag="train_toy_cfg"' in model and "after a person approves it" in model


def test_a_version_links_the_validation_report_of_its_batch_and_serves_only_that(pages, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from pipelines.operator_ui import app as operator_app

    client, versions = pages
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))
    monkeypatch.setattr(operator_app, "_configs", lambda: [SimpleNamespace(name="toy_cfg", model_name="toy",
                                                                           serving=SimpleNamespace(approval="none"))])
    assert "no report kept" in get(client, f"/models/toy/versions/{versions[1]}").text
    assert get(client, f"/models/toy/versions/{versions[1]}/validation").status_code == 404
    from mlflow import MlflowClient

    MlflowClient().set_model_version_tag("toy", versions[1], "data_interval", "2013-01-01_2013-04-01")
    folder = tmp_path / "state" / "reports" / "toy_cfg" / "validation"
    report = folder / "2013-01-01_2013-04-01__manual__2026-12-02.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html>great expectations report</html>")
    page = get(client, f"/models/toy/versions/{versions[1]}").text
    assert f"/models/toy/versions/{versions[1]}/validation" in page
    opened = get(client, f"/models/toy/versions/{versions[1]}/validation")
    assert opened.status_code == 200 and "great expectations report" in opened.text
    assert opened.headers["content-security-policy"].startswith("sandbox;")  # sandboxed, and no script at all
    assert "script-src" not in opened.headers["content-security-policy"]
    assert client.get(f"/models/toy/versions/{versions[1]}/validation").status_code == 401
    # A tag that would step out of the reports folder is never followed.
    MlflowClient().set_model_version_tag("toy", versions[1], "data_interval", "../../../../elsewhere")
    assert get(client, f"/models/toy/versions/{versions[1]}/validation").status_code == 404


def test_an_id_the_registry_cannot_hold_is_a_404_before_any_registry_call(monkeypatch):
    """``²`` passes ``str.isdigit`` and a 30-digit number is past int64: MLflow's server answers both with a 500
    that its client retries for minutes, holding a worker thread. The page answers 404 without asking."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    import pipelines.tracking

    asked = []

    class Registry:
        """Fails the test when any page asks it for anything."""

        def __getattr__(self, method):
            def call(*args, **kwargs):
                asked.append((method, args))
                raise MlflowException(f"{args} not found", error_code=RESOURCE_DOES_NOT_EXIST)
            return call

    monkeypatch.setattr(pipelines.tracking, "mlflow_client", lambda: Registry())
    client = TestClient(create_app())
    for version in ("²", "9" * 30, str(2**63), "١٢", "-1", "1.0", "0x1", " 1"):
        for page in ("", "/validation"):
            path = f"/models/toy/versions/{quote(version, safe='')}{page}"
            answer = client.get(path)
            assert answer.status_code == 404 and "ASCII digits" in answer.json()["detail"], path
    for name in ("a:b", "..x", " ", "x" * 257):
        for page in ("", "/versions/1", "/monitoring"):
            answer = client.get(f"/models/{quote(name, safe='')}{page}")
            assert answer.status_code == 404 and "not a name MLflow's registry accepts" in answer.text, (name, page)
    for window in ("9" * 30, "²", "0"):  # a window id past int64 never reaches the monitoring store either
        assert client.get(f"/models/toy/monitoring/{quote(window, safe='')}/report").status_code == 422, window
    assert asked == []
    # The largest version the registry can hold is asked for, and its "not found" is the page's 404.
    assert client.get(f"/models/toy/versions/{2**63 - 1}").status_code == 404
    assert asked == [("get_registered_model", ("toy",))]


def test_every_page_runs_only_its_own_script_file_and_shows_hostile_values_as_text(pages):
    """A strict Content-Security-Policy on every answer (the pages, their errors, their files) and no inline
    script for it to allow; every value a page shows is escaped."""
    from pipelines.operator_ui import browser_policy
    from pipelines.operator_ui.pages import _environment

    client, versions = pages
    assert _environment().autoescape("version.html") is True
    hostile = HOSTILE
    for path in ("/models", "/models/toy", f"/models/toy/versions/{versions[1]}", f"/lineage?request_id={hostile}",
                 "/models/nope", "/pages.js", "/pages.css"):
        answer = get(client, path)
        for header, value in browser_policy.PAGE.items():
            assert answer.headers[header] == value, (path, header)
    policy = browser_policy.PAGE["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy and "default-src 'none'" in policy
    for path in ("/models", f"/lineage?request_id={quote(hostile)}"):
        html = get(client, path).text
        assert re.findall(r"<script[^>]*>", html) == ['<script src="/mlops/pages.js">'], path  # no inline script
        assert "<script>alert" not in html and "<img" not in html
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in get(client, f"/lineage?request_id={quote(hostile)}").text
    assert "addEventListener" in get(client, "/pages.js").text
    assert get(client, "/pages.js").headers["content-type"].startswith("text/javascript")


def test_a_models_state_at_a_glance_comes_from_its_newest_window():
    from datetime import date

    from pipelines.operator_ui.monitoring_view import Window, state_of

    def newest(decision, *signals):
        return Window(1, date(2013, 6, 1), date(2013, 6, 8), 900, "1", 0.1, False, 0.0, {}, 0, True, decision,
                      "why", None, False, signals=list(signals))

    assert state_of(None, has_version=False)[0] == "no version yet"
    assert state_of(None, has_version=True)[0] == "not monitored yet"
    assert state_of(newest("ok"), True) == ("ok", "2013-06-01 → 2013-06-08: why")
    assert state_of(newest("hold", "dataset_drift"), True)[0] == "drifting"
    assert state_of(newest("hold", "dataset_drift", "estimated_performance"), True)[0] == "degraded"
    assert state_of(newest("invalid_data", "validation"), True)[0] == "invalid data"
    assert state_of(newest("retrain", "performance"), True)[0] == "retraining"


def test_the_model_page_and_the_command_line_show_where_the_challenger_stands(pages, tmp_path, monkeypatch,
                                                                             capsys):
    import json
    from types import SimpleNamespace

    from pipelines import config as config_module
    from pipelines.cli import main
    from pipelines.config import StatePaths
    from pipelines.operator_ui import app as operator_app

    client, versions = pages
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))
    cfg = SimpleNamespace(name="toy_cfg", model_name="toy", description="", serving=SimpleNamespace(approval="none"))
    monkeypatch.setattr(operator_app, "_configs", lambda: [cfg])
    monkeypatch.setattr(config_module, "read_model_configs",
                        lambda *a, **k: [SimpleNamespace(name="toy_cfg", config=cfg, error=None)])
    mlflow.MlflowClient().set_registered_model_alias("toy", "challenger", versions[0])
    assert "No comparison yet" in get(client, "/models/toy").text

    folder = StatePaths.from_env().monitoring("toy_cfg") / "challenger"
    folder.mkdir(parents=True)
    status = {"champion_version": versions[1], "challenger_version": versions[0], "feed": "shadow",
              "metric": "log_loss", "rows": 1234, "pending": 56, "mean": 0.0123, "interval": [-0.004, 0.0286],
              "threshold": 0.0, "alpha": 0.05, "min_rows": 1000, "decision": "continue", "rows_needed": 4321,
              "window": f"2026-03-01_{HOSTILE}", "summary": "s"}
    (folder / "status.json").write_text(json.dumps(status))
    page = get(client, "/models/toy").text
    assert "Challenger v1 against the champion" in page and "1234" in page and "56 rows waiting for labels" in page
    assert "[-0.004, +0.0286]" in page and "about 4321" in page and "none yet" in page
    assert HOSTILE not in page and "&lt;/script&gt;" in page
    main(["models"])
    listed = capsys.readouterr().out
    assert "challenger v1 against the champion: log_loss (shadow): 1234 labelled requests" in listed
    assert "about 4321 more labelled requests needed" in listed

    (folder / "status.json").write_text(json.dumps({**status, "decision": "promote", "interval": [0.001, 0.02]}))
    page = get(client, "/models/toy").text
    assert "<strong>promote</strong>" in page and "Requests still needed" not in page
    main(["models"])
    assert "decision: promote" in capsys.readouterr().out
    (folder / "status.json").write_text(json.dumps({**status, "challenger_version": "99"}))
    assert "No comparison yet" in get(client, "/models/toy").text  # a comparison of another challenger


def test_a_retrain_says_what_its_run_said_of_itself_or_that_it_has_not_decided_yet():
    """The monitoring page's line per retrain: the run's verdict (a failure at ingest has no MLflow run), else
    what MLflow recorded, else that it is queued or running: never 'no version registered' for a run still
    going."""
    from datetime import date

    from pipelines.operator_ui.monitoring_chart import monitoring_chart
    from pipelines.operator_ui.monitoring_view import NO_VERDICT, retrain_status, retrains
    from pipelines.timeline import windows_frame
    from pipelines.training_outcomes import FAILED, RunVerdict, TrainingOutcome

    failed = RunVerdict("train_toy", "retrain__1", "ingest", FAILED, "nothing landed between 2013-06-01 and 06-08")
    said = retrain_status(["retrain__1", "retrain__2", "retrain__3"],
                          {"retrain__2": TrainingOutcome(version="4")}, {"retrain__1": failed})
    assert said == {"retrain__1": "FAILED at ingest: nothing landed between 2013-06-01 and 06-08",
                    "retrain__2": "registered v4", "retrain__3": NO_VERDICT}

    window = type("Window", (), {"end": date(2013, 6, 8), "reason": "drift", "triggered_run_id": "retrain__3"})
    [running] = retrains([window], {}, said)
    assert running.run_state == NO_VERDICT and running.version is None
    rows = [{"window_start": date(2013, 6, 1), "window_end": date(2013, 6, 8), "model_version": "1", "rows": 10,
             "drift_share": 0.6, "metric": "roc_auc", "realized": 0.7, "baseline": 0.72, "decision": "retrain",
             "details": {}}]
    chart = monitoring_chart("toy", windows_frame(rows), [running], 0.5)
    assert f"(drift): {NO_VERDICT}" in chart and "no version registered" not in chart
    assert '<g class="retrain running"' in chart and "↻ …</text>" in chart and "✗" not in chart


def test_a_verdict_file_that_cannot_be_read_leaves_the_retrain_undecided_not_the_page_broken(tmp_path, monkeypatch):
    from pipelines.config import StatePaths
    from pipelines.training_outcomes import FAILED, RunVerdict, record_verdict, run_verdicts, verdict_path

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))
    state = StatePaths.from_env()
    record_verdict(state, "toy_cfg", RunVerdict("train_toy_cfg", "retrain__1", "ingest", FAILED, "nothing landed"))
    broken = verdict_path(state, "toy_cfg", "retrain__2")
    broken.write_text("{not json")
    assert list(run_verdicts(state, "toy_cfg", ["retrain__1", "retrain__2", "retrain__3"])) == ["retrain__1"]
