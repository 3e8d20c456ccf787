"""The prediction service's settings: one typed object, read from the environment once per app.

Every field has an environment variable (the names the stack and the docs already use) and can be set by
name when building an app in-process (``create_app(..., poll_seconds=0)``). Nothing on the request path
reads the environment or a model config.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipelines.registry import CHAMPION
from pipelines.settings import comma_separated


class ServingSettings(BaseSettings):
    # Each field names its environment variable, so an error names the variable an operator set.
    model_config = SettingsConfigDict(validate_by_name=True, validate_by_alias=True, extra="forbid",
                                      protected_namespaces=())

    model_name: str = Field("flights_delay", validation_alias="MLOPS_SERVING_MODEL",
                            description="The default model: the one answering /invocations and /predict.")
    models: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias="MLOPS_SERVING_MODELS",
        description="More registered models to serve, comma-separated (MLOPS_SERVING_MODELS=a,b).")
    configured_models: bool = Field(True, validation_alias="MLOPS_SERVING_CONFIGURED_MODELS",
                                    description="Also serve the registered model of every config in include/models.")
    alias: str = Field(CHAMPION, validation_alias="MLOPS_SERVING_ALIAS")
    poll_seconds: float = Field(30.0, ge=0, validation_alias="MLOPS_SERVING_POLL_S",
                                description="How often the aliases are polled; 0: only on /admin/reload.")
    log_predictions: bool = Field(True, validation_alias="MLOPS_PREDICTION_LOG",
                                  description="Write every served row to the prediction log (on / off).")
    log_flush_seconds: float = Field(
        1.0, gt=0, le=60, validation_alias="MLOPS_PREDICTION_LOG_FLUSH_S",
        description="How often the log's writer writes what was served since its last flush: a process killed "
                    "outright (SIGKILL) loses at most this long of rows.")
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0, validation_alias="MLOPS_SERVING_MAX_BODY_BYTES")
    request_id_window_s: float = Field(
        300.0, gt=0, validation_alias="MLOPS_SERVING_REQUEST_ID_WINDOW_S",
        description="How long a request id is remembered: a request sending an id answered within it gets a 409. "
                    "At least lineage's span (a minute) and two log flushes, so lineage never shows two "
                    "requests as one.")
    request_id_slots: int = Field(
        2**21, ge=1024, validation_alias="MLOPS_SERVING_REQUEST_ID_SLOTS",
        description="Slots of the table of recent request ids, shared by the workers (16 bytes each; keep it "
                    "over twice the requests of one window: 2**21, 32 MiB, holds 300 s at 3,000 requests/s).")
    challenger_mode: Literal["registry", "off", "shadow", "canary"] = Field(
        "registry", validation_alias="MLOPS_SERVING_CHALLENGER",
        description="registry: each challenger runs as its version's rollout tag says; off, shadow or canary "
                    "override the tags for every model.")
    canary_share: float | None = Field(None, ge=0, le=1, validation_alias="MLOPS_SERVING_CANARY_SHARE",
                                       description="Overrides each challenger's canary_share tag.")
    workers: int = Field(1, ge=1, validation_alias="MLOPS_SERVING_WORKERS",
                         description="Worker processes: each answers /admin/reload with it.")
    model_threads: int = Field(1, ge=1, validation_alias="MLOPS_SERVING_MODEL_THREADS",
                               description="OpenMP and BLAS threads of the scoring thread.")
    admin_token: SecretStr | None = Field(
        None, validation_alias="MLOPS_SERVING_ADMIN_TOKEN",
        description="The bearer token /admin/* requires (the deploy task sends it); unset: /admin/* is refused "
                    "and the service follows its aliases by polling only.")
    predict_token: SecretStr | None = Field(
        None, validation_alias="MLOPS_SERVING_PREDICT_TOKEN",
        description="The bearer token the scoring routes require (/invocations, /predict and each model's); "
                    "unset: scoring is open to whoever reaches the service.")
    event_time: str | None = Field(
        None, validation_alias="MLOPS_SERVING_EVENT_TIME_COLUMN",
        description="The default model's event-time column (logged, never scored); empty: none. Unset: the "
                    "event time of the model's config, as for every other model.")

    @model_validator(mode="after")
    def _request_ids_outlive_lineage(self) -> ServingSettings:
        from pipelines.prediction_store import LINEAGE_SPAN

        least = LINEAGE_SPAN.total_seconds() + 2 * self.log_flush_seconds
        if self.request_id_window_s < least:
            raise ValueError(f"MLOPS_SERVING_REQUEST_ID_WINDOW_S must be at least {least:g} s (lineage gathers "
                             f"a request's rows over {LINEAGE_SPAN.total_seconds():g} s of serving time, and a "
                             f"log segment spans a flush of {self.log_flush_seconds:g} s)")
        return self

    _comma_separated = field_validator("models", mode="before")(comma_separated)


def models_to_serve(settings: ServingSettings, read_configs: bool = True) -> dict[str, str | None]:
    """The registered model names to serve, the default first, each with its event-time column (from its
    model config, if it has one): the default model, ``models``, and the model of every config in
    ``include/models`` when ``configured_models``. A broken config is skipped (with the warning
    ``list_model_configs`` gives), never the service. Without ``read_configs`` (a staging instance serving one
    model file) no config is read."""
    from pipelines.config import list_model_configs

    event_times = {cfg.model_name: cfg.features.event_time for cfg in list_model_configs()} if read_configs \
        else {}
    names = [settings.model_name, *settings.models, *(event_times if settings.configured_models else ())]
    served = {name: event_times.get(name) for name in dict.fromkeys(names)}
    if settings.event_time is not None:
        served[settings.model_name] = settings.event_time or None
    return served
