"""Per-column drift with Evidently's own default stat tests, computed from a reference profile.

Evidently's ``DataDriftPreset`` picks, per column, the test its ``get_stattest`` defaults to: with more than
1,000 reference rows, the normed Wasserstein distance for a numeric column with more than 5 distinct values,
else the Jensen-Shannon distance (threshold 0.1, drift when the score is at or above it); with fewer
reference rows, p-value tests (K-S, chi-square, Z). On a large window the preset spends its time on things
the decision does not need: it infers column types over the full columns, computes each column's drift
several times, sorts full columns and draws charts.

Here the reference side is reduced once per model version to a *profile*: per column, its distinct non-null
values and their counts (a few hundred rows for the flights features, whatever the training set's size).
The current window is reduced the same way with one hash-based ``value_counts`` per column. Both distances are
exact functions of those counts (weighted Wasserstein; histograms with Evidently's Sturges edges over the
combined range; category shares), so the scores equal Evidently's, and the verdicts with them: the tests
check it against ``DataDriftPreset`` and ``benchmarks/drift_speed.py`` shows it on a million rows. Columns
whose reference has 1,000 rows or fewer go through Evidently's stat test itself (cheap at that size).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_THRESHOLD = 0.1  # Evidently's default for both distances
SMALL_REFERENCE_ROWS = 1000  # at or below: Evidently's p-value tests


@dataclass(frozen=True)
class ColumnProfile:
    """One column of the reference: distinct non-null values (sorted for numeric) and their counts."""

    name: str
    kind: str  # "numeric" or "categorical"
    values: np.ndarray
    counts: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.counts.sum())

    def expanded(self) -> pd.Series:
        """The non-null reference values themselves (only for small references)."""
        return pd.Series(np.repeat(self.values, self.counts))


@dataclass(frozen=True)
class ReferenceProfile:
    columns: dict[str, ColumnProfile]
    rows: int

    def save(self, path: Path) -> Path:
        """One long Parquet table: column, kind, numeric or string value, count."""
        from pipelines.storage import write_parquet_atomic

        parts = []
        for column in self.columns.values():
            numeric = column.kind == "numeric"
            parts.append(pd.DataFrame({
                "column": column.name, "kind": column.kind,
                "number": column.values.astype(np.float64) if numeric else np.nan,
                "text": None if numeric else column.values.astype(object),
                "count": column.counts.astype(np.int64),
            }))
        table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        table["rows"] = self.rows
        return write_parquet_atomic(table, path)

    @classmethod
    def load(cls, path: Path) -> ReferenceProfile:
        table = pd.read_parquet(path)
        columns = {}
        for name, part in table.groupby("column", sort=False):
            kind = part["kind"].iat[0]
            values = part["number"].to_numpy() if kind == "numeric" else part["text"].to_numpy(dtype=object)
            columns[str(name)] = ColumnProfile(str(name), kind, values, part["count"].to_numpy())
        return cls(columns, int(table["rows"].iat[0]) if len(table) else 0)


def value_counts(series: pd.Series, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Distinct non-null values and their counts (numeric: sorted). Numeric columns are sorted once and
    run-length counted (cheaper than hashing a million distinct floats); categories are hashed."""
    if kind == "numeric":
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        values = np.sort(values[np.isfinite(values)])
        if values.size == 0:
            return values, np.zeros(0, dtype=np.int64)
        starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
        return values[starts], np.diff(np.append(starts, values.size)).astype(np.int64)
    # Categories are compared as text: the prediction service logs every category as a string, and a
    # reference read from Parquet may hold ints or bools (a month, a flag).
    if isinstance(series.dtype, pd.CategoricalDtype):  # counted on its codes, then named
        counts = series.value_counts(sort=False)
        counts = counts[counts > 0]
        counts.index = counts.index.astype(str)
        counts = counts.groupby(level=0, sort=False).sum()  # categories 1 and "1" are one category
    else:
        counts = series.dropna().astype(str).value_counts(sort=False)
    return counts.index.to_numpy(dtype=object), counts.to_numpy(dtype=np.int64)


