"""Alerts are logged always, POSTed to a configured webhook, and never fail the caller."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from pipelines.alerts import alert


def test_alert_is_logged_and_posted_to_the_webhook(flights_config, caplog):
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.handle_request, daemon=True).start()
    cfg = flights_config.model_copy(update={"monitoring": flights_config.monitoring.model_copy(
        update={"alert_webhook": f"http://127.0.0.1:{server.server_port}/hook"})})
    event = alert(cfg, "performance", "realized roc_auc 0.55 < floor 0.60", {"window": "2013-09-20_2013-09-27"})
    server.server_close()
    assert event["delivered"] == {"log": True, "webhook": True}
    assert received[0]["kind"] == "performance" and received[0]["details"]["window"] == "2013-09-20_2013-09-27"
    assert "ALERT performance flights_delay" in caplog.text


def test_an_unreachable_webhook_is_reported_not_raised(flights_config):
    cfg = flights_config.model_copy(update={"monitoring": flights_config.monitoring.model_copy(
        update={"alert_webhook": "http://127.0.0.1:9/hook"})})
    assert alert(cfg, "run_failed", "x.y failed")["delivered"] == {"log": True, "webhook": False}
