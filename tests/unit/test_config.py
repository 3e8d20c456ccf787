import pytest
import yaml

from pipelines.config import ModelConfig, SearchConfig, list_model_configs, load_model_config
from pipelines.validation import load_suite_spec


def test_flights_config_loads():
    cfg = load_model_config("flights_delay")
    assert cfg.model_name == "flights_delay"
    assert cfg.features.target not in cfg.features.inputs
    assert len(cfg.search.candidates()) == 4


def test_search_grid_is_the_product_of_its_lists():
    grid = SearchConfig(grid={"a": [1, 2], "b": ["x", "y", "z"]}).candidates()
    assert len(grid) == 6 and {"a": 2, "b": "z"} in grid
    assert SearchConfig().candidates() == [{}]


def test_unknown_key_is_rejected_with_its_name(tmp_path):
    raw = yaml.safe_load(load_model_config("flights_delay").model_dump_json())
    raw["learning_rate"] = 0.1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="learning_rate"):
        load_model_config(path)


def test_target_cannot_be_a_feature():
    raw = load_model_config("flights_delay").model_dump()
    raw["features"]["numeric"].append(raw["features"]["target"])
    with pytest.raises(ValueError, match="must not be an input"):
        ModelConfig.model_validate(raw)


def test_missing_config_names_the_path():
    with pytest.raises(FileNotFoundError, match="no_such_model.yaml"):
        load_model_config("no_such_model")


@pytest.mark.parametrize("cfg", list_model_configs(), ids=lambda c: c.name)
def test_config_suite_and_features_agree(cfg):
    """One source of truth: every model input and the target are covered by the expectation suite."""
    suite = load_suite_spec(cfg.expectation_suite_path)
    [column_set] = [e["kwargs"]["column_set"] for e in suite["expectations"]
                    if e["type"] == "expect_table_columns_to_match_set"]
    needed = {*cfg.features.inputs, cfg.features.target, *cfg.features.slices} | (
        {cfg.features.event_time} if cfg.features.event_time else set())
    assert needed <= set(column_set), needed - set(column_set)
    not_null = {e["kwargs"]["column"] for e in suite["expectations"]
                if e["type"] == "expect_column_values_to_not_be_null"}
    assert set(cfg.features.inputs) <= not_null, "every feature needs a missing-value expectation"


def test_slice_floor_on_an_unevaluated_column_is_refused():
    raw = load_model_config("flights_delay").model_dump()
    raw["gate"]["slice_floors"] = [{"column": "dest", "floor": 0.6}]
    with pytest.raises(ValueError, match=r"\['dest'\] that are not in features.slices"):
        ModelConfig.model_validate(raw)


def test_lower_is_better_metric_cannot_be_a_floor():
    raw = load_model_config("flights_delay").model_dump()
    raw["gate"]["floors"] = {"brier": 0.2}
    with pytest.raises(ValueError, match="brier"):
        ModelConfig.model_validate(raw)


def test_expectation_without_kwargs_is_named(tmp_path):
    path = tmp_path / "suite.json"
    path.write_text('{"name": "s", "expectations": [{"type": "expect_column_to_exist"}]}')
    with pytest.raises(ValueError, match="expectation #0 needs a 'type' string and a 'kwargs' object"):
        load_suite_spec(path)
