#!/usr/bin/env python3
"""Notification sink for the sandbox and the tests: NOT a real Slack, PagerDuty or mail server.

The sandbox's Alertmanager sends every notification here (container ``obs-sink``
on the ``obs-sandbox`` network) so its real integrations make real HTTP and SMTP
calls, and a test can read back exactly what each receiver got:

* HTTP on ``--host``:``--http-port`` (default 0.0.0.0:8080). Every ``POST
  /<channel>/...`` is a notification; ``<channel>`` is the first path segment:
  ``slack`` (Slack incoming webhook, answered ``200 ok`` as text/plain, which
  is what Alertmanager's Slack notifier requires), ``pagerduty`` (Events API
  v2, answered ``202 {"status": "success", "message": "Event processed",
  "dedup_key": ...}``) and anything else (webhook receivers such as
  ``watchdog``, answered ``200 {"status": "ok"}``).
* SMTP on ``--host``:``--smtp-port`` (default 0.0.0.0:2525), no TLS, no
  auth: every message is a notification on channel ``email``.

Each notification becomes a record::

    {"id": 7, "channel": "slack", "path": "/slack/services/...", "query": "",
     "received_at": 1718000000.12, "status": "firing" | "resolved" | "unknown",
     "body": "<raw request body, or the decoded text of all mail parts>",
     "json": {...} | null, "headers": {...}, "accepted": true,
     "response_status": 200,
     # email only:
     "mail_from": "alertmanager@...", "rcpt_to": ["mdl-team@..."], "subject": "[FIRING:1] ..."}

``status`` comes from what the integration sent: Slack, the ``[FIRING...`` /
``[RESOLVED]`` prefix of an attachment's title (else its text); PagerDuty,
``event_action`` (``trigger`` / ``resolve``); webhooks, the top-level
``status``; email, the subject (Alertmanager's default ``[FIRING:N] ...`` /
``[RESOLVED] ...``).

Query API, on the HTTP port:

* ``GET /api/health`` -> ``{"status": "ok"}`` (once both listeners are up).
* ``GET /api/received`` -> JSON list of records, oldest first. Filters, all
  optional and combined with AND: ``channel=<name>``, ``contains=<substring>``
  (searched in the body, the subject and every string in the parsed JSON, so a
  value Go's JSON encoder escaped, e.g. ``<`` as ``\\u003c``, is still found),
  ``status=firing|resolved|unknown``, ``after=<id>`` (records with a larger
  id), ``accepted=true|false``.
* ``DELETE /api/received`` clears the records (ids keep increasing).
* ``POST /api/fail?channel=<name>&status=<code>`` makes that channel fail until
  ``DELETE /api/fail`` (all channels) or ``DELETE /api/fail?channel=<name>``:
  HTTP channels answer ``<code>`` (default 500); ``email`` answers the DATA
  command with SMTP reply ``<code>`` (default 451). ``GET /api/fail`` lists the
  injected failures. Failed deliveries are still recorded, with ``accepted``
  false and ``response_status`` the code returned, so a test can count the
  attempts; filter them out with ``accepted=true``.

Only the last 5000 records are kept. One line per notification is logged to
stdout. Dependencies: Python 3.11+ and aiosmtpd (Debian's python3-aiosmtpd).
"""

from __future__ import annotations

import argparse
import collections
import email
import email.policy
import json
import signal
import sys
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_RECORDS = 5000
MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_HTTP_FAIL_STATUS = 500
DEFAULT_SMTP_FAIL_STATUS = 451
FIRING = "firing"
RESOLVED = "resolved"
UNKNOWN = "unknown"
# Request headers worth keeping in a record (the rest is transport noise).
KEPT_HTTP_HEADERS = ("Content-Type", "User-Agent", "Authorization")
KEPT_MAIL_HEADERS = ("From", "To", "Subject", "Date", "Message-Id", "Content-Type")


# --- status derivation -------------------------------------------------------


