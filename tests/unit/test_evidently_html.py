"""A logged category value in Evidently's report page stays data: it never ends the script element that holds
the report's data (which would make it markup and script of the page)."""

import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from pipelines.evidently_html import inert_data, standalone_html

HOSTILE = ["</script><script>alert(1)</script>", "<img src=x onerror=alert(2)>",
           "<!--<script>document.cookie='x=1'</script>", "</SCRIPT ><script>fetch('/api/v2/version')</script>"]


class Scripts(HTMLParser):
    """The page's script elements as a browser's tokenizer splits them."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[str] = []
        self.images = 0
        self._inside = False

    def handle_starttag(self, tag, attrs):
        self._inside = tag == "script"
        if self._inside:
            self.bodies.append("")
        self.images += tag == "img"

    def handle_endtag(self, tag):
        self._inside = False

    def handle_data(self, data):
        if self._inside:
            self.bodies[-1] += data


@pytest.fixture(scope="module")
def snapshot():
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataSummaryPreset

    rng = np.random.default_rng(0)
    current = pd.DataFrame({"x": rng.normal(size=24), "carrier": ["UA", "B6"] * 8 + HOSTILE * 2})
    definition = DataDefinition(numerical_columns=["x"], categorical_columns=["carrier"])
    return Report([DataSummaryPreset()]).run(current_data=Dataset.from_pandas(current, data_definition=definition))


def test_a_hostile_category_stays_inside_the_report_data(snapshot):
    assert HOSTILE[0] in snapshot.get_html_str(as_iframe=False)  # Evidently's own page: it would end the script
    page = standalone_html(snapshot)
    assert not any(value in page for value in HOSTILE)
    parsed = Scripts()
    parsed.feed(page)
    # The template's four script elements, no more (data, `global`, the library, the call that draws), no image.
    assert len(parsed.bodies) == 4 and parsed.images == 0
    dashboard = re.search(r"window\.drawDashboard\((\w+),", parsed.bodies[-1])[1]
    data = re.search(rf"var {dashboard} = (.*);$", parsed.bodies[0], re.MULTILINE)[1]
    shown = json.dumps(json.loads(data), ensure_ascii=False)  # what the report's script reads
    assert all(json.dumps(value, ensure_ascii=False)[1:-1] in shown for value in HOSTILE)


def test_a_page_not_laid_out_as_evidently_0_7_lays_it_out_is_refused():
    with pytest.raises(ValueError, match="not an Evidently report page"):
        inert_data("<html><script>var data = {};</script></html>")
    with pytest.raises(ValueError, match="holds 0 data lines"):
        inert_data("<script>var metric_1 = {}; var additional_graphs_metric_1 = {};</script>"
                   "<script>window.drawDashboard(metric_1, new Map())</script>")
