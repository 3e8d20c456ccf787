"""The operator's questions answered in the Airflow UI, as a person sees it: Debian's chromium driven by
Playwright, logged into the UI of the running stack (conftest's ``production_stack``: flights_delay trained by
``up``; penguins_reviewed trains when its data lands, and needs a person's approval).

Screenshots of each page are saved under test-artifacts/screenshots (git-ignored); a failed test adds one of
the page it failed on to its report.
"""

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pandas as pd
import pytest

from tests.waiting import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright's own browser download is never used
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
MODEL = "flights_delay"
REVIEWED = "penguins_reviewed"  # conftest's model that needs an approval
# Carrier values a client sends to the prediction service, logged as they are: each would run script on the
# Airflow UI's origin if the drift report built from the log let it out of its data.
HOSTILE = ["</script><script>alert(1)</script>", "<img src=x onerror=alert(2)>",
           "</script><script>fetch('/api/v2/dags', {credentials: 'include'}); document.cookie = 'stolen=1'; "
           "location.assign('/api/v2/version')</script>"]


@pytest.fixture(scope="module")
def stack(production_stack):
    """The stack's addresses and a logged-in REST client."""
    from pipelines.airflow_edge.airflow_api import AirflowApi, admin_password_file

    env, _ = production_stack
    airflow = f"http://127.0.0.1:{env['AIRFLOW_PORT']}"
    password = admin_password_file(Path(env["MLOPS_HOME"])).read_text().strip()
    return {"env": env, "airflow": airflow, "password": password, "api": AirflowApi(airflow, password=password),
            "serving": f"http://127.0.0.1:{env['SERVING_PORT']}"}


def served_rows(stack, n: int, request_id: str, carriers: list[str] | None = None) -> None:
    """``n`` holdout rows of the flights model sent to the service under one request id (their carrier
    replaced by ``carriers`` in turn, when given)."""
    from pipelines.config import load_model_config
    from pipelines.training import model_inputs

    holdout = sorted(Path(stack["env"]["MLOPS_HOME"]).glob(f"work/{MODEL}/*/split/holdout.parquet"))[-1]
    rows = model_inputs(pd.read_parquet(holdout).head(n), load_model_config(MODEL).features)
    if carriers:
        rows["carrier"] = [carriers[i % len(carriers)] for i in range(len(rows))]
    answer = httpx.post(f"{stack['serving']}/invocations", timeout=30, headers={"X-Request-ID": request_id},
                        json={"dataframe_records": json.loads(rows.to_json(orient="records"))})
    assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module", autouse=True)
