"""The served models: a loaded model version, one slot per registered model (its champion and challenger,
swapped as one reference), and the set of slots one service serves.

A slot follows its registry aliases without a restart: ``refresh`` loads a new version beside the served
one and swaps one reference, so no request ever sees a half-loaded model. Each slot has its own lock and
its own failures: loading one model never blocks or breaks another.
"""

from __future__ import annotations

import gc
import logging
import re
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from pipelines.registry import CHALLENGER
from pipelines.serving.scorers import Scorer, scorer_for
from pipelines.task_types import TaskType

log = logging.getLogger("pipelines.serving")


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    alias: str
    model: Any
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    tags: dict[str, str]
    loaded_at: str
    task: TaskType
    classes: list[str] | None  # a classifier's classes, in the order of its probability columns

    @cached_property
    def columns(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    @cached_property
    def scorer(self) -> Scorer:
        """How the scoring thread scores a micro-batch of this model's requests (built when it loads)."""
        return scorer_for(self.model, self.task.predict_method, list(self.numeric), list(self.categorical))

    @cached_property
    def request_schema(self):
        """The typed ``/predict`` request (built when the model loads, never per request)."""
        return request_model(self)

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "model": self.name, "version": self.version, "alias": self.alias,
                "task": self.task.name, "classes": self.classes,
                "data_hash": self.tags.get("data_hash"), "git_commit": self.tags.get("git_commit"),
                "threshold": self.tags.get("threshold"), "loaded_at": self.loaded_at}


def schema_name(model_name: str) -> str:
    """``model_name`` as an OpenAPI component name (letters, digits, ``.``, ``-``, ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", model_name)


def request_model(model: LoadedModel):
    """The typed ``/predict`` request for this model's signature (pydantic; unknown fields are refused).
    Strict: a numeric field takes a JSON number a float holds (an integer too) or null, never a boolean, a
    number as text, Infinity or NaN; a text field takes text or null. Named after the model, so several
    models' schemas sit side by side in one OpenAPI document."""
    from pydantic import ConfigDict, Field, StrictFloat, StrictStr, create_model

    row_fields = {c: (StrictFloat | None, Field(..., allow_inf_nan=False)) for c in model.numeric}
    row_fields.update({c: (StrictStr | None, Field(...)) for c in model.categorical})
    name = schema_name(model.name)
    row = create_model(f"{name}_row", __config__=ConfigDict(extra="forbid"), **row_fields)
    return create_model(f"{name}_PredictRequest", __config__=ConfigDict(extra="forbid"),
                        rows=(list[row], Field(..., min_length=1, description="One object per row to score")))


class SignatureError(ValueError):
    """A model whose input signature the service cannot map to numeric and categorical features."""


# The signature's column types the service reads as numbers; ``string`` is a category; nothing else is mapped.
NUMERIC_TYPES = ("double", "float", "long", "integer")


