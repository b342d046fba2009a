"""Tests for the notification sink (tests/sink/sink.py and its payload rules, tests/sink/payloads.py).

The sink runs as a subprocess (its real command line) on free loopback ports;
the payloads have the shapes Alertmanager's integrations send (notify/slack,
notify/pagerduty, notify/webhook and notify/email in Alertmanager's source),
encoded like Go's encoding/json does (``<``, ``>`` and ``&`` escaped). Every
rule of the sink has a case that breaks it (refused, with the real service's
status and the reason, and recorded as not accepted), and the real
Alertmanager, configured like the sandbox, gets every integration accepted.
"""

from __future__ import annotations

import email.utils
import importlib
import json
import os
import smtplib
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
import yaml
from conftest import load_module_from_path, require_tool

REPO = Path(__file__).resolve().parents[2]
SINK = REPO / "tests" / "sink" / "sink.py"
HOST = "127.0.0.1"
MAIL_FROM = "alertmanager@mdl-sandbox.invalid"
MAIL_TO = "mdl-team@mdl-sandbox.invalid"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def go_json(value) -> str:
    """JSON as Go's json.Encoder writes it (HTML-safe escapes, trailing newline)."""
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") + "\n"


class SinkProcess:
    def __init__(self, http_port: int, smtp_port: int, proc: subprocess.Popen, log: Path) -> None:
        self.http_port = http_port
        self.smtp_port = smtp_port
        self.proc = proc
        self.log = log
        self.url = f"http://{HOST}:{http_port}"

    def post(self, path: str, body: str | bytes, content_type: str = "application/json") -> requests.Response:
        headers = {"Content-Type": content_type, "User-Agent": "Alertmanager/0.28.1"}
        data = body.encode() if isinstance(body, str) else body
        return requests.post(self.url + path, data=data, headers=headers, timeout=5)

    def received(self, **params) -> list[dict]:
        resp = requests.get(f"{self.url}/api/received", params=params, timeout=5)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def send_mail(self, subject: str, html: str, text: str | None = None, msg: EmailMessage | None = None) -> None:
        """Send ``msg`` (default: an alert mail as Alertmanager writes it) from MAIL_FROM to MAIL_TO."""
        msg = msg or alert_mail(subject, html, text)
        with smtplib.SMTP(HOST, self.smtp_port, local_hostname="obs-mon-1", timeout=5) as smtp:
            smtp.send_message(msg, from_addr=MAIL_FROM, to_addrs=[MAIL_TO])

    def received_one(self, **params) -> dict:
        records = self.received(**params)
        assert len(records) == 1, records
        return records[0]


