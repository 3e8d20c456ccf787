import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from pipelines.prediction_store import (
    SEGMENTS,
    KnownCategories,
    ServedBatch,
    decode_segment,
    encode_segment,
    find_request,
    logged_rows,
    read_log,
    read_segments,
)
from pipelines.serving.prediction_log import PredictionLog, now
from tests.waiting import wait_for


def batch(request_id: str, rows: int, model_version: str = "3") -> ServedBatch:
    return ServedBatch((request_id,), now(), "m", model_version, "champion",
                       {"x": np.arange(rows, dtype=np.float64), "c": np.array(["a"] * rows, dtype=object)},
                       np.arange(rows) / rows)


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request, tmp_path):
    return f"sqlite:///{tmp_path / 'p.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def test_every_row_from_concurrent_requests_is_written(log_url):
    log = PredictionLog(log_url, max_segment_rows=50, flush_seconds=0.01)

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
    rows = read_log(log_url)
    assert logged_rows(log_url) == len(rows) == served == log.rows_written and log.backlog == 0
    one = rows[rows.request_id == "w3-r6"]
    assert one.row_index.tolist() == list(range(7)) and set(one.model_version) == {"3"}
    assert one.x.tolist() == [float(i) for i in range(7)] and set(one.c) == {"a"}
    log.engine.dispose()


def test_features_are_stored_typed_as_scored(log_url):
    log = PredictionLog(log_url, flush_seconds=0.05)
    log.submit(ServedBatch(("a",), now(), "m", "1", "champion",
                           {"x": np.array([1.5, np.nan]), "c": np.array(['say "hi", 100%', None], dtype=object)},
                           np.array([0.1, 0.2])))
    log.submit(ServedBatch(("b",), now(), "other", "2", "champion", {"y": np.array([3.0])}, np.array([7.0])))
    log.submit(ServedBatch(("c",), now(), "m", "1", "shadow",
                           {"x": np.array([2.0]), "c": np.array(["a"], dtype=object)}, np.array([0.3])))
    log.close()
    m = read_log(log_url, "m")
    assert m.x.dtype == np.float64 and m.prediction.dtype == np.float64
    assert [(r.request_id, r.row_index, r.route, r.c, r.prediction) for r in m.itertuples()] == [
        ("a", 0, "champion", 'say "hi", 100%', 0.1), ("a", 1, "champion", None, 0.2), ("c", 0, "shadow", "a", 0.3)]
    assert np.isnan(m.x[1]) and "y" not in m.columns
    other = read_log(log_url, "other")
    assert other[["request_id", "model_version", "y", "prediction"]].values.tolist() == [["b", "2", 3.0, 7.0]]
    log.engine.dispose()


