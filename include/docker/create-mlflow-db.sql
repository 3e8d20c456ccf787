CREATE DATABASE mlflow OWNER airflow;
CREATE DATABASE mlflow_auth OWNER airflow;
CREATE DATABASE monitoring OWNER airflow;