def alert_mail(subject: str, html: str, text: str | None = None) -> EmailMessage:
    """notify/email: From, To, Subject, Message-Id, Date, multipart/alternative of text and HTML."""
    msg = EmailMessage()
    msg["From"] = MAIL_FROM
    msg["To"] = MAIL_TO
    msg["Subject"] = subject
    msg["Message-Id"] = f"<{time.time_ns()}@obs-mon-1>"
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg.make_alternative()
    if text is not None:
        msg.add_alternative(text, subtype="plain", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    return msg


@pytest.fixture(scope="module")
def sink(tmp_path_factory):
    pytest.importorskip("aiosmtpd", reason="the sink's SMTP side needs aiosmtpd")
    log = tmp_path_factory.mktemp("sink") / "sink.log"
    http_port, smtp_port = _free_port(), _free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(SINK), "--host", HOST, "--http-port", str(http_port), "--smtp-port", str(smtp_port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = SinkProcess(http_port, smtp_port, proc, log)
    deadline = time.monotonic() + 15
    while True:
        assert proc.poll() is None, f"sink exited: {log.read_text()}"
        try:
            if requests.get(f"{running.url}/api/health", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, f"sink did not become healthy: {log.read_text()}"
        time.sleep(0.1)
    yield running
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(autouse=True)
def _clean(request):
    if "sink" not in request.fixturenames:
        yield
        return
    running = request.getfixturevalue("sink")
    requests.delete(f"{running.url}/api/received", timeout=5).raise_for_status()
    requests.delete(f"{running.url}/api/fail", timeout=5).raise_for_status()
    yield


def _sink_dir_on_path() -> None:
    # sink.py imports payloads.py from its own directory, as when it runs as a script.
    if str(SINK.parent) not in sys.path:
        sys.path.insert(0, str(SINK.parent))


@pytest.fixture(scope="module")
def sink_module():
    _sink_dir_on_path()
    return load_module_from_path("obs_sink_under_test", SINK)


@pytest.fixture(scope="module")
def payloads():
    """tests/sink/payloads.py, the module sink.py uses."""
    _sink_dir_on_path()
    return importlib.import_module("payloads")


# --- payloads as Alertmanager sends them -------------------------------------

EXTERNAL_URL = "http://obs-mon-1:9093"
SLACK_PATH = "/slack/services/T0SANDBOX/B0SANDBOX/sandbox-webhook-token"
RUNBOOK = "https://git.mdl.internal/observability/-/blob/main/files/runbooks/high-error-rate.md"
DEDUP_KEY = "4c3e2b6f0f0a1e3d5b4c7a9e8d6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f"
# PagerDuty integration (routing) keys are 32 characters.
ROUTING_KEY = "0123456789abcdef0123456789abcdef"
PAGERDUTY_PATH = "/pagerduty/v2/enqueue"


def slack_payload(status: str) -> dict:
    """notify/slack: request{channel, username, attachments: [attachment]} with our title/text templates."""
    return {
        "channel": "#mdl-alerts",
        "username": "Alertmanager",
        "attachments": [
            {
                "title": f"[{status.upper()}] HighErrorRate (critical)",
                "title_link": f"{EXTERNAL_URL}/#/alerts?receiver=slack",
                "text": f"API 5xx ratio above 5% & rising: instance <api-1:8000> Runbook: {RUNBOOK}\n",
                "fallback": f"[{'FIRING:1' if status == 'firing' else 'RESOLVED'}] HighErrorRate (api critical) | "
                f"{EXTERNAL_URL}/#/alerts?receiver=slack",
                "callback_id": "",
                "footer": "",
                "color": "danger" if status == "firing" else "good",
                "mrkdwn_in": ["fallback", "pretext", "text"],
            }
        ],
    }


def pagerduty_payload(action: str) -> dict:
    """notify/pagerduty v2: pagerDutyMessage with payload.custom_details (the default details)."""
    firing = action == "trigger"
    alert = (
        "Labels:\n - alertname = HighErrorRate\n - component = api\n - instance = api-1:8000\n - severity = critical\n"
        "Annotations:\n - summary = API 5xx ratio above 5%\nSource: http://obs-mon-1:9090/graph?g0.expr=x\n"
    )
    return {
        "routing_key": ROUTING_KEY,
        "dedup_key": DEDUP_KEY,
        "event_action": action,
        "payload": {
            "summary": "[FIRING:1] HighErrorRate (api critical)"
            if firing
            else "[RESOLVED] HighErrorRate (api critical)",
            "source": "Alertmanager",
            "severity": "error",
            "custom_details": {
                "firing": alert if firing else "",
                "num_firing": "1" if firing else "0",
                "num_resolved": "0" if firing else "1",
                "resolved": "" if firing else alert,
            },
        },
        "client": "Alertmanager",
        "client_url": f"{EXTERNAL_URL}/#/alerts?receiver=pagerduty",
    }


def webhook_payload(status: str, alertname: str = "Watchdog", receiver: str = "watchdog") -> dict:
    """notify/webhook: the version 4 message."""
    labels = {"alertname": alertname, "component": "monitoring", "severity": "none"}
    return {
        "receiver": receiver,
        "status": status,
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": "Alerting pipeline heartbeat"},
                "startsAt": "2025-06-01T10:00:00.000Z",
                "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2025-06-01T11:00:00.000Z",
                "generatorURL": "http://obs-mon-1:9090/graph?g0.expr=vector%281%29&g0.tab=1",
                "fingerprint": "6934731368443c07",
            }
        ],
        "groupLabels": {"alertname": alertname},
        "commonLabels": labels,
        "commonAnnotations": {"summary": "Alerting pipeline heartbeat"},
        "externalURL": EXTERNAL_URL,
        "version": "4",
        "groupKey": '{}/{alertname="Watchdog"}:{alertname="Watchdog"}',
        "truncatedAlerts": 0,
    }


def alert_email_html(status: str) -> str:
    # One long line, as Alertmanager's email.default.html is: quoted-printable
    # folds it with soft line breaks the sink has to undo.
    row = "".join(
        f'<tr style="margin: 0; padding: 0;"><td>{k} = {v}</td></tr>'
        for k, v in (("alertname", "HighErrorRate"), ("component", "api"), ("instance", "mdl-api-7f9c4d-1:8000"))
    )
    return (
        "<!DOCTYPE html><html><body>"
        f'<table style="width: 100%;"><tr><td>{status}: 1 alert for alertname=HighErrorRate</td></tr>{row}</table>'
        "</body></html>"
    )


# --- HTTP integrations ---------------------------------------------------------


def test_health(sink):
    resp = requests.get(f"{sink.url}/api/health", timeout=5)
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


def test_slack_firing_and_resolved(sink):
    resp = sink.post(SLACK_PATH, go_json(slack_payload("firing")))
    # Alertmanager's Slack notifier wants 200 and exactly "ok" as non-JSON text.
    assert resp.status_code == 200
    assert resp.text == "ok"
    assert not resp.headers["Content-Type"].startswith("application/json")
    sink.post(SLACK_PATH, go_json(slack_payload("resolved")))

    records = sink.received(channel="slack")
    assert [r["status"] for r in records] == ["firing", "resolved"]
    first = records[0]
    assert first["path"] == SLACK_PATH
    assert first["channel"] == "slack"
    assert first["accepted"] is True
    assert first["response_status"] == 200
    assert first["json"]["channel"] == "#mdl-alerts"
    assert first["json"]["attachments"][0]["title"] == "[FIRING] HighErrorRate (critical)"
    assert first["json"]["attachments"][0]["color"] == "danger"
    assert "\\u003capi-1:8000\\u003e" in first["body"]  # the raw body, as Go encoded it
    assert first["headers"]["User-Agent"] == "Alertmanager/0.28.1"
    assert isinstance(first["received_at"], float)
    assert first["sender"] == HOST  # the client's address: which Alertmanager sent it
    assert first["id"] < records[1]["id"]


def test_contains_finds_go_escaped_text(sink):
    sink.post(SLACK_PATH, go_json(slack_payload("firing")))
    assert len(sink.received(contains="<api-1:8000>")) == 1
    assert len(sink.received(contains="5% & rising")) == 1


def test_pagerduty_trigger_and_resolve(sink):
    resp = sink.post(PAGERDUTY_PATH, go_json(pagerduty_payload("trigger")))
    assert resp.status_code == 202
    assert resp.json() == {"status": "success", "message": "Event processed", "dedup_key": DEDUP_KEY}
    resp = sink.post(PAGERDUTY_PATH, go_json(pagerduty_payload("resolve")))
    assert resp.status_code == 202

    records = sink.received(channel="pagerduty")
    assert [r["status"] for r in records] == ["firing", "resolved"]
    assert records[0]["json"]["event_action"] == "trigger"
    assert records[0]["json"]["payload"]["custom_details"]["num_firing"] == "1"
    assert records[1]["json"]["payload"]["summary"].startswith("[RESOLVED]")
    assert records[0]["response_status"] == 202


def test_pagerduty_without_dedup_key_gets_one(sink):
    payload = pagerduty_payload("trigger")
    del payload["dedup_key"]
    resp = sink.post(PAGERDUTY_PATH, go_json(payload))
    assert resp.status_code == 202
    assert resp.json()["dedup_key"]


def test_webhook_channels(sink):
    resp = sink.post("/watchdog/sandbox-heartbeat-token", go_json(webhook_payload("firing")))
    assert resp.status_code == 200
    sink.post("/oncall-bridge/hook", go_json(webhook_payload("resolved", "HighErrorRate", "bridge")))

    watchdog = sink.received(channel="watchdog")
    assert len(watchdog) == 1
    assert watchdog[0]["status"] == "firing"
    assert watchdog[0]["path"] == "/watchdog/sandbox-heartbeat-token"
    assert watchdog[0]["json"]["alerts"][0]["labels"]["alertname"] == "Watchdog"
    assert watchdog[0]["json"]["version"] == "4"

    other = sink.received(channel="oncall-bridge")
    assert [r["status"] for r in other] == ["resolved"]


def test_non_json_body_is_kept_raw_and_refused(sink):
    resp = requests.post(f"{sink.url}/custom/x", data=b"not json", timeout=5)
    assert resp.status_code == 400
    assert "not valid JSON" in resp.json()["error"]
    [record] = sink.received(channel="custom")
    assert record["body"] == "not json"
    assert record["json"] is None
    assert record["status"] == "unknown"
    assert record["accepted"] is False
    assert record["response_status"] == 400
    assert "not valid JSON" in record["refusal"]


def test_accepted_records_have_no_refusal(sink):
    sink.post(SLACK_PATH, go_json(slack_payload("firing")))
    sink.post(PAGERDUTY_PATH, go_json(pagerduty_payload("trigger")))
    sink.post("/watchdog/t", go_json(webhook_payload("firing")))
    sink.send_mail("[FIRING:1] HighErrorRate (critical)", alert_email_html("firing"))
    records = sink.received()
    assert [r["channel"] for r in records] == ["slack", "pagerduty", "watchdog", "email"]
    assert all(r["accepted"] is True and r["refusal"] is None for r in records), records
    assert sink.received(accepted="false") == []


# --- Slack: what Slack's incoming webhooks accept and refuse --------------------------


def _assert_refused(sink, resp, channel: str, status: int, reason: str) -> dict:
    """The answer has ``status``; the one record of ``channel`` is refused with it, naming ``reason``."""
    assert resp.status_code == status, resp.text
    record = sink.received_one(channel=channel)
    assert record["accepted"] is False
    assert record["response_status"] == status
    assert reason in record["refusal"], record["refusal"]
    assert sink.received(channel=channel, accepted="true") == []
    assert [r["id"] for r in sink.received(channel=channel, accepted="false")] == [record["id"]]
    return record


@pytest.mark.parametrize(
    "message",
    [
        {"text": "plain text message"},
        {"text": "", "attachments": [{"fallback": "only a fallback"}]},
        {"attachments": [{"title": "only a title"}]},
        {"attachments": [{"fields": [{"title": "f", "value": "v"}]}]},
        {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "a block"}}]},
    ],
    ids=["text", "attachment-fallback", "attachment-title", "attachment-fields", "blocks"],
)
def test_slack_accepts_every_valid_form(sink, message):
    resp = sink.post(SLACK_PATH, go_json(message))
    assert (resp.status_code, resp.text) == (200, "ok")
    assert resp.headers["Content-Type"].startswith("text/plain")
    record = sink.received_one(channel="slack")
    assert record["accepted"] is True
    assert record["json"] == message


