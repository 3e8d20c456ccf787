from datetime import date

import pandas as pd
import pytest

from pipelines.config import FeedConfig
from pipelines.ingest import LandingFileError, ingest_feed, landed_files

FEED = FeedConfig(name="events", key=["id"], columns={"id": "int", "value": "float", "kind": "string",
                                                       "at": "datetime"})


def land(folder, day, rows, suffix="csv"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{day}.{suffix}"
    frame = pd.DataFrame(rows)
    frame.to_csv(path, index=False) if suffix == "csv" else frame.to_parquet(path, index=False)
    return path


ROW = {"id": 1, "value": 1.5, "kind": "a", "at": "2013-01-01T10:00:00Z"}


def test_typed_deduplicated_partition_from_csv_and_parquet(tmp_path):
    land(tmp_path / "in", "2013-01-01", [ROW, {**ROW, "id": 2}])
    land(tmp_path / "in", "2013-01-02", [{**ROW, "value": 9.0}, {**ROW, "id": 3}], suffix="parquet")
    land(tmp_path / "in", "2013-01-05", [{**ROW, "id": 99}])  # outside the interval
    feed = FEED.model_copy(update={"max_duplicate_share": 0.5})
    batch = ingest_feed(feed, tmp_path / "in", date(2013, 1, 1), date(2013, 1, 3), tmp_path / "out.parquet")
    assert (batch.files, batch.rows_read, batch.rows, batch.duplicates_dropped) == (2, 4, 3, 1)
    frame = pd.read_parquet(batch.path)
    assert sorted(frame["id"]) == [1, 2, 3]
    assert frame.loc[frame["id"] == 1, "value"].item() == 9.0  # the later file wins
    assert str(frame["at"].dtype) == "datetime64[ns, UTC]" and str(frame["id"].dtype) == "Int64"


def test_only_day_files_in_the_interval_are_picked(tmp_path):
    for name in ["2013-01-01.csv", "2013-01-31.parquet", "2013-02-01.csv", "notes.txt", "2013-1-5.csv"]:
        (tmp_path / name).write_text("x")
    assert [p.name for p in landed_files(tmp_path, date(2013, 1, 1), date(2013, 2, 1))] == [
        "2013-01-01.csv", "2013-01-31.parquet"]


def test_empty_file_is_named_and_kept(tmp_path):
    path = tmp_path / "in" / "2013-01-01.csv"
    path.parent.mkdir()
    path.write_text("")
    with pytest.raises(LandingFileError, match=r"2013-01-01.csv: file is empty"):
        ingest_feed(FEED, tmp_path / "in", date(2013, 1, 1), date(2013, 1, 2), tmp_path / "out.parquet")
    assert path.exists() and not (tmp_path / "out.parquet").exists()


def test_header_only_file_is_named(tmp_path):
    land(tmp_path / "in", "2013-01-01", [ROW]).write_text("id,value,kind,at\n")
    with pytest.raises(LandingFileError, match="header but no rows"):
        ingest_feed(FEED, tmp_path / "in", date(2013, 1, 1), date(2013, 1, 2), tmp_path / "out.parquet")


def test_unreadable_parquet_is_named(tmp_path):
    path = tmp_path / "in" / "2013-01-01.parquet"
    path.parent.mkdir()
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(LandingFileError, match="2013-01-01.parquet: unreadable parquet"):
        ingest_feed(FEED, tmp_path / "in", date(2013, 1, 1), date(2013, 1, 2), tmp_path / "out.parquet")
    assert path.exists()


def test_missing_column_and_bad_type_are_named(tmp_path):
    land(tmp_path / "a", "2013-01-01", [{k: v for k, v in ROW.items() if k != "kind"}])
    with pytest.raises(LandingFileError, match=r"missing columns \['kind'\]"):
        ingest_feed(FEED, tmp_path / "a", date(2013, 1, 1), date(2013, 1, 2), tmp_path / "o.parquet")
    land(tmp_path / "b", "2013-01-01", [{**ROW, "value": "lots"}])
    with pytest.raises(LandingFileError, match="column 'value' is not float"):
        ingest_feed(FEED, tmp_path / "b", date(2013, 1, 1), date(2013, 1, 2), tmp_path / "o.parquet")


def test_no_files_for_the_interval_is_a_clear_error(tmp_path):
    with pytest.raises(LandingFileError, match=r"no landed files for feed 'events' in \[2013-01-01, 2013-01-02\)"):
        ingest_feed(FEED, tmp_path, date(2013, 1, 1), date(2013, 1, 2), tmp_path / "o.parquet")


def test_missing_key_value_is_named(tmp_path):
    land(tmp_path / "in", "2013-01-01", [ROW, {**ROW, "id": None}])
    with pytest.raises(LandingFileError, match=r"key columns \['id'\] have missing values"):
        ingest_feed(FEED, tmp_path / "in", date(2013, 1, 1), date(2013, 1, 2), tmp_path / "o.parquet")


def test_rows_repeating_a_key_beyond_the_bound_are_refused_naming_the_files(tmp_path):
    rows = [{**ROW, "id": n} for n in range(10)]
    land(tmp_path / "in", "2013-01-01", rows)
    land(tmp_path / "in", "2013-01-02", rows[:3])  # 3 of 13 rows repeat a key: 23% > 10%
    with pytest.raises(LandingFileError, match=r"3 of 13 rows \(23.1%\) repeat a key \['id'\].*2013-01-01.csv \(3\)"):
        ingest_feed(FEED, tmp_path / "in", date(2013, 1, 1), date(2013, 1, 3), tmp_path / "out.parquet")


@pytest.mark.parametrize(("content", "problem"), [
    (b"id,value,kind,at\n1,1.5,a,2013-01-01T10:00:00Z\n2,2.5", "Expected 4 columns, got 2: 2,2.5"),
    (b"id,value,kind,at\n1,1.5,a,2013-01-01T10:00:00Z,extra\n", "Expected 4 columns, got 5"),
    ("id,value,kind,at\n1,1.5,caf\xe9,2013-01-01T10:00:00Z\n".encode("latin-1"), "['kind'] are not UTF-8 text"),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "not a well-formed CSV file"),
    (b"id,id,kind,at\n1,1,a,2013-01-01T10:00:00Z\n", "columns ['id'] appear more than once"),
    (b"id;value;kind;at\n1;1,5;a;2013-01-01T10:00:00Z\n", "the header is separated by ';', not by commas"),
], ids=["last line cut", "too many fields", "latin-1", "not csv", "repeated column", "semicolons"])
def test_malformed_csv_is_refused_not_read_with_gaps(tmp_path, content, problem):
    path = tmp_path / "in" / "2013-01-01.csv"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(LandingFileError) as refused:
        ingest_feed(FEED, tmp_path / "in", date(2013, 1, 1), date(2013, 1, 2), tmp_path / "out.parquet")
    assert str(path) in str(refused.value) and problem in str(refused.value)
    assert path.read_bytes() == content and not (tmp_path / "out.parquet").exists()


