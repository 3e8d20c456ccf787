"""The timeline renders from monitoring rows: PNG, a self-contained HTML page and the retrains table."""

import json
from datetime import date, timedelta

from pipelines.timeline import Retrain, windows_frame, write_timeline


def test_timeline_files_name_every_retrain(tmp_path, flights_config):
    rows = []
    for week in range(6):
        start = date(2013, 6, 1) + timedelta(days=7 * week)
        rows.append({"window_start": start, "window_end": start + timedelta(days=7), "model_version": "1" if week < 3
                     else "2", "rows": 6500, "drift_share": 0.1 * week, "prediction_drift": 0.2,
                     "metric": "roc_auc", "realized": 0.7 - 0.01 * week, "estimated": 0.69, "baseline": 0.72,
                     "labelled_rows": 6500, "pending_labels": 0,
                     "data_valid": True, "decision": "retrain" if week == 2 else "ok",
                     "reason": "<script>alert(1)</script>" if week == 2 else "r",
                     "details": json.dumps({"drift_scores": {"temp": 1.0 + week, "dest": 0.05}, "baseline_band": 0.02,
                                             "drift_share_limit": 0.3})})
    retrains = [Retrain("2013-06-22", "temp drift 3.0 >= 1.5", "retrain__x", "success", "approved", "", "2")]
    paths = write_timeline(flights_config, windows_frame(rows), retrains, tmp_path)
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    page = paths["html"].read_text()
    assert "data:image/png;base64," in page and "retrain__x" in page and page.count("<tr>") == 1 + 1 + 6 + 1
    assert "estimated roc_auc" in page and "holdout roc_auc" in page and "<td>0.690</td><td>0.720</td>" in page
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # a logged reason is text
    table = paths["retrains"].read_text()
    assert "| 2013-06-22 | temp drift 3.0 >= 1.5 | retrain__x | success | approved | 2 |" in table


def test_without_key_features_the_timeline_draws_no_empty_key_feature_panel(tmp_path, flights_config):
    import struct

    from pipelines.timeline import plot

    rows = [{"window_start": date(2013, 6, 1) + timedelta(days=7 * w), "window_end": date(2013, 6, 8) +
             timedelta(days=7 * w), "model_version": "1", "rows": 100, "drift_share": 0.1, "metric": "roc_auc",
             "realized": 0.7, "baseline": 0.72, "details": json.dumps({"drift_scores": {"temp": 0.5}})}
            for w in range(3)]
    drift = flights_config.monitoring.drift
    assert drift.key_features  # the flights config names key features: four panels
    bare = flights_config.model_copy(update={"monitoring": flights_config.monitoring.model_copy(
        update={"drift": drift.model_copy(update={"key_features": {}})})})

    def height(png: bytes) -> int:
        return struct.unpack(">I", png[20:24])[0]  # the PNG header's height

    with_keys, without = plot(flights_config, windows_frame(rows), []), plot(bare, windows_frame(rows), [])
    assert height(without) / height(with_keys) < 0.85  # three panels, not four with one empty