def profile_reference(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> ReferenceProfile:
    columns = {}
    for kind, names in (("numeric", numeric), ("categorical", categorical)):
        for name in names:
            values, counts = value_counts(frame[name], kind)
            columns[name] = ColumnProfile(name, kind, values, counts)
    return ReferenceProfile(columns, len(frame))


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    threshold: float
    score: float
    drifted: bool
    current_rows: int  # non-null rows of the window

    def as_dict(self) -> dict:
        return asdict(self)


def _wasserstein_norm(ref: ColumnProfile, values: np.ndarray, counts: np.ndarray) -> float:
    """``scipy.stats.wasserstein_distance(ref, cur) / max(std(ref), 0.001)`` computed from both sides' sorted
    distinct values and counts, with scipy's own arithmetic (the area between the two CDFs)."""
    mean = np.average(ref.values, weights=ref.counts)
    std = float(np.sqrt(np.average((ref.values - mean) ** 2, weights=ref.counts)))
    # Both sides are sorted, so a stable argsort of their concatenation is a linear merge of two runs. Walking
    # the merged values, F_ref - F_cur moves by +count/n_ref or -count/n_cur at each value; the distance is
    # the area |F_ref - F_cur| between consecutive values (ties add zero-width steps).
    merged = np.concatenate((ref.values, values))
    order = np.argsort(merged, kind="stable")
    steps = np.concatenate((ref.counts / ref.counts.sum(), -counts / counts.sum()))[order]
    distance = float(np.sum(np.abs(np.cumsum(steps)[:-1]) * np.diff(merged[order])))
    return distance / max(std, 0.001)


def _sturges_edges(low: float, high: float, rows: int) -> np.ndarray:
    """``np.histogram_bin_edges(combined, bins="sturges")`` from the combined range and size alone."""
    probe = np.array([low, high])
    # The Sturges width depends on the data only through its range and size: reproduce numpy's own
    # computation on a two-point array with the real size's bin count.
    if low == high:
        return np.histogram_bin_edges(probe, bins=1)
    width = (high - low) / (np.log2(rows) + 1.0)
    bins = int(np.ceil((high - low) / width))
    return np.histogram_bin_edges(probe, bins=bins)


def _jensenshannon(ref: ColumnProfile, values: np.ndarray, counts: np.ndarray) -> float:
    """Evidently's ``get_binned_data`` (Sturges histogram for numeric columns with over 20 distinct reference
    values, else shares per distinct value) and scipy's Jensen-Shannon distance."""
    from scipy.spatial import distance

    ref_rows, cur_rows = ref.rows, int(counts.sum())
    if ref.kind == "numeric" and len(ref.values) > 20:
        low = float(min(ref.values[0], values[0]))
        high = float(max(ref.values[-1], values[-1]))
        edges = _sturges_edges(low, high, ref_rows + cur_rows)
        ref_share = np.histogram(ref.values, edges, weights=ref.counts)[0] / ref_rows
        cur_share = np.histogram(values, edges, weights=counts)[0] / cur_rows
    else:
        keys = pd.Index(ref.values).union(pd.Index(values)) if ref.kind == "numeric" else \
            pd.Index(list(dict.fromkeys([*ref.values.tolist(), *values.tolist()])))
        ref_share = pd.Series(ref.counts, index=ref.values).reindex(keys, fill_value=0).to_numpy() / ref_rows
        cur_share = pd.Series(counts, index=values).reindex(keys, fill_value=0).to_numpy() / cur_rows
    return float(distance.jensenshannon(ref_share, cur_share))


def combine(a: ColumnProfile, *more: ColumnProfile) -> ColumnProfile:
    """The counts of parts of one column (e.g. chunks of a window read in turn), merged in one pass."""
    values = np.concatenate([a.values, *(b.values for b in more)])
    weights = np.concatenate([a.counts, *(b.counts for b in more)])
    if a.kind == "numeric":
        distinct, inverse = np.unique(values, return_inverse=True)
        return ColumnProfile(a.name, a.kind, distinct, np.bincount(inverse, weights=weights).astype(np.int64))
    summed = pd.Series(weights, index=pd.Index(values, dtype=object)).groupby(level=0, sort=False).sum()
    return ColumnProfile(a.name, a.kind, summed.index.to_numpy(dtype=object), summed.to_numpy(dtype=np.int64))


def without(whole: ColumnProfile, part: ColumnProfile) -> ColumnProfile:
    """The counts of ``whole`` less those of ``part`` (a part of it): the rest of a reference once one of its
    windows is taken out."""
    if whole.kind == "numeric":
        positions = np.searchsorted(whole.values, part.values)
    else:
        positions = pd.Index(whole.values).get_indexer(part.values)
    counts = whole.counts.copy()
    np.subtract.at(counts, positions, part.counts)
    kept = counts > 0
    return ColumnProfile(whole.name, whole.kind, whole.values[kept], counts[kept])


def column_drift(ref: ColumnProfile, current: pd.Series | ColumnProfile, method: str | None = None,
                 threshold: float | None = None) -> ColumnDrift:
    """Drift of one column of the window (its values, or its value counts) against its reference profile,
    as Evidently would score it."""
    if isinstance(current, ColumnProfile):
        values, counts = current.values, current.counts
    else:
        values, counts = value_counts(current, ref.kind)
    cur_rows = int(counts.sum())
    if cur_rows == 0 or ref.rows == 0:
        return ColumnDrift(ref.name, "empty", threshold or DEFAULT_THRESHOLD, float("nan"), False, cur_rows)
    distinct = len(pd.Index(ref.values).union(pd.Index(values))) if ref.kind == "numeric" else \
        len(set(ref.values.tolist()) | set(values.tolist()))
    if method is None:
        if ref.rows <= SMALL_REFERENCE_ROWS:
            method = "evidently_default"
        elif ref.kind == "numeric" and distinct > 5:
            method = "wasserstein"
        else:
            method = "jensenshannon"
    if method == "wasserstein":
        threshold = DEFAULT_THRESHOLD if threshold is None else threshold
        score = _wasserstein_norm(ref, values, counts)
        return ColumnDrift(ref.name, method, threshold, score, score >= threshold, cur_rows)
    if method == "jensenshannon":
        threshold = DEFAULT_THRESHOLD if threshold is None else threshold
        score = _jensenshannon(ref, values, counts)
        return ColumnDrift(ref.name, method, threshold, score, score >= threshold, cur_rows)
    return _evidently_stattest(ref, current, None if method == "evidently_default" else method, threshold)


def _evidently_stattest(ref: ColumnProfile, current: pd.Series | ColumnProfile, method: str | None,
                        threshold: float | None) -> ColumnDrift:
    """Small references, or a method named in the config: Evidently's registered stat test itself."""
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType

    kind = ColumnType.Numerical if ref.kind == "numeric" else ColumnType.Categorical
    reference = ref.expanded()
    if isinstance(current, ColumnProfile):
        current = current.expanded()
    if ref.kind == "numeric":
        current = pd.to_numeric(current, errors="coerce")
    current = current.replace([np.inf, -np.inf], np.nan).dropna().reset_index(drop=True)
    test = get_stattest(reference, current, kind, method)
    result = test(reference, current, kind, threshold)
    return ColumnDrift(ref.name, test.name, float(result.actual_threshold), float(result.drift_score),
                       bool(result.drifted), len(current))


@dataclass(frozen=True)
class DriftSummary:
    columns: list[ColumnDrift]
    share: float  # drifted columns / columns
    dataset_drift: bool

    def drifted(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]


def dataset_drift(profile: ReferenceProfile, current: pd.DataFrame | ReferenceProfile, drift_share: float = 0.5,
                  methods: dict[str, str] | None = None, thresholds: dict[str, float] | None = None) -> DriftSummary:
    """Every profiled column of ``current`` (a frame, or the window's own profile of value counts); dataset
    drift when the drifted share reaches ``drift_share`` (Evidently's ``DriftedColumnsCount`` rule)."""
    methods, thresholds = methods or {}, thresholds or {}
    present = current.columns if isinstance(current, pd.DataFrame) else current.columns.keys()
    results = [column_drift(ref, current[name] if isinstance(current, pd.DataFrame) else current.columns[name],
                            methods.get(name), thresholds.get(name))
               for name, ref in profile.columns.items() if name in present]
    scored = [r for r in results if r.method != "empty"]
    share = sum(r.drifted for r in scored) / len(scored) if scored else 0.0
    return DriftSummary(results, share, bool(scored) and share >= drift_share - 1e-9)  # a share of k columns
