"""The operator's pages inside the Airflow UI, behind Airflow's own login.

Mounts ``pipelines.operator_ui`` on the API server at ``/mlops``, every route guarded by Airflow's
``requires_authenticated()`` (a mounted app inherits no auth), and shows it as "Models" in the navigation
and as a "Model" tab on each model's DAGs. MLflow and the prediction service's health page are links (MLflow
refuses to be framed by another origin). Imports only FastAPI and the page code at parse time: the registry
is read when a page is opened.
"""

from airflow.api_fastapi.core_api.security import requires_authenticated
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends

from pipelines.operator_ui.app import create_app
from pipelines.settings import stack_settings
from pipelines.tracking import mlflow_ui_url

PREFIX = "/mlops"
SERVING = stack_settings().prediction_service_url()


class MlopsUiPlugin(AirflowPlugin):
    name = "mlops_ui"
    fastapi_apps = [{"app": create_app([Depends(requires_authenticated())], url_prefix=PREFIX),
                     "url_prefix": PREFIX, "name": "MLOps operator pages"}]
    external_views = [
        {"name": "Models", "href": f"{PREFIX}/models", "destination": "nav", "url_route": "mlops-models",
         "nav_top_level": True, "icon": f"{PREFIX}/icon.svg"},
        {"name": "Prediction lineage", "href": f"{PREFIX}/lineage", "destination": "nav",
         "url_route": "mlops-lineage"},
        {"name": "Model", "href": f"{PREFIX}/dags/{{DAG_ID}}", "destination": "dag", "url_route": "mlops-model"},
        {"name": "MLflow", "href": mlflow_ui_url(), "destination": "nav", "category": "browse"},
        {"name": "Prediction service", "href": f"{SERVING}/health", "destination": "nav",
         "category": "browse"},
    ]
