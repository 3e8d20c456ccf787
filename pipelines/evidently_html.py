"""An Evidently report as one self-contained HTML page whose data can never end up as markup.

Evidently's page (``file_html_template`` in ``evidently/legacy/utils/dashboard.py``, 0.7) embeds its library,
its font and its data inline, so it needs no network; but it writes the data as ``json.dumps`` output straight
into a ``<script>`` element, and JSON leaves ``</script>`` in a string as it is. A category value logged by the
prediction service (``</script><script>...``) would end that element and become markup and script of the
page. Here every ``<`` in the two data lines is written as the JSON escape ``\\u003c`` (JSON has ``<`` only
inside strings, so the data the page reads is unchanged).
"""

from __future__ import annotations

import re


def standalone_html(snapshot) -> str:
    """The report page of an Evidently ``Snapshot`` (what ``Snapshot.save_html`` writes), its data inert."""
    return inert_data(snapshot.get_html_str(as_iframe=False))


def inert_data(page: str) -> str:
    """``page`` with its embedded data unable to end its script element. Raises ``ValueError`` when the page
    is not laid out as Evidently 0.7 lays it out (an upgrade that moved the data must be looked at, not
    written out unescaped)."""
    calls = re.findall(r"window\.drawDashboard\((\w+),", page)
    if not calls:
        raise ValueError("not an Evidently report page: no window.drawDashboard(<id>, ...) call")
    dashboard = calls[-1]  # the template's own call comes last, after the data and the library
    data_line = re.compile(rf"^(\s*var (?:additional_graphs_)?{dashboard} = )(.*);$", re.MULTILINE)
    inert, lines = data_line.subn(lambda m: m[1] + m[2].replace("<", "\\u003c") + ";", page)
    if lines != 2:
        raise ValueError(f"Evidently's report page holds {lines} data lines of {dashboard}, not the 2 its "
                         "0.7 template writes: its layout changed, so its data cannot be made inert here")
    return inert