def status_from_text(text: Any) -> str | None:
    """``firing`` / ``resolved`` from Alertmanager's ``[FIRING...]`` / ``[RESOLVED]`` markers, else None.

    When both appear, the first one wins (it is the title's prefix).
    """
    if not isinstance(text, str):
        return None
    upper = text.upper()
    positions = {FIRING: upper.find("[FIRING"), RESOLVED: upper.find("[RESOLVED]")}
    found = {status: pos for status, pos in positions.items() if pos >= 0}
    if not found:
        return None
    return min(found, key=found.__getitem__)


def slack_status(payload: Any) -> str:
    """Status of a Slack webhook payload: {"channel", "username", "attachments": [{"title", "text", ...}]}."""
    if not isinstance(payload, dict):
        return UNKNOWN
    attachments = [a for a in payload.get("attachments") or [] if isinstance(a, dict)]
    candidates: list[Any] = [a.get("title") for a in attachments]
    for key in ("pretext", "text", "fallback"):
        candidates.extend(a.get(key) for a in attachments)
    candidates.append(payload.get("text"))
    for text in candidates:
        status = status_from_text(text)
        if status:
            return status
    return UNKNOWN


def pagerduty_status(payload: Any) -> str:
    """Status of a PagerDuty event: v2 ``event_action`` (v1 ``event_type``) trigger / resolve."""
    if not isinstance(payload, dict):
        return UNKNOWN
    action = payload.get("event_action") or payload.get("event_type")
    return {"trigger": FIRING, "resolve": RESOLVED}.get(action, UNKNOWN)


def webhook_status(payload: Any) -> str:
    """Status of an Alertmanager webhook (version 4) payload: its top-level ``status``."""
    if isinstance(payload, dict) and payload.get("status") in (FIRING, RESOLVED):
        return payload["status"]
    return UNKNOWN


def http_status(channel: str, payload: Any) -> str:
    """Status of an HTTP notification: by channel (slack, pagerduty), else by the payload's shape."""
    classify = {"slack": slack_status, "pagerduty": pagerduty_status}.get(channel)
    if classify is None and isinstance(payload, dict):
        if "status" in payload:
            classify = webhook_status
        elif "event_action" in payload or "event_type" in payload:
            classify = pagerduty_status
        elif "attachments" in payload:
            classify = slack_status
    return classify(payload) if classify else UNKNOWN


def email_status(subject: str | None) -> str:
    """Status of an email from Alertmanager's default subject: ``[FIRING:N] ...`` / ``[RESOLVED] ...``."""
    return status_from_text(subject) or UNKNOWN


def parse_email(content: bytes) -> dict[str, Any]:
    """Subject, kept headers and the decoded text of every text/* part of a raw message."""
    msg = email.message_from_bytes(content, policy=email.policy.default)
    texts = []
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        try:
            texts.append(part.get_content())
        except (LookupError, ValueError):
            payload = part.get_payload(decode=True) or b""
            texts.append(payload.decode("utf-8", "replace"))
    subject = msg.get("Subject")
    return {
        "subject": str(subject) if subject is not None else None,
        "headers": {name: str(msg[name]) for name in KEPT_MAIL_HEADERS if msg[name] is not None},
        "body": "\n".join(texts),
    }


# --- storage -----------------------------------------------------------------