def test_slack_accepts_a_form_encoded_payload(sink):
    body = urlencode({"payload": json.dumps({"text": "[FIRING:1] from a form"})})
    resp = sink.post(SLACK_PATH, body, content_type="application/x-www-form-urlencoded")
    assert (resp.status_code, resp.text) == (200, "ok")
    record = sink.received_one(channel="slack")
    assert record["json"] == {"text": "[FIRING:1] from a form"}
    assert record["status"] == "firing"


@pytest.mark.parametrize(
    ("content_type", "body", "code", "reason"),
    [
        ("application/json", "not json", "invalid_payload", "not valid JSON"),
        ("application/json", "", "invalid_payload", "empty body"),
        ("application/json", "[1, 2]", "invalid_payload", "not a JSON object"),
        ("text/plain", go_json({"text": "hi"}), "invalid_payload", "is not application/json"),
        ("application/x-www-form-urlencoded", "text=hi", "invalid_payload", "without a payload field"),
        ("application/json", go_json({"text": 42}), "invalid_payload", "text is not a string"),
        ("application/json", go_json({"attachments": {"text": "x"}}), "invalid_payload", "attachments is not a list"),
        ("application/json", go_json({"blocks": "x"}), "invalid_payload", "blocks is not a list"),
        ("application/json", go_json({"channel": "#mdl-alerts"}), "no_text", "no text, attachments or blocks"),
        ("application/json", go_json({"text": "", "attachments": []}), "no_text", "no text"),
        ("application/json", go_json({"attachments": ["x"]}), "invalid_attachments", "attachments[0] is not an"),
        (
            "application/json",
            go_json({"attachments": [{"title": "ok"}, {"color": "danger", "text": "", "fallback": ""}]}),
            "invalid_attachments",
            "attachments[1] has none of text/fallback",
        ),
        ("application/json", go_json({"blocks": [{"text": "no type"}]}), "invalid_blocks", "blocks[0]"),
    ],
    ids=[
        "not-json",
        "empty",
        "json-list",
        "wrong-content-type",
        "form-without-payload",
        "text-not-string",
        "attachments-not-list",
        "blocks-not-list",
        "nothing-to-show",
        "empty-text-and-attachments",
        "attachment-not-object",
        "attachment-without-content",
        "block-without-type",
    ],
)
def test_slack_refuses_like_slack(sink, content_type, body, code, reason):
    resp = sink.post(SLACK_PATH, body, content_type=content_type)
    # Slack answers a bad webhook call with 400 and its error code as plain text.
    assert resp.text == code
    assert resp.headers["Content-Type"].startswith("text/plain")
    record = _assert_refused(sink, resp, "slack", 400, reason)
    assert record["refusal"].startswith(f"{code}: ")


# --- PagerDuty: what the Events API v2 accepts and refuses -----------------------------


def _changed(doc: dict, nested, prefix: str, changes: dict) -> dict:
    """``doc`` with top-level (``key=value``) or nested (``<prefix>key=value``) changes; None removes."""
    for name, value in changes.items():
        target, key = (nested(doc), name[len(prefix) :]) if name.startswith(prefix) else (doc, name)
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return doc


def _pd(action: str = "trigger", **changes) -> dict:
    """An Alertmanager PagerDuty event with top-level (``key=value``) or payload (``payload__key``) changes."""
    event = pagerduty_payload("resolve" if action == "resolve" else "trigger")
    event["event_action"] = action
    return _changed(event, lambda doc: doc["payload"], "payload__", changes)


