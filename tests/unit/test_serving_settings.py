"""The service's settings: the environment variables the stack sets, read once into one typed object, and
which models a service serves."""

import pydantic
import pytest

from pipelines.serving.settings import ServingSettings, models_to_serve

SERVING_VARIABLES = ("MLOPS_SERVING_MODEL", "MLOPS_SERVING_MODELS", "MLOPS_SERVING_CONFIGURED_MODELS",
                     "MLOPS_SERVING_ALIAS", "MLOPS_SERVING_POLL_S", "MLOPS_PREDICTION_LOG",
                     "MLOPS_SERVING_MAX_BODY_BYTES", "MLOPS_SERVING_CHALLENGER", "MLOPS_SERVING_CANARY_SHARE",
                     "MLOPS_SERVING_WORKERS", "MLOPS_SERVING_MODEL_THREADS", "MLOPS_SERVING_EVENT_TIME_COLUMN",
                     "MLOPS_SERVING_REQUEST_ID_WINDOW_S", "MLOPS_SERVING_REQUEST_ID_SLOTS")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in SERVING_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_defaults():
    settings = ServingSettings()
    assert (settings.model_name, settings.models, settings.configured_models, settings.alias) == (
        "flights_delay", (), True, "champion")
    assert (settings.poll_seconds, settings.log_predictions, settings.max_body_bytes) == (30.0, True, 10 * 1024 * 1024)
    assert (settings.challenger_mode, settings.canary_share, settings.workers, settings.model_threads,
            settings.event_time) == ("registry", None, 1, 1, None)
    assert (settings.request_id_window_s, settings.request_id_slots) == (300.0, 2**21)


def test_every_environment_variable_keeps_its_name(monkeypatch):
    for name, value in {"MLOPS_SERVING_MODEL": "a", "MLOPS_SERVING_MODELS": "b, c,", "MLOPS_SERVING_ALIAS": "staging",
                        "MLOPS_SERVING_POLL_S": "5", "MLOPS_PREDICTION_LOG": "off",
                        "MLOPS_PREDICTION_LOG_FLUSH_S": "0.5",
                        "MLOPS_SERVING_MAX_BODY_BYTES": "2048", "MLOPS_SERVING_CHALLENGER": "canary",
                        "MLOPS_SERVING_CANARY_SHARE": "0.25", "MLOPS_SERVING_WORKERS": "4",
                        "MLOPS_SERVING_MODEL_THREADS": "2", "MLOPS_SERVING_EVENT_TIME_COLUMN": "t",
                        "MLOPS_SERVING_CONFIGURED_MODELS": "false", "MLOPS_SERVING_ADMIN_TOKEN": "s3cr3t",
                        "MLOPS_SERVING_PREDICT_TOKEN": "sc0re", "MLOPS_SERVING_REQUEST_ID_WINDOW_S": "90",
                        "MLOPS_SERVING_REQUEST_ID_SLOTS": "4096"}.items():
        monkeypatch.setenv(name, value)
    settings = ServingSettings()
    assert settings.admin_token.get_secret_value() == "s3cr3t" and "s3cr3t" not in repr(settings)
    assert settings.predict_token.get_secret_value() == "sc0re" and "sc0re" not in repr(settings)
    assert settings.model_dump(exclude={"admin_token", "predict_token"}) == {
        "model_name": "a", "models": ("b", "c"), "configured_models": False, "alias": "staging",
        "poll_seconds": 5.0, "log_predictions": False, "log_flush_seconds": 0.5, "max_body_bytes": 2048,
        "challenger_mode": "canary",
        "canary_share": 0.25, "workers": 4, "model_threads": 2, "event_time": "t", "request_id_window_s": 90.0,
        "request_id_slots": 4096}
    # In-process, by field name; arguments win over the environment.
    assert ServingSettings(model_name="x", poll_seconds=0).model_name == "x"


@pytest.mark.parametrize("name,value", [("MLOPS_SERVING_CHALLENGER", "sometimes"),
                                        ("MLOPS_SERVING_CANARY_SHARE", "1.5"),
                                        ("MLOPS_SERVING_POLL_S", "soon"),
                                        ("MLOPS_PREDICTION_LOG_FLUSH_S", "0"),
                                        ("MLOPS_SERVING_REQUEST_ID_SLOTS", "10"),
                                        ("MLOPS_SERVING_REQUEST_ID_WINDOW_S", "61")])
def test_a_bad_value_is_refused_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(pydantic.ValidationError, match=name):
        ServingSettings()


def test_a_misspelt_setting_is_refused():
    with pytest.raises(pydantic.ValidationError, match="poll_s"):
        ServingSettings(poll_s=0)


def test_the_default_model_first_then_the_listed_and_the_configured_ones():
    from pipelines.config import list_model_configs

    configured = {cfg.model_name: cfg.features.event_time for cfg in list_model_configs()}
    served = models_to_serve(ServingSettings(model_name="a", models=("b", "flights_delay", "a")))
    assert list(served)[:3] == ["a", "b", "flights_delay"] and served == {"a": None, "b": None, **configured}
    assert served["flights_delay"] == "time_hour"  # the event time of its config
    only_listed = models_to_serve(ServingSettings(model_name="a", models=("b",), configured_models=False))
    assert only_listed == {"a": None, "b": None}


def test_the_event_time_variable_sets_the_default_models_column(monkeypatch):
    assert models_to_serve(ServingSettings(event_time="t"))["flights_delay"] == "t"
    monkeypatch.setenv("MLOPS_SERVING_EVENT_TIME_COLUMN", "")  # set but empty: no event-time column
    assert models_to_serve(ServingSettings())["flights_delay"] is None
    assert models_to_serve(ServingSettings(model_name="other"))["flights_delay"] == "time_hour"
