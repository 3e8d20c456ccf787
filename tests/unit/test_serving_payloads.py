"""The MLflow scoring protocol's input formats and the 4xx answers for bad input, without a model server."""

import orjson
import pandas as pd
import pytest

from pipelines.serving.models import LoadedModel
from pipelines.serving.protocol import BadRequest, conform, parse_frame

MODEL = LoadedModel("m", "1", "champion", None, ("x",), ("c",), {}, "now", task=None, classes=None)
EXPECTED = pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]})


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
