"""Pure-Python steps of the continuous training and monitoring loop.

Importable and testable without Airflow. Keep this package's import light: DAG files import
``pipelines.config`` at parse time.
"""
