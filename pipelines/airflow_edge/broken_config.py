"""A stand-in DAG for a model config that does not load: only that model's DAGs fail, naming the file and
the field, while every other model's DAGs load as usual. Imported by the DAG files at parse time."""

from __future__ import annotations

from pipelines.config import ConfigFile

DOC = """\
### `{name}`: the model config does not load

`{path}` has an error, so this model's DAGs cannot be built. Fix the file; the DAG processor picks it up
on its next pass. Every run of this DAG fails with the same message.

```
{error}
```
"""


def stand_in_dag(dag_id: str, entry: ConfigFile):
    from datetime import datetime

    from airflow.sdk import DAG, task
    from airflow.sdk.exceptions import AirflowFailException

    with DAG(dag_id=dag_id, description=f"BROKEN CONFIG {entry.path.name}: {entry.error.splitlines()[-1]}"[:200],
             doc_md=DOC.format(name=entry.name, path=entry.path, error=entry.error), schedule=None,
             start_date=datetime(2013, 1, 1), catchup=False, tags=["config-error", entry.name],
             default_args={"owner": "ml-platform", "retries": 0}) as dag:

        @task
        def config_error() -> None:
            raise AirflowFailException(entry.error)

        config_error()
    return dag
