"""The monitoring page's chart: each window's realized and estimated metric against the champion's baseline band,
its drift share against its limit, the retrains and the champion changing, drawn where the numbers say."""

import json
import re
import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pandas as pd
import pytest

from pipelines.operator_ui.monitoring_chart import DRIFT, LEFT, RIGHT, WIDTH, monitoring_chart
from pipelines.timeline import Retrain, windows_frame

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "</title></svg><script>alert(1)</script><img src=x onerror=alert(2)>"


def row(day: int, *, realized=None, estimated=None, baseline=0.72, band=0.03, drift=0.1, limit=0.4, version="1",
        signals=(), triggered=None, reason="within", metric="roc_auc") -> dict:
    start = date(2013, 6, 1) + timedelta(days=day)
    return {"window_start": start, "window_end": start + timedelta(days=7), "model_version": version, "rows": 900,
            "drift_share": drift, "metric": metric, "realized": realized, "estimated": estimated,
            "baseline": baseline, "decision": "retrain" if triggered else "ok", "reason": reason,
            "triggered_run_id": triggered,
            "details": json.dumps({"baseline_band": band, "drift_share_limit": limit,
                                   "signals": [{"name": s, "subject": None} for s in signals]})}


def drawn(rows, retrains=(), model="flights_delay", **kwargs) -> ET.Element:
    return ET.fromstring(str(monitoring_chart(model, windows_frame(rows), list(retrains), **kwargs)))


def levels(path: ET.Element) -> list[tuple[float, float, float]]:
    """A path of one level per window: (left, y, right) of each."""
    return [tuple(map(float, found)) for found in re.findall(r"M([\d.]+) ([\d.]+)H([\d.]+)", path.get("d"))]


def boxes(path: ET.Element) -> list[tuple[float, float, float, float]]:
    """The band's boxes: (left, top, right, bottom) of each."""
    return [(float(a), float(b), float(c), float(d))
            for a, b, c, d in re.findall(r"M([\d.]+) ([\d.]+)H([\d.]+)V([\d.]+)H[\d.]+Z", path.get("d"))]


def circles(chart: ET.Element, kind: str) -> list[ET.Element]:
    return [c for c in chart.iter(f"{SVG}circle") if kind in c.get("class").split()]


def one(chart: ET.Element, kind: str) -> ET.Element:
    (found,) = [p for p in chart.iter(f"{SVG}path") if p.get("class") == kind]
    return found


def test_each_windows_metric_is_drawn_against_the_baseline_band_and_its_drift_against_the_limit():
    # realized at the band's top, on the baseline, at the band's bottom; drift at its limit, at 0, at 1
    rows = [row(0, realized=0.75, estimated=0.74, drift=0.4), row(7, realized=0.72, estimated=0.72, drift=0.0),
            row(14, realized=0.69, estimated=None, drift=1.0, signals=["performance", "dataset_drift"])]
    chart = drawn(rows)
    realized = circles(chart, "realized")
    xs = [float(c.get("cx")) for c in realized]
    assert xs[0] == LEFT + 8 and xs[2] == WIDTH - RIGHT - 8 and xs[1] == pytest.approx((xs[0] + xs[2]) / 2, abs=0.1)
    (first, top, _, bottom), *_ = boxes(one(chart, "band"))
    assert [float(c.get("cy")) for c in realized] == pytest.approx([top, levels(one(chart, "baseline"))[1][1], bottom],
                                                                   abs=0.11)
    assert first < xs[0] < levels(one(chart, "baseline"))[0][2] < xs[1]  # each window's level spans its point
    estimated = circles(chart, "estimated")
    assert [float(c.get("cx")) for c in estimated] == xs[:2]  # the window without an estimate has no point
    assert float(estimated[1].get("cy")) == float(realized[1].get("cy"))  # same value, same height
    drift = circles(chart, "drift")
    limit_y = levels(one(chart, "limit"))[0][1]
    assert [float(c.get("cy")) for c in drift] == pytest.approx([limit_y, DRIFT[1], DRIFT[0]], abs=0.11)
    # the signals the policy raised mark their window's points, and no others
    assert [c.get("class") for c in circles(chart, "signal")] == ["realized signal", "drift signal"]
    assert [g.get("data-end") for g in chart.iter(f"{SVG}g") if g.get("class") == "window"] == [
        "2013-06-08", "2013-06-15", "2013-06-22"]
    assert "realized roc_auc 0.6900; baseline 0.7200 ± 0.0300; drift share 1.00 (limit 0.40)" in ET.tostring(
        chart, encoding="unicode")  # each window's numbers as its tooltip


def test_a_window_waiting_for_its_labels_breaks_the_realized_line():
    chart = drawn([row(0, realized=0.7), row(7, realized=None, estimated=0.71), row(14, realized=0.71)])
    assert one(chart, "realized line").get("d").count("M") == 2 and "L" not in one(chart, "realized line").get("d")
    assert one(chart, "estimated line").get("d").count("M") == 1
    assert len(circles(chart, "realized")) == 2 and len(circles(chart, "estimated")) == 1


