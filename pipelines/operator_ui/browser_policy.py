"""What a browser may do with what the operator pages serve: the response headers of each kind of answer.

The pages live on the Airflow UI's own origin, beside its REST API and its login cookie, so:

- a page the app renders itself runs only the app's own script file (no inline script, nothing from another
  origin), and talks only to this origin (its action forms call Airflow's REST API as the logged-in user);
- a report built from logged or landed data (a window's Evidently drift report, a batch's validation report)
  is served as a sandboxed document: an opaque origin, so a script it holds cannot read the UI's cookie or
  storage nor call the API as the user, open a dialog or a window, submit a form or navigate the UI; and it
  may load and send nothing (``connect-src 'none'``, images and fonts only inline). Evidently's report draws
  itself with its own inline scripts and embeds its data, its library and its font (it needs no network), so
  it keeps its scripts; the validation report has none and is allowed none.
"""

from __future__ import annotations

_NOSNIFF = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}

PAGE = {**_NOSNIFF, "Content-Security-Policy": (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'self'; base-uri 'none'")}

SCRIPTED_REPORT = {**_NOSNIFF, "Content-Security-Policy": (
    "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; font-src data:; connect-src 'none'; form-action 'none'; frame-ancestors 'self'; "
    "base-uri 'none'")}

REPORT = {**_NOSNIFF, "Content-Security-Policy": (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; "
    "frame-ancestors 'self'; base-uri 'none'")}
