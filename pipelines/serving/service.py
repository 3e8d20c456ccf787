"""The running service behind the routes: the served models, the micro-batcher they share, the prediction
log and the metrics; scoring a request's rows, shadow scoring, and following the registry."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np

from pipelines.prediction_store import ServedBatch
from pipelines.serving.batching import MicroBatcher
from pipelines.serving.metrics import ServiceMetrics
from pipelines.serving.models import LoadedModel, ModelSlot, ServedModels
from pipelines.serving.prediction_log import PredictionLog, now
from pipelines.serving.protocol import Columns, ScoringRequest, join_columns
from pipelines.serving.request_ids import RecentRequestIds, file_for
from pipelines.serving.settings import ServingSettings

log = logging.getLogger("pipelines.serving")
MANY_ROWS = 5000  # a request's text columns are coded off the event loop past this many rows


@dataclass(frozen=True)
class LoggedRequest:
    """What the prediction log keeps of a request beside its rows (the batcher's tag for it)."""

    model: LoadedModel
    route: str
    request_id: str
    event_times: list[datetime | None] | None


class PredictionService:
    def __init__(self, settings: ServingSettings, models: ServedModels, prediction_log: PredictionLog | None,
                 metrics: ServiceMetrics):
        self.settings = settings
        self.models = models
        self.prediction_log = prediction_log
        self.metrics = metrics
        # One scoring thread per worker for every model: it never mixes two models in one batch, and the
        # models do not compete with each other (and the event loop) for the cores.
        self.batcher = MicroBatcher(combine=join_columns, model_threads=settings.model_threads,
                                    on_scored=self._log_scored if prediction_log is not None else None)
        self.request_ids = RecentRequestIds(
            file_for(prediction_log.url, settings.request_id_slots) if prediction_log is not None else None,
            settings.request_id_window_s, settings.request_id_slots)
        self._shadow_tasks: set[asyncio.Task] = set()
        self._poller: asyncio.Task | None = None

    async def start(self) -> None:
        self.batcher.start()
        await self.reload_all()
        if not self.models.served():
            log.error("no model loaded at startup; /ping answers 503 until a champion exists")
        if self.settings.poll_seconds > 0:
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="registry-poll")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        if self._shadow_tasks:
            await asyncio.gather(*self._shadow_tasks, return_exceptions=True)
        await self.batcher.stop()
        if self.prediction_log is not None:
            await asyncio.to_thread(self.prediction_log.close)
        self.request_ids.close()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_seconds)
            await self.reload_all()

    async def reload(self, slot: ModelSlot) -> LoadedModel | None:
        """Follow this model's aliases (loading off the event loop); raises when loading fails."""
        try:
            loaded = await asyncio.to_thread(slot.refresh)
        except Exception:
            self.metrics.of(slot.name).load_failures.inc()
            raise
        if loaded is not None:
            self.metrics.version_served(loaded)
        return loaded

    async def reload_all(self) -> dict[str, LoadedModel | None | Exception]:
        """Pick up new model configs, then follow every model's aliases, each on its own: a model that fails
        to load keeps serving what it served (or nothing), and the others are not held up."""
        try:
            await asyncio.to_thread(self.models.discover)
        except Exception:
            log.exception("could not look for new models to serve; serving the known ones")
        slots = list(self.models)
        outcomes = await asyncio.gather(*(self.reload(slot) for slot in slots), return_exceptions=True)
        for slot, outcome in zip(slots, outcomes, strict=True):
            if isinstance(outcome, Exception):
                log.error("reload of %s failed; still serving %s: %s", slot.name,
                          f"v{slot.champion.version}" if slot.champion else "nothing", slot.last_error or outcome)
        return {slot.name: outcome for slot, outcome in zip(slots, outcomes, strict=True)}

    def state_of(self, slot: ModelSlot) -> dict[str, Any]:
        """One model's state, with the worker that answers (deploy waits until every worker serves it; each
        uvicorn worker builds its own app after the fork)."""
        return {**slot.state(), "pid": os.getpid(), "workers": self.settings.workers}

    def states(self) -> dict[str, Any]:
        """The default model's state, and every model's under ``models`` (/health, /admin/reload)."""
        return {**self.state_of(self.models.default_slot),
                "models": {slot.name: self.state_of(slot) for slot in self.models},
                **({"prediction_log": self.prediction_log.state} if self.prediction_log is not None else {})}

    async def score(self, model: LoadedModel, route: str, columns: Columns, request_id: str,
                    event_times: list[datetime | None] | None = None) -> np.ndarray:
        """Batched with concurrent requests, scored off the event loop, and handed to the prediction log
        (``_log_scored``)."""
        if columns.rows > MANY_ROWS:  # tens of milliseconds: off the event loop
            codes = await asyncio.to_thread(model.scorer.text_codes, columns.values)
        else:
            codes = model.scorer.text_codes(columns.values)  # once, for the scorer and the log
        if codes:
            columns = replace(columns, codes=codes)
        tag = LoggedRequest(model, route, request_id, event_times) if self.prediction_log is not None else None
        output = await self.batcher.predict(model.scorer, columns, columns.rows, "score", tag)
        self.metrics.of(model.name).rows.inc(columns.rows)
        return output

    def _log_scored(self, _scorer: Any, columns: Columns, requests: list[LoggedRequest],
                    request_rows: list[int], output: np.ndarray) -> None:
        """A micro-batch's rows to the prediction log as one entry (on the scoring thread, once per batch, from
        the columns ``join_columns`` joined for the scorer): the log's work grows with batches, not requests.
        An entry that cannot be built is counted as set aside, never lost from the counts."""
        try:
            entries = _log_entries(columns, requests, request_rows, output)
        except Exception as exc:
            log.exception("the prediction log entry of %d requests could not be built", len(requests))
            self.prediction_log.set_aside_unbuilt([r.request_id for r in requests], request_rows,
                                                  f"entry not built: {type(exc).__name__}: {exc}")
            return
        for entry in entries:
            self.prediction_log.submit(entry)

    def shadow(self, challenger: LoadedModel, request: ScoringRequest, request_id: str) -> None:
        """Score the request with the challenger too, after the caller has its answer; logged, never
        returned."""
        task = asyncio.get_running_loop().create_task(self._shadow(challenger, request, request_id))
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow(self, challenger: LoadedModel, request: ScoringRequest, request_id: str) -> None:
        try:
            await self.score(challenger, "shadow", request.for_model(challenger), request_id, request.event_times)
        except Exception as exc:  # the shadow never affects the caller; say why it could not score
            log.warning("shadow %s v%s could not score request %s: %s", challenger.name, challenger.version,
                        request_id, exc)


def _log_entries(columns: Columns, requests: list[LoggedRequest], request_rows: list[int],
                 output: np.ndarray) -> list[ServedBatch]:
    """A scored micro-batch as the prediction log's entries: one, or one per request when the challenger's
    requests in it were on two routes (moved from shadow to canary mid-way)."""
    first = requests[0]
    model = first.model  # one scorer per batch: one model
    event_times = None
    if any(r.event_times for r in requests):
        event_times = [t for r, rows in zip(requests, request_rows, strict=True)
                       for t in (r.event_times or [None] * rows)]
    batch = ServedBatch(tuple(r.request_id for r in requests), now(), model.name, model.version, first.route,
                        columns.values, model.task.scores(output, model.classes), event_times,
                        columns.codes or None, tuple(request_rows) if len(requests) > 1 else None)
    if all(r.route == first.route for r in requests):
        return [batch]
    return [replace(part, route=request.route) for part, request in zip(batch.by_request(), requests, strict=True)]
