"""The ``WindowRuns`` of a replay on the running stack (``mlops-loop replay``): each window judged by the
model's monitoring DAG, and the retrains it starts followed, through Airflow's REST API."""

from __future__ import annotations

from datetime import date

from pipelines.config import ModelConfig, monitoring_dag_id, training_dag_id


class StackRuns:
    """The model's DAGs on the running stack, through Airflow's REST API."""

    def __init__(self, cfg: ModelConfig, api=None) -> None:
        from pipelines.airflow_edge.airflow_api import AirflowApi

        self.cfg, self.api = cfg, api or AirflowApi()

    def monitor(self, window_start: date, window_end: date) -> str:
        dag_id = monitoring_dag_id(self.cfg.name)
        run_id = self.api.trigger(dag_id, {"window_start": window_start.isoformat(),
                                           "window_end": window_end.isoformat(), "reason": "replay"})
        return self.api.wait([(dag_id, run_id)], progress=lambda dag, message: None)[dag_id]["state"]

    def follow_training(self, run_id: str) -> str:
        dag_id = training_dag_id(self.cfg.name)
        if self.training_state(run_id) is None:
            return "not started"
        return self.api.wait([(dag_id, run_id)], progress=lambda dag, message: None)[dag_id]["state"]

    def training_state(self, run_id: str) -> str | None:
        response = self.api.get(f"/dags/{training_dag_id(self.cfg.name)}/dagRuns/{run_id}")
        return response.json()["state"] if response.status_code == 200 else None
