"""No default secret anywhere: the production compose file requires every secret and publishes on loopback,
the image runs unprivileged, and the embedded stack makes its own secrets, readable by its owner only."""

import importlib.util
import re
import stat
import subprocess
import sys

import yaml

from pipelines.config import PROJECT_ROOT

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|_KEY\b")
# Defaults that shipped in projects like this one, in any tracked file.
DEFAULT_SECRETS = [
    re.compile(r"change-?me", re.I),
    re.compile(r"://[A-Za-z0-9_]+:(?!\$\{)[^@/\s]+@"),                 # a literal password in a URL
    re.compile(r"\blogin admin / admin\b"),
    re.compile(r"""password["']?\s*[:=]\s*["'](admin|airflow|password|secret)["']""", re.I),
    re.compile(r"\$\{[A-Z_]*(PASSWORD|SECRET|TOKEN|FERNET_KEY)[A-Z_]*:-"),  # a secret with a default value
]


def compose() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "docker-compose.yaml").read_text())


def test_no_tracked_file_holds_a_default_secret():
    tracked = subprocess.run(["git", "-C", str(PROJECT_ROOT), "ls-files"], capture_output=True, text=True,
                             check=True).stdout.split()
    found = []
    for name in tracked:
        path = PROJECT_ROOT / name
        if name.startswith("tests/") or not path.is_file() or path.suffix in (".png", ".lock"):
            continue
        text = path.read_text(errors="ignore")
        found += [f"{name}: {m.group(0)}" for pattern in DEFAULT_SECRETS for m in pattern.finditer(text)]
    assert not found, found


def test_compose_requires_every_secret_and_publishes_on_loopback():
    text = (PROJECT_ROOT / "docker-compose.yaml").read_text()
    references = re.findall(r"\$\{([A-Z_]+)(:[?-][^}]*)?\}", text)
    secrets = {name for name, _ in references if SECRET_NAME.search(name)}
    assert {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "AIRFLOW_JWT_SECRET", "AIRFLOW_FERNET_KEY",
            "AIRFLOW_ADMIN_PASSWORD", "MLOPS_ADMIN_TOKEN", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_PIPELINE_PASSWORD",
            "MLFLOW_SERVING_PASSWORD", "MLFLOW_SECRET_KEY"} <= secrets
    assert all(rule.startswith(":?") for name, rule in references if name in secrets)
    services = compose()["services"]
    ports = [port for service in services.values() for port in service.get("ports", [])]
    assert ports and all(port.startswith("${BIND_ADDRESS:-127.0.0.1}:") for port in ports)
    assert services["redis"]["command"] and "requirepass" in " ".join(services["redis"]["command"])


def test_the_prediction_service_gets_only_its_own_secrets():
    serving = compose()["services"]["serving"]["environment"]
    assert not [name for name in serving if name.startswith("AIRFLOW")]
    assert set(serving) == {"MLOPS_HOME", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                            "MLOPS_PREDICTION_LOG_URL", "MLOPS_SERVING_ADMIN_TOKEN", "MLFLOW_ENABLE_TELEMETRY"}
    assert serving["MLFLOW_TRACKING_USERNAME"] == "serving"
    mlflow = compose()["services"]["mlflow"]
    assert "--app-name basic-auth" in mlflow["command"]


def test_the_image_runs_as_an_unprivileged_user():
    users = re.findall(r"^USER\s+(\S+)", (PROJECT_ROOT / "Dockerfile").read_text(), re.M)
    assert users and users[-1] not in ("root", "0")


def test_the_embedded_stack_makes_its_own_secrets_readable_by_its_owner_only(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("AIRFLOW_ADMIN_PASSWORD", raising=False)
    spec = importlib.util.spec_from_file_location("stack_under_test", PROJECT_ROOT / "scripts" / "stack.py")
    stack = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stack)
    (tmp_path / "state").mkdir()

    env = stack.stack_env()

    from pipelines.airflow_edge.airflow_api import admin_password
    password = admin_password(tmp_path / "state")
    assert len(password) >= 16 and password not in ("admin", "airflow")
    assert stack.stack_env()["AIRFLOW__API_AUTH__JWT_SECRET"] == env["AIRFLOW__API_AUTH__JWT_SECRET"]  # kept
    assert admin_password(tmp_path / "state") == password
    state = tmp_path / "state"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for secret in ["airflow/admin_password", "airflow/jwt_secret", "airflow/simple_auth_manager_passwords.json",
                   "env.sh"]:
        assert stat.S_IMODE((state / secret).stat().st_mode) == 0o600, secret
    assert password in (state / "airflow" / "simple_auth_manager_passwords.json").read_text()
    sys.modules.pop("stack_under_test", None)