@pytest.mark.parametrize(
    "event",
    [
        _pd("trigger"),
        _pd("resolve"),
        _pd("acknowledge", payload=None),
        _pd("resolve", payload=None),
        _pd("trigger", dedup_key=None),
        _pd("trigger", dedup_key="k" * 255),
        _pd("trigger", payload__summary="s" * 1024),
        *(_pd("trigger", payload__severity=severity) for severity in ("critical", "warning", "info")),
    ],
    ids=[
        "trigger",
        "resolve",
        "acknowledge-without-payload",
        "resolve-without-payload",
        "trigger-without-dedup-key",
        "dedup-key-255",
        "summary-1024",
        "critical",
        "warning",
        "info",
    ],
)
def test_pagerduty_accepts_every_valid_event(sink, event):
    resp = sink.post(PAGERDUTY_PATH, go_json(event))
    assert resp.status_code == 202, resp.text
    answer = resp.json()
    assert answer["status"] == "success"
    assert answer["message"] == "Event processed"
    assert answer["dedup_key"] == event.get("dedup_key", answer["dedup_key"])
    assert sink.received_one(channel="pagerduty")["accepted"] is True


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (_pd(routing_key=None), "'routing_key' is missing or blank"),
        (_pd(routing_key=""), "'routing_key' is missing or blank"),
        (_pd(routing_key=12345), "'routing_key' is missing or blank"),
        (_pd(routing_key="k" * 31), "Length of 'routing_key' is incorrect (should be 32 characters)"),
        (_pd(routing_key="k" * 33), "Length of 'routing_key' is incorrect (should be 32 characters)"),
        (_pd(event_action=None), "'event_action' is missing or blank"),
        (_pd("escalate"), "'event_action' is invalid"),
        (_pd(dedup_key="k" * 256), "Length of 'dedup_key' is too long (maximum is 255 characters)"),
        (_pd(dedup_key=7), "'dedup_key' must be a string"),
        (_pd("resolve", dedup_key=None), "'dedup_key' is missing or blank (required for resolve events)"),
        (_pd("acknowledge", dedup_key=""), "'dedup_key' is missing or blank (required for acknowledge events)"),
        (_pd(payload=None), "'payload' is missing or not an object"),
        (_pd(payload="summary"), "'payload' is missing or not an object"),
        (_pd(payload__summary=None), "'payload.summary' is missing or blank"),
        (_pd(payload__summary="  "), "'payload.summary' is missing or blank"),
        (_pd(payload__summary="s" * 1025), "Length of 'payload.summary' is too long (maximum is 1024 characters)"),
        (_pd(payload__source=None), "'payload.source' is missing or blank"),
        (_pd(payload__source=""), "'payload.source' is missing or blank"),
        (_pd(payload__severity=None), "'payload.severity' is missing or blank"),
        (_pd(payload__severity="fatal"), "'payload.severity' is invalid"),
        (["not", "an", "object"], "Event must be a JSON object"),
    ],
    ids=[
        "no-routing-key",
        "blank-routing-key",
        "routing-key-not-string",
        "routing-key-31",
        "routing-key-33",
        "no-event-action",
        "unknown-event-action",
        "dedup-key-256",
        "dedup-key-not-string",
        "resolve-without-dedup-key",
        "acknowledge-with-blank-dedup-key",
        "trigger-without-payload",
        "payload-not-object",
        "no-summary",
        "blank-summary",
        "summary-1025",
        "no-source",
        "blank-source",
        "no-severity",
        "unknown-severity",
        "json-list",
    ],
)
def test_pagerduty_refuses_invalid_events(sink, event, error):
    resp = sink.post(PAGERDUTY_PATH, go_json(event))
    answer = resp.json()
    # PagerDuty's documented 400 body; Alertmanager logs "message: errors" from it.
    assert answer["status"] == "invalid event"
    assert answer["message"] == "Event object is invalid"
    assert error in answer["errors"] or any(e.startswith(error) for e in answer["errors"]), answer["errors"]
    _assert_refused(sink, resp, "pagerduty", 400, error)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("{not json", "Event could not be parsed"),
        ("", "Event could not be parsed: empty body"),
        (json.dumps(_pd(client_url="u" * (512 * 1024))), "more than the limit of 512 KB"),
    ],
    ids=["not-json", "empty", "larger-than-512KB"],
)
def test_pagerduty_refuses_unparseable_or_oversized_bodies(sink, body, error):
    resp = sink.post(PAGERDUTY_PATH, body)
    assert resp.json()["status"] == "invalid event"
    assert any(error in e for e in resp.json()["errors"]), resp.json()
    _assert_refused(sink, resp, "pagerduty", 400, error)


def test_pagerduty_lists_every_error(sink):
    event = _pd(routing_key="short", payload__severity="fatal", payload__source=None)
    resp = sink.post(PAGERDUTY_PATH, go_json(event))
    assert resp.status_code == 400
    assert resp.json()["errors"] == [
        "Length of 'routing_key' is incorrect (should be 32 characters)",
        "'payload.source' is missing or blank",
        "'payload.severity' is invalid (must be one of critical, error, warning, info)",
    ]
    record = sink.received_one(channel="pagerduty")
    assert record["refusal"] == "; ".join(resp.json()["errors"])
    assert record["status"] == "firing"  # still classified, so a test can see what was refused


# --- Alertmanager webhook (version 4) ----------------------------------------------------


def _wh(**changes) -> dict:
    """A webhook message with top-level (``key=value``) or first-alert (``alert__key``) changes; None removes."""
    return _changed(webhook_payload("firing"), lambda doc: doc["alerts"][0], "alert__", changes)


@pytest.mark.parametrize(
    "message",
    [
        webhook_payload("firing"),
        webhook_payload("resolved"),
        _wh(alert__startsAt="2025-06-01T10:00:00.123456789Z"),
        _wh(alert__startsAt="2025-06-01T12:00:00+02:00"),
        _wh(alert__annotations={}),
    ],
    ids=["firing", "resolved", "nanoseconds", "offset", "no-annotations"],
)
def test_webhook_accepts_valid_messages(sink, message):
    resp = sink.post("/watchdog/t", go_json(message))
    assert (resp.status_code, resp.json()) == (200, {"status": "ok"})
    assert sink.received_one(channel="watchdog")["accepted"] is True


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ([webhook_payload("firing")], "not a JSON object"),
        (_wh(version=None), "version is None, expected '4'"),
        (_wh(version="3"), "version is '3', expected '4'"),
        (_wh(version=4), "version is 4, expected '4'"),
        (_wh(status="pending"), "status is 'pending', expected firing or resolved"),
        (_wh(status=None), "status is None"),
        (_wh(receiver=None), "receiver is missing"),
        (_wh(receiver=""), "receiver is missing"),
        (_wh(groupKey=None), "groupKey is missing"),
        (_wh(alerts=None), "alerts is missing or not a non-empty list"),
        (_wh(alerts=[]), "alerts is missing or not a non-empty list"),
        (_wh(alerts=["x"]), "alerts[0] is not an object"),
        (_wh(alert__status=None), "alerts[0].status is None"),
        (_wh(alert__labels=None), "alerts[0].labels is missing or not an object"),
        (_wh(alert__labels=["alertname"]), "alerts[0].labels is missing or not an object"),
        (_wh(alert__annotations=None), "alerts[0].annotations is missing or not an object"),
        (_wh(alert__startsAt=None), "alerts[0].startsAt is None, not an RFC 3339 time"),
        (_wh(alert__startsAt="yesterday"), "alerts[0].startsAt is 'yesterday', not an RFC 3339 time"),
    ],
    ids=[
        "json-list",
        "no-version",
        "version-3",
        "version-number",
        "bad-status",
        "no-status",
        "no-receiver",
        "blank-receiver",
        "no-group-key",
        "no-alerts",
        "empty-alerts",
        "alert-not-object",
        "alert-without-status",
        "alert-without-labels",
        "labels-not-object",
        "alert-without-annotations",
        "alert-without-starts-at",
        "starts-at-not-a-time",
    ],
)
def test_webhook_refuses_invalid_messages(sink, message, reason):
    resp = sink.post("/watchdog/t", go_json(message))
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json() == {"status": "error", "error": resp.json()["error"]}
    assert reason in resp.json()["error"]
    _assert_refused(sink, resp, "watchdog", 400, reason)


def test_unknown_api_endpoints_are_not_recorded(sink):
    assert requests.post(f"{sink.url}/api/whatever", data=b"{}", timeout=5).status_code == 404
    assert requests.post(f"{sink.url}/", data=b"{}", timeout=5).status_code == 404
    assert requests.get(f"{sink.url}/slack/x", timeout=5).status_code == 404
    assert sink.received() == []