def test_text_coded_by_the_scorer_is_stored_as_the_text_it_codes(tmp_path):
    """Text features that come with the scorer's codes are stored from them: known values, unknown ones (added
    to the dictionary) and missing ones read back as sent, whatever the mix of coded and uncoded requests in
    a segment; an unknown value UTF-8 cannot hold sets aside its request alone."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    known, other = KnownCategories(pd.Index(["a", "b", "c"], dtype=object)), KnownCategories(pd.Index(["b"]))

    def coded(request_id: str, texts: list, categories: KnownCategories | None = known) -> ServedBatch:
        values = np.array(texts, dtype=object)
        return ServedBatch((request_id,), now(), "m", "1", "champion", {"x": np.zeros(len(texts)), "c": values},
                           np.zeros(len(texts)), None, {"c": categories.codes(values)} if categories else None)

    sent = {"one": ["a", "never seen", None, "c", "never seen", "b"], "two": ["c", "été", None],
            "three": ["b", "a"], "four": ["a", "z"], "other": ["b", "z", None], "plain": ["b", "z", None]}
    for segment in (["one", "two", "three"],  # all coded against the same categories
                    ["four", "other", "plain"]):  # coded against other categories, and uncoded
        log = PredictionLog(url, flush_seconds=5)  # one flush: one segment
        for request_id in segment:
            categories = {"other": other, "plain": None}.get(request_id, known)
            log.submit(coded(request_id, sent[request_id], categories))
        log.close()
        log.engine.dispose()
    rows = read_log(url)
    for request_id, texts in sent.items():
        assert rows[rows.request_id == request_id].c.tolist() == texts, request_id

    for rows in (3, 3000):  # a request's few rows, and past a thousand (two ways of looking them up)
        texts = np.array(["c", "z", None] * (rows // 3), dtype=object)
        assert known.codes(texts).codes.tolist() == [2, -1, -1] * (rows // 3)
    encoded = encode_segment([coded("one", ["a", "b"]), coded("two", ["c", None, "d"])])
    stored = decode_segment(encoded["data"])["c"]
    assert stored.type.index_type == pa.int32() and stored.to_pylist() == ["a", "b", "c", None, "d"]
    with pytest.raises(UnicodeEncodeError):  # the writer then sets the request aside (the test below)
        encode_segment([coded("bad", ["a", "bad \ud800"])])


def test_a_row_that_cannot_be_stored_is_set_aside_never_its_batch_mates(log_url, tmp_path):
    """A lone surrogate (text UTF-8 cannot hold) and a version longer than its column (PostgreSQL refuses it)
    are set aside with their reason; the requests written with them are stored, and the writer keeps
    writing."""
    set_aside = tmp_path / "set_aside.jsonl"
    log = PredictionLog(log_url, max_segment_rows=1000, flush_seconds=0.2, set_aside=set_aside)
    surrogate = ServedBatch(("surrogate",), now(), "m", "3", "champion",
                            {"x": np.array([1.0]), "c": np.array(["bad \ud800"], dtype=object)}, np.array([0.5]))
    too_long = batch("long", 2, model_version="9" * 40)
    for item in (batch("before", 3), surrogate, batch("between", 2), too_long, batch("after", 4)):
        log.submit(item)
    log.close()
    refused = log_url.startswith("postgresql")  # SQLite does not check a column's length
    assert log.rows_set_aside == 1 + (2 if refused else 0) and log.backlog == 0
    assert log.rows_written == 9 + (0 if refused else 2)
    stored = set(read_log(log_url).request_id)
    assert {"before", "between", "after"} <= stored and "surrogate" not in stored
    kept = [orjson.loads(line) for line in set_aside.read_bytes().splitlines()]
    assert kept[0]["request_id"] == "surrogate" and kept[0]["reason"].startswith("cannot encode")
    assert kept[0]["features"]["c"] == [repr("bad \ud800")] and kept[0]["predictions"] == [0.5]
    if refused:
        assert kept[1]["request_id"] == "long" and "refused by the database" in kept[1]["reason"]
    log.engine.dispose()


def test_a_micro_batch_is_one_entry_and_only_its_request_at_fault_is_set_aside(tmp_path):
    """Requests scored together arrive as one batch; a value one of them sent that cannot be stored sets that
    request aside, never the others of its batch."""
    set_aside = tmp_path / "set_aside.jsonl"
    log = PredictionLog(f"sqlite:///{tmp_path / 'p.db'}", flush_seconds=3600, set_aside=set_aside)
    texts = np.array(["a", "b", "bad \ud800", "c", "d", "e"], dtype=object)
    together = ServedBatch(("one", "bad", "two"), now(), "m", "1", "champion",
                           {"x": np.arange(6.0), "c": texts}, np.arange(6) / 10, None, None, (2, 1, 3))
    assert [(b.request_ids, b.features["c"].tolist(), b.predictions.tolist()) for b in together.by_request()] == [
        (("one",), ["a", "b"], [0.0, 0.1]), (("bad",), ["bad \ud800"], [0.2]),
        (("two",), ["c", "d", "e"], [0.3, 0.4, 0.5])]
    log.submit(together)
    log.close()
    assert (log.rows_written, log.rows_set_aside, log.backlog) == (5, 1, 0)
    rows = read_log(log.url)
    assert list(zip(rows.request_id, rows.row_index, rows.c, rows.x, strict=True)) == [
        ("one", 0, "a", 0.0), ("one", 1, "b", 1.0), ("two", 0, "c", 3.0), ("two", 1, "d", 4.0), ("two", 2, "e", 5.0)]
    kept = [orjson.loads(line) for line in set_aside.read_bytes().splitlines()]
    assert [(k["request_id"], k["rows"]) for k in kept] == [("bad", 1)]
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


def test_a_write_committed_whose_answer_was_lost_is_stored_once(log_url, tmp_path):
    """The connection is cut after the database committed a write: the writer sees a transient error and
    spills the rows, then writes the spill when the store answers. The rows are stored and counted once."""
    log = PredictionLog(log_url, flush_seconds=0.01, retry_seconds=0.05, spill_dir=tmp_path / "spill")
    insert, cuts = log._insert, []

    def committed_then_cut(segments):
        insert(segments)
        if not cuts:
            cuts.append(len(segments))
            raise sa.exc.OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    log._insert = committed_then_cut
    log.submit(batch("cut", 4))
    wait_for(lambda: not log.backlog, 20, "the cut batch written")
    log.submit(batch("after", 2))
    log.close()
    assert cuts == [1] and log.spilled_rows == 0 and not list((tmp_path / "spill").glob("spill-*"))
    assert (log.rows_written, log.rows_set_aside, logged_rows(log_url)) == (6, 0, 6)
    assert read_log(log_url).request_id.tolist() == ["cut"] * 4 + ["after"] * 2
    log.engine.dispose()


def test_a_resent_request_id_is_logged_again_not_wedged(log_url):
    log = PredictionLog(log_url, flush_seconds=0.01)
    log.submit(batch("same", 2))
    log.submit(batch("same", 2))
    log.close()
    assert (log.rows_written, log.rows_set_aside, log.backlog) == (4, 0, 0)
    assert read_log(log_url).row_index.tolist() == [0, 1, 0, 1]
    log.engine.dispose()


def test_a_request_is_found_by_its_id_on_every_route_that_scored_it(log_url):
    log = PredictionLog(log_url, flush_seconds=0.01)
    for n in range(30):
        log.submit(batch(f"r{n}", 3))
        if n % 10 == 0:
            log.close()  # a segment per flush: the request is in one of several segments
            log.engine.dispose()
            log = PredictionLog(log_url, flush_seconds=0.01)
    shadow = batch("r12", 3, model_version="4")
    log.submit(ServedBatch(shadow.request_ids, shadow.served_at, "m", "4", "shadow", shadow.features,
                           shadow.predictions))
    log.close()
    log.engine.dispose()
    found = find_request(log_url, "r12")
    assert sorted(zip(found.route, found.model_version, found.row_index, strict=True)) == [
        ("champion", "3", 0), ("champion", "3", 1), ("champion", "3", 2),
        ("shadow", "4", 0), ("shadow", "4", 1), ("shadow", "4", 2)]
    assert set(found.request_id) == {"r12"} and found.c.tolist() == ["a"] * 6
    assert find_request(log_url, "r1").row_index.tolist() == [0, 1, 2]  # not r10..r19
    assert find_request(log_url, "nobody").empty


def test_a_window_reads_the_rows_of_its_event_time_only(log_url):
    """Rows are cut on event time (serving time for rows sent without one), row by row inside a segment
    that straddles the window's ends; other models and routes are not read."""
    log = PredictionLog(log_url, flush_seconds=5)  # everything below goes into one flush
    day = datetime(2013, 7, 1, tzinfo=UTC)
    hours = [day - timedelta(hours=1), day, day + timedelta(hours=23), day + timedelta(hours=24), None]
    log.submit(ServedBatch(("timed",), now(), "m", "1", "champion", {"x": np.arange(5.0)}, np.zeros(5), hours))
    log.submit(ServedBatch(("shadow",), now(), "m", "2", "shadow", {"x": np.arange(5.0)}, np.zeros(5), hours))
    log.submit(ServedBatch(("other",), now(), "n", "1", "champion", {"x": np.arange(5.0)}, np.zeros(5), hours))
    log.close()
    engine = sa.create_engine(log_url)
    tables = list(read_segments(engine, "m", day, day + timedelta(days=1), route="champion"))
    assert sum(t.num_rows for t in tables) == 2
    window = pd.concat([t.to_pandas() for t in tables])
    assert window.x.tolist() == [1.0, 2.0] and set(window.request_id) == {"timed"}
    served_today = list(read_segments(engine, "m", now() - timedelta(minutes=5), now() + timedelta(minutes=5),
                                      route="champion"))
    assert [t.to_pandas().x.tolist() for t in served_today] == [[4.0]]  # sent without an event time
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(SEGMENTS)).scalar_one() == 3
    engine.dispose()
    log.engine.dispose()


