import threading

import numpy as np
import orjson
import pytest
import sqlalchemy as sa

from pipelines.serving.prediction_log import PREDICTIONS, PredictionLog, ServedBatch, now


def batch(request_id: str, rows: int) -> ServedBatch:
    return ServedBatch(request_id, now(), "m", "3", "champion",
                       {"x": np.arange(rows, dtype=np.float64), "c": np.array(["a"] * rows, dtype=object)},
                       np.arange(rows) / rows)


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request, tmp_path):
    return f"sqlite:///{tmp_path / 'p.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def test_every_row_from_concurrent_requests_is_written(log_url):
    log = PredictionLog(log_url, max_batch_rows=50, flush_seconds=0.01)

    def client(worker: int):
        for request in range(100):
            log.submit(batch(f"w{worker}-r{request}", 1 + request % 7))

    threads = [threading.Thread(target=client, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    served = 8 * sum(1 + r % 7 for r in range(100))
    with log.engine.connect() as connection:
        written = connection.execute(sa.select(sa.func.count()).select_from(PREDICTIONS)).scalar_one()
        one = connection.execute(sa.select(PREDICTIONS).where(PREDICTIONS.c.request_id == "w3-r6")
                                 .order_by(PREDICTIONS.c.row_index)).all()
    assert written == served == log.rows_written and log.backlog == 0
    assert [r.row_index for r in one] == list(range(7)) and one[0].model_version == "3"
    assert '"c":"a"' in one[0].features
    log.engine.dispose()


def test_a_row_that_cannot_be_stored_is_set_aside_never_its_batch_mates(log_url, tmp_path):
    """A lone surrogate (JSON-encodable by no encoder) and a request id longer than the column (PostgreSQL
    refuses it) are set aside with their reason; the requests written with them are stored, and the writer
    keeps writing."""
    set_aside = tmp_path / "set_aside.jsonl"
    log = PredictionLog(log_url, max_batch_rows=1000, flush_seconds=0.2, set_aside=set_aside)
    surrogate = ServedBatch("surrogate", now(), "m", "3", "champion",
                            {"x": np.array([1.0]), "c": np.array(["bad \ud800"], dtype=object)}, np.array([0.5]))
    too_long = batch("r" * 100, 2)
    for item in (batch("before", 3), surrogate, batch("between", 2), too_long, batch("after", 4)):
        log.submit(item)
    log.close()
    long_id_refused = log_url.startswith("postgresql")  # SQLite does not check a column's length
    assert log.rows_set_aside == 1 + (2 if long_id_refused else 0) and log.backlog == 0
    assert log.rows_written == 9 + (0 if long_id_refused else 2)
    with log.engine.connect() as connection:
        stored = set(connection.execute(sa.select(PREDICTIONS.c.request_id).distinct()).scalars())
    assert {"before", "between", "after"} <= stored and "surrogate" not in stored
    kept = [orjson.loads(line) for line in set_aside.read_bytes().splitlines()]
    assert kept[0]["request_id"] == "surrogate" and kept[0]["reason"].startswith("cannot encode")
    assert kept[0]["features"]["c"] == [repr("bad \ud800")] and kept[0]["predictions"] == [0.5]
    if long_id_refused:
        assert kept[1]["request_id"] == "r" * 100 and "refused by the database" in kept[1]["reason"]
    log.engine.dispose()


def test_a_locked_database_delays_rows_but_loses_none(tmp_path):
    path = tmp_path / "p.db"
    log = PredictionLog(f"sqlite:///{path}", flush_seconds=0.01)
    blocker = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    with blocker.connect() as connection:
        connection.exec_driver_sql("BEGIN EXCLUSIVE")
        log.submit(batch("held", 5))
        threading.Event().wait(0.5)
        assert log.backlog == 5  # still pending while the database is locked
        connection.exec_driver_sql("COMMIT")
    log.close()
    assert log.rows_written == 5 and log.backlog == 0


def test_a_resent_request_id_is_logged_again_not_wedged(log_url):
    log = PredictionLog(log_url, flush_seconds=0.01)
    log.submit(batch("same", 2))
    log.submit(batch("same", 2))
    log.close()
    assert (log.rows_written, log.rows_set_aside, log.backlog) == (4, 0, 0)
    log.engine.dispose()


def test_a_log_from_an_earlier_release_gains_the_new_columns(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = sa.create_engine(url)
    with old.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE prediction_log (id INTEGER PRIMARY KEY, request_id VARCHAR(64) NOT NULL, row_index INTEGER "
            "NOT NULL, served_at DATETIME NOT NULL, model_name VARCHAR(200) NOT NULL, model_version VARCHAR(32) "
            "NOT NULL, route VARCHAR(16) NOT NULL, features TEXT NOT NULL, prediction FLOAT NOT NULL)")
        connection.exec_driver_sql("INSERT INTO prediction_log VALUES (1, 'old', 0, '2026-01-01', 'm', '1', "
                                   "'champion', '{}', 0.5)")
    log = PredictionLog(url, flush_seconds=0.01)
    log.submit(batch("new", 1))
    log.close()
    with log.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(PREDICTIONS)).scalar_one() == 2
    assert "event_time" in {c["name"] for c in sa.inspect(log.engine).get_columns("prediction_log")}


def test_each_row_is_logged_with_its_own_features_and_prediction(log_url):
    log = PredictionLog(log_url, flush_seconds=0.05)
    log.submit(ServedBatch("a", now(), "m", "1", "champion",
                           {"x": np.array([1.5, np.nan]), "c": np.array(['say "hi", 100%', None], dtype=object)},
                           np.array([0.1, 0.2])))
    log.submit(ServedBatch("b", now(), "other", "2", "champion", {"y": np.array([3.0])}, np.array([7.0])))
    log.submit(ServedBatch("c", now(), "m", "1", "shadow", {"x": np.array([2.0]), "c": np.array(["a"], dtype=object)},
                           np.array([0.3])))
    log.close()
    with log.engine.connect() as connection:
        rows = connection.execute(sa.select(PREDICTIONS).order_by(PREDICTIONS.c.id)).all()
    logged = [(r.request_id, r.row_index, r.model_name, r.route, orjson.loads(r.features), r.prediction) for r in rows]
    assert logged == [
        ("a", 0, "m", "champion", {"x": 1.5, "c": 'say "hi", 100%'}, 0.1),
        ("a", 1, "m", "champion", {"x": None, "c": None}, 0.2),
        ("b", 0, "other", "champion", {"y": 3.0}, 7.0),
        ("c", 0, "m", "shadow", {"x": 2.0, "c": "a"}, 0.3),
    ]
    log.engine.dispose()


def test_a_large_batch_is_written_row_for_row(log_url):
    log = PredictionLog(log_url, flush_seconds=0.01)
    log.submit(batch("big", 250))  # more rows than one INSERT takes
    log.close()
    with log.engine.connect() as connection:
        rows = connection.execute(sa.select(PREDICTIONS.c.row_index, PREDICTIONS.c.features,
                                            PREDICTIONS.c.prediction).order_by(PREDICTIONS.c.id)).all()
    assert [(r.row_index, orjson.loads(r.features)["x"], r.prediction) for r in rows] == \
        [(i, float(i), i / 250) for i in range(250)]
    log.engine.dispose()