# --- email ----------------------------------------------------------------------


def test_email_firing_and_resolved(sink):
    sink.send_mail("[FIRING:1] HighErrorRate (critical)", alert_email_html("firing"))
    sink.send_mail("[RESOLVED] HighErrorRate (critical)", alert_email_html("resolved"), text="resolved: HighErrorRate")

    records = sink.received(channel="email")
    assert [r["status"] for r in records] == ["firing", "resolved"]
    firing = records[0]
    assert firing["subject"] == "[FIRING:1] HighErrorRate (critical)"
    assert firing["mail_from"] == "alertmanager@mdl-sandbox.invalid"
    assert firing["rcpt_to"] == ["mdl-team@mdl-sandbox.invalid"]
    assert firing["json"] is None
    assert firing["sender"] == HOST
    assert firing["headers"]["To"] == "mdl-team@mdl-sandbox.invalid"
    # Quoted-printable decoded: no soft line breaks or =3D left in the text.
    assert "instance = mdl-api-7f9c4d-1:8000" in firing["body"]
    assert 'style="width: 100%;"' in firing["body"]
    assert "resolved: HighErrorRate" in records[1]["body"]

    found = sink.received(contains="mdl-api-7f9c4d-1:8000")
    assert [r["id"] for r in found] == [r["id"] for r in records]
    assert [r["status"] for r in sink.received(channel="email", contains="[RESOLVED]")] == ["resolved"]


def _mail(**headers) -> EmailMessage:
    """An alert mail with some headers replaced (a value) or removed (None)."""
    msg = alert_mail("[FIRING:1] HighErrorRate (critical)", alert_email_html("firing"))
    for name, value in headers.items():
        header = name.replace("_", "-")  # Message_ID -> Message-ID
        del msg[header]
        if value is not None:
            msg[header] = value
    return msg


@pytest.mark.parametrize(
    "sender",
    [MAIL_FROM, f"Alertmanager <{MAIL_FROM}>", MAIL_FROM.upper()],
    ids=["address", "display-name", "other-case"],
)
def test_email_from_matching_the_envelope_is_accepted(sink, sender):
    sink.send_mail("", "", msg=_mail(From=sender))
    record = sink.received_one(channel="email")
    assert (record["accepted"], record["response_status"], record["refusal"]) == (True, 250, None)


@pytest.mark.parametrize("header", ["From", "To", "Subject", "Date", "Message-ID"])
def test_email_without_a_required_header_is_refused(sink, header):
    with pytest.raises(smtplib.SMTPDataError) as exc:
        sink.send_mail("", "", msg=_mail(**{header.replace("-", "_"): None}))
    assert exc.value.smtp_code == 550
    assert f"missing required header(s) {header}" in exc.value.smtp_error.decode()
    record = sink.received_one(channel="email")
    assert (record["accepted"], record["response_status"]) == (False, 550)
    assert record["refusal"] == f"5.6.0 Message refused: missing required header(s) {header}"
    assert record["rcpt_to"] == [MAIL_TO]
    assert sink.received(channel="email", accepted="true") == []


@pytest.mark.parametrize(
    ("sender", "reason"),
    [
        ("someone-else@mdl-sandbox.invalid", "From <someone-else@mdl-sandbox.invalid> does not match the envelope"),
        (f"{MAIL_FROM}, other@mdl-sandbox.invalid", "From must name exactly one address, not 2"),
        ("undisclosed-sender:;", "From must name exactly one address, not 0"),
    ],
    ids=["other-address", "two-addresses", "no-address"],
)
def test_email_from_not_matching_the_envelope_is_refused(sink, sender, reason):
    with pytest.raises(smtplib.SMTPDataError) as exc:
        sink.send_mail("", "", msg=_mail(From=sender))
    assert exc.value.smtp_code == 550
    assert reason in exc.value.smtp_error.decode()
    record = sink.received_one(channel="email")
    assert (record["accepted"], record["response_status"]) == (False, 550)
    assert record["refusal"].startswith("5.7.1 ")
    assert reason in record["refusal"]


def test_email_without_recipients_is_refused(sink):
    with smtplib.SMTP(HOST, sink.smtp_port, local_hostname="obs-mon-1", timeout=5) as smtp:
        smtp.ehlo()
        assert smtp.mail(MAIL_FROM)[0] == 250
        code, reply = smtp.docmd("DATA")
    assert code == 554
    assert b"no valid recipients" in reply
    record = sink.received_one(channel="email")
    assert (record["accepted"], record["response_status"]) == (False, 554)
    assert record["refusal"] == "5.5.1 Error: no valid recipients"
    assert (record["mail_from"], record["rcpt_to"], record["subject"]) == (MAIL_FROM, [], None)


def test_log_line_per_notification(sink):
    sink.post("/watchdog/sandbox-heartbeat-token", go_json(webhook_payload("firing")))
    sink.send_mail("[FIRING:1] HighErrorRate (critical)", alert_email_html("firing"))
    [webhook, mail] = sink.received()

    def logged() -> str:
        return sink.log.read_text()

    deadline = time.monotonic() + 5
    while f"#{mail['id']} " not in logged() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = logged().splitlines()
    assert any(f"#{webhook['id']} watchdog firing accepted 200 /watchdog/" in line for line in lines), lines
    assert any(f"#{mail['id']} email firing accepted 250" in line and "[FIRING:1]" in line for line in lines), lines


# --- query API --------------------------------------------------------------------


def test_filters_combine(sink):
    sink.post(SLACK_PATH, go_json(slack_payload("firing")))
    sink.post(PAGERDUTY_PATH, go_json(pagerduty_payload("trigger")))
    sink.post("/watchdog/sandbox-heartbeat-token", go_json(webhook_payload("firing")))
    sink.post(SLACK_PATH, go_json(slack_payload("resolved")))

    everything = sink.received()
    assert [r["channel"] for r in everything] == ["slack", "pagerduty", "watchdog", "slack"]
    assert len(sink.received(contains="HighErrorRate")) == 3
    assert len(sink.received(channel="slack", contains="HighErrorRate")) == 2
    assert len(sink.received(channel="slack", status="resolved")) == 1
    assert sink.received(channel="watchdog", contains="HighErrorRate") == []
    assert sink.received(contains="no-such-text") == []
    assert [r["channel"] for r in sink.received(after=everything[1]["id"])] == ["watchdog", "slack"]
    assert requests.get(f"{sink.url}/api/received", params={"after": "x"}, timeout=5).status_code == 400


def test_delete_clears(sink):
    sink.post(SLACK_PATH, go_json(slack_payload("firing")))
    last_id = sink.received()[-1]["id"]
    resp = requests.delete(f"{sink.url}/api/received", timeout=5)
    assert resp.status_code == 200
    assert sink.received() == []
    sink.post(SLACK_PATH, go_json(slack_payload("firing")))
    [record] = sink.received()
    assert record["id"] > last_id  # ids keep increasing across clears