def test_a_symbolic_link_in_the_landing_zone_is_refused_not_followed(tmp_path):
    outside = land(tmp_path / "elsewhere", "2013-01-01", [ROW])
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "2013-01-01.csv").symlink_to(outside)
    with pytest.raises(LandingFileError, match="2013-01-01.csv: not a regular file"):
        ingest_feed(FEED, tmp_path / "in", date(2013, 1, 1), date(2013, 1, 2), tmp_path / "out.parquet")


def test_numbers_written_as_text_are_read_by_the_declared_type(tmp_path):
    """A spreadsheet's "1,234" (quoted in the CSV) and a Parquet file's "12.5" strings are numbers; a decimal
    comma ("12,5") is not read as a grouping one, and is named."""
    feed = FeedConfig(name="sales", columns={"area": "int", "price": "float"})
    land(tmp_path / "in", "2013-01-01", [{"area": "11,622", "price": "1,234.5"}, {"area": "950", "price": None}])
    land(tmp_path / "in", "2013-01-02", [{"area": " 7 ", "price": "12.5"}], suffix="parquet")
    frame = ingest_feed(feed, tmp_path / "in", date(2013, 1, 1), date(2013, 1, 3), tmp_path / "out.parquet").frame
    assert frame["area"].tolist() == [11622, 950, 7] and str(frame["area"].dtype) == "Int64"
    assert frame["price"].tolist()[0::2] == [1234.5, 12.5] and frame["price"].isna().tolist()[1]
    land(tmp_path / "bad", "2013-01-01", [{"area": "1", "price": "12,5"}])
    with pytest.raises(LandingFileError, match=r"2013-01-01.csv: column 'price' is not float .*\"12,5\""):
        ingest_feed(feed, tmp_path / "bad", date(2013, 1, 1), date(2013, 1, 2), tmp_path / "bad.parquet")


def test_a_text_column_keeps_codes_written_with_a_leading_zero(tmp_path):
    """A zip code "02134" in a CSV is text as written, never the number 2134, whatever the reader would infer."""
    feed = FeedConfig(name="orders", columns={"zip": "string", "amount": "float"})
    land(tmp_path / "in", "2013-01-01", [{"zip": "02134", "amount": 3.5}, {"zip": "10001", "amount": 4.0},
                                         {"zip": None, "amount": 1.0}])
    frame = ingest_feed(feed, tmp_path / "in", date(2013, 1, 1), date(2013, 1, 2), tmp_path / "out.parquet").frame
    assert frame["zip"].tolist()[:2] == ["02134", "10001"] and frame["zip"].isna().tolist()[2]
