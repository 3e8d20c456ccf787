"""Cached steps: a training step whose inputs are unchanged reuses its earlier outputs.

A step names what its result depends on as ``StepInputs``: digests of its input files' contents, of the
config it reads and of the code it runs (its own source, the modules it calls, the library versions). The
digest of those parts is the step's key. The first run of a key stores the step's result (JSON) and the
files it wrote in ``$MLOPS_HOME/cache/<model>/<step>/<key>/``; a later run with the same key gets them
back, hard-linked into place, instead of computing them. ``force`` computes again and replaces the entry.
Each outcome carries a ``CacheNote`` that says what happened and, on a miss, which parts changed.

A step's work is a function ``work(folder, *args) -> dict`` decorated with ``@cached_step(name)``; its caller
names the inputs and gets the ``Cached`` outcome: ``work(steps, parts, *args)``, where ``steps`` says which
model's cache, which run and whether to recompute.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property, update_wrapper
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from pipelines.storage import fresh_temp_dir, replace_dir, write_text_atomic

log = logging.getLogger(__name__)

LIBRARIES = ("numpy", "pandas", "pyarrow", "scikit-learn")
MANIFEST = "manifest.json"
OUTPUTS = "outputs"


# digests --------------------------------------------------------------------------------------------------
def _hasher():
    return hashlib.blake2b(digest_size=16)


def file_digest(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, _hasher).hexdigest()


def files_digest(files: Mapping[str, Path]) -> str:
    """The contents of several files, each under its label."""
    digest = _hasher()
    for label, path in sorted(files.items()):
        digest.update(f"{label}\0{file_digest(path)}\0".encode())
    return digest.hexdigest()


def value_digest(value: Any) -> str:
    """A JSON-able value (a config section as ``model_dump(mode="json")``, params)."""
    return hashlib.blake2b(json.dumps(value, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


def config_digest(*sections: Any) -> str:
    """The config a step reads: pydantic sections (as ``model_dump(mode="json")``) and plain values."""
    return value_digest([s.model_dump(mode="json") if hasattr(s, "model_dump") else s for s in sections])


def code_digest(*code: Callable | ModuleType | str) -> str:
    """The project sources the code reaches (functions, modules or module names, followed through their
    imports: ``code_reach``) and the versions of the libraries that compute with them."""
    from pipelines.code_reach import reached_sources

    digest = _hasher()
    for label, source in sorted(reached_sources(*code).items()):
        digest.update(f"{label}\0{source}\0".encode())
    for library in LIBRARIES:
        digest.update(f"{library}=={metadata.version(library)}\0".encode())
    return digest.hexdigest()


# inputs and outcomes --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepInputs:
    """What a step's result depends on: part name -> digest. ``identity`` names the parts that say which
    of a step's results this is (a candidate's params), so a miss is explained against the same one."""

    step: str
    parts: Mapping[str, str]
    identity: tuple[str, ...] = ()

    @cached_property
    def key(self) -> str:
        return value_digest(dict(self.parts))

    @property
    def identity_key(self) -> str:
        return value_digest({name: self.parts[name] for name in self.identity})


@dataclass(frozen=True)
class CacheNote:
    step: str
    status: Literal["hit", "miss", "forced"]
    key: str
    detail: str

    def __str__(self) -> str:
        return f"{self.step}: {self.status} ({self.detail})"

    def to_dict(self) -> dict[str, str]:
        return {"status": self.status, "key": self.key, "detail": self.detail}


@dataclass(frozen=True)
class Cached:
    """A step's result and the folder of files it wrote (read-only: ``place`` links them elsewhere)."""

    result: dict
    folder: Path
    note: CacheNote
    files: list[str] = field(default_factory=list)

    def place(self, dest: Path) -> Path:
        """Put the step's files at ``dest`` (a folder, replacing what was there), as hard links."""
        scratch = fresh_temp_dir(dest)
        try:
            for name in self.files:
                _link(self.folder / name, scratch / name)
            return replace_dir(scratch, dest)
        finally:
            if scratch.exists():
                shutil.rmtree(scratch)

    def path(self, name: str) -> Path:
        return self.folder / name


def _link(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)
    except OSError:  # another file system, or links not supported
        shutil.copy2(source, dest)


