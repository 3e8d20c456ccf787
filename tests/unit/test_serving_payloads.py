"""The MLflow scoring protocol's input formats and the 4xx answers for bad input, without a model server."""

import numpy as np
import orjson
import pandas as pd
import pytest

from pipelines.serving.models import LoadedModel
from pipelines.serving.protocol import (
    BadRequest,
    conform,
    conform_columns,
    parse_columns,
    parse_frame,
    read_request,
    records_decoder,
    split_event_time,
)

MODEL = LoadedModel("m", "1", "champion", None, ("x",), ("c",), {}, "now", task=None, classes=None)
EXPECTED = pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]})


@pytest.fixture(params=["at once", "in pieces"], autouse=True)
def reading(request, monkeypatch):
    """Every test reads its bodies at once, and again as a large body is read: in pieces, here one row each."""
    import pipelines.serving.protocol as protocol

    if request.param == "in pieces":
        monkeypatch.setattr(protocol, "LARGE_BODY_BYTES", 0)
        monkeypatch.setattr(protocol, "PIECE_ROWS", 1)
    return request.param


@pytest.mark.parametrize("payload", [
    {"dataframe_split": {"columns": ["x", "c"], "data": [[1.0, "a"], [2, "b"]]}},
    {"dataframe_records": [{"x": 1.0, "c": "a"}, {"x": 2, "c": "b"}]},
    {"instances": [{"x": 1.0, "c": "a"}, {"x": 2, "c": "b"}]},
    {"inputs": {"x": [1.0, 2], "c": ["a", "b"]}},
])
def test_every_mlflow_json_format(payload):
    frame = conform(parse_frame(orjson.dumps(payload), "application/json"), MODEL)
    pd.testing.assert_frame_equal(frame, EXPECTED, check_dtype=False)


def test_csv_body():
    frame = conform(parse_frame(b"x,c\n1,a\n2,b\n", "text/csv; charset=utf-8"), MODEL)
    pd.testing.assert_frame_equal(frame, EXPECTED, check_dtype=False)


@pytest.mark.parametrize("body,content_type,message", [
    (b"{not json", "application/json", "malformed JSON"),
    (b"[1, 2]", "application/json", "must be an object"),
    (b'{"foo": 1}', "application/json", "exactly one of"),
    (b"x", "application/xml", "unsupported content type"),
])
def test_malformed_bodies(body, content_type, message):
    with pytest.raises(BadRequest, match=message):
        parse_frame(body, content_type)


@pytest.mark.parametrize("frame,message", [
    (pd.DataFrame({"x": [1.0]}), r"missing columns \['c'\]"),
    (pd.DataFrame({"x": [1.0], "c": ["a"], "z": [0]}), r"unknown columns \['z'\]"),
    (pd.DataFrame({"x": ["many"], "c": ["a"]}), "column 'x' must be numeric"),
    (pd.DataFrame({"x": [], "c": []}), "no rows"),
])
def test_bad_columns_are_named(frame, message):
    with pytest.raises(BadRequest, match=message):
        conform(frame, MODEL)


def test_nan_tokens_as_mlflow_clients_send_them():
    frame = parse_frame(b'{"dataframe_split": {"columns": ["x", "c"], "data": [[NaN, "a"]]}}', "application/json")
    assert frame["x"].isna().all()


def test_records_with_missing_keys_and_values_to_convert():
    records = [{"x": "2.5", "c": 3}, {"c": "b", "x": True}, {"c": None}]
    frame = conform(parse_frame(orjson.dumps({"dataframe_records": records}), "application/json"), MODEL)
    assert frame["x"].tolist()[:2] == [2.5, 1.0] and pd.isna(frame["x"][2])
    assert frame["c"].tolist() == ["3", "b", None]


def test_records_with_the_same_number_of_different_keys():
    records = [{"x": 1.0, "c": "a"}, {"x": 2.0, "q": "b"}]
    with pytest.raises(BadRequest, match=r"unknown columns \['q'\]"):
        conform(parse_frame(orjson.dumps({"dataframe_records": records}), "application/json"), MODEL)


# The fast path (RecordsDecoder) must read every body it takes exactly as the general path does, and leave
# every other body to the general path.
TIMED = LoadedModel("m", "1", "champion", None, ("x", "y"), ("c",), {}, "now", task=None, classes=None)


def _general(body: bytes, event_time: str | None):
    parsed, times = split_event_time(parse_columns(body, "application/json"), event_time)
    return conform_columns(parsed, TIMED), times


