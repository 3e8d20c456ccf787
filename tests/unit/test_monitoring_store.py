"""The monitoring time series on SQLite and on PostgreSQL: a re-run window replaces its row."""

import json
from datetime import date

import pytest

from pipelines import monitoring_store as store


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    return f"sqlite:///{tmp_path / 'm.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def row(window_start: date, window_end: date, decision: str, drift_share: float) -> dict:
    return {"model_name": "m", "window_start": window_start, "window_end": window_end, "rows": 900,
            "drift_share": drift_share, "labelled_rows": 0, "pending_labels": 900, "breached": decision != "ok",
            "cleared": decision == "ok", "decision": decision, "reason": "r", "details": {"drift_scores": {"a": 0.2}}}


def test_windows_are_saved_replaced_and_read_in_order(url):
    engine = store.engine(url)
    with engine.begin() as connection:
        store.save_window(connection, row(date(2013, 7, 8), date(2013, 7, 15), "hold", 0.4))
        store.save_window(connection, row(date(2013, 7, 1), date(2013, 7, 8), "ok", 0.1))
        store.save_window(connection, row(date(2013, 7, 8), date(2013, 7, 15), "retrain", 0.5))  # a re-run
    with engine.connect() as connection:
        windows = store.load_windows(connection, "m")
        later = store.load_windows(connection, "m", since=date(2013, 7, 10))
    engine.dispose()
    assert [(w["window_end"], w["decision"], w["drift_share"]) for w in windows] == [
        (date(2013, 7, 8), "ok", 0.1), (date(2013, 7, 15), "retrain", 0.5)]
    assert len(later) == 1 and json.loads(later[0]["details"]) == {"drift_scores": {"a": 0.2}}
