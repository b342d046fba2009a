"""Tests for the notification sink (tests/sink/sink.py).

The sink runs as a subprocess (its real command line) on free loopback ports;
the payloads have the shapes Alertmanager's integrations send (notify/slack,
notify/pagerduty, notify/webhook and notify/email in Alertmanager's source),
encoded like Go's encoding/json does (``<``, ``>`` and ``&`` escaped).
"""

from __future__ import annotations

import importlib.util
import json
import smtplib
import socket
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests

SINK = Path(__file__).resolve().parents[2] / "tests" / "sink" / "sink.py"
HOST = "127.0.0.1"


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

    def post(self, path: str, body: str, **kwargs) -> requests.Response:
        headers = {"Content-Type": "application/json", "User-Agent": "Alertmanager/0.28.1"}
        return requests.post(self.url + path, data=body.encode(), headers=headers, timeout=5, **kwargs)

    def received(self, **params) -> list[dict]:
        resp = requests.get(f"{self.url}/api/received", params=params, timeout=5)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def send_mail(self, subject: str, html: str, text: str | None = None) -> None:
        msg = EmailMessage()
        msg["From"] = "alertmanager@mdl-sandbox.invalid"
        msg["To"] = "mdl-team@mdl-sandbox.invalid"
        msg["Subject"] = subject
        msg["Message-Id"] = f"<{time.time_ns()}@obs-mon-1>"
        msg.make_alternative()
        if text is not None:
            msg.add_alternative(text, subtype="plain", cte="quoted-printable")
        msg.add_alternative(html, subtype="html", cte="quoted-printable")
        with smtplib.SMTP(HOST, self.smtp_port, local_hostname="obs-mon-1", timeout=5) as smtp:
            smtp.send_message(
                msg, from_addr="alertmanager@mdl-sandbox.invalid", to_addrs=["mdl-team@mdl-sandbox.invalid"]
            )


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