def _strings(value: Any):
    """Every string inside a parsed JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _parse_bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


class Store:
    """Thread-safe, bounded list of records plus the injected failures."""

    def __init__(self, max_records: int = MAX_RECORDS) -> None:
        self._lock = threading.Lock()
        self._records: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_records)
        self._next_id = 1
        self._failures: dict[str, int] = {}

    def add(self, record: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            record = {"id": self._next_id, **record}
            self._next_id += 1
            self._records.append(record)
        return record

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def query(self, filters: dict[str, str]) -> list[dict[str, Any]]:
        with self._lock:
            records = list(self._records)
        channel = filters.get("channel")
        status = filters.get("status")
        contains = filters.get("contains")
        after = int(filters["after"]) if filters.get("after") else None
        accepted = _parse_bool(filters["accepted"]) if filters.get("accepted") else None
        return [
            r
            for r in records
            if (channel is None or r["channel"] == channel)
            and (status is None or r["status"] == status)
            and (after is None or r["id"] > after)
            and (accepted is None or r["accepted"] is accepted)
            and (contains is None or contains in self._haystack(r))
        ]

    @staticmethod
    def _haystack(record: dict[str, Any]) -> str:
        parts = [record.get("body") or "", record.get("subject") or ""]
        parts.extend(_strings(record.get("json")))
        return "\n".join(parts)

    def set_failure(self, channel: str, status: int) -> None:
        with self._lock:
            self._failures[channel] = status

    def clear_failures(self, channel: str | None = None) -> None:
        with self._lock:
            if channel is None:
                self._failures.clear()
            else:
                self._failures.pop(channel, None)

    def failure(self, channel: str) -> int | None:
        with self._lock:
            return self._failures.get(channel)

    def failures(self) -> dict[str, int]:
        with self._lock:
            return dict(self._failures)


def log_record(record: dict[str, Any]) -> None:
    """One stdout line per notification."""
    what = record.get("subject") or record.get("path")
    if record["channel"] == "email":
        what = f"{record.get('mail_from')} -> {','.join(record.get('rcpt_to') or [])}: {what}"
    verdict = "accepted" if record["accepted"] else "rejected"
    print(
        f"sink: #{record['id']} {record['channel']} {record['status']} {verdict} {record['response_status']} {what}",
        flush=True,
    )


# --- HTTP --------------------------------------------------------------------


class SinkHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], store: Store, ready: threading.Event) -> None:
        super().__init__(address, SinkHandler)
        self.store = store
        self.ready = ready


class SinkHandler(BaseHTTPRequestHandler):
    server: SinkHTTPServer
    server_version = "obs-sink/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: notifications get their own log line, API calls none."""

    # helpers
    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError(f"body of {length} bytes is too large")
        return self.rfile.read(length) if length > 0 else b""

    def _split(self) -> tuple[str, list[str], dict[str, str]]:
        url = urlsplit(self.path)
        segments = [s for s in url.path.split("/") if s]
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        return url.path, segments, params

    # verbs
    def do_GET(self) -> None:
        path, segments, params = self._split()
        if segments == ["api", "health"]:
            if self.server.ready.is_set():
                self._send_json(HTTPStatus.OK, {"status": "ok"})
            else:
                self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "starting"})
        elif segments == ["api", "received"]:
            try:
                self._send_json(HTTPStatus.OK, self.server.store.query(params))
            except ValueError as exc:
                self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        elif segments == ["api", "fail"]:
            self._send_json(HTTPStatus.OK, self.server.store.failures())
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: GET {path}"})

    def do_DELETE(self) -> None:
        path, segments, params = self._split()
        if segments == ["api", "received"]:
            self.server.store.clear()
            self._send_json(HTTPStatus.OK, {"status": "cleared"})
        elif segments == ["api", "fail"]:
            self.server.store.clear_failures(params.get("channel") or None)
            self._send_json(HTTPStatus.OK, self.server.store.failures())
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: DELETE {path}"})

    def do_POST(self) -> None:
        path, segments, params = self._split()
        try:
            raw = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._send_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": str(exc)})
            return
        if segments == ["api", "fail"]:
            self._inject_failure(params)
        elif not segments or segments[0] == "api":
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: POST {path}"})
        else:
            self._notification(path, segments[0], raw)

    def _inject_failure(self, params: dict[str, str]) -> None:
        channel = params.get("channel")
        if not channel:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": "channel is required"})
            return
        default = DEFAULT_SMTP_FAIL_STATUS if channel == "email" else DEFAULT_HTTP_FAIL_STATUS
        try:
            status = int(params.get("status") or default)
        except ValueError:
            status = 0
        if not 400 <= status <= 599:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": "status must be a 4xx or 5xx code"})
            return
        self.server.store.set_failure(channel, status)
        self._send_json(HTTPStatus.OK, self.server.store.failures())

    def _notification(self, path: str, channel: str, raw: bytes) -> None:
        body = raw.decode("utf-8", "replace")
        try:
            payload = json.loads(body) if body.strip() else None
        except ValueError:
            payload = None
        failure = self.server.store.failure(channel)
        if failure is not None:
            status_code, content_type = failure, "application/json"
            response = json.dumps({"status": "error", "message": "failure injected by obs-sink"}).encode()
        elif channel == "pagerduty":
            dedup_key = (payload.get("dedup_key") if isinstance(payload, dict) else None) or uuid.uuid4().hex
            status_code, content_type = HTTPStatus.ACCEPTED, "application/json"
            response = json.dumps({"status": "success", "message": "Event processed", "dedup_key": dedup_key}).encode()
        elif channel == "slack":
            status_code, content_type, response = HTTPStatus.OK, "text/plain; charset=utf-8", b"ok"
        else:
            status_code, content_type = HTTPStatus.OK, "application/json"
            response = json.dumps({"status": "ok"}).encode()
        record = self.server.store.add(
            {
                "channel": channel,
                "path": path,
                "query": urlsplit(self.path).query,
                "received_at": time.time(),
                "status": http_status(channel, payload),
                "body": body,
                "json": payload,
                "headers": {k: self.headers[k] for k in KEPT_HTTP_HEADERS if self.headers[k] is not None},
                "accepted": failure is None,
                "response_status": int(status_code),
            }
        )
        log_record(record)
        self._send(status_code, response, content_type)


