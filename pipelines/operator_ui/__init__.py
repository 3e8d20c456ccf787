"""The operator's pages inside the Airflow UI: what the registry holds and why.

A FastAPI app (``app.create_app``) that the Airflow plugin in ``plugins/mlops_ui.py`` mounts on the API
server at ``/mlops`` behind Airflow's own login, and shows in the UI's navigation and as a tab on each
model's DAGs. The data it shows comes from the MLflow registry (``registry_view``); the pages are Jinja2
templates (``templates/``) rendered by ``pages``. Importable without Airflow.
"""
