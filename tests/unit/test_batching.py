import asyncio
import threading
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads  # loads OpenMP, as a loaded model has

from pipelines.serving.batching import MicroBatcher


class SlowModel:
    """predict_proba with a fixed per-call cost, like a sklearn Pipeline; refuses the value -1."""

    def __init__(self):
        self.calls = 0
        self.lock = threading.Lock()

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        with self.lock:
            self.calls += 1
        time.sleep(0.01)
        x = frame["x"].to_numpy(dtype=float)
        if (x == -1).any():
            raise ValueError("x = -1 is not allowed")
        p = 1 / (1 + np.exp(-x))
        return np.column_stack([1 - p, p])


def run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_requests_share_calls_and_get_their_own_rows():
    model = SlowModel()

    async def scenario():
        batcher = MicroBatcher()
        batcher.start()
        frames = [pd.DataFrame({"x": [float(i), float(i) + 0.5][: 1 + i % 2]}) for i in range(64)]
        results = await asyncio.gather(*(batcher.predict(model, f) for f in frames))
        await batcher.stop()
        return frames, results, batcher

    frames, results, batcher = run(scenario())
    for frame, result in zip(frames, results, strict=True):
        np.testing.assert_allclose(result, SlowModel().predict_proba(frame))
    assert model.calls == batcher.batches < 64 // 4  # far fewer calls than requests
    assert batcher.rows == sum(len(f) for f in frames)


def test_each_scored_batch_is_reported_once_with_its_tags_and_rows():
    """``on_scored`` sees every batch once, as the model took it, with each request's tag and row count; an
    error in it fails no request."""
    model, seen = SlowModel(), []

    def on_scored(scored_model, model_input, tags, rows, output):
        seen.append((scored_model, len(model_input), list(tags), list(rows), len(output)))
        raise RuntimeError("the hook's own failure")

    async def scenario():
        batcher = MicroBatcher(on_scored=on_scored)
        batcher.start()
        frames = [pd.DataFrame({"x": np.zeros(1 + i % 3)}) for i in range(30)]
        results = await asyncio.gather(*(batcher.predict(model, f, tag=f"t{i}") for i, f in enumerate(frames)))
        await batcher.stop()
        return frames, results, batcher

    frames, results, batcher = run(scenario())
    assert [len(r) for r in results] == [len(f) for f in frames]
    assert len(seen) == batcher.batches < len(frames) and all(s[0] is model for s in seen)
    assert [tag for s in seen for tag in s[2]] == [f"t{i}" for i in range(30)]
    assert [n for s in seen for n in s[3]] == [len(f) for f in frames]
    assert all(s[1] == s[4] == sum(s[3]) for s in seen)  # the combined frame and its output, whole


def test_a_bad_request_fails_alone():
    model = SlowModel()

    async def scenario():
        batcher = MicroBatcher()
        batcher.start()
        frames = [pd.DataFrame({"x": [1.0]}), pd.DataFrame({"x": [-1.0]}), pd.DataFrame({"x": [2.0]})]
        results = await asyncio.gather(*(batcher.predict(model, f) for f in frames), return_exceptions=True)
        await batcher.stop()
        return results

    good, bad, also_good = run(scenario())
    assert isinstance(bad, ValueError) and "-1" in str(bad)
    assert good.shape == (1, 2) and also_good.shape == (1, 2)


def test_requests_for_different_models_are_never_mixed():
    first, second = SlowModel(), SlowModel()

    async def scenario():
        batcher = MicroBatcher()
        batcher.start()
        calls = [batcher.predict(first if i % 2 else second, pd.DataFrame({"x": [float(i)]}))
                 for i in range(20)]
        results = await asyncio.gather(*calls)
        await batcher.stop()
        return results

    results = run(scenario())
    assert len(results) == 20 and first.calls >= 1 and second.calls >= 1


class RecordingModel(SlowModel):
    """Remembers every batch of rows it scored."""

    def __init__(self):
        super().__init__()
        self.seen: list[list[float]] = []

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        self.seen.append(frame["x"].tolist())
        return super().predict_proba(frame)


def test_interleaved_requests_for_two_models_are_batched_per_model():
    """Two served models share one batcher: each batch holds one model's rows, and requests for the other
    model wait for the next batch instead of cutting this one short."""
    odd, even = RecordingModel(), RecordingModel()

    async def scenario():
        batcher = MicroBatcher()
        batcher.start()
        calls = [batcher.predict(odd if i % 2 else even, pd.DataFrame({"x": [float(i)]})) for i in range(40)]
        results = await asyncio.gather(*calls)
        await batcher.stop()
        return results

    results = run(scenario())
    assert all(x % 2 == 1 for batch in odd.seen for x in batch)
    assert all(x % 2 == 0 for batch in even.seen for x in batch)
    for i, result in enumerate(results):
        np.testing.assert_allclose(result, SlowModel().predict_proba(pd.DataFrame({"x": [float(i)]})))
    assert odd.calls + even.calls <= 6  # batched by model, not cut at every switch (that would be ~40 calls)


@pytest.mark.parametrize("rows", [1, 500])
def test_without_a_running_batcher_calls_go_straight_through(rows):
    result = run(MicroBatcher().predict(SlowModel(), pd.DataFrame({"x": np.zeros(rows)})))
    assert result.shape == (rows, 2)


class ThreadProbe:
    """A model that reports the thread it was called on and the OpenMP threads sklearn would use there."""

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        self.seen = (threading.current_thread().name, _openmp_effective_n_threads())
        return np.zeros((len(frame), 2))


def test_batches_are_scored_on_one_thread_capped_at_one_openmp_thread():
    # The cap is per thread for OpenMP: set on the event loop's thread it would not reach the scoring
    # thread, and a model with one OpenMP thread per core spin-waits against the event loop.
    from threadpoolctl import threadpool_limits

    probe = ThreadProbe()

    async def scenario():
        batcher = MicroBatcher()
        batcher.start()
        names = set()
        for _ in range(5):
            await batcher.predict(probe, pd.DataFrame({"x": [1.0]}))
            names.add(probe.seen[0])
        await batcher.stop()
        return names, probe.seen[1]

    with threadpool_limits(limits=2, user_api="openmp"):  # what the caller's thread allows does not leak in
        names, openmp_threads = run(scenario())
    assert len(names) == 1 and names.pop().startswith("scoring")
    assert openmp_threads == 1
