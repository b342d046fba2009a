"""What the real services accept: the notification sink's payload checks (see sink.py).

Each check answers a notification the way the real far end would, with its
status code and body, so that "delivered to the sink" means "the real service
would have taken it". A refusal always names its reason, in the answer and in
``Verdict.reason`` (the record's ``refusal``). The rules, from each service's
documentation:

Slack incoming webhook (api.slack.com/messaging/webhooks, "Handling errors";
changelog 2016-05-17): the body is JSON (``Content-Type: application/json``)
or a form with a ``payload`` field holding the JSON; it must be an object with
a non-empty ``text``, non-empty ``attachments`` or non-empty ``blocks``.
Refusals are HTTP 400 with a text/plain code: ``invalid_payload`` (not a JSON
object, wrong content type, a field of the wrong type), ``no_text`` (nothing
to show), ``invalid_attachments`` (an attachment that is not an object or has
none of text/fallback/pretext/title/fields/image_url/thumb_url/blocks),
``invalid_blocks`` (a block that is not an object with a ``type``). Success is
``200 ok`` as text/plain, which Alertmanager's notifier requires.

PagerDuty Events API v2 (developer.pagerduty.com, "Send an Alert Event",
"Events API v2 Overview"): a JSON object of at most 512 KB; ``routing_key`` a
32-character string; ``event_action`` one of trigger, acknowledge, resolve;
``dedup_key`` a string of at most 255 characters, required for acknowledge and
resolve; for trigger, ``payload`` an object with a non-empty ``summary`` of at
most 1024 characters, a non-empty ``source`` and ``severity`` one of critical,
error, warning, info. A refusal is HTTP 400 with PagerDuty's body
``{"status": "invalid event", "message": "Event object is invalid", "errors":
[...]}`` (every failed rule listed; Alertmanager logs ``message: errors``).
Success is 202 ``{"status": "success", "message": "Event processed",
"dedup_key": ...}`` (a new key when the event had none).

Alertmanager webhook receiver (version 4 message, Alertmanager's
notify/webhook): a JSON object with ``version`` "4", ``status`` firing or
resolved, a non-empty string ``receiver`` and ``groupKey``, and ``alerts`` a
non-empty list whose every alert is an object with ``status`` firing or
resolved, ``labels`` and ``annotations`` objects and ``startsAt`` an RFC 3339
time. A refusal is HTTP 400 ``{"status": "error", "error": "<reason>"}``;
success is 200 ``{"status": "ok"}``.

Mail (RFC 5322 section 3.6, RFC 5321): the message needs the headers From,
To, Subject, Date and Message-ID (else ``550 5.6.0``); From names exactly one
address, the envelope's MAIL FROM (else ``550 5.7.1``); and the envelope has at
least one recipient (else ``554 5.5.1`` to DATA). Success is ``250``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses
from typing import Any
from urllib.parse import parse_qs

SLACK_OK_TYPE = "text/plain; charset=utf-8"
JSON_TYPE = "application/json"
PAGERDUTY_KEY_LENGTH = 32
PAGERDUTY_MAX_SUMMARY = 1024
PAGERDUTY_MAX_DEDUP_KEY = 255
PAGERDUTY_MAX_EVENT_BYTES = 512 * 1024
PAGERDUTY_ACTIONS = ("trigger", "acknowledge", "resolve")
PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")
WEBHOOK_STATUSES = ("firing", "resolved")
REQUIRED_MAIL_HEADERS = ("From", "To", "Subject", "Date", "Message-ID")
# Attachment fields any one of which gives Slack something to show.
SLACK_ATTACHMENT_CONTENT = ("text", "fallback", "pretext", "title", "fields", "image_url", "thumb_url", "blocks")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


@dataclass(frozen=True)
class Verdict:
    """The answer to one notification: status, body and content type; reason is None when accepted."""

    status: int
    body: bytes
    content_type: str
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        return self.reason is None


def decode_json(raw: bytes) -> tuple[Any, str | None]:
    """(value, None) for a JSON body, else (None, why it is not JSON)."""
    if not raw.strip():
        return None, "empty body"
    try:
        return json.loads(raw.decode("utf-8")), None
    except UnicodeDecodeError:
        return None, "body is not UTF-8"
    except ValueError as exc:
        return None, f"body is not valid JSON ({exc})"


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _filled(value: Any) -> bool:
    """A non-empty string, list or object."""
    return isinstance(value, (str, list, dict)) and len(value) > 0


# --- Slack ----------------------------------------------------------------------


def slack_message(content_type: str | None, raw: bytes) -> tuple[Any, str | None]:
    """The message object of a Slack webhook call (JSON body or form field ``payload``), else (None, why)."""
    media = _media_type(content_type)
    if media == "application/x-www-form-urlencoded":
        fields = parse_qs(raw.decode("utf-8", "replace"))
        if "payload" not in fields:
            return None, "form body without a payload field"
        return decode_json(fields["payload"][-1].encode())
    if media != JSON_TYPE:
        return None, f"Content-Type {content_type or '(none)'} is not application/json"
    return decode_json(raw)


def _slack_problems(message: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(Slack error code, detail) for each problem, in Slack's order; only the first is meaningful."""
    for key, kind in (("text", str), ("attachments", list), ("blocks", list)):
        if message.get(key) is not None and not isinstance(message[key], kind):
            yield "invalid_payload", f"{key} is not a {'string' if kind is str else 'list'}"
    for index, attachment in enumerate(message.get("attachments") or []):
        if not isinstance(attachment, dict):
            yield "invalid_attachments", f"attachments[{index}] is not an object"
        elif not any(_filled(attachment.get(key)) for key in SLACK_ATTACHMENT_CONTENT):
            yield "invalid_attachments", f"attachments[{index}] has none of {'/'.join(SLACK_ATTACHMENT_CONTENT)}"
    for index, block in enumerate(message.get("blocks") or []):
        if not isinstance(block, dict) or not _filled(block.get("type")):
            yield "invalid_blocks", f"blocks[{index}] is not an object with a type"
    if not (message.get("text") or message.get("attachments") or message.get("blocks")):
        yield "no_text", "the message has no text, attachments or blocks"


