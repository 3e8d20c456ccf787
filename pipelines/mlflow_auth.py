"""MLflow behind its login, as every topology runs it (``mlflow server --app-name basic-auth``; its users in
SQLite under the state folder on the embedded stack, in PostgreSQL on the production topology).

Anonymous requests are refused; every authenticated user reads (``default_permission = READ``); what a user
creates (experiments, registered models) it manages. The pipeline (Airflow's tasks and the CLI) and the
prediction service each log in as their own user; a person logs in to the UI as the admin:

- ``pipeline`` creates the experiments, runs and registered models and moves their aliases;
- ``serving`` only reads them.

    python -m pipelines.mlflow_auth config PATH DATABASE_URI   # admin password from $MLFLOW_AUTH_ADMIN_PASSWORD
    python -m pipelines.mlflow_auth users TRACKING_URI          # passwords from $MLFLOW_PIPELINE_PASSWORD, ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import httpx
from pydantic import SecretStr

from pipelines.settings import stack_settings

ADMIN = "admin"
PIPELINE = "pipeline"
DEFAULT_EXPERIMENT = "0"  # the store's own, made with it; no step logs to it
SERVING = "serving"
USERS = (PIPELINE, SERVING)


def secret_file(state_root: Path, name: str) -> Path:
    """Where the stack keeps an MLflow secret it generated (mode 0600): a user's password (``<user>_password``:
    admin, pipeline, serving) or its server's CSRF key (``flask_secret_key``)."""
    from pipelines.config import StatePaths

    return StatePaths(root=state_root).mlflow / name


def write_auth_config(path: Path, database_uri: str, admin_password: str) -> Path:
    """The auth app's config (it holds the admin password: written 0600)."""
    from pipelines.storage import write_text_atomic

    return write_text_atomic(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {ADMIN}\n"
        f"admin_password = {admin_password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # Each check of a password is a deliberately slow hash (scrypt): ~3 s per request on 2 loaded cores
        # without this cache, 0.2 s with it. A password changed through the API is dropped from the cache of
        # the worker that changed it; another worker may accept the old one for up to a minute.
        "auth_cache_ttl_seconds = 60\n", path)


def ensure_users(tracking_uri: str, admin_password: str, passwords: dict[str, str]) -> list[str]:
    """Create each user with its password, or set the password of one that exists (so a rotated secret takes
    effect at the next start); then the pipeline's user adopts what no user owns (``adopt_unowned``, whose
    answer this is)."""
    api = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/users"
    with httpx.Client(auth=(ADMIN, admin_password), timeout=30) as http:
        for username, password in passwords.items():
            found = http.get(f"{api}/get", params={"username": username})
            if found.status_code == 200:
                answer = http.patch(f"{api}/update-password", json={"username": username, "password": password})
            else:
                answer = http.post(f"{api}/create", json={"username": username, "password": password})
            if answer.status_code != 200:
                raise RuntimeError(f"MLflow at {tracking_uri} refused to set up user {username!r}: "
                                   f"{answer.status_code} {answer.text[:300]}")
    return adopt_unowned(tracking_uri, admin_password, PIPELINE)


def adopt_unowned(tracking_uri: str, admin_password: str, username: str) -> list[str]:
    """Let ``username`` manage each experiment and registered model that no user has a permission on: what a
    store held before it ran behind the login, which the pipeline could otherwise neither log to nor move the
    aliases of. What it adopted (``experiment 1``, ``registered_model name``)."""
    api = tracking_uri.rstrip("/")
    with httpx.Client(auth=(ADMIN, admin_password), timeout=30) as http:
        users = _answer(http.get(f"{api}/api/2.0/mlflow/users/list"), tracking_uri)["users"]
        owned = {(grant["resource_type"], grant["resource_pattern"]) for user in users
                 for role in user.get("roles", []) for grant in role.get("permissions", [])}
        held = [("experiment", e["experiment_id"]) for e in _pages(
                    lambda token: http.post(f"{api}/api/2.0/mlflow/experiments/search", json={
                        "max_results": 1000, "view_type": "ALL", **({"page_token": token} if token else {})}),
                    "experiments", tracking_uri) if e["experiment_id"] != DEFAULT_EXPERIMENT]
        held += [("registered_model", m["name"]) for m in _pages(
                    lambda token: http.get(f"{api}/api/2.0/mlflow/registered-models/search", params={
                        "max_results": 1000, **({"page_token": token} if token else {})}),
                    "registered_models", tracking_uri)]
        adopted = []
        for resource_type, resource_id in held:
            if (resource_type, resource_id) not in owned:
                _answer(http.post(f"{api}/api/3.0/mlflow/users/permissions/grant", json={
                    "username": username, "resource_type": resource_type, "resource_id": resource_id,
                    "permission": "MANAGE"}), tracking_uri)
                adopted.append(f"{resource_type} {resource_id}")
    return adopted


def _pages(request, key: str, tracking_uri: str) -> list[dict]:
    items, token = [], None
    while True:
        page = _answer(request(token), tracking_uri)
        items += page.get(key, [])
        token = page.get("next_page_token")
        if not token:
            return items


def _answer(response: httpx.Response, tracking_uri: str) -> dict:
    if response.status_code != 200:
        raise RuntimeError(f"MLflow at {tracking_uri} refused {response.request.method} {response.request.url.path}: "
                           f"{response.status_code} {response.text[:300]}")
    return response.json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    config = commands.add_parser("config", help="write the auth app's config")
    config.add_argument("path", type=Path)
    config.add_argument("database_uri")
    users = commands.add_parser("users", help="create the pipeline's and the service's users")
    users.add_argument("tracking_uri")
    args = parser.parse_args()
    settings = stack_settings()
    admin_password = _required(settings.mlflow_admin_password, "MLFLOW_AUTH_ADMIN_PASSWORD")
    if args.command == "config":
        write_auth_config(args.path, args.database_uri, admin_password)
    else:
        ensure_users(args.tracking_uri, admin_password,
                     {PIPELINE: _required(settings.mlflow_pipeline_password, "MLFLOW_PIPELINE_PASSWORD"),
                      SERVING: _required(settings.mlflow_serving_password, "MLFLOW_SERVING_PASSWORD")})


def _required(secret: SecretStr | None, variable: str) -> str:
    if secret is None:
        raise SystemExit(f"set {variable}")
    return secret.get_secret_value()


if __name__ == "__main__":
    main()
