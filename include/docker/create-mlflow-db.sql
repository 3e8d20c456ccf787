CREATE DATABASE mlflow OWNER airflow;
CREATE DATABASE monitoring OWNER airflow;
