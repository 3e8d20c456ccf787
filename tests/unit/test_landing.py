"""`mlops-loop land`: a batch is read and checked as ingest reads a landed file before anything is written, and
a day already landed is replaced only when asked, the replaced file kept where ingest never reads it."""

from datetime import date

import pandas as pd
import pytest
from model_state import state_with_model

from pipelines.cli import land, main
from pipelines.config import StatePaths, load_model_config
from pipelines.ingest import LandingFileError, ingest_feed

CONFIG = """\
name: events
task: binary
feeds:
  - name: events
    key: [id]
    columns: {id: int, value: float, kind: string, at: datetime, label: int}
features:
  numeric: [value]
  categorical: [kind]
  target: label
  event_time: at
start_date: 2013-01-01
"""
HEADER = "id,value,kind,at,label"
DAYS = ["2013-01-01", "2013-01-02", "2013-01-03"]


@pytest.fixture()
def state(tmp_path, monkeypatch) -> StatePaths:
    """A model `events` (one feed, an event time) in this test's include folder and state folder, no stack."""
    monkeypatch.delenv("AIRFLOW_ADMIN_PASSWORD", raising=False)
    return state_with_model(tmp_path, monkeypatch, "events", CONFIG)


def batch(tmp_path, lines: list[str], name: str = "batch.csv", header: str = HEADER):
    path = tmp_path / name
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def rows(first_id: int, value: float, days=DAYS) -> list[str]:
    return [f"{first_id + n},{value},a,{day}T10:00:00Z,{n % 2}" for n, day in enumerate(days)]


def files_under(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("header", "lines", "columns", "cause"), [
    (HEADER + ",extra", [f"{line},x" for line in rows(1, 1.5)], ("extra",), "not in feed 'events'"),
    ("id,value,at,label", [line.replace(",a,", ",") for line in rows(1, 1.5)], ("kind",), "missing columns"),
    (HEADER.replace(",", ";"), [line.replace(",", ";") for line in rows(1, 1.5)], (), "separated by ';'"),
    (HEADER, [*rows(1, 1.5)[:2], "3,lots,a,2013-01-03T10:00:00Z,1"], ("value",), "column 'value' is not float"),
    (HEADER, [], (), "header but no rows"),
], ids=["extra column", "missing column", "semicolons", "wrong type", "header only"])
def test_a_bad_batch_is_refused_naming_file_column_and_cause_and_nothing_is_written(
        tmp_path, state, header, lines, columns, cause):
    path = batch(tmp_path, lines, header=header)
    with pytest.raises(LandingFileError) as refused:
        land("events", path, None)
    assert refused.value.file == path and refused.value.columns == columns and cause in refused.value.cause
    assert str(path) in str(refused.value)
    assert not state.root.exists()  # no landing folder, no temp file, no Asset event


def test_the_command_prints_the_refusal_and_exits_non_zero(tmp_path, state, capsys):
    path = batch(tmp_path, [*rows(1, 1.5)[:2], "3,lots,a,2013-01-03T10:00:00Z,1"])
    with pytest.raises(SystemExit) as exited:
        main(["land", "events", str(path)])
    assert exited.value.code.startswith(f"error: {path}: column 'value' is not float (")
    assert "Airflow" not in capsys.readouterr().out and not state.root.exists()


def test_a_good_batch_lands_one_typed_file_per_day_and_says_so(tmp_path, state, capsys):
    land("events", batch(tmp_path, rows(1, 1.5)), None)
    folder = state.landing("events", "events")
    assert sorted(p.name for p in folder.iterdir()) == [f"{day}.parquet" for day in DAYS]
    first = pd.read_parquet(folder / "2013-01-01.parquet")
    assert first.drop(columns="at").dtypes.astype(str).to_dict() == {"id": "Int64", "value": "float64",
                                                                     "kind": "string", "label": "Int64"}
    assert list(first.columns) == ["id", "value", "kind", "at", "label"] and str(first["at"].dt.tz) == "UTC"
    said = capsys.readouterr().out
    assert f"landed 3 file(s) under {folder}" in said and "Airflow not told (no stack login here)" in said