def feature_roles(schema, uri: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The numeric and the categorical input columns of a model's input signature (``tracking.input_schema``
    writes it from the config); a column of any other type, or an unnamed input, is a SignatureError naming
    it, never guessed."""
    if schema is None or not schema.has_input_names() or schema.is_tensor_spec():
        raise SignatureError(f"{uri}: its signature does not name its input columns: the service cannot type "
                             "requests for it")
    numeric, categorical = [], []
    for column in schema.inputs:
        kind = getattr(column.type, "name", None)  # AnyType, Array, Object and Map have no name
        if kind in NUMERIC_TYPES:
            numeric.append(column.name)
        elif kind == "string":
            categorical.append(column.name)
        else:
            raise SignatureError(
                f"{uri}: its signature types input column {column.name!r} as {kind or column.type}, neither a "
                "number nor a string: the service cannot map it to a numeric or categorical feature (a model "
                "logged by these pipelines takes its types from the model config)")
    return tuple(numeric), tuple(categorical)


# One model loads at a time in a process: CPython 3.11 keeps the depth counter of its AST conversion in
# interpreter-wide state, and two threads loading models at once (the libraries parse code while loading) can
# fail with "SystemError: AST constructor recursion depth mismatch" (seen with two models loading at start).
_LOADING = threading.Lock()


def load_model_uri(name: str, uri: str, version: str, alias: str, tags: dict[str, str]) -> LoadedModel:
    with _LOADING:
        return _load_model_uri(name, uri, version, alias, tags)


def _load_model_uri(name: str, uri: str, version: str, alias: str, tags: dict[str, str]) -> LoadedModel:
    import mlflow

    from pipelines.task_types import model_classes, task_type_of_model
    from pipelines.tracking import load_sklearn_model

    model = load_sklearn_model(uri)
    info = mlflow.models.get_model_info(uri)
    if info.signature is None:
        raise ValueError(f"{uri} was logged without a signature: the service cannot check requests against it")
    numeric, categorical = feature_roles(info.signature.inputs, uri)
    task = task_type_of_model(info.metadata, model, list(numeric), list(categorical))
    loaded = LoadedModel(name, version, alias, model, numeric, categorical, tags,
                         datetime.now(UTC).isoformat(timespec="seconds"), task, model_classes(model))
    loaded.request_schema  # noqa: B018  built here, in the loading thread, not by the first request
    loaded.scorer  # noqa: B018
    return loaded


def load_registered(name: str, alias: str) -> LoadedModel:
    import mlflow

    from pipelines.tracking import configure_mlflow

    configure_mlflow()
    version = mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    return load_model_uri(name, f"models:/{name}/{version.version}", str(version.version), alias,
                          dict(version.tags))


def current_alias_version(name: str, alias: str) -> str | None:
    """The version behind the alias, None when it does not exist; an unreachable registry raises (the slot
    keeps serving what it serves, and says why), never reads as "no alias"."""
    import mlflow

    from pipelines.registry import alias_version

    return alias_version(mlflow.MlflowClient(), name, alias)


@dataclass(frozen=True)
class Serving:
    """What one model's requests are answered with. A slot swaps the whole object, so a request never sees
    the champion of one refresh beside the challenger of another."""

    champion: LoadedModel | None = None
    challenger: LoadedModel | None = None
    mode: str = "off"  # what the challenger does: off, shadow or canary
    share: float = 0.0  # canary: the share of requests it answers

    def route_for(self, request_id: str) -> tuple[str, LoadedModel | None]:
        """``canary`` (the challenger answers) for ``share`` of the request ids, sticky per id; else
        ``champion``."""
        if self.mode == "canary" and self.challenger is not None \
                and zlib.crc32(request_id.encode()) % 10_000 < self.share * 10_000:
            return "canary", self.challenger
        return "champion", self.champion

    @property
    def shadow(self) -> LoadedModel | None:
        """The challenger when it scores every request in shadow (logged, never returned)."""
        return self.challenger if self.mode == "shadow" else None


class ModelSlot:
    """One registered model: the version its ``alias`` names, and its ``challenger``.

    The ``challenger`` alias, when set, runs as its version's ``rollout`` tag says (set by the training DAG
    from ``serving.rollout``): ``shadow``: it scores every request too, logged with route ``shadow`` and never
    returned; ``canary``: its ``canary_share`` tag of the requests (sticky by request id) are answered by it.
    ``challenger_mode`` (``off``, ``shadow``, ``canary``) and ``canary_share`` override the tags;
    ``registry`` follows them. With ``model_uri`` the slot serves that one model (no aliases): the staging
    instance infra validation runs a candidate in."""

    def __init__(self, name: str, *, alias: str, event_time: str | None = None, challenger_mode: str = "registry",
                 canary_share: float | None = None, model_uri: str | None = None):
        self.name, self.alias, self.event_time = name, alias, event_time
        self.challenger_mode, self.canary_share, self.model_uri = challenger_mode, canary_share, model_uri
        self.serving = Serving()
        self.last_error: str | None = None  # why the last refresh failed; None once one succeeds
        self._lock = threading.Lock()

    @property
    def champion(self) -> LoadedModel | None:
        return self.serving.champion

    def refresh(self) -> LoadedModel | None:
        """Load the versions the aliases name where they differ from the served ones, then swap. Blocking
        (call it off the event loop); safe to call concurrently. Returns the champion, None while the alias
        does not exist; raises when loading fails, and the slot keeps serving what it served."""
        with self._lock:
            try:
                serving = self._wanted(self.serving)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                raise
            self.last_error = None
            self._swap(serving)
            return serving.champion

    def _wanted(self, current: Serving) -> Serving:
        if self.model_uri is not None:
            if current.champion is not None:
                return current
            return Serving(load_model_uri(self.name, self.model_uri, "candidate", "staging", {}))
        challenger, mode, share = self._wanted_challenger(current)
        champion = current.champion
        wanted = current_alias_version(self.name, self.alias)
        # An alias that disappears leaves the served version in place: only a new version replaces it.
        if wanted is not None and (champion is None or champion.version != wanted):
            champion = load_registered(self.name, self.alias)
        return Serving(champion, challenger, mode, share)

    def _wanted_challenger(self, current: Serving) -> tuple[LoadedModel | None, str, float]:
        if self.challenger_mode == "off":
            return None, "off", 0.0
        wanted = current_alias_version(self.name, CHALLENGER)
        if wanted is None:
            return None, "off", 0.0
        challenger = current.challenger
        if challenger is None or challenger.version != wanted:
            challenger = load_registered(self.name, CHALLENGER)
        tags = challenger.tags
        mode = self.challenger_mode if self.challenger_mode != "registry" else tags.get("rollout", "shadow")
        share = self.canary_share if self.canary_share is not None else float(tags.get("canary_share") or 0.1)
        if mode not in ("shadow", "canary"):
            mode = "shadow"  # an unknown tag never sends live traffic to a challenger
        return challenger, mode, share

    def _swap(self, new: Serving) -> None:
        old, self.serving = self.serving, new
        loaded = [m for m in (new.champion, new.challenger)
                  if m is not None and m is not old.champion and m is not old.challenger]
        if loaded:
            # A model's objects live as long as it is served: keep them out of every GC pass
            # (full collections over a loaded sklearn pipeline showed up as tail latency).
            gc.collect()
            gc.freeze()
        if new.champion is not old.champion and new.champion is not None:
            log.info("now serving %s v%s (@%s)", self.name, new.champion.version, self.alias)
        if new.challenger is not old.challenger or (new.mode, new.share) != (old.mode, old.share):
            if new.challenger is None:
                log.info("%s: no challenger", self.name)
            else:
                log.info("challenger %s v%s in %s mode (canary share %.2f)", self.name, new.challenger.version,
                         new.mode, new.share)

    def state(self) -> dict[str, Any]:
        """What /health and /admin/reload answer for this model (deploy's ``wait_until_served`` reads
        ``version``, ``challenger_mode`` and ``challenger_version``)."""
        serving = self.serving
        if serving.champion is None:
            state = {"status": "no_model", "model": self.name, "alias": self.alias}
        else:
            state = {**serving.champion.health(), "challenger_mode": serving.mode,
                     "challenger_version": serving.challenger.version if serving.challenger else None,
                     "canary_share": serving.share if serving.mode == "canary" else None}
        if self.last_error is not None:
            state["last_error"] = self.last_error
            if serving.champion is not None:
                state["status"] = "degraded"  # serving the versions it had; cannot follow the registry
        return state


class ServedModels:
    """Every model one service serves, by registered name, the default (``/invocations``) among them.

    ``find_slots`` (if given) makes the slots of every model the service should serve; ``discover`` calls it
    again and adds the new ones, so a model config added after the service started is served once its
    champion exists, without a restart. The name-to-slot map is replaced, never changed in place."""

    def __init__(self, default: str, slots: list[ModelSlot],
                 find_slots: Callable[[bool], list[ModelSlot]] | None = None):
        self.default = default
        self._slots = {slot.name: slot for slot in slots}
        if default not in self._slots:
            raise ValueError(f"the default model {default!r} has no slot")
        self._find_slots = find_slots
        self._discover_lock = threading.Lock()

    def __iter__(self) -> Iterator[ModelSlot]:
        return iter(list(self._slots.values()))

    def get(self, name: str) -> ModelSlot | None:
        return self._slots.get(name)

    @property
    def default_slot(self) -> ModelSlot:
        return self._slots[self.default]

    def served(self) -> list[str]:
        """The models with a champion loaded."""
        return [name for name, slot in self._slots.items() if slot.champion is not None]

    def discover(self, force: bool = False) -> None:
        """Add a slot for each model to serve that has none yet (``force``: look even when the model configs
        seem unchanged)."""
        if self._find_slots is None:
            return
        with self._discover_lock:
            new = [slot for slot in self._find_slots(force) if slot.name not in self._slots]
            if new:
                self._slots = {**self._slots, **{slot.name: slot for slot in new}}
                log.info("now also following %s", [slot.name for slot in new])
