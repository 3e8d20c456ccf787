import pandas as pd

from pipelines.validation import DataValidationError, render_report, validate_frame

SUITE = {
    "name": "toy",
    "expectations": [
        {"type": "expect_table_columns_to_match_set", "kwargs": {"column_set": ["a", "b"], "exact_match": True}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a", "mostly": 0.95}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "a", "min_value": 0, "max_value": 10}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "b", "value_set": ["x", "y"]}},
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 10, "max_value": 1000}},
    ],
}


def good() -> pd.DataFrame:
    return pd.DataFrame({"a": [float(i % 10) for i in range(100)], "b": ["x", "y"] * 50})


def test_clean_batch_passes():
    outcome = validate_frame(good(), SUITE)
    assert outcome.success and outcome.evaluated == 5 and not outcome.failures


def test_each_failure_is_named_with_its_observed_value():
    bad = good()
    bad.loc[:9, "a"] = None          # 10% missing: above the 5% the suite allows
    bad.loc[50, "b"] = "zzz"
    outcome = validate_frame(bad, SUITE)
    assert not outcome.success
    failed = {(o.expectation, o.column) for o in outcome.failures}
    assert failed == {("expect_column_values_to_not_be_null", "a"), ("expect_column_values_to_be_in_set", "b")}
    message = str(DataValidationError(outcome))
    assert "2 of 5 expectations" in message and "10 unexpected rows (10.00%)" in message and "zzz" in message


def test_row_count_and_column_set_failures_show_what_was_seen():
    outcome = validate_frame(good().head(5).assign(extra=1), SUITE)
    observed = {o.expectation: o.observed for o in outcome.failures}
    assert observed["expect_table_row_count_to_be_between"] == 5
    assert "extra" in str(observed["expect_table_columns_to_match_set"])


def test_report_lists_failures_first():
    bad = good()
    bad.loc[0, "b"] = "zzz"
    html = render_report(validate_frame(bad, SUITE), "toy batch")
    assert html.index("FAIL") < html.index("PASS") and "toy batch" in html
