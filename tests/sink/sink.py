#!/usr/bin/env python3
"""Notification sink for the sandbox and the tests: NOT a real Slack, PagerDuty or mail server.

The sandbox's Alertmanager sends every notification here (container ``obs-sink``
on the ``obs-sandbox`` network) so its real integrations make real HTTP and SMTP
calls, and a test can read back exactly what each receiver got:

* HTTP on ``--host``:``--http-port`` (default 0.0.0.0:8080). Every ``POST
  /<channel>/...`` is a notification; ``<channel>`` is the first path segment:
  ``slack`` (Slack incoming webhook), ``pagerduty`` (Events API v2) and
  anything else (Alertmanager webhook receivers such as ``watchdog``).
* SMTP on ``--host``:``--smtp-port`` (default 0.0.0.0:2525), no TLS, no
  auth: every message is a notification on channel ``email``.

Each channel checks what it gets the way the real service does, and refuses,
with the real service's answer, what the real one would refuse, so an
accepted record means the real service would have taken the notification
(the rules, with their sources, are in ``payloads.py``, which must sit next to
this file):

* ``slack``: a JSON object (``Content-Type: application/json``, or a form field
  ``payload``) with a non-empty ``text``, ``attachments`` (each with some
  text/fallback/pretext/title/fields/image) or ``blocks`` (each with a
  ``type``). Accepted: ``200 ok`` as text/plain, which Alertmanager's Slack
  notifier requires. Refused: 400 text/plain ``invalid_payload``, ``no_text``,
  ``invalid_attachments`` or ``invalid_blocks``.
* ``pagerduty``: a JSON object of at most 512 KB, ``routing_key`` 32
  characters, ``event_action`` trigger/acknowledge/resolve, ``dedup_key`` at
  most 255 characters and required for acknowledge/resolve; a trigger needs
  ``payload.summary`` (1 to 1024 characters), ``payload.source`` and
  ``payload.severity`` critical/error/warning/info. Accepted: ``202
  {"status": "success", "message": "Event processed", "dedup_key": ...}``.
  Refused: ``400 {"status": "invalid event", "message": "Event object is
  invalid", "errors": [...]}``.
* webhooks: an Alertmanager version 4 message: ``version`` "4", ``status``
  firing/resolved, ``receiver``, ``groupKey`` and a non-empty ``alerts`` list,
  each alert with ``status``, ``labels``, ``annotations`` and an RFC 3339
  ``startsAt``. Accepted: ``200 {"status": "ok"}``. Refused: ``400
  {"status": "error", "error": "<reason>"}``.
* ``email``: headers From, To, Subject, Date and Message-ID present (else
  ``550 5.6.0``), From exactly one address equal to the envelope's MAIL FROM
  (else ``550 5.7.1``), at least one RCPT TO (else ``554 5.5.1`` to DATA).
  Accepted: ``250``.

Each notification becomes a record::

    {"id": 7, "channel": "slack", "path": "/slack/services/...", "query": "",
     "received_at": 1718000000.12, "status": "firing" | "resolved" | "unknown",
     "body": "<raw request body, or the decoded text of all mail parts>",
     "json": {...} | null, "headers": {...}, "accepted": true,
     "response_status": 200, "refusal": null | "<why it was refused>",
     # email only:
     "mail_from": "alertmanager@...", "rcpt_to": ["mdl-team@..."], "subject": "[FIRING:1] ..."}

``status`` comes from what the integration sent: Slack, the ``[FIRING...`` /
``[RESOLVED]`` prefix of an attachment's title (else its text); PagerDuty,
``event_action`` (``trigger`` / ``resolve``); webhooks, the top-level
``status``; email, the subject (Alertmanager's default ``[FIRING:N] ...`` /
``[RESOLVED] ...``). A refused notification is recorded too, with
``accepted`` false, the ``response_status`` it was answered with and the
reason in ``refusal`` (null when accepted); a message refused for having no
recipients never sent its content, so its record has only the envelope.

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
  injected failures. An injected failure comes before the payload checks.
  Failed deliveries are still recorded, with ``accepted`` false,
  ``response_status`` the code returned and ``refusal`` naming the injected
  failure, so a test can count the attempts; filter them out with
  ``accepted=true``.

Only the last 5000 records are kept. One line per notification is logged to
stdout, with the reason of a refusal. Dependencies: Python 3.11+ and aiosmtpd
(Debian's python3-aiosmtpd).
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
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import payloads

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
_LOG_LOCK = threading.Lock()


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
    if record.get("refusal"):
        what = f"{what} (refused: {record['refusal']})"
    line = f"sink: #{record['id']} {record['channel']} {record['status']} {verdict} {record['response_status']} {what}"
    with _LOG_LOCK:  # HTTP and SMTP threads log concurrently: one whole line at a time
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


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
        content_type = self.headers.get("Content-Type")
        if channel == "slack":
            payload, verdict = payloads.check_slack(content_type, raw)
        elif channel == "pagerduty":
            payload, verdict = payloads.check_pagerduty(raw)
        else:
            payload, verdict = payloads.check_webhook(raw)
        failure = self.server.store.failure(channel)
        if failure is not None:
            message = "failure injected by obs-sink"
            response = json.dumps({"status": "error", "message": message}).encode()
            verdict = payloads.Verdict(failure, response, "application/json", f"{message} (status {failure})")
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
                "accepted": verdict.accepted,
                "response_status": int(verdict.status),
                "refusal": verdict.reason,
                # Which Alertmanager sent it: tells a cluster duplicate from a retry.
                "sender": self.client_address[0],
            }
        )
        log_record(record)
        self._send(verdict.status, verdict.body, verdict.content_type)


# --- SMTP --------------------------------------------------------------------


class SMTPHandler:
    """aiosmtpd handler: checks and records every message on channel ``email``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _record(self, envelope: Any, parsed: dict[str, Any], reply: str, sender: str | None = None) -> None:
        code = int(reply[:3])
        record = self.store.add(
            {
                "channel": "email",
                "path": None,
                "query": "",
                "received_at": time.time(),
                "status": email_status(parsed.get("subject")),
                "body": parsed.get("body", ""),
                "json": None,
                "headers": parsed.get("headers", {}),
                "accepted": code < 400,
                "response_status": code,
                "refusal": None if code < 400 else reply[4:],
                "mail_from": envelope.mail_from,
                "rcpt_to": list(envelope.rcpt_tos),
                "subject": parsed.get("subject"),
                "sender": sender,
            }
        )
        log_record(record)

    def refuse_without_recipients(self, envelope: Any) -> str:
        """DATA before any accepted RCPT TO: refused and recorded (there is no content to keep)."""
        self._record(envelope, {}, payloads.NO_RECIPIENTS)
        return payloads.NO_RECIPIENTS

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", "replace")
        parsed = parse_email(content)
        failure = self.store.failure("email")
        if failure is not None:
            reply = f"{failure} Failure injected by obs-sink"
        else:
            message = email.message_from_bytes(content, policy=email.policy.default)
            refusal = payloads.mail_refusal(envelope.mail_from, list(envelope.rcpt_tos), message)
            reply = refusal or "250 Message accepted for delivery"
        self._record(envelope, parsed, reply, (session.peer or [None])[0])
        return reply


def smtp_server_class() -> type:
    """aiosmtpd's SMTP, except that DATA without recipients is refused through the handler (and so recorded)."""
    from aiosmtpd.smtp import SMTP  # noqa: PLC0415 - only the running sink needs aiosmtpd

    class SinkSMTP(SMTP):
        async def smtp_DATA(self, arg: str) -> None:
            envelope = self.envelope
            if self.session.host_name and envelope is not None and envelope.mail_from is not None:
                if not envelope.rcpt_tos:
                    await self.push(self.event_handler.refuse_without_recipients(envelope))
                    return
            await super().smtp_DATA(arg)

    return SinkSMTP


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

        smtp_class = smtp_server_class()

        class SinkController(Controller):
            def factory(self) -> Any:
                return smtp_class(self.handler, **self.SMTP_kwargs)

        self._smtp = SinkController(
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