def test_retrains_are_marked_at_their_window_and_say_what_became_of_them():
    rows = [row(0, realized=0.7), row(7, realized=0.6, triggered="r1"), row(14, realized=0.7, version="2"),
            row(21, realized=0.6, version="2", triggered="r2")]
    retrains = [Retrain("2013-06-15", "roc_auc 0.6 below the band", "r1", "", "approved", "", "2"),
                Retrain("2013-06-29", "roc_auc 0.6 below the band", "r2", "", "rejected", "worse", None)]
    chart = drawn(rows, retrains)
    xs = {g.get("data-end"): float(next(g.iter(f"{SVG}circle")).get("cx"))
          for g in chart.iter(f"{SVG}g") if g.get("class") == "window"}
    marks = [g for g in chart.iter(f"{SVG}g") if g.get("class", "").startswith("retrain")]
    assert [m.get("class") for m in marks] == ["retrain registered", "retrain not-registered"]
    for mark in marks:
        line = mark.find(f"{SVG}line")
        assert float(line.get("x1")) == xs[mark.get("data-end")] == float(line.get("x2"))
    assert marks[0].find(f"{SVG}text").text == "↻ v2" and marks[1].find(f"{SVG}text").text == "↻ ✗"
    assert marks[1].find(f"{SVG}title").text.endswith("(roc_auc 0.6 below the band): gate rejected")
    (champion,) = [g for g in chart.iter(f"{SVG}g") if g.get("class") == "champion"]
    assert champion.get("data-end") == "2013-06-22" and champion.find(f"{SVG}title").text.startswith("champion v1 → v2")
    assert re.match(r"M([\d.]+) ", champion.find(f"{SVG}path").get("d")).group(1) == f"{xs['2013-06-22']:.1f}"
    key = [span.get("class") for span in chart.find("figcaption")]
    assert "key retrain registered" in key and "key retrain not-registered" in key and "key champion" in key


def test_the_chart_has_a_title_for_assistive_technology_and_names_what_it_draws():
    chart = drawn([row(0, realized=0.7), row(7, realized=0.71)], default_drift_limit=0.5)
    svg = chart.find(f"{SVG}svg")
    assert svg.get("role") == "img" and svg.get("aria-labelledby") == "chart-title chart-description"
    assert svg.find(f"{SVG}title").get("id") == "chart-title"
    assert svg.find(f"{SVG}title").text.startswith("flights_delay: roc_auc per window against the champion's")
    assert "2 windows ending 2013-06-08 to 2013-06-15; 0 retrains" in svg.find(f"{SVG}desc").text
    key = [span.get("class") for span in chart.find("figcaption")]
    assert "key realized" in key and "key band" in key and "key limit" in key
    assert "key estimated" not in key and "key champion" not in key  # not drawn, so not in the key


def test_a_window_stored_without_its_own_drift_limit_is_drawn_against_the_configs():
    chart = drawn([row(0, limit=None), row(7, limit=0.3)], default_drift_limit=0.5)
    (own_left, default_y, _), (_, own_y, _) = levels(one(chart, "limit"))
    assert own_left >= LEFT and DRIFT[1] - default_y == pytest.approx(0.5 * (DRIFT[1] - DRIFT[0]), abs=0.11)
    assert DRIFT[1] - own_y == pytest.approx(0.3 * (DRIFT[1] - DRIFT[0]), abs=0.11)


def test_without_any_metric_the_chart_says_why_and_without_windows_it_is_empty():
    chart = drawn([row(0, baseline=None), row(7, baseline=None)])
    assert not circles(chart, "realized") and circles(chart, "drift")
    assert any("labels have not landed" in (t.text or "") for t in chart.iter(f"{SVG}text"))
    assert str(monitoring_chart("m", pd.DataFrame(), [])) == ""


def test_every_stored_text_is_escaped():
    rows = [row(0, realized=0.7, version=HOSTILE, metric=HOSTILE, reason=HOSTILE, triggered="r"),
            row(7, realized=0.7, metric=HOSTILE)]
    retrains = [Retrain("2013-06-08", HOSTILE, "r", "", HOSTILE, "", HOSTILE)]
    markup = str(monitoring_chart(HOSTILE, windows_frame(rows), retrains))
    assert "<script" not in markup and "<img" not in markup and "&lt;script&gt;alert(1)" in markup
    chart = ET.fromstring(markup)  # still one well-formed figure: nothing stored closed an element
    assert {e.tag.removeprefix(SVG) for e in chart.iter()} <= {
        "figure", "figcaption", "span", "svg", "title", "desc", "rect", "text", "path", "g", "circle", "line"}
    assert not [name for e in chart.iter() for name in e.attrib if name.startswith("on")]
    assert chart.find(f"{SVG}svg").find(f"{SVG}title").text.startswith(HOSTILE)


def test_the_first_window_is_drawn_in_the_middle_with_its_own_date():
    chart = drawn([row(0, estimated=0.7, drift=0.2)])
    (estimated,), (drift,) = circles(chart, "estimated"), circles(chart, "drift")
    assert float(estimated.get("cx")) == float(drift.get("cx")) == (LEFT + WIDTH - RIGHT) / 2
    assert [t.text for t in chart.iter(f"{SVG}text") if t.get("class") == "date"] == ["2013-06-08"]