def test_a_row_per_row_log_is_moved_into_segments_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = sa.create_engine(url)
    with old.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE prediction_log (id INTEGER PRIMARY KEY, request_id VARCHAR(64) NOT NULL, row_index INTEGER "
            "NOT NULL, served_at DATETIME NOT NULL, event_time DATETIME, model_name VARCHAR(200) NOT NULL, "
            "model_version VARCHAR(32) NOT NULL, route VARCHAR(16) NOT NULL, features TEXT NOT NULL, "
            "prediction FLOAT NOT NULL)")
        connection.exec_driver_sql(
            "INSERT INTO prediction_log VALUES "
            "(1, 'old', 0, '2026-01-01 10:00:00.000000', '2013-07-01 17:00:00.000000', 'm', '1', 'champion', "
            "'{\"x\": 1.5, \"c\": \"JFK\"}', 0.5), "
            "(2, 'old', 1, '2026-01-01 10:00:00.000000', NULL, 'm', '1', 'champion', "
            "'{\"x\": null, \"c\": null}', 0.25)")
    old.dispose()
    log = PredictionLog(url, flush_seconds=0.01)
    log.submit(batch("new", 1))
    log.close()
    rows = read_log(url)
    assert rows.request_id.tolist() == ["old", "old", "new"] and rows.row_index.tolist() == [0, 1, 0]
    assert rows.x[0] == 1.5 and np.isnan(rows.x[1]) and rows.c.tolist() == ["JFK", None, "a"]
    assert str(rows.event_time[0]) == "2013-07-01 17:00:00+00:00" and pd.isna(rows.event_time[1])
    assert sa.inspect(log.engine).has_table("prediction_log_migrated")
    assert not sa.inspect(log.engine).has_table("prediction_log")
    assert logged_rows(url) == 3  # a second open moves nothing again
    log.engine.dispose()


def test_segments_stored_without_an_id_get_the_column_and_keep_their_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    engine = sa.create_engine(url)
    without_id = sa.Table(SEGMENTS.name, sa.MetaData(),
                          *(column.copy() for column in SEGMENTS.columns if column.name != "segment_id"))
    without_id.create(engine)
    segment = encode_segment([batch("old", 3)])
    with engine.begin() as connection:
        connection.execute(without_id.insert(), {k: v for k, v in segment.items() if k != "segment_id"})
    engine.dispose()
    log = PredictionLog(url, flush_seconds=0.01)
    log.submit(batch("new", 2))
    log.close()
    assert read_log(url).request_id.tolist() == ["old"] * 3 + ["new"] * 2
    indexes = {index["name"]: index["unique"] for index in sa.inspect(log.engine).get_indexes(SEGMENTS.name)}
    assert indexes["ux_prediction_segments_segment_id"] == 1
    log.engine.dispose()