# --- failure injection --------------------------------------------------------------


def test_failure_injection_http(sink):
    resp = requests.post(f"{sink.url}/api/fail", params={"channel": "slack", "status": "500"}, timeout=5)
    assert resp.status_code == 200
    assert requests.get(f"{sink.url}/api/fail", timeout=5).json() == {"slack": 500}

    assert sink.post(SLACK_PATH, go_json(slack_payload("firing"))).status_code == 500
    assert sink.post(SLACK_PATH, go_json(slack_payload("firing"))).status_code == 500
    # Other channels are unaffected.
    assert sink.post(PAGERDUTY_PATH, go_json(pagerduty_payload("trigger"))).status_code == 202

    attempts = sink.received(channel="slack")
    assert [(r["accepted"], r["response_status"]) for r in attempts] == [(False, 500), (False, 500)]
    assert attempts[0]["refusal"] == "failure injected by obs-sink (status 500)"
    assert sink.received(channel="slack", accepted="true") == []

    assert requests.delete(f"{sink.url}/api/fail", timeout=5).status_code == 200
    resp = sink.post(SLACK_PATH, go_json(slack_payload("resolved")))
    assert resp.status_code == 200
    assert resp.text == "ok"
    assert [r["status"] for r in sink.received(channel="slack", accepted="true")] == ["resolved"]


def test_failure_injection_per_channel_clear(sink):
    requests.post(f"{sink.url}/api/fail", params={"channel": "pagerduty", "status": "429"}, timeout=5)
    requests.post(f"{sink.url}/api/fail", params={"channel": "watchdog"}, timeout=5)
    assert sink.post(PAGERDUTY_PATH, go_json(pagerduty_payload("trigger"))).status_code == 429
    assert sink.post("/watchdog/t", go_json(webhook_payload("firing"))).status_code == 500
    requests.delete(f"{sink.url}/api/fail", params={"channel": "pagerduty"}, timeout=5)
    assert requests.get(f"{sink.url}/api/fail", timeout=5).json() == {"watchdog": 500}
    assert sink.post(PAGERDUTY_PATH, go_json(pagerduty_payload("trigger"))).status_code == 202


def test_failure_injection_comes_before_the_payload_checks(sink):
    requests.post(f"{sink.url}/api/fail", params={"channel": "slack", "status": "503"}, timeout=5).raise_for_status()
    assert sink.post(SLACK_PATH, go_json({"channel": "#nothing-to-show"})).status_code == 503
    assert sink.received_one(channel="slack")["refusal"] == "failure injected by obs-sink (status 503)"


def test_failure_injection_rejects_bad_requests(sink):
    assert requests.post(f"{sink.url}/api/fail", params={"status": "500"}, timeout=5).status_code == 400
    params = {"channel": "slack", "status": "200"}
    assert requests.post(f"{sink.url}/api/fail", params=params, timeout=5).status_code == 400
    assert requests.get(f"{sink.url}/api/fail", timeout=5).json() == {}


def test_failure_injection_email(sink):
    requests.post(f"{sink.url}/api/fail", params={"channel": "email"}, timeout=5).raise_for_status()
    with pytest.raises(smtplib.SMTPDataError) as exc:
        sink.send_mail("[FIRING:1] HighErrorRate (critical)", alert_email_html("firing"))
    assert exc.value.smtp_code == 451
    [attempt] = sink.received(channel="email")
    assert attempt["accepted"] is False
    assert attempt["response_status"] == 451
    assert attempt["refusal"] == "Failure injected by obs-sink"

    requests.delete(f"{sink.url}/api/fail", timeout=5).raise_for_status()
    sink.send_mail("[FIRING:1] HighErrorRate (critical)", alert_email_html("firing"))
    assert [r["status"] for r in sink.received(channel="email", accepted="true")] == ["firing"]


# --- pure functions and storage ------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"attachments": [{"title": "[FIRING] HighErrorRate (critical)", "text": "x"}]}, "firing"),
        ({"attachments": [{"title": "[FIRING:2] HighErrorRate (api critical)"}]}, "firing"),
        ({"attachments": [{"title": "[RESOLVED] HighErrorRate (critical)", "text": "[FIRING] old"}]}, "resolved"),
        ({"attachments": [{"title": "custom title", "text": "[RESOLVED] all good"}]}, "resolved"),
        ({"text": "[FIRING:1] plain text message"}, "firing"),
        ({"attachments": [{"title": "nothing here"}]}, "unknown"),
        ({"attachments": None}, "unknown"),
        ([], "unknown"),
    ],
)
def test_slack_status(sink_module, payload, expected):
    assert sink_module.slack_status(payload) == expected


@pytest.mark.parametrize(
    ("channel", "payload", "expected"),
    [
        ("pagerduty", {"event_action": "trigger"}, "firing"),
        ("pagerduty", {"event_action": "resolve"}, "resolved"),
        ("pagerduty", {"event_action": "acknowledge"}, "unknown"),
        ("pagerduty", {"event_type": "resolve"}, "resolved"),  # Events API v1
        ("watchdog", {"status": "firing"}, "firing"),
        ("teams", {"status": "resolved"}, "resolved"),
        ("teams", {"status": "weird"}, "unknown"),
        ("teams", None, "unknown"),
        ("slack", {"status": "firing"}, "unknown"),  # Slack payloads carry no status
    ],
)
def test_http_status(sink_module, channel, payload, expected):
    assert sink_module.http_status(channel, payload) == expected


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("[FIRING:1] HighErrorRate (critical)", "firing"),
        ("[FIRING:12] HighErrorRate (api critical)", "firing"),
        ("[RESOLVED] HighErrorRate (critical)", "resolved"),
        ("Re: something", "unknown"),
        (None, "unknown"),
    ],
)
def test_email_status(sink_module, subject, expected):
    assert sink_module.email_status(subject) == expected


def test_mail_refusal_rules(payloads):
    msg = alert_mail("[FIRING:1] HighErrorRate (critical)", alert_email_html("firing"))
    assert payloads.mail_refusal(MAIL_FROM, [MAIL_TO], msg) is None
    assert payloads.mail_refusal(MAIL_FROM, [], msg) == "554 5.5.1 Error: no valid recipients"
    assert payloads.mail_refusal("", [MAIL_TO], msg).startswith("550 5.7.1 ")  # null sender (bounce)
    del msg["Date"], msg["Subject"]
    assert payloads.mail_refusal(MAIL_FROM, [MAIL_TO], msg) == (
        "550 5.6.0 Message refused: missing required header(s) Subject, Date"
    )