def check_slack(content_type: str | None, raw: bytes) -> tuple[Any, Verdict]:
    """A Slack incoming-webhook call: (message, ``200 ok``) or (message, 400 with Slack's error code)."""
    message, error = slack_message(content_type, raw)
    if error is None and not isinstance(message, dict):
        error = "the message is not a JSON object"
    problem = ("invalid_payload", error) if error else next(_slack_problems(message), None)
    if problem:
        code, detail = problem
        return message, Verdict(400, code.encode(), SLACK_OK_TYPE, f"{code}: {detail}")
    return message, Verdict(200, b"ok", SLACK_OK_TYPE)


# --- PagerDuty ------------------------------------------------------------------


def pagerduty_errors(event: Any, size: int = 0) -> list[str]:
    """Every rule of the Events API v2 an event breaks (empty: PagerDuty would accept it)."""
    if size > PAGERDUTY_MAX_EVENT_BYTES:
        return [f"Event is {size} bytes, more than the limit of 512 KB"]
    if not isinstance(event, dict):
        return ["Event must be a JSON object"]
    errors = []
    routing_key = event.get("routing_key")
    if not isinstance(routing_key, str) or not routing_key:
        errors.append("'routing_key' is missing or blank")
    elif len(routing_key) != PAGERDUTY_KEY_LENGTH:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if not isinstance(action, str) or not action:
        errors.append("'event_action' is missing or blank")
    elif action not in PAGERDUTY_ACTIONS:
        errors.append(f"'event_action' is invalid (must be one of {', '.join(PAGERDUTY_ACTIONS)})")
    dedup_key = event.get("dedup_key")
    if dedup_key is not None and not isinstance(dedup_key, str):
        errors.append("'dedup_key' must be a string")
    elif dedup_key and len(dedup_key) > PAGERDUTY_MAX_DEDUP_KEY:
        errors.append("Length of 'dedup_key' is too long (maximum is 255 characters)")
    elif not dedup_key and action in ("acknowledge", "resolve"):
        errors.append(f"'dedup_key' is missing or blank (required for {action} events)")
    if action == "trigger":
        errors.extend(_pagerduty_payload_errors(event.get("payload")))
    return errors