@pytest.fixture(scope="module")
def sink_module():
    spec = importlib.util.spec_from_file_location("obs_sink_under_test", SINK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- payloads as Alertmanager sends them -------------------------------------

EXTERNAL_URL = "http://obs-mon-1:9093"
SLACK_PATH = "/slack/services/T0SANDBOX/B0SANDBOX/sandbox-webhook-token"
RUNBOOK = "https://git.mdl.internal/observability/-/blob/main/files/runbooks/high-error-rate.md"
DEDUP_KEY = "4c3e2b6f0f0a1e3d5b4c7a9e8d6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f"


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
        "routing_key": "sandbox-routing-key",
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
    assert first["id"] < records[1]["id"]


def test_contains_finds_go_escaped_text(sink):
    sink.post(SLACK_PATH, go_json(slack_payload("firing")))
    assert len(sink.received(contains="<api-1:8000>")) == 1
    assert len(sink.received(contains="5% & rising")) == 1


def test_pagerduty_trigger_and_resolve(sink):
    resp = sink.post("/pagerduty/v2/enqueue", go_json(pagerduty_payload("trigger")))
    assert resp.status_code == 202
    assert resp.json() == {"status": "success", "message": "Event processed", "dedup_key": DEDUP_KEY}
    resp = sink.post("/pagerduty/v2/enqueue", go_json(pagerduty_payload("resolve")))
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
    resp = sink.post("/pagerduty/v2/enqueue", go_json(payload))
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


def test_non_json_body_is_kept_raw(sink):
    resp = requests.post(f"{sink.url}/custom/x", data=b"not json", timeout=5)
    assert resp.status_code == 200
    [record] = sink.received(channel="custom")
    assert record["body"] == "not json"
    assert record["json"] is None
    assert record["status"] == "unknown"


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
    assert firing["headers"]["To"] == "mdl-team@mdl-sandbox.invalid"
    # Quoted-printable decoded: no soft line breaks or =3D left in the text.
    assert "instance = mdl-api-7f9c4d-1:8000" in firing["body"]
    assert 'style="width: 100%;"' in firing["body"]
    assert "resolved: HighErrorRate" in records[1]["body"]

    found = sink.received(contains="mdl-api-7f9c4d-1:8000")
    assert [r["id"] for r in found] == [r["id"] for r in records]
    assert [r["status"] for r in sink.received(channel="email", contains="[RESOLVED]")] == ["resolved"]


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
    sink.post("/pagerduty/v2/enqueue", go_json(pagerduty_payload("trigger")))
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
    assert sink.post("/pagerduty/v2/enqueue", go_json(pagerduty_payload("trigger"))).status_code == 202

    attempts = sink.received(channel="slack")
    assert [(r["accepted"], r["response_status"]) for r in attempts] == [(False, 500), (False, 500)]
    assert sink.received(channel="slack", accepted="true") == []

    assert requests.delete(f"{sink.url}/api/fail", timeout=5).status_code == 200
    resp = sink.post(SLACK_PATH, go_json(slack_payload("resolved")))
    assert resp.status_code == 200
    assert resp.text == "ok"
    assert [r["status"] for r in sink.received(channel="slack", accepted="true")] == ["resolved"]


def test_failure_injection_per_channel_clear(sink):
    requests.post(f"{sink.url}/api/fail", params={"channel": "pagerduty", "status": "429"}, timeout=5)
    requests.post(f"{sink.url}/api/fail", params={"channel": "watchdog"}, timeout=5)
    assert sink.post("/pagerduty/v2/enqueue", go_json(pagerduty_payload("trigger"))).status_code == 429
    assert sink.post("/watchdog/t", go_json(webhook_payload("firing"))).status_code == 500
    requests.delete(f"{sink.url}/api/fail", params={"channel": "pagerduty"}, timeout=5)
    assert requests.get(f"{sink.url}/api/fail", timeout=5).json() == {"watchdog": 500}
    assert sink.post("/pagerduty/v2/enqueue", go_json(pagerduty_payload("trigger"))).status_code == 202


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


def test_store_is_bounded(sink_module):
    store = sink_module.Store(max_records=3)
    for n in range(5):
        store.add({"channel": "c", "status": "unknown", "body": str(n), "json": None, "accepted": True})
    records = store.query({})
    assert [r["body"] for r in records] == ["2", "3", "4"]
    assert [r["id"] for r in records] == [3, 4, 5]
    assert sink_module.MAX_RECORDS == 5000


# --- the real Alertmanager ------------------------------------------------------------

ALERTMANAGER = Path(__file__).resolve().parents[2] / "build" / "tools" / "bin" / "alertmanager"
SLACK_TITLE = "[{{ .Status | toUpper }}] {{ .GroupLabels.alertname }} ({{ .CommonLabels.severity }})"
SLACK_TEXT = (
    "{{ range .Alerts }}{{ .Annotations.summary }}: {{ .Annotations.description }} "
    "Runbook: {{ .Annotations.runbook_url }}\n{{ end }}"
)


def _eventually(check, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def alertmanager(sink, tmp_path):
    """Alertmanager (build/tools/bin) on loopback, every receiver pointed at the sink, as in the sandbox."""
    if not ALERTMANAGER.is_file():
        pytest.skip(f"alertmanager binary not available at {ALERTMANAGER} (build the tools first)")
    base = f"http://{HOST}:{sink.http_port}"
    config = {
        "global": {
            "smtp_smarthost": f"{HOST}:{sink.smtp_port}",
            "smtp_from": "alertmanager@mdl-sandbox.invalid",
            "smtp_require_tls": False,
        },
        "route": {
            "receiver": "slack",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
            # Alerts that match a child route never reach the root's receiver,
            # so every receiver, slack included, gets its own continuing route.
            "routes": [
                {"receiver": name, "continue": True, "matchers": ['alertname="HighErrorRate"']}
                for name in ("slack", "pagerduty", "email", "watchdog")
            ],
        },
        "receivers": [
            {
                "name": "slack",
                "slack_configs": [
                    {
                        "api_url": f"{base}/slack/services/T0SANDBOX/B0SANDBOX/sandbox-webhook-token",
                        "channel": "#mdl-alerts",
                        "send_resolved": True,
                        "title": SLACK_TITLE,
                        "text": SLACK_TEXT,
                    }
                ],
            },
            {
                "name": "pagerduty",
                "pagerduty_configs": [
                    {"routing_key": "sandbox-routing-key", "url": f"{base}/pagerduty/v2/enqueue", "send_resolved": True}
                ],
            },
            {"name": "email", "email_configs": [{"to": "mdl-team@mdl-sandbox.invalid", "send_resolved": True}]},
            {
                "name": "watchdog",
                "webhook_configs": [{"url": f"{base}/watchdog/sandbox-heartbeat-token", "send_resolved": True}],
            },
        ],
    }
    config_file = tmp_path / "alertmanager.yml"
    config_file.write_text(json.dumps(config))  # JSON is YAML
    port = _free_port()
    log = tmp_path / "alertmanager.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                str(ALERTMANAGER),
                f"--config.file={config_file}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address={HOST}:{port}",
                "--cluster.listen-address=",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://{HOST}:{port}"

    def ready():
        assert proc.poll() is None, log.read_text()
        try:
            assert requests.get(f"{url}/-/ready", timeout=1).status_code == 200
        except requests.ConnectionError as exc:
            raise AssertionError(str(exc)) from exc

    _eventually(ready, timeout=20)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_real_alertmanager_delivers_to_every_channel(sink, alertmanager):
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

    slack = sink.received(channel="slack", status="firing")[0]
    assert slack["json"]["attachments"][0]["title"] == "[FIRING] HighErrorRate (critical)"
    assert "instance <am-e2e-1:8000> & friends" in slack["json"]["attachments"][0]["text"]
    assert slack["headers"]["User-Agent"].startswith("Alertmanager/")
    pagerduty = sink.received(channel="pagerduty")
    assert [r["json"]["event_action"] for r in pagerduty] == ["trigger", "resolve"]
    assert pagerduty[0]["json"]["payload"]["custom_details"]["num_firing"] == "1"
    assert pagerduty[0]["json"]["dedup_key"] == pagerduty[1]["json"]["dedup_key"]
    emails = sink.received(channel="email")
    assert emails[0]["subject"].startswith("[FIRING:1] HighErrorRate")
    assert emails[-1]["subject"].startswith("[RESOLVED] HighErrorRate")
    assert emails[0]["rcpt_to"] == ["mdl-team@mdl-sandbox.invalid"]
    webhook = sink.received(channel="watchdog")
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
