"""Bearer tokens: ``/admin/*`` always needs the admin token; scoring needs the predict token when one is
configured (``MLOPS_SERVING_PREDICT_TOKEN``), else it is open."""

from __future__ import annotations

import secrets

from fastapi import Request
from pydantic import SecretStr


def bearer_matches(request: Request, token: SecretStr) -> bool:
    """The request carries ``Authorization: Bearer <token>`` (compared in constant time)."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(given.encode(), token.get_secret_value().encode())