def _pagerduty_payload_errors(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object (required for trigger events)"]
    errors = []
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        errors.append("'payload.summary' is missing or blank")
    elif len(summary) > PAGERDUTY_MAX_SUMMARY:
        errors.append("Length of 'payload.summary' is too long (maximum is 1024 characters)")
    source = payload.get("source")
    if not isinstance(source, str) or not source.strip():
        errors.append("'payload.source' is missing or blank")
    severity = payload.get("severity")
    if not isinstance(severity, str) or not severity:
        errors.append("'payload.severity' is missing or blank")
    elif severity not in PAGERDUTY_SEVERITIES:
        errors.append(f"'payload.severity' is invalid (must be one of {', '.join(PAGERDUTY_SEVERITIES)})")
    return errors


def check_pagerduty(raw: bytes) -> tuple[Any, Verdict]:
    """An Events API v2 call: (event, 202 success) or (event, 400 invalid event)."""
    event, error = decode_json(raw)
    errors = [f"Event could not be parsed: {error}"] if error else pagerduty_errors(event, len(raw))
    if errors:
        body = {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
        return event, Verdict(400, json.dumps(body).encode(), JSON_TYPE, "; ".join(errors))
    dedup_key = event.get("dedup_key") or uuid.uuid4().hex
    body = {"status": "success", "message": "Event processed", "dedup_key": dedup_key}
    return event, Verdict(202, json.dumps(body).encode(), JSON_TYPE)


# --- Alertmanager webhook -------------------------------------------------------


def _webhook_problems(message: dict[str, Any]) -> Iterator[str]:
    """Each rule of the version 4 message broken, in order; only the first is meaningful."""
    if message.get("version") != "4":
        yield f"version is {message.get('version')!r}, expected '4'"
    if message.get("status") not in WEBHOOK_STATUSES:
        yield f"status is {message.get('status')!r}, expected firing or resolved"
    for key in ("receiver", "groupKey"):
        if not isinstance(message.get(key), str) or not message[key]:
            yield f"{key} is missing or not a non-empty string"
    alerts = message.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        yield "alerts is missing or not a non-empty list"
    for index, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            yield f"alerts[{index}] is not an object"
        if alert.get("status") not in WEBHOOK_STATUSES:
            yield f"alerts[{index}].status is {alert.get('status')!r}, expected firing or resolved"
        for key in ("labels", "annotations"):
            if not isinstance(alert.get(key), dict):
                yield f"alerts[{index}].{key} is missing or not an object"
        starts_at = alert.get("startsAt")
        if not isinstance(starts_at, str) or not RFC3339.match(starts_at):
            yield f"alerts[{index}].startsAt is {starts_at!r}, not an RFC 3339 time"


def webhook_error(message: Any) -> str | None:
    """The first rule of the version 4 webhook message that ``message`` breaks, else None."""
    if not isinstance(message, dict):
        return "the message is not a JSON object"
    return next(_webhook_problems(message), None)


def check_webhook(raw: bytes) -> tuple[Any, Verdict]:
    """An Alertmanager webhook call: (message, 200 ok) or (message, 400 with the reason)."""
    message, error = decode_json(raw)
    error = error or webhook_error(message)
    if error:
        return message, Verdict(400, json.dumps({"status": "error", "error": error}).encode(), JSON_TYPE, error)
    return message, Verdict(200, json.dumps({"status": "ok"}).encode(), JSON_TYPE)


# --- mail -----------------------------------------------------------------------

NO_RECIPIENTS = "554 5.5.1 Error: no valid recipients"


def mail_refusal(mail_from: str | None, rcpt_tos: list[str], message: Message) -> str | None:
    """The SMTP reply refusing a message (``5xx reason``), or None when a mail server would take it."""
    if not rcpt_tos:
        return NO_RECIPIENTS
    missing = [name for name in REQUIRED_MAIL_HEADERS if not str(message.get(name) or "").strip()]
    if missing:
        return f"550 5.6.0 Message refused: missing required header(s) {', '.join(missing)}"
    senders = [address for _name, address in getaddresses([str(v) for v in message.get_all("From") or []])]
    senders = [address for address in senders if address]
    if len(senders) != 1:
        return f"550 5.7.1 Message refused: From must name exactly one address, not {len(senders)}"
    if senders[0].lower() != (mail_from or "").lower():
        return f"550 5.7.1 Message refused: From <{senders[0]}> does not match the envelope sender <{mail_from or ''}>"
    return None