def test_every_rule_names_its_reason(payloads):
    assert payloads.webhook_error(webhook_payload("firing")) is None
    assert payloads.webhook_error("x") == "the message is not a JSON object"
    assert payloads.pagerduty_errors(pagerduty_payload("trigger")) == []
    _, verdict = payloads.check_slack("application/json; charset=utf-8", go_json(slack_payload("firing")).encode())
    assert (verdict.accepted, verdict.status, verdict.body, verdict.reason) == (True, 200, b"ok", None)
    _, verdict = payloads.check_slack(None, b"{}")
    assert (verdict.accepted, verdict.status, verdict.body) == (False, 400, b"invalid_payload")
    assert verdict.reason == "invalid_payload: Content-Type (none) is not application/json"


def test_dockerfile_ships_the_payload_rules():
    """The sandbox image runs sink.py, which imports payloads.py from its directory."""
    lines = (SINK.parent / "Dockerfile").read_text().splitlines()
    copies = [line.split()[1:-1] for line in lines if line.startswith("COPY")]
    assert any({"sink.py", "payloads.py"} <= set(files) for files in copies), copies


def test_store_is_bounded(sink_module):
    store = sink_module.Store(max_records=3)
    for n in range(5):
        store.add({"channel": "c", "status": "unknown", "body": str(n), "json": None, "accepted": True})
    records = store.query({})
    assert [r["body"] for r in records] == ["2", "3", "4"]
    assert [r["id"] for r in records] == [3, 4, 5]
    assert sink_module.MAX_RECORDS == 5000


# --- the real Alertmanager ------------------------------------------------------------

# The notification templates the sandbox copies out of the archive to
# /etc/alertmanager/templates (Debian's Alertmanager reads them from disk).
TEMPLATES = REPO / "build" / "tools" / "share" / "alertmanager"
RENDER_PLAYBOOK = REPO / "tests" / "unit" / "fixtures" / "render_alertmanager.yml"
ANSIBLE_PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"
SANDBOX_SINK_HTTP = "http://obs-sink:8080"
SANDBOX_SINK_SMTP = "obs-sink:2525"


def _eventually(check, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def sandbox_config(tmp_path_factory) -> dict:
    """alertmanager.yml exactly as the alertmanager role renders it for the sandbox (inventories/local, its vault)."""
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.skip(f"ansible-playbook not found at {ANSIBLE_PLAYBOOK}")
    tmp = tmp_path_factory.mktemp("sandbox-alertmanager")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        {
            "HOME": str(tmp),
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_VAULT_PASSWORD_FILE": str(REPO / "inventories/local/vault-password.txt"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": str(tmp),
        }
    )
    dest = tmp / "alertmanager.yml"
    cmd = [str(ANSIBLE_PLAYBOOK), "-i", str(REPO / "inventories/local"), str(RENDER_PLAYBOOK)]
    cmd += ["-e", json.dumps({"dest": str(dest)})]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return yaml.safe_load(dest.read_text())


def _receiver(config: dict, name: str) -> dict:
    [receiver] = [r for r in config["receivers"] if r["name"] == name]
    return receiver


def test_sandbox_pagerduty_routing_key_is_a_valid_integration_key(sandbox_config, payloads):
    [pagerduty] = _receiver(sandbox_config, "pagerduty")["pagerduty_configs"]
    assert len(pagerduty["routing_key"]) == 32, "PagerDuty integration keys are 32 characters (the sandbox vault)"
    event = {**_pd("trigger"), "routing_key": pagerduty["routing_key"]}
    assert payloads.pagerduty_errors(event) == []


def test_sandbox_receivers_all_point_at_the_sink(sandbox_config):
    """The real-Alertmanager tests below swap the sandbox's sink address for the test sink's; nothing may be missed."""
    assert sandbox_config["global"]["smtp_smarthost"] == SANDBOX_SINK_SMTP
    urls = [
        c.get("api_url") or c.get("url")
        for r in sandbox_config["receivers"]
        for kind in ("slack_configs", "pagerduty_configs", "webhook_configs")
        for c in r.get(kind, [])
    ]
    assert len(urls) == 3
    assert all(url.startswith(SANDBOX_SINK_HTTP + "/") for url in urls), urls
    assert {r["name"] for r in sandbox_config["receivers"]} == {"email", "slack", "pagerduty", "watchdog"}


def _test_config(sandbox_config: dict, sink: SinkProcess) -> dict:
    """The sandbox's global section and receivers (templates, channel, routing key, addresses), aimed at this sink.

    The route is the test's own: short waits, and every receiver gets the alert
    (the sandbox tree's routing is tested by test_alertmanager_routing.py). The
    watchdog webhook sends resolved notifications here, unlike in the sandbox,
    so that the resolved form of the webhook message is checked too.
    """
    text = json.dumps({"global": sandbox_config["global"], "receivers": sandbox_config["receivers"]})
    text = text.replace(SANDBOX_SINK_HTTP, f"http://{HOST}:{sink.http_port}")
    text = text.replace(SANDBOX_SINK_SMTP, f"{HOST}:{sink.smtp_port}")
    config = json.loads(text)
    for webhook in _receiver(config, "watchdog")["webhook_configs"]:
        webhook["send_resolved"] = True
    config["route"] = {
        "receiver": "email",
        "group_by": ["alertname"],
        "group_wait": "1s",
        "group_interval": "1s",
        "repeat_interval": "1h",
        # Alerts that match a child route never reach the root's receiver,
        # so every receiver gets its own continuing route.
        "routes": [
            {"receiver": name, "continue": True, "matchers": ['alertname="HighErrorRate"']}
            for name in ("slack", "pagerduty", "email", "watchdog")
        ],
    }
    if TEMPLATES.is_dir():
        config["templates"] = [str(TEMPLATES / "*.tmpl")]
    return config


@pytest.fixture
def start_alertmanager(tmp_path):
    """``start(config) -> (url, log path)``: Alertmanager (build/tools/bin) on loopback with that config."""
    alertmanager = require_tool("alertmanager")
    procs = []

    def start(config: dict) -> tuple[str, Path]:
        config_file = tmp_path / "alertmanager.yml"
        config_file.write_text(json.dumps(config))  # JSON is YAML
        port = _free_port()
        log = tmp_path / "alertmanager.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [
                    str(alertmanager),
                    f"--config.file={config_file}",
                    f"--storage.path={tmp_path / 'data'}",
                    f"--web.listen-address={HOST}:{port}",
                    "--cluster.listen-address=",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        procs.append(proc)
        url = f"http://{HOST}:{port}"

        def ready():
            assert proc.poll() is None, log.read_text()
            try:
                assert requests.get(f"{url}/-/ready", timeout=1).status_code == 200
            except requests.ConnectionError as exc:
                raise AssertionError(str(exc)) from exc

        _eventually(ready, timeout=20)
        return url, log

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def alertmanager(sink, sandbox_config, start_alertmanager):
    """Alertmanager with the sandbox's receivers, every one pointed at the test sink."""
    url, _ = start_alertmanager(_test_config(sandbox_config, sink))
    return url


