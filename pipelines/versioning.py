"""Version: track a training snapshot with DVC (in a git repo of its own under $MLOPS_HOME), push it to
the DVC remote, and return the content hash every model version is tagged with."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class DataVersion:
    path: str          # path of the snapshot inside the DVC repo
    md5: str           # DVC content hash (the plain file MD5), the key of the object in the remote
    rev: str           # git commit of the DVC repo that records this snapshot
    remote_url: str    # where the exact bytes live in the DVC remote
    rows: int


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True)
    return result.stdout.strip()


@contextlib.contextmanager
def repo_lock(repo: Path) -> Iterator[None]:
    """Serialise writers: two DAG runs versioning at once would race on git's index."""
    repo.parent.mkdir(parents=True, exist_ok=True)
    with open(repo.parent / ".repo.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_repo(repo: Path, remote: Path) -> None:
    """git init + dvc init + a default local remote. Idempotent."""
    from dvc.repo import Repo

    repo.mkdir(parents=True, exist_ok=True)
    remote.mkdir(parents=True, exist_ok=True)
    if not (repo / ".git").exists():
        _git(repo, "init", "--quiet", "--initial-branch=main")
        _git(repo, "config", "user.name", "mlops-loop")
        _git(repo, "config", "user.email", "mlops-loop@localhost")
    if not (repo / ".dvc").exists():
        dvc_repo = Repo.init(str(repo))
        with dvc_repo.config.edit() as config:
            config["remote"]["local"] = {"url": str(remote)}
            config["core"]["remote"] = "local"
            config["core"]["autostage"] = True
            config["core"]["analytics"] = False
        _git(repo, "add", ".dvc", ".dvcignore")
        _git(repo, "commit", "--quiet", "-m", "Initialise DVC with a local remote")


def version_snapshot(snapshot: Path, repo: Path, remote: Path, target: str, message: str, tag: str) -> DataVersion:
    """Copy ``snapshot`` to ``repo/target``, ``dvc add`` + ``dvc push`` it, commit and tag the .dvc file."""
    from dvc.repo import Repo

    with repo_lock(repo):
        ensure_repo(repo, remote)
        dest = repo / target
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(snapshot, dest)
        dvc_repo = Repo(str(repo))
        try:
            dvc_repo.add(str(dest))
            dvc_repo.push()
        finally:
            dvc_repo.close()
        dvc_file = dest.with_name(dest.name + ".dvc")
        md5 = yaml.safe_load(dvc_file.read_text())["outs"][0]["md5"]
        _git(repo, "add", str(dvc_file.relative_to(repo)), str((dest.parent / ".gitignore").relative_to(repo)))
        if _git(repo, "status", "--porcelain", "--", str(dvc_file.relative_to(repo))):
            _git(repo, "commit", "--quiet", "-m", message)
        rev = _git(repo, "rev-parse", "HEAD")
        _git(repo, "tag", "--force", tag)
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(dest).metadata.num_rows
    return DataVersion(path=target, md5=md5, rev=rev, remote_url=str(remote / "files" / "md5" / md5[:2] / md5[2:]),
                       rows=rows)


def tag_revision(repo: Path, rev: str, tag: str) -> None:
    """Name an existing snapshot commit for another run (a run that reused a versioned snapshot)."""
    with repo_lock(repo):
        _git(repo, "tag", "--force", tag, rev)