# --- SMTP --------------------------------------------------------------------


class SMTPHandler:
    """aiosmtpd handler: records every message on channel ``email``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", "replace")
        parsed = parse_email(content)
        failure = self.store.failure("email")
        record = self.store.add(
            {
                "channel": "email",
                "path": None,
                "query": "",
                "received_at": time.time(),
                "status": email_status(parsed["subject"]),
                "body": parsed["body"],
                "json": None,
                "headers": parsed["headers"],
                "accepted": failure is None,
                "response_status": failure or 250,
                "mail_from": envelope.mail_from,
                "rcpt_to": list(envelope.rcpt_tos),
                "subject": parsed["subject"],
            }
        )
        log_record(record)
        if failure is not None:
            return f"{failure} Failure injected by obs-sink"
        return "250 Message accepted for delivery"


# --- process -----------------------------------------------------------------


class Sink:
    """Both listeners over one store. start() returns once both accept connections."""

    def __init__(self, host: str = "0.0.0.0", http_port: int = 8080, smtp_port: int = 2525) -> None:
        self.host = host
        self.smtp_port = smtp_port
        self.store = Store()
        self.ready = threading.Event()
        self.http = SinkHTTPServer((host, http_port), self.store, self.ready)
        self.http_port = self.http.server_address[1]
        self._http_thread = threading.Thread(target=self.http.serve_forever, name="sink-http", daemon=True)
        self._smtp: Any = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller  # noqa: PLC0415 - only the running sink needs it

        self._smtp = Controller(
            SMTPHandler(self.store), hostname=self.host, port=self.smtp_port, server_hostname="obs-sink"
        )
        self._smtp.start()
        self._http_thread.start()
        self.ready.set()

    def stop(self) -> None:
        self.ready.clear()
        if self._smtp is not None:
            self._smtp.stop()
        self.http.shutdown()
        self.http.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Test notification sink (HTTP webhooks + SMTP) for Alertmanager.")
    parser.add_argument("--host", default="0.0.0.0", help="address both listeners bind (default 0.0.0.0)")
    parser.add_argument("--http-port", type=int, default=8080, help="webhooks and query API (default 8080)")
    parser.add_argument("--smtp-port", type=int, default=2525, help="SMTP (default 2525)")
    args = parser.parse_args(argv)

    sink = Sink(args.host, args.http_port, args.smtp_port)
    stopping = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        stopping.set()

    # As PID 1 in a container, SIGTERM is ignored unless handled.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sink.start()
    print(f"sink: listening on http://{args.host}:{sink.http_port} and smtp://{args.host}:{args.smtp_port}", flush=True)
    while not stopping.wait(1):
        pass
    sink.stop()
    print("sink: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
