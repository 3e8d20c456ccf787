import hashlib

import pandas as pd

from pipelines.versioning import version_snapshot


def test_snapshot_is_pushed_and_hash_is_its_md5(tmp_path):
    snapshot = tmp_path / "snap.parquet"
    pd.DataFrame({"a": range(100)}).to_parquet(snapshot, index=False)
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    first = version_snapshot(snapshot, repo, remote, "data/m/train.parquet", "first", "m/run1")
    assert first.md5 == hashlib.md5(snapshot.read_bytes()).hexdigest()
    assert (remote / "files" / "md5" / first.md5[:2] / first.md5[2:]).read_bytes() == snapshot.read_bytes()
    assert first.rows == 100 and len(first.rev) == 40

    pd.DataFrame({"a": range(200)}).to_parquet(snapshot, index=False)
    second = version_snapshot(snapshot, repo, remote, "data/m/train.parquet", "second", "m/run2")
    assert second.md5 != first.md5 and second.rev != first.rev
    # The first snapshot is still retrievable by its git tag.
    import dvc.api

    with dvc.api.open("data/m/train.parquet", repo=str(repo), rev="m/run1", mode="rb") as handle:
        assert pd.read_parquet(handle)["a"].tolist() == list(range(100))


def test_same_bytes_give_the_same_version(tmp_path):
    snapshot = tmp_path / "snap.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(snapshot, index=False)
    a = version_snapshot(snapshot, tmp_path / "r", tmp_path / "rem", "d.parquet", "one", "t1")
    b = version_snapshot(snapshot, tmp_path / "r", tmp_path / "rem", "d.parquet", "two", "t2")
    assert (a.md5, a.rev) == (b.md5, b.rev)
