"""Alerts: always logged; POSTed as JSON to a webhook and e-mailed when the model config (or the
environment) names one. Sending never fails the caller: a monitoring run whose webhook is down still
records its numbers, and says the alert could not be delivered.

Kinds: dataset_drift, key_feature_drift, prediction_drift, performance, data_quality, data_validation_failed,
retrain_triggered, gate_rejected, run_failed.
"""

from __future__ import annotations

import logging
import smtplib
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from pipelines.config import ModelConfig
from pipelines.settings import stack_settings

log = logging.getLogger("pipelines.alerts")


def alert(cfg: ModelConfig, kind: str, message: str, details: dict[str, Any] | None = None) -> dict:
    event = {"kind": kind, "model": cfg.name, "message": message, "details": details or {},
             "at": datetime.now(UTC).isoformat(timespec="seconds")}
    log.warning("ALERT %s %s: %s", kind, cfg.name, message)
    delivered = {"log": True}
    webhook = cfg.monitoring.alert_webhook or stack_settings().alert_webhook
    if webhook:
        delivered["webhook"] = _post(webhook, event)
    emails = cfg.monitoring.alert_emails or list(stack_settings().alert_emails)
    if emails:
        delivered["email"] = _mail(emails, event)
    return {**event, "delivered": delivered}


def _post(url: str, event: dict) -> bool:
    import httpx

    try:
        httpx.post(url, json=event, timeout=5).raise_for_status()
        return True
    except Exception as exc:  # noqa: BLE001 (a bad URL or a refused connection: say so, never fail the caller)
        log.error("alert webhook %s failed: %s", url, exc)
        return False


def _mail(recipients: list[str], event: dict) -> bool:
    """Through the SMTP server of $SMTP_HOST (port $SMTP_PORT, default 25; sender $SMTP_FROM)."""
    settings = stack_settings()
    host = settings.smtp_host
    if not host:
        log.error("alert e-mail to %s not sent: set SMTP_HOST", recipients)
        return False
    mail = EmailMessage()
    mail["Subject"] = f"[mlops-loop] {event['kind']}: {event['model']}"
    mail["From"] = settings.smtp_from
    mail["To"] = ", ".join(recipients)
    mail.set_content(f"{event['message']}\n\n{event['details']}")
    try:
        with smtplib.SMTP(host, settings.smtp_port, timeout=10) as smtp:
            smtp.send_message(mail)
        return True
    except Exception as exc:  # noqa: BLE001 (a bad port, a refused login: say so, never fail the caller)
        log.error("alert e-mail to %s failed: %s", recipients, exc)
        return False

