"""The embedded stack's MLflow server behind its login, started as `make up` starts it (scripts/stack.py's
environment, auth config, command and users; here on a free port in a throw-away state folder, without
Airflow): an anonymous request can neither move nor delete an alias (the service follows ``champion``) nor
upload or delete an artifact; the service's user reads and writes nothing; the pipeline's user, which Airflow's
tasks log in as, does both. The CLI, with no MLflow settings in its environment, reaches that server as the
pipeline's user through the state folder, and with no stack it opens its own store in-process."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import stat
import sys
from pathlib import Path

import httpx
import mlflow
import pytest

from tests.mlflow_server import free_port

ROOT = Path(__file__).resolve().parents[2]
MODEL = "login_model"
UNOWNED = "owned_by_no_user"
CREDENTIALS = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, empty_mlflow_db):
    """scripts/stack.py on its own state folder and port, its MLflow server started; stopped by its `down`. Its
    tracking store starts as a copy of an empty one (the schema made, nothing in it: what the server would make
    first, and the longer part of its start); its users' store is the server's own."""
    state = tmp_path_factory.mktemp("embedded_stack") / "state"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_HOME", str(state))
        patch.setenv("MLFLOW_PORT", str(free_port()))
        for name in CREDENTIALS:
            patch.delenv(name, raising=False)
        spec = importlib.util.spec_from_file_location("embedded_stack_under_test", ROOT / "scripts" / "stack.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        # The server is this test's child: reaped at once, as init reaps `make up`'s detached components, so
        # that `down` sees it gone.
        previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        try:
            module.env = module.stack_env()
            (state / "logs").mkdir()
            (state / "mlflow").mkdir(mode=0o700, exist_ok=True)
            shutil.copyfile(empty_mlflow_db, state / "mlflow" / "mlflow.db")
            (state / "mlflow" / "mlflow.db").chmod(0o600)
            module.start_mlflow(module.env)
            yield module
        finally:
            module.down()
            signal.signal(signal.SIGCHLD, previous)
            sys.modules.pop("embedded_stack_under_test", None)


@pytest.fixture(scope="module")
def registered(stack):
    """What the pipeline made, logged in as Airflow's tasks are (the stack's environment): an experiment, a run
    with an artifact, a registered model whose version 1 is the champion. Its REST paths."""
    with pytest.MonkeyPatch.context() as patch:
        for name in CREDENTIALS:
            if name in stack.env:
                patch.setenv(name, stack.env[name])
        client = mlflow.MlflowClient(tracking_uri=stack.env["MLFLOW_TRACKING_URI"],
                                     registry_uri=stack.env["MLFLOW_TRACKING_URI"])
        experiment = client.create_experiment("login_experiment")
        run = client.create_run(experiment)
        client.log_text(run.info.run_id, "the pipeline's report", "report.txt")
        client.create_registered_model(MODEL)
        version = client.create_model_version(MODEL, run.info.artifact_uri, run_id=run.info.run_id)
        client.set_registered_model_alias(MODEL, "champion", version.version)
    url = stack.env["MLFLOW_TRACKING_URI"]
    return {"alias": f"{url}/api/2.0/mlflow/registered-models/alias",
            "model": f"{url}/api/2.0/mlflow/registered-models/get",
            "artifact": f"{url}/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run.info.run_id}/artifacts"}


def login(env: dict[str, str]) -> tuple[str, str]:
    return env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]


def writes(paths: dict[str, str], auth: tuple[str, str] | None) -> dict[str, int]:
    """The status of each write the service must be safe from, sent with ``auth``."""
    return {
        "set alias": httpx.post(paths["alias"], json={"name": MODEL, "alias": "champion", "version": "1"},
                                auth=auth, timeout=30).status_code,
        "delete alias": httpx.request("DELETE", paths["alias"], json={"name": MODEL, "alias": "champion"},
                                      auth=auth, timeout=30).status_code,
        "upload artifact": httpx.put(f"{paths['artifact']}/report.txt", content=b"forged", auth=auth,
                                     timeout=30).status_code,
        "delete artifact": httpx.delete(f"{paths['artifact']}/report.txt", auth=auth, timeout=30).status_code,
    }


def unchanged(stack, paths: dict[str, str]) -> None:
    pipeline = login(stack.env)
    model = httpx.get(paths["model"], params={"name": MODEL}, auth=pipeline, timeout=30).json()["registered_model"]
    assert model["aliases"] == [{"alias": "champion", "version": "1"}]
    report = httpx.get(f"{paths['artifact']}/report.txt", auth=pipeline, timeout=30)
    assert (report.status_code, report.text) == (200, "the pipeline's report")


def test_an_anonymous_request_can_neither_move_an_alias_nor_touch_an_artifact(stack, registered):
    assert writes(registered, None) == dict.fromkeys(["set alias", "delete alias", "upload artifact",
                                                      "delete artifact"], 401)
    assert httpx.get(registered["model"], params={"name": MODEL}, timeout=30).status_code == 401
    unchanged(stack, registered)


def test_the_service_reads_and_writes_nothing(stack, registered):
    serving = login(stack.component_env("serving", stack.env))
    assert serving[0] == "serving"
    model = httpx.get(registered["model"], params={"name": MODEL}, auth=serving, timeout=30)
    assert model.status_code == 200 and model.json()["registered_model"]["aliases"][0]["alias"] == "champion"
    assert httpx.get(f"{registered['artifact']}/report.txt", auth=serving, timeout=30).status_code == 200
    assert writes(registered, serving) == dict.fromkeys(["set alias", "delete alias", "upload artifact",
                                                         "delete artifact"], 403)
    unchanged(stack, registered)


def test_the_pipeline_moves_aliases_and_writes_artifacts(stack, registered):
    pipeline = login(stack.env)
    assert pipeline[0] == "pipeline"
    challenger = {"name": MODEL, "alias": "challenger", "version": "1"}
    assert httpx.post(registered["alias"], json=challenger, auth=pipeline, timeout=30).status_code == 200
    assert httpx.request("DELETE", registered["alias"], json={"name": MODEL, "alias": "challenger"}, auth=pipeline,
                         timeout=30).status_code == 200
    draft = f"{registered['artifact']}/draft.txt"
    assert httpx.put(draft, content=b"draft", auth=pipeline, timeout=30).status_code == 200
    assert httpx.delete(draft, auth=pipeline, timeout=30).status_code == 200
    unchanged(stack, registered)


def test_what_no_user_owns_is_the_pipelines_to_manage_at_the_next_start(stack):
    """As everything a store held before it ran behind the login: an experiment and a model with no user's
    permission (here the admin's, revoked) can be neither logged to nor moved by the pipeline until the next
    `up` (``start_mlflow`` again, on the running server) gives them to it. That start also makes a users'
    database an older stack left readable by others private again."""
    api = f"{stack.env['MLFLOW_TRACKING_URI']}/api"
    admin = ("admin", stack.mlflow_secret("admin_password"))
    serving, pipeline = login(stack.component_env("serving", stack.env)), login(stack.env)
    experiment = httpx.post(f"{api}/2.0/mlflow/experiments/create", json={"name": UNOWNED}, auth=admin,
                            timeout=30).json()["experiment_id"]
    assert httpx.post(f"{api}/2.0/mlflow/registered-models/create", json={"name": UNOWNED}, auth=admin,
                      timeout=30).status_code == 200
    for resource_type, resource_id in (("experiment", experiment), ("registered_model", UNOWNED)):
        assert httpx.post(f"{api}/3.0/mlflow/users/permissions/revoke", auth=admin, timeout=30, json={
            "username": "admin", "resource_type": resource_type, "resource_id": resource_id}).status_code == 200

    def create_run(auth) -> httpx.Response:
        return httpx.post(f"{api}/2.0/mlflow/runs/create", json={"experiment_id": experiment}, auth=auth,
                          timeout=30)

    assert create_run(pipeline).status_code == 403
    users_db = stack.STATE / "mlflow" / "basic_auth.db"
    users_db.chmod(0o644)  # as an older stack left it
    stack.start_mlflow(stack.env)
    assert stat.S_IMODE(users_db.stat().st_mode) == 0o600
    assert create_run(serving).status_code == 403
    run = create_run(pipeline)
    assert run.status_code == 200, run.text
    run = run.json()["run"]["info"]
    version = httpx.post(f"{api}/2.0/mlflow/model-versions/create", auth=pipeline, timeout=30, json={
        "name": UNOWNED, "source": run["artifact_uri"], "run_id": run["run_id"]})
    assert version.status_code == 200, version.text
    champion = {"name": UNOWNED, "alias": "champion", "version": version.json()["model_version"]["version"]}
    move = f"{api}/2.0/mlflow/registered-models/alias"
    assert httpx.post(move, json=champion, auth=serving, timeout=30).status_code == 403
    assert httpx.post(move, json=champion, auth=pipeline, timeout=30).status_code == 200


def test_the_cli_logs_in_to_the_stack_as_the_pipeline_through_the_state_folder(stack, registered, monkeypatch):
    from pipelines.tracking import mlflow_client, tracking_uri

    monkeypatch.setenv("MLOPS_HOME", str(stack.STATE))
    monkeypatch.setenv("MLFLOW_PORT", str(stack.MLFLOW_PORT))
    for name in CREDENTIALS:  # set, then removed: whatever the client sets is undone after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)

    assert tracking_uri() == stack.env["MLFLOW_TRACKING_URI"]
    client = mlflow_client()
    assert client.get_registered_model(MODEL).aliases == {"champion": "1"}
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "pipeline"


def test_without_a_stack_the_cli_opens_its_own_store(tmp_path, monkeypatch):
    from pipelines.tracking import tracking_uri

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri() == f"sqlite:///{tmp_path / 'state' / 'mlflow' / 'mlflow.db'}"


def test_the_mlflow_secrets_are_readable_by_their_owner_only(stack):
    secrets = stack.STATE / "mlflow"
    for name in ("admin_password", "pipeline_password", "serving_password", "flask_secret_key", "basic_auth.ini",
                 "basic_auth.db"):
        assert stat.S_IMODE((secrets / name).stat().st_mode) == 0o600, name
    assert stack.mlflow_secret("admin_password") in (secrets / "basic_auth.ini").read_text()
    assert stat.S_IMODE(stack.STATE.stat().st_mode) == 0o700
