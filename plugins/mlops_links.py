"""Links from the Airflow UI to the MLflow UI and the prediction service's health page.

The operator page with gate decisions, drift reports and lineage comes later; this plugin is where it
will live. It reads only environment variables at import: no network, no heavy imports.
"""

import os

from airflow.plugins_manager import AirflowPlugin

MLFLOW_UI = os.environ.get("MLOPS_MLFLOW_UI_URL", os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"))
SERVING = os.environ.get("MLOPS_SERVING_URL", "http://127.0.0.1:8000")


class MlopsLinksPlugin(AirflowPlugin):
    name = "mlops_links"
    external_views = [
        {"name": "MLflow", "href": MLFLOW_UI if MLFLOW_UI.startswith("http") else "http://127.0.0.1:5000",
         "destination": "nav", "category": "browse", "url_route": "mlflow"},
        {"name": "Prediction service", "href": f"{SERVING.rstrip('/')}/health",
         "destination": "nav", "category": "browse", "url_route": "prediction-service"},
    ]