@pytest.mark.parametrize("records,fast", [
    ([{"x": 1.0, "y": 2, "c": "a"}, {"x": None, "y": -0.5, "c": None}], True),
    ([{"c": "b", "y": 3, "x": 1e300}], True),  # any key order
    ([{"x": 1, "y": 2, "c": "a", "t": "2013-06-01T10:00:00"}, {"x": 1, "y": 2, "c": "a", "t": None}], True),
    ([{"x": 1, "y": 2, "c": "a", "t": 1370080800}, {"x": 1, "y": 2, "c": "a"}], True),  # epoch; one row without
    ([{"x": 1, "y": 2, "c": "a\x00\u00e9\U0001f600"}], True),
    ([{"x": "2.5", "y": 2, "c": "a"}], False),  # a number as text: converted by the general path
    ([{"x": True, "y": 2, "c": 3}], False),
    ([{"x": 1, "y": 2}, {"x": 1, "y": 2, "c": "a"}], False),  # a key missing from a row
    ([{"x": 1, "y": 2, "c": "a", "z": 0}], None),  # unknown column: refused, by the general path
    ([{"x": 1, "y": 2, "c": ["a"]}], None),
])
def test_the_records_fast_path_reads_what_the_general_path_reads(records, fast):
    body = orjson.dumps({"dataframe_records": records})
    decoded = records_decoder(TIMED.numeric, TIMED.categorical, "t").decode(body)
    assert (decoded is not None) == bool(fast)
    if fast is None:
        with pytest.raises(BadRequest):
            _general(body, "t")
        with pytest.raises(BadRequest):
            read_request(body, "application/json", TIMED, "t")
        return
    expected, expected_times = _general(body, "t")
    read = read_request(body, "application/json; charset=utf-8", TIMED, "t")
    assert read.columns.names == expected.names and read.columns.rows == expected.rows
    for name in expected.names:
        np.testing.assert_array_equal(read.columns.values[name], expected.values[name])
        assert read.columns.values[name].dtype == expected.values[name].dtype
    assert read.event_times == expected_times


@pytest.mark.parametrize("body", [
    b'{"dataframe_records": []}', b'{"dataframe_records": [{"x": NaN, "y": 1, "c": "a"}]}',
    b'{"dataframe_records": [{"x": 1e400, "y": 1, "c": "a"}]}',
    b'{"dataframe_records": [{"x": 1, "y": 1, "c": "\\ud800"}]}',
    b'{"dataframe_records": [{"x": 1, "y": 1, "c": "a"}], "inputs": {}}', b'{"dataframe_records": [' + b"[" * 100_000,
    b'{"dataframe_split": {"columns": ["x", "y", "c"], "data": [[1, 2, "a"]]}}',
])
def test_other_bodies_take_the_general_path(body):
    assert records_decoder(TIMED.numeric, TIMED.categorical, None).decode(body) is None


def test_a_shadow_with_other_columns_gets_the_request_conformed_to_it():
    body = orjson.dumps({"dataframe_records": [{"x": 1, "y": 2, "c": "a"}]})
    read = read_request(body, "application/json", TIMED, None)
    assert read.for_model(TIMED) is read.columns
    other = LoadedModel("m", "2", "challenger", None, ("x",), ("c", "y"), {}, "now", task=None, classes=None)
    assert read.for_model(other).values["y"].tolist() == ["2"]
    narrower = LoadedModel("m", "2", "challenger", None, ("x",), ("c",), {}, "now", task=None, classes=None)
    with pytest.raises(BadRequest, match=r"unknown columns \['y'\]"):
        read.for_model(narrower)


@pytest.mark.parametrize("output", [
    np.array([[0.25, 0.75], [np.nan, 1.0]]), np.array([1.5, -2.0]), np.array([3, 4]), np.array([True, False]),
    np.array(["yes", "no"], dtype=object), np.array([0.1, 0.2], dtype=np.float32), np.ones((3, 4))[:, :2],
])
def test_the_answer_holds_what_mlflow_models_serve_answers_whatever_the_output(output):
    from pipelines.serving.routes.scoring import _predictions_json

    assert orjson.loads(_predictions_json(output, "r")) == {"predictions": orjson.loads(orjson.dumps(output.tolist())),
                                                            "request_id": "r"}


@pytest.mark.parametrize("payload", [
    {"dataframe_records": [{"x": "18", "c": "a"}, {"x": True, "c": "b"}, {"x": 2, "c": "c"}]},
    {"dataframe_split": {"columns": ["x", "c"], "data": [["18", "a"], [True, "b"], [2, "c"]]}},
    {"inputs": {"x": ["18", True, 2], "c": ["a", "b", "c"]}},
])
def test_numbers_as_text_and_booleans_are_converted_as_mlflow_models_serve_converts_them(payload):
    """``/invocations`` keeps MLflow's payloads: its scoring server casts a double column with ``astype``, so
    ``"18"`` and ``true`` are 18.0 and 1.0 there, and here (the typed ``/predict`` refuses them)."""
    from mlflow.models.utils import _enforce_schema
    from mlflow.pyfunc.scoring_server import infer_and_parse_data
    from mlflow.types.schema import ColSpec, Schema

    schema = Schema([ColSpec("double", "x"), ColSpec("string", "c")])
    theirs = _enforce_schema(infer_and_parse_data(payload, schema), schema)
    ours = conform(parse_frame(orjson.dumps(payload), "application/json"), MODEL)
    assert theirs["x"].tolist() == ours["x"].tolist() == [18.0, 1.0, 2.0]