@pytest.mark.parametrize("suffix", ["csv.gz", "csv.bz2", "csv.xz", "csv.zip"])
def test_a_compressed_batch_lands_as_init_reads_it(tmp_path, state, suffix):
    """land takes the compressed CSV files init takes (pandas reads all four); a zip holds one file."""
    from pipelines.landing import read_table

    table = pd.read_csv(batch(tmp_path, rows(1, 1.5)))
    path = tmp_path / f"batch.{suffix}"
    table.to_csv(path, index=False, compression={"method": "zip", "archive_name": "batch.csv"}
                 if suffix.endswith("zip") else "infer")
    assert read_table(path)["id"].tolist() == [1, 2, 3]
    land("events", path, None)
    folder = state.landing("events", "events")
    assert sorted(p.name for p in folder.iterdir()) == [f"{day}.parquet" for day in DAYS]


def test_a_zip_of_several_files_is_refused_naming_it(tmp_path, state):
    import zipfile

    path = tmp_path / "batch.csv.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.csv", "\n".join([HEADER, *rows(1, 1.5)]))
        archive.writestr("b.csv", "\n".join([HEADER, *rows(9, 1.5)]))
    with pytest.raises(LandingFileError, match="a .zip must hold one file, this one holds 2") as refused:
        land("events", path, None)
    assert refused.value.file == path and not state.root.exists()


def test_a_missing_event_time_on_the_third_day_lands_no_day(tmp_path, state):
    path = batch(tmp_path, [*rows(1, 1.5)[:2], "3,1.5,a,,1"])
    with pytest.raises(LandingFileError) as refused:
        land("events", path, None)
    assert refused.value.file == path and refused.value.columns == ("at",)
    assert "1 rows have no event time" in str(refused.value) and not state.root.exists()


def test_landing_on_a_landed_day_is_refused_without_replace_and_nothing_is_written(tmp_path, state, capsys):
    land("events", batch(tmp_path, rows(1, 1.5, DAYS[2:]), name="third.csv"), None)
    folder = state.landing("events", "events")
    before = files_under(state.root)
    path = batch(tmp_path, rows(1, 2.5))  # three days, the third already landed with other rows
    capsys.readouterr()
    with pytest.raises(LandingFileError) as refused:
        land("events", path, None)
    assert refused.value.file == folder / "2013-01-03.parquet"
    assert refused.value.cause.startswith("day 2013-01-03 already landed with other rows: pass --replace")
    with pytest.raises(SystemExit, match=r"2013-01-03.parquet: day 2013-01-03 already landed.*pass --replace"):
        main(["land", "events", str(path)])
    assert files_under(state.root) == before  # neither the first two days nor a replaced/ folder
    assert "Airflow" not in capsys.readouterr().out


def test_replace_keeps_the_replaced_file_and_ingest_reads_only_the_new_one(tmp_path, state, capsys):
    land("events", batch(tmp_path, rows(1, 1.5)), None)
    folder = state.landing("events", "events")
    old = (folder / "2013-01-02.parquet").read_bytes()
    land("events", batch(tmp_path, rows(2, 2.5, DAYS[1:2]), name="fix.csv"), None, replace=True)
    [kept] = (folder / "replaced").iterdir()
    assert kept.name.startswith("2013-01-02.") and kept.suffix == ".parquet" and kept.read_bytes() == old
    assert pd.read_parquet(folder / "2013-01-02.parquet")["value"].tolist() == [2.5]
    assert f"replaced {folder / '2013-01-02.parquet'} (the old file is kept as {kept})" in capsys.readouterr().out
    feed = load_model_config("events").feeds[0]
    ingested = ingest_feed(feed, folder, date(2013, 1, 1), date(2013, 1, 4), tmp_path / "out.parquet")
    assert (ingested.files, ingested.rows_read) == (3, 3) and ingested.frame["value"].tolist() == [1.5, 2.5, 1.5]


