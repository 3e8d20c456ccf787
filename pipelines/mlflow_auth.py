"""MLflow behind its login, as the production topology runs it (``mlflow server --app-name basic-auth``).

Anonymous requests are refused; every authenticated user reads (``default_permission = READ``); what a user
creates (experiments, registered models) it manages. The pipeline (Airflow's tasks) and the prediction
service each log in as their own user, never as the admin:

- ``pipeline`` creates the experiments, runs and registered models and moves their aliases;
- ``serving`` only reads them.

    python -m pipelines.mlflow_auth config PATH DATABASE_URI   # admin password from $MLFLOW_AUTH_ADMIN_PASSWORD
    python -m pipelines.mlflow_auth users TRACKING_URI          # passwords from $MLFLOW_PIPELINE_PASSWORD, ...
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import httpx

ADMIN = "admin"
USERS = ("pipeline", "serving")


def write_auth_config(path: Path, database_uri: str, admin_password: str) -> Path:
    """The auth app's config (it holds the admin password: written 0600)."""
    from pipelines.storage import write_text_atomic

    return write_text_atomic(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {ADMIN}\n"
        f"admin_password = {admin_password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n", path)


def ensure_users(tracking_uri: str, admin_password: str, passwords: dict[str, str]) -> None:
    """Create each user with its password, or set the password of one that exists (so a rotated secret takes
    effect at the next start)."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    config = commands.add_parser("config", help="write the auth app's config")
    config.add_argument("path", type=Path)
    config.add_argument("database_uri")
    users = commands.add_parser("users", help="create the pipeline's and the service's users")
    users.add_argument("tracking_uri")
    args = parser.parse_args()
    admin_password = os.environ["MLFLOW_AUTH_ADMIN_PASSWORD"]
    if args.command == "config":
        write_auth_config(args.path, args.database_uri, admin_password)
    else:
        ensure_users(args.tracking_uri, admin_password,
                     {user: os.environ[f"MLFLOW_{user.upper()}_PASSWORD"] for user in USERS})


if __name__ == "__main__":
    main()
