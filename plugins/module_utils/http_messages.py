"""Turning an HTTP error body into the short human message our fail_json texts quote.

Shared by the Alertmanager and Grafana clients: both APIs answer with a JSON
string or {"message": "..."}, and proxies in front of them with text or HTML.
"""

from __future__ import annotations

import json

MAX_BODY_IN_MESSAGE = 500


def server_message(raw, limit=MAX_BODY_IN_MESSAGE):
    """The human part of an error body, on one line and at most `limit` characters."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw or "")
    text = text.strip()
    if not text:
        return "(empty response body)"
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, str):
        text = data
    elif isinstance(data, dict):
        for key in ("message", "error", "msg"):
            if isinstance(data.get(key), str) and data[key]:
                text = data[key]
                break
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit] + "..."
    return text