def runs_started_first(stack):
    """The two runs the pages are checked against start before the first test and go on beside the others:
    today's monitoring window of the flights model (after 400 rows of traffic, a few with hostile carriers),
    and the training run that landing the penguins for penguins_reviewed starts through its Asset."""
    from pipelines.landing import package_data

    served_rows(stack, 400, "browser-traffic")
    served_rows(stack, 2 * len(HOSTILE), "browser-hostile", carriers=HOSTILE)
    wait_for(lambda: httpx.get(f"{stack['serving']}/health").json()["prediction_log"]["backlog_rows"] == 0,
             60, "the served rows in the prediction log", poll=0.2)
    today = datetime.now(UTC).date()  # the prediction log's clock
    window = (today, today + timedelta(days=1))
    monitor_run = stack["api"].trigger(f"monitor_{MODEL}", {"window_start": str(window[0]), "reason": "browser test",
                                                             "window_end": str(window[1])})
    landed = subprocess.run([sys.executable, "-m", "pipelines.cli", "land", REVIEWED,
                             str(package_data("palmerpenguins", "penguins.csv"))],
                            env={**stack["env"], "AIRFLOW__API__BASE_URL": stack["airflow"]}, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    return {"monitor_run": monitor_run, "window": window, "landed": landed}


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium package"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def logged_in(chromium, stack):
    """A browser session logged into the Airflow UI through its login form (the UI's cookie)."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    tab = context.new_page()
    tab.goto(f"{stack['airflow']}/")
    tab.get_by_label("Username").fill("admin")
    tab.get_by_label("Password").fill(stack["password"])
    tab.get_by_role("button", name="Sign in").click()
    tab.wait_for_url(f"{stack['airflow']}/")
    tab.close()
    yield context
    context.close()


@pytest.fixture()
def page(logged_in):
    """A new tab of the logged-in session."""
    tab = logged_in.new_page()
    yield tab
    tab.close()


def shot(tab, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def operator_page(tab, stack, path: str):
    """Open one of the operator pages inside the Airflow UI (the plugin's "Models" page, whose frame then
    follows the links); returns the frame."""
    tab.goto(f"{stack['airflow']}/plugin/mlops-models")
    frame = tab.frame_locator("iframe")
    frame.locator("h1").first.wait_for()
    if path != "/models":
        frame.locator("body").evaluate(f"() => window.location.assign({json.dumps('/mlops' + path)})")
    return frame


def test_an_anonymous_browser_is_refused(chromium, stack):
    context = chromium.new_context()
    tab = context.new_page()
    try:
        for path in ("/mlops/models", f"/mlops/models/{MODEL}/versions/1", "/mlops/lineage?request_id=x"):
            assert tab.goto(f"{stack['airflow']}{path}").status == 401, path
        tab.goto(f"{stack['airflow']}/plugin/mlops-models")
        tab.wait_for_url("**/auth/login**")  # the UI itself sends a stranger to its login form
        shot(tab, "anonymous")
    finally:
        context.close()


def test_why_is_this_the_champion_and_on_which_data(page, stack):
    frame = operator_page(page, stack, "/models")
    frame.get_by_role("link", name=MODEL, exact=True).wait_for()
    shot(page, "models")
    frame.get_by_role("link", name=MODEL, exact=True).click()
    frame.get_by_role("heading", name=MODEL, exact=True).wait_for()
    frame.get_by_role("link", name="v1", exact=True).first.click()
    frame.get_by_role("heading", name=re.compile(f"^{MODEL} v1")).wait_for()
    body = frame.locator("body").inner_text()
    assert "Gate: approved" in body and "champion" in body
    assert "holdout" in body and "meets floor" in body  # every reason of the gate, with its numbers
    for label in ("Data", "Code", "Why trained", "Airflow run", "MLflow run", "Predictions served"):
        assert label in body, label
    assert frame.get_by_role("link", name="the batch's validation report").count() == 1
    mlflow_link = frame.locator("dd a[target=_blank]").first  # MLflow refuses frames: it opens on its own
    assert mlflow_link.get_attribute("href").startswith(f"http://127.0.0.1:{stack['env']['MLFLOW_PORT']}/#/")
    shot(page, "version")
    # The link to the Airflow run leaves the frame: the UI itself shows the run.
    frame.locator("dd a[data-airflow]").first.click()
    page.wait_for_url(f"**/dags/train_{MODEL}/runs/**")
    page.get_by_text("deploy", exact=True).first.wait_for()
    shot(page, "version-airflow-run")


def test_is_it_still_good_the_monitoring_timeline_and_a_drift_report(page, stack, runs_started_first):
    run_id, (start, end) = runs_started_first["monitor_run"], runs_started_first["window"]
    run = stack["api"].wait([(f"monitor_{MODEL}", run_id)], timeout=600, progress=lambda *_: None)
    assert run[f"monitor_{MODEL}"]["state"] == "success", run

    frame = operator_page(page, stack, f"/models/{MODEL}/monitoring")
    frame.get_by_role("heading", name=f"{MODEL}: monitoring").wait_for()
    row = frame.locator("tr", has_text=f"{start} → {end}")
    cells = row.locator("td")
    assert cells.nth(1).inner_text() == "v1" and int(cells.nth(2).inner_text().split()[0]) >= 400
    assert 0 <= float(cells.nth(3).inner_text().split()[0]) <= 1  # the drift share...
    assert "limit" in cells.nth(3).inner_text()  # ...beside the champion's own limit
    assert "baseline" in row.inner_text()  # the champion's holdout value beside the window's estimate
    # Above the table, the chart drawn by the page itself: the window's drift share against its limit, the
    # champion's baseline band.
    chart = frame.get_by_role("img", name=re.compile(f"^{MODEL}: .* per window against the champion"))
    chart.wait_for(state="visible")
    assert chart.bounding_box()["width"] > 400 and chart.bounding_box()["height"] > 150
    drawn = chart.locator(f'g.window[data-end="{end}"]')
    assert drawn.locator("circle.drift").is_visible()
    assert f"{start} → {end}" in drawn.locator("title").text_content()  # its numbers, on hover
    assert chart.locator("path.band").get_attribute("d") and chart.locator("path.limit").get_attribute("d")
    shot(page, "monitoring")
    with page.expect_event("framenavigated", predicate=lambda f: f.url.endswith("/report")) as navigated:
        row.get_by_role("link", name="drift report").click()
    report = navigated.value
    report.get_by_text("Share of Drifted Columns").wait_for()  # Evidently's own report, inside the page
    shot(page, "drift-report")

    models = operator_page(page, stack, "/models")
    state = models.locator("h2", has_text=MODEL).locator("[data-state]")
    assert state.inner_text() in ("ok", "drifting", "degraded", "invalid data", "retraining")  # at a glance
    assert " → " in state.get_attribute("title")  # from the newest window judged, with its reason


def test_a_hostile_value_in_the_traffic_is_text_in_the_drift_report_and_runs_nothing(page, logged_in, stack,
                                                                                     runs_started_first):
    """The window's Evidently report, built from a log holding hostile carriers, opened from the monitoring page
    inside the UI and on its own in a tab: it draws, shows the values as text, opens no dialog and sends no
    request (only the report document itself is loaded); opened on its own it is an opaque origin that can read
    no cookie and reach no API."""
    run_id, (start, end) = runs_started_first["monitor_run"], runs_started_first["window"]
    run = stack["api"].wait([(f"monitor_{MODEL}", run_id)], timeout=600, progress=lambda *_: None)
    assert run[f"monitor_{MODEL}"]["state"] == "success", run
    frame = operator_page(page, stack, f"/models/{MODEL}/monitoring")
    link = frame.locator("tr", has_text=f"{start} → {end}").get_by_role("link", name="drift report")
    report_url = f"{stack['airflow']}{link.get_attribute('href')}"
    dialogs, requests = [], []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda request: requests.append(request))
    with page.expect_event("framenavigated", predicate=lambda f: f.url == report_url) as navigated:
        link.click()
    report = navigated.value
    report.wait_for_load_state("load")

    def from_report() -> list[str]:  # what the operator pages' frame asked for (the UI around it polls its API)
        return [r.url for r in requests if r.frame != page.main_frame]

    assert dialogs == [] and from_report() == [report_url]
    report.get_by_text("Share of Drifted Columns").wait_for()  # it still draws
    assert HOSTILE[1] in report.locator("body").inner_text()  # the logged value is on the page, as text
    shot(page, "hostile-drift-report")
    assert dialogs == [] and from_report() == [report_url]

    tab = logged_in.new_page()  # the link opened in a tab of its own: no frame of the UI around it
    try:
        tab_dialogs, tab_requests = [], []
        tab.on("dialog", lambda dialog: (tab_dialogs.append(dialog.message), dialog.dismiss()))
        tab.on("request", lambda request: tab_requests.append(request.url))
        answer = tab.goto(report_url)
        assert tab_dialogs == [] and tab_requests == [report_url]
        tab.get_by_text("Share of Drifted Columns").wait_for()
        assert tab_dialogs == [] and tab_requests == [report_url]
        assert answer.headers["content-security-policy"].startswith("sandbox allow-scripts;")
        assert tab.evaluate("() => window.origin") == "null"  # not the Airflow UI's origin
        assert tab.evaluate("() => { try { return document.cookie } catch (e) { return e.name } }") == "SecurityError"
        assert tab.evaluate("() => fetch('/api/v2/version').then(() => 'answered', () => 'refused')") == "refused"
    finally:
        tab.close()


def test_what_did_it_answer_to_request_x(page, stack):
    served_rows(stack, 2, "browser-lineage")

    frame = operator_page(page, stack, "/lineage")
    def found() -> int:  # the log writer stores the rows within seconds (longer on a loaded box)
        frame.locator("input[name=request_id]").fill("browser-lineage")
        frame.get_by_role("button", name="Search").click()
        frame.get_by_role("heading", name="Prediction lineage").wait_for()
        return frame.get_by_role("heading", name="What was answered").count()

    wait_for(found, 90, "the request in the lineage page", poll=2)
    body = frame.locator("body").inner_text()
    assert "What was answered" in body and f"Made by {MODEL} v1" in body
    assert "Training data" in body and f"train_{MODEL} / " in body and "Code" in body
    shot(page, "lineage")


def test_a_person_approves_a_candidate_that_was_trained_when_its_data_landed(page, stack, runs_started_first):
    api, landed = stack["api"], runs_started_first["landed"]
    assert landed.returncode == 0 and f"train_{REVIEWED} starts on it" in landed.stdout, landed.stdout + landed.stderr

    dag_id = f"train_{REVIEWED}"
    runs, states = [], {}

    def awaiting_approval() -> bool:  # the Asset event starts the run; it trains, passes the gate, waits for a person
        nonlocal runs, states
        runs = api.get(f"/dags/{dag_id}/dagRuns?order_by=-run_after&limit=1").json()["dag_runs"]
        states = api.task_states(dag_id, runs[0]["dag_run_id"]) if runs else {}
        assert not runs or runs[0]["state"] not in ("success", "failed"), states
        return states.get("approve") == "awaiting_input"

    wait_for(awaiting_approval, 600, lambda: f"the approval task to wait for a person: {states}", poll=3)
    run_id = runs[0]["dag_run_id"]
    assert runs[0]["run_type"] == "asset_triggered"

    page.goto(f"{stack['airflow']}/dags/{dag_id}/runs/{quote(run_id, safe='')}/tasks/approve/required_actions")
    page.get_by_text(f"Register and deploy the new {REVIEWED} candidate?").wait_for()
    body = page.locator("body").inner_text()
    assert "floor:accuracy" in body and "Holdout metric" in body and "Candidate" in body  # what the gate saw
    shot(page, "approval-request")
    page.locator("#element_approval_reason").fill("accuracy well above the floor; checked in the browser")
    with page.expect_response(lambda r: "hitlDetails" in r.url and r.request.method == "PATCH") as answered:
        page.get_by_role("button", name="Approve").click()
    assert answered.value.ok, answered.value.text()

    finished = api.wait([(dag_id, run_id)], timeout=600, progress=lambda *_: None)[dag_id]
    assert finished["state"] == "success" and finished["tasks"]["deploy"] == "success", finished

    frame = operator_page(page, stack, f"/models/{REVIEWED}")
    frame.locator(f"tr:has(a[href*='{quote(run_id, safe='')}'])").locator("td a").first.click()
    frame.get_by_role("heading", name=re.compile(f"^{REVIEWED} v")).wait_for()
    body = frame.locator("body").inner_text()
    assert "Approval: approved by admin" in body and "checked in the browser" in body
    shot(page, "approved-version")
    frame = operator_page(page, stack, "/models")  # two models served now, each with its champion
    for name in (MODEL, REVIEWED):
        frame.locator("h2", has=frame.get_by_role("link", name=name, exact=True)).wait_for()
    assert frame.locator("span.alias.champion").count() == 2


def test_retrain_now_from_the_models_page_starts_the_dag_as_the_logged_in_user(page, stack):
    """The action form starts the model's DAG through Airflow's API with the user's own login; Airflow's answer
    is shown, and the run is one click away. (An interval with no landed data: the run fails at ingest, fast.)"""
    frame = operator_page(page, stack, f"/models/{REVIEWED}")
    form = frame.locator("form.action")
    form.locator("input[name=reason]").fill("operator asked for it in the browser test")
    form.locator("input[name=data_interval_start]").fill("2020-01-01")
    form.locator("input[name=data_interval_end]").fill("2020-01-02")
    form.get_by_role("button", name="Retrain now").click()
    started = form.locator(".result a")
    started.wait_for()
    run_id = started.inner_text().removeprefix("run ").removesuffix(" started")
    run = stack["api"].get(f"/dags/train_{REVIEWED}/dagRuns/{quote(run_id, safe='')}").json()
    assert run["conf"]["reason"] == "operator asked for it in the browser test"
    assert run["conf"]["data_interval_start"] == "2020-01-01" and run["triggering_user_name"] == "admin"
    shot(page, "retrain-started")
    started.click()
    page.wait_for_url(f"**/dags/train_{REVIEWED}/runs/**")
