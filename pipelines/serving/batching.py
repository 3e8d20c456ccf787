"""Adaptive micro-batching: concurrent requests share one ``predict_proba`` (or ``predict``) call.

A sklearn Pipeline spends almost all of a single-row call on per-call overhead (here ~11 ms for one
row, ~21 ms for 1,000 rows). The batcher takes every request that is waiting when the model becomes
free and scores them together: under light load a request is scored alone with no added delay; under
heavy load batches grow by themselves while the previous batch is being scored (the "dynamic batching"
of Triton, BentoML and Ray Serve, with a zero wait window). One batcher serves every model of a worker:
a batch holds the requests of one model only (several served models, or the old and the new version
during a swap), and the others wait for the next batch, in the order they came.

Batches are scored on one dedicated thread whose native thread pools (OpenMP, BLAS) are capped, by
default at one thread, before a model's first batch. The cap has to be set on that thread: OpenMP's
limit is per thread, so one set on the event loop's thread does not reach it, and a model left with
one OpenMP thread per core spin-waits against the event loop for the same cores (that cost p99
latencies of 100-300 ms under load on two cores).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    model: Any
    method: str  # predict_proba or predict: the same for every request of one model
    payload: Any  # one request's rows: a DataFrame, or whatever ``combine`` accepts
    rows: int
    future: asyncio.Future = field(repr=False)
    tag: Any = None  # what ``on_scored`` is told of this request


def concat_frames(payloads: list[pd.DataFrame]) -> pd.DataFrame:
    return payloads[0] if len(payloads) == 1 else pd.concat(payloads, ignore_index=True)


OnScored = Callable[[Any, Any, list[Any], list[int], np.ndarray], None]


class MicroBatcher:
    """``combine`` turns the payloads of one batch into the model's input; it runs in the scoring thread,
    off the event loop, so building the batch's input costs the requests nothing. With ``combine=None`` the
    model's method takes the list of payloads itself (a scorer that builds its own input).

    ``on_scored(model, model_input, tags, rows, output)``, if given, is called on the scoring thread with
    every batch scored: the input the model took, the tags the requests were sent with and their row counts
    (in order), and the batch's output. What is done per batch there (e.g. logging the rows) costs the
    requests a share each, not a call each. An error in it is logged and does not fail the requests."""

    def __init__(self, max_rows: int = 2048, combine: Callable[[list[Any]], Any] | None = concat_frames,
                 model_threads: int = 1, on_scored: OnScored | None = None):
        self.max_rows = max_rows
        self.combine = combine
        self.model_threads = model_threads
        self.on_scored = on_scored
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task | None = None
        self._scoring_thread: ThreadPoolExecutor | None = None
        self._capped_for: weakref.WeakSet = weakref.WeakSet()  # the models the native pools were capped for
        self.batches = 0
        self.rows = 0

    def start(self) -> None:
        self._scoring_thread = ThreadPoolExecutor(1, thread_name_prefix="scoring")
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        if self._scoring_thread is not None:
            self._scoring_thread.shutdown(wait=False)

    async def predict(self, model: Any, payload: Any, rows: int | None = None,
                      method: str = "predict_proba", tag: Any = None) -> np.ndarray:
        """``model.<method>(payload)`` (a classifier's ``predict_proba``, a regressor's ``predict``), batched
        with concurrent calls for the same model; ``tag`` goes to ``on_scored`` with the payload."""
        rows = len(payload) if rows is None else rows
        if self._queue is None:
            return await asyncio.to_thread(self._predict, model, method, [payload], [tag], [rows])
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(model, method, payload, rows, future, tag))
        return await future

    def _predict(self, model: Any, method: str, payloads: list[Any], tags: list[Any], rows: list[int]) -> np.ndarray:
        model_input = payloads if self.combine is None else self.combine(payloads)
        output = np.asarray(getattr(model, method)(model_input))
        if self.on_scored is not None:
            try:
                self.on_scored(model, model_input, tags, rows, output)
            except Exception:
                log.exception("on_scored failed for a batch of %d requests", len(payloads))
        return output

    def _predict_on_scoring_thread(self, model: Any, method: str, payloads: list[Any], tags: list[Any],
                                   rows: list[int]) -> np.ndarray:
        if model not in self._capped_for:  # a new model may have loaded new native libraries: cap them too
            limit_native_threads(self.model_threads)
            self._capped_for.add(model)
        return self._predict(model, method, payloads, tags, rows)

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            first = await self._queue.get()
            batch, rows, others = [first], first.rows, []
            while rows < self.max_rows and not self._queue.empty():
                item = self._queue.get_nowait()
                # Another model's request (a second served model, or the new version mid-swap) waits for the
                # next batch, ahead of everything that came after it.
                if item.model is first.model:
                    batch.append(item)
                    rows += item.rows
                else:
                    others.append(item)
            if others:
                self._requeue_front(others)
            await self._score(batch)

    def _requeue_front(self, items: list[_Pending]) -> None:
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        for pending in items:
            self._queue.put_nowait(pending)

    async def _score(self, batch: list[_Pending]) -> None:
        model = batch[0].model
        try:
            scores = await asyncio.get_running_loop().run_in_executor(
                self._scoring_thread, self._predict_on_scoring_thread, model, batch[0].method,
                [p.payload for p in batch], [p.tag for p in batch], [p.rows for p in batch])
        except Exception:
            if len(batch) == 1:
                self._fail(batch[0])
                return
            # One request's rows broke the batch: score each alone so only that request fails.
            for pending in batch:
                await self._score([pending])
            return
        self.batches += 1
        self.rows += len(scores)
        start = 0
        for pending in batch:
            end = start + pending.rows
            if not pending.future.done():
                pending.future.set_result(scores[start:end])
            start = end

    @staticmethod
    def _fail(pending: _Pending) -> None:
        import sys

        if not pending.future.done():
            pending.future.set_exception(sys.exc_info()[1] or RuntimeError("prediction failed"))


def limit_native_threads(threads: int) -> None:
    """Cap OpenMP and BLAS threads for the calling thread (OpenMP's limit is per thread)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