def test_a_day_landed_as_csv_by_a_provider_is_occupied_too(tmp_path, state):
    folder = state.landing("events", "events")
    folder.mkdir(parents=True)
    provided = batch(folder, rows(1, 1.5, DAYS[:1]), name="2013-01-01.csv")
    with pytest.raises(LandingFileError, match="already landed"):
        land("events", batch(tmp_path, rows(1, 2.5, DAYS[:1])), None)
    land("events", batch(tmp_path, rows(1, 2.5, DAYS[:1])), None, replace=True)
    assert sorted(p.name for p in folder.iterdir()) == ["2013-01-01.parquet", "replaced"]
    [kept] = (folder / "replaced").iterdir()
    assert kept.suffix == ".csv" and not provided.exists()


def test_landing_the_same_rows_again_changes_nothing(tmp_path, state, capsys):
    path = batch(tmp_path, rows(1, 1.5))
    land("events", path, None)
    before = files_under(state.root)
    capsys.readouterr()
    land("events", path, None)
    assert files_under(state.root) == before
    assert "3 day(s) already landed with these rows: nothing written, Airflow not told" in capsys.readouterr().out


def test_replace_twice_keeps_both_replaced_files(tmp_path, state):
    for value in (1.5, 2.5, 3.5):
        land("events", batch(tmp_path, rows(1, value, DAYS[:1])), None, replace=True)
    kept = sorted((state.landing("events", "events") / "replaced").iterdir())
    assert [pd.read_parquet(p)["value"].item() for p in kept] == [1.5, 2.5]


def init_table(tmp_path, monkeypatch):
    """A state folder, an include folder and a 40-row table with an event time, written as CSV."""
    monkeypatch.delenv("AIRFLOW_ADMIN_PASSWORD", raising=False)
    table = pd.DataFrame({"x": range(40), "y": [0, 1] * 20,
                          "at": pd.date_range("2024-01-01", periods=40, freq="6h").strftime("%Y-%m-%d %H:%M")})
    data = tmp_path / "table.csv"
    table.to_csv(data, index=False)
    return StatePaths(root=tmp_path / "state"), tmp_path / "include", table, data


def test_init_again_on_a_changed_table_keeps_the_replaced_days(tmp_path, monkeypatch):
    from pipelines.cli import init

    state, include, table, data = init_table(tmp_path, monkeypatch)
    first = init(data, "y", "tbl", None, False, include=include, state=state)["landed"]
    folder = first[0].parent
    landed = files_under(folder)
    init(data, "y", "tbl", None, True, include=include, state=state)  # the same table: nothing to replace
    assert files_under(folder) == landed
    table.assign(x=table["x"] * 2).to_csv(data, index=False)
    init(data, "y", "tbl", None, True, include=include, state=state)
    kept = sorted((folder / "replaced").iterdir())
    assert [p.read_bytes() for p in kept] == list(landed.values())  # every replaced day kept
    assert pd.read_parquet(folder / "2024-01-01.parquet")["x"].tolist() == [0, 2, 4, 6]


def test_init_refuses_to_land_over_other_rows_without_force_and_writes_no_draft(tmp_path, monkeypatch):
    from pipelines.cli import init

    state, include, table, data = init_table(tmp_path, monkeypatch)
    folder = init(data, "y", "tbl", None, False, include=include, state=state)["landed"][0].parent
    for path in (include / "models" / "tbl.yaml", include / "expectations" / "tbl.json"):
        path.unlink()  # the drafts gone, the landed days still there
    landed = files_under(folder)
    table.assign(x=table["x"] * 2).to_csv(data, index=False)
    with pytest.raises(SystemExit, match=r"2024-01-01.parquet: day 2024-01-01 already landed.*--force"):
        init(data, "y", "tbl", None, False, include=include, state=state)
    assert files_under(folder) == landed and not any(include.rglob("*.*"))