def test_real_alertmanager_delivers_to_every_channel(sink, alertmanager, sandbox_config):
    labels = {"alertname": "HighErrorRate", "severity": "critical", "component": "api", "instance": "am-e2e-1:8000"}
    alert = {
        "labels": labels,
        "annotations": {
            "summary": "API 5xx ratio above 5%",
            "description": "instance <am-e2e-1:8000> & friends",
            "runbook_url": RUNBOOK,
        },
        "generatorURL": "http://obs-mon-1:9090/graph?g0.expr=x",
    }
    requests.post(f"{alertmanager}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()
    channels = {"slack", "pagerduty", "email", "watchdog"}

    def delivered(status):
        def check():
            got = {r["channel"] for r in sink.received(status=status, contains="am-e2e-1:8000", accepted="true")}
            assert got == channels, got

        return check

    _eventually(delivered("firing"))
    ends = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    requests.post(f"{alertmanager}/api/v2/alerts", json=[{**alert, "endsAt": ends}], timeout=5).raise_for_status()
    _eventually(delivered("resolved"))

    # The strict sink refused nothing Alertmanager sent: every payload is one the real service takes.
    assert sink.received(accepted="false") == []
    slack = sink.received(channel="slack", status="firing")[0]
    assert slack["json"]["channel"] == "#mdl-alerts"
    assert slack["json"]["attachments"][0]["title"] == "[FIRING] HighErrorRate (critical)"
    assert "instance <am-e2e-1:8000> & friends" in slack["json"]["attachments"][0]["text"]
    assert slack["headers"]["User-Agent"].startswith("Alertmanager/")
    assert slack["headers"]["Content-Type"].startswith("application/json")
    pagerduty = sink.received(channel="pagerduty")
    assert [r["json"]["event_action"] for r in pagerduty] == ["trigger", "resolve"]
    [sandbox_pagerduty] = _receiver(sandbox_config, "pagerduty")["pagerduty_configs"]
    assert pagerduty[0]["json"]["routing_key"] == sandbox_pagerduty["routing_key"]
    assert pagerduty[0]["json"]["payload"]["custom_details"]["num_firing"] == "1"
    assert pagerduty[0]["json"]["payload"]["severity"] in ("critical", "error", "warning", "info")
    assert pagerduty[0]["json"]["dedup_key"] == pagerduty[1]["json"]["dedup_key"]
    emails = sink.received(channel="email")
    assert emails[0]["subject"].startswith("[FIRING:1] HighErrorRate")
    assert emails[-1]["subject"].startswith("[RESOLVED] HighErrorRate")
    assert emails[0]["rcpt_to"] == [MAIL_TO]
    assert emails[0]["mail_from"] == MAIL_FROM
    assert {"From", "To", "Subject", "Date", "Message-Id"} <= set(emails[0]["headers"])
    webhook = sink.received(channel="watchdog")
    assert [r["json"]["status"] for r in webhook] == ["firing", "resolved"]
    assert webhook[0]["json"]["alerts"][0]["labels"] == labels
    # Alertmanager took every answer as a success.
    failed = _metric(alertmanager, "alertmanager_notifications_failed_total")
    assert failed, "no alertmanager_notifications_failed_total samples"
    assert all(value == 0 for value in failed.values()), failed


def _metric(alertmanager: str, name: str) -> dict[str, float]:
    """Samples of one metric from Alertmanager's /metrics: {labels: value}."""
    text = requests.get(f"{alertmanager}/metrics", timeout=5).text
    samples = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line[len(name) :].rpartition(" ")
            samples[labels] = float(value)
    return samples


def test_real_alertmanager_counts_injected_failures(sink, alertmanager):
    requests.post(f"{sink.url}/api/fail", params={"channel": "slack", "status": "500"}, timeout=5).raise_for_status()
    alert = {"labels": {"alertname": "HighErrorRate", "severity": "critical", "instance": "am-fail-1:8000"}}
    requests.post(f"{alertmanager}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()

    def slack_failed():
        failed = _metric(alertmanager, "alertmanager_notifications_failed_total")
        assert sum(v for k, v in failed.items() if 'integration="slack"' in k) >= 1, failed
        assert all(v == 0 for k, v in failed.items() if 'integration="slack"' not in k), failed

    _eventually(slack_failed)
    attempts = sink.received(channel="slack")
    assert attempts
    assert all(not r["accepted"] and r["response_status"] == 500 for r in attempts)
    assert {r["channel"] for r in sink.received(accepted="true")} == {"pagerduty", "email", "watchdog"}

    # Once the failure is cleared, Alertmanager's retry gets through.
    requests.delete(f"{sink.url}/api/fail", timeout=5).raise_for_status()
    _eventually(lambda: _assert_nonempty(sink.received(channel="slack", accepted="true", status="firing")))


def _assert_nonempty(records: list) -> None:
    assert records, "nothing accepted yet"


def test_real_alertmanager_counts_refusals_as_failures(sink, sandbox_config, start_alertmanager):
    """What the sink refuses, Alertmanager sees as the real service refusing it: failed, with the reason logged."""
    config = _test_config(sandbox_config, sink)
    # A 31-character routing key (what the sandbox vault used to hold) and a
    # Slack message whose templates all render empty.
    for pagerduty in _receiver(config, "pagerduty")["pagerduty_configs"]:
        pagerduty["routing_key"] = "sandbox0pagerduty0routing0key00"
    for slack in _receiver(config, "slack")["slack_configs"]:
        slack.update({"title": "", "text": "", "fallback": "", "pretext": "", "footer": ""})
    url, log = start_alertmanager(config)
    alert = {"labels": {"alertname": "HighErrorRate", "severity": "critical", "instance": "am-refused-1:8000"}}
    requests.post(f"{url}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()

    def refused_and_counted():
        failed = _metric(url, "alertmanager_notifications_failed_total")
        for integration in ("pagerduty", "slack"):
            assert sum(v for k, v in failed.items() if f'integration="{integration}"' in k) >= 1, failed
        assert "Event object is invalid: Length of 'routing_key' is incorrect" in log.read_text()
        assert "invalid_attachments" in log.read_text()

    _eventually(refused_and_counted)
    pagerduty = sink.received(channel="pagerduty")
    assert pagerduty and all(r["accepted"] is False and r["response_status"] == 400 for r in pagerduty)
    assert "Length of 'routing_key' is incorrect (should be 32 characters)" in pagerduty[0]["refusal"]
    slack = sink.received(channel="slack")
    assert slack and all(r["accepted"] is False and r["refusal"].startswith("invalid_attachments") for r in slack)
    # The other integrations are untouched.
    _eventually(lambda: _assert_channels(sink.received(accepted="true"), {"email", "watchdog"}))


def _assert_channels(records: list, channels: set) -> None:
    assert {r["channel"] for r in records} == channels, records