# the cache ------------------------------------------------------------------------------------------------
class StepCache:
    """One model's step results, content-addressed. Entries beyond ``keep`` per step are dropped, least
    recently used first."""

    def __init__(self, root: Path, keep: int = 32):
        self.root = root
        self.keep = keep

    def run(self, inputs: StepInputs, compute: Callable[[Path], dict], *, run_id: str, force: bool = False,
            usable: Callable[[dict], bool] | None = None) -> Cached:
        """The outputs of ``inputs``: stored ones, or ``compute(folder)``'s, which writes its files into
        ``folder`` and returns a JSON-able result. ``usable`` rejects a stored result whose referents are gone
        (e.g. a deleted MLflow run). A failing ``compute`` stores nothing."""
        entry = self.root / inputs.step / inputs.key
        if not force:
            hit = self._read(entry)
            if hit is not None and (usable is None or usable(hit["result"])):
                os.utime(entry / MANIFEST)
                note = CacheNote(inputs.step, "hit", inputs.key,
                                 f"inputs unchanged: reused the outputs of run {hit['run_id']} "
                                 f"from {hit['stored_at']}")
                log.info("cache %s", note)
                return Cached(hit["result"], entry / OUTPUTS, note, hit["files"])
        detail = "forced" if force else self._changes(inputs)
        scratch = fresh_temp_dir(entry)
        try:
            outputs = scratch / OUTPUTS
            outputs.mkdir()
            started = time.perf_counter()
            result = compute(outputs)
            files = sorted(str(p.relative_to(outputs)) for p in outputs.rglob("*") if p.is_file())
            write_text_atomic(json.dumps({
                "step": inputs.step, "key": inputs.key, "parts": dict(inputs.parts), "run_id": run_id,
                "stored_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "seconds": round(time.perf_counter() - started, 3), "files": files, "result": result,
            }, default=str, indent=1), scratch / MANIFEST)
            replace_dir(scratch, entry)
        finally:
            if scratch.exists():
                shutil.rmtree(scratch)
        write_text_atomic(json.dumps(dict(inputs.parts)), self._latest(inputs))
        self._evict(inputs.step)
        note = CacheNote(inputs.step, "forced" if force else "miss", inputs.key, detail)
        log.info("cache %s", note)
        return Cached(result, entry / OUTPUTS, note, files)

    def _read(self, entry: Path) -> dict | None:
        try:
            manifest = json.loads((entry / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        if not all((entry / OUTPUTS / name).is_file() for name in manifest["files"]):
            return None
        return manifest

    def _latest(self, inputs: StepInputs) -> Path:
        return self.root / inputs.step / f"latest-{inputs.identity_key}.json"

    def _changes(self, inputs: StepInputs) -> str:
        """Which parts differ from the last stored run of the same step (and identity)."""
        try:
            before = json.loads(self._latest(inputs).read_text())
        except (OSError, ValueError):
            return "computed: no earlier run"
        changed = sorted(name for name in {*before, *inputs.parts} if before.get(name) != inputs.parts.get(name))
        return f"computed: {', '.join(changed)} changed" if changed else "computed: the stored outputs are gone"

    def _evict(self, step: str) -> None:
        entries = [p for p in (self.root / step).iterdir() if (p / MANIFEST).is_file()]
        if len(entries) <= self.keep:
            return
        entries.sort(key=lambda p: (p / MANIFEST).stat().st_mtime, reverse=True)
        for stale in entries[self.keep:]:
            shutil.rmtree(stale, ignore_errors=True)


# cached steps ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepRun:
    """How a run's steps use the cache: the model's cache, the run that stores new entries, and ``force``
    (recompute every step)."""

    cache: StepCache
    run_id: str
    force: bool = False


class CachedStep:
    """A step's work run through the cache. ``step(run, parts, *args)`` returns the ``Cached`` outcome of the
    inputs ``parts`` (part name -> digest), computing ``work(folder, *args)`` only on a miss. Without a
    ``code`` part, the code is the work itself and what it reaches."""

    def __init__(self, name: str, work: Callable[..., dict], identity: tuple[str, ...] = (),
                 usable: Callable[[dict], bool] | None = None):
        update_wrapper(self, work)  # ``code_digest`` and ``reached_sources`` read the work's definition
        self.name, self.work, self.identity, self.usable = name, work, identity, usable

    def __call__(self, run: StepRun, parts: Mapping[str, str], *args: Any, **kwargs: Any) -> Cached:
        code = {} if "code" in parts else {"code": code_digest(self.work)}
        return run.cache.run(StepInputs(self.name, {**parts, **code}, self.identity),
                             lambda folder: self.work(folder, *args, **kwargs),
                             run_id=run.run_id, force=run.force, usable=self.usable)


def cached_step(name: str, *, identity: tuple[str, ...] = (),
                usable: Callable[[dict], bool] | None = None) -> Callable[[Callable[..., dict]], CachedStep]:
    """Make ``work(folder, *args) -> dict`` the cached step ``name`` (see ``CachedStep``); ``identity`` and
    ``usable`` as in ``StepInputs`` and ``StepCache.run``."""
    return lambda work: CachedStep(name, work, identity, usable)
