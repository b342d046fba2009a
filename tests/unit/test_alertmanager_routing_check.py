"""Unit tests of the alertmanager_routing_check module and its Alertmanager client.

No network: ansible.module_utils.urls.open_url, as used by the client, is
replaced by a fake world of Alertmanagers (v2 API, /metrics, /api/v2/status)
and a notification sink, and the module runs on a fake clock. The fakes follow
what a real Alertmanager 0.28.1 answers (fixtures am_smoke_* were captured from
one).
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import re
from urllib.error import HTTPError, URLError
from urllib.parse import parse_qs, urlsplit

import pytest
from ansible.module_utils.basic import AnsibleModule
from conftest import FIXTURES, FakeResponse, compare_options, load_ansible_module, load_module_utils, module_docs

AM1 = "http://am1:9093"
AM2 = "http://am2:9093"
SINK = "http://sink:8080"
STATUS_CONFIG = (FIXTURES / "am_smoke_status_config.yml").read_text()
INTEGRATION = {"email": "email", "slack": "slack", "pagerduty": "pagerduty", "watchdog": "webhook"}
SEND_RESOLVED = {"email", "slack", "pagerduty"}

# The module and the module_utils whose clock and transport the tests replace.
check = load_ansible_module("alertmanager_routing_check")
http_mod, polling = load_module_utils("http_client"), load_module_utils("polling")
client_mod, cases_mod = load_module_utils("alertmanager_client"), load_module_utils("alertmanager_cases")

CRITICAL_API = {
    "name": "critical API alert pages",
    "labels": {"alertname": "HighErrorRate", "severity": "critical", "component": "api"},
    "receivers": ["pagerduty", "slack", "email"],
}
WARNING_API = {
    "name": "warning goes to Slack and the digest",
    "labels": {"alertname": "SlowResponseTime", "severity": "warning", "component": "api"},
    "receivers": ["slack", "email"],
}
WATCHDOG = {
    "name": "Watchdog goes only to the dead man's switch",
    "labels": {"alertname": "Watchdog", "severity": "none"},
    "receivers": ["watchdog"],
}
INHIBITED = {
    "name": "warning is inhibited by the critical of the same alert and component",
    "labels": {"alertname": "HighErrorRate", "severity": "warning", "component": "api"},
    "receivers": ["slack", "email"],
    "inhibited_by": [{"alertname": "HighErrorRate", "severity": "critical", "component": "api"}],
}
NOT_INHIBITED = {
    "name": "warning is not inhibited by a critical of another component",
    "labels": {"alertname": "HighErrorRate", "severity": "warning", "component": "api"},
    "receivers": ["slack", "email"],
    "inhibited_by": [{"alertname": "HighErrorRate", "severity": "critical", "component": "database"}],
    "inhibited": False,
}


# ----------------------------------------------------------------- fake world
class FakeClock:
    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        assert seconds >= 0
        self.now += seconds
        assert self.now < 100_000, "the module never stopped waiting"


def _fingerprint(labels: dict) -> str:
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


def _parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)  # noqa: UP017


def route(labels: dict) -> list[str]:
    """The project's routing tree (roles/alertmanager/defaults/main.yml)."""
    if labels.get("alertname") == "Watchdog":
        return ["watchdog"]
    receivers = ["pagerduty"] if labels.get("severity") == "critical" else []
    return [*receivers, "slack", "email"]


def inhibits(source: dict, target: dict) -> bool:
    """The project's inhibit rules."""

    def equal(*names):
        return all(source.get(n, "") == target.get(n, "") for n in names)

    if source.get("severity") == "critical" and target.get("severity") == "warning" and equal("alertname", "component"):
        return True
    return (
        source.get("alertname") == "ServiceDown"
        and target.get("alertname") == "TargetDown"
        and equal("job", "instance")
    )


def _matches(matcher: str, labels: dict) -> bool:
    found = re.fullmatch(r'([a-zA-Z_][a-zA-Z0-9_]*)(=~|=)"((?:[^"\\]|\\.)*)"', matcher)
    assert found, f"the module sent a matcher the fake cannot parse: {matcher!r}"
    name, op, value = found.groups()
    value = value.replace('\\"', '"').replace("\\\\", "\\")
    actual = labels.get(name, "")
    return actual == value if op == "=" else re.fullmatch(value, actual) is not None


class FakeAlertmanager:
    def __init__(self, world, url):
        self.world = world
        self.url = url
        self.alerts = {}  # fingerprint -> stored alert
        self.posts = []  # every POSTed body
        self.get_filters = []  # every GET /api/v2/alerts query
        self.down = False
        self.down_after_post = False  # stops answering right after the first POST it stored (a node lost mid-run)
        self.auth = None  # (username, password) required
        self.reject = None  # (code, body) answered to POST /api/v2/alerts
        self.inhibition = True
        self.hidden = set()  # smoke ids never listed
        self.unprocessed = set()  # smoke ids always listed as unprocessed
        self.routing = route
        self.total = {}
        self.failed = {}
        self.explode_on_get = None  # exception raised by GET /api/v2/alerts

    # -- state
    def active(self):
        now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017
        return {fp: a for fp, a in self.alerts.items() if _parse_time(a["endsAt"]) > now}

    def status_of(self, alert):
        labels = alert["labels"]
        if labels.get("smoke_test_id") in self.unprocessed:
            return {"state": "unprocessed", "inhibitedBy": [], "silencedBy": [], "mutedBy": []}
        inhibitors = []
        if self.inhibition:
            inhibitors = [
                fp
                for fp, other in self.active().items()
                if other is not alert and inhibits(other["labels"], labels) and not inhibits(labels, other["labels"])
            ]
        state = "suppressed" if inhibitors else "active"
        return {"state": state, "inhibitedBy": inhibitors[:1], "silencedBy": [], "mutedBy": []}

    def listed(self, alert):
        return {
            "annotations": alert["annotations"],
            "endsAt": alert["endsAt"],
            "fingerprint": alert["fingerprint"],
            "receivers": [{"name": name} for name in self.routing(alert["labels"])],
            "startsAt": alert["startsAt"],
            "status": self.status_of(alert),
            "updatedAt": alert["startsAt"],
            "labels": alert["labels"],
        }

    # -- HTTP
    def handle(self, method, path, query, data, kwargs):
        url = self.url + path
        if self.down:
            raise URLError(ConnectionRefusedError(111, "Connection refused"))
        if self.auth is not None:
            given = (kwargs.get("url_username"), kwargs.get("url_password"))
            if given != self.auth or not kwargs.get("force_basic_auth"):
                raise HTTPError(url, 401, "Unauthorized", {}, io.BytesIO(b"Unauthorized\n"))
        if method == "POST" and path == "/api/v2/alerts":
            return self.post_alerts(url, json.loads(data))
        if method == "GET" and path == "/api/v2/alerts":
            if self.explode_on_get is not None:
                raise self.explode_on_get
            filters = query.get("filter", [])
            self.get_filters.append(query)
            listed = [
                self.listed(a)
                for a in self.active().values()
                if all(_matches(m, a["labels"]) for m in filters)
                and a["labels"].get("smoke_test_id") not in self.hidden
            ]
            return FakeResponse(json.dumps(listed).encode())
        if method == "GET" and path == "/api/v2/status":
            status = {
                "cluster": {"name": "x", "peers": [{"name": "a"}, {"name": "b"}], "status": "ready"},
                "config": {"original": STATUS_CONFIG},
                "uptime": "2026-01-01T00:00:00.000Z",
                "versionInfo": {"version": "0.28.1"},
            }
            return FakeResponse(json.dumps(status).encode())
        if method == "GET" and path == "/metrics":
            self.world.tick()
            lines = ["# HELP alertmanager_notifications_total The total number of attempted notifications."]
            for integration in ("email", "pagerduty", "slack", "webhook"):
                lines.append(
                    f'alertmanager_notifications_total{{integration="{integration}"}} {self.total.get(integration, 0)}'
                )
                for reason in ("clientError", "other"):
                    value = self.failed.get(integration, 0) if reason == "other" else 0
                    lines.append(
                        "alertmanager_notifications_failed_total"
                        f'{{integration="{integration}",reason="{reason}"}} {value}'
                    )
            return FakeResponse(("\n".join(lines) + "\n").encode())
        raise HTTPError(url, 404, "Not Found", {}, io.BytesIO(b"404 page not found\n"))

    def post_alerts(self, url, alerts):
        if self.reject is not None:
            code, body = self.reject
            raise HTTPError(url, code, "Bad Request", {}, io.BytesIO(body))
        self.posts.append(alerts)
        self.down = self.down_after_post
        now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017
        for alert in alerts:
            fp = _fingerprint(alert["labels"])
            if _parse_time(alert["endsAt"]) <= now and fp in self.alerts:
                self.world.resolved.add((self.url, fp))
            stored = dict(alert, fingerprint=fp)
            self.alerts[fp] = stored
            self.world.posted_at.setdefault(fp, self.world.clock.now)
        return FakeResponse(b"")


class FakeSink:
    def __init__(self, world):
        self.world = world
        self.records = []
        self.down = False
        self.down_after = None  # number of requests answered before going down
        self.requests = 0

    def handle(self, method, path, query, data, kwargs):
        self.requests += 1
        if self.down or (self.down_after is not None and self.requests > self.down_after):
            raise URLError(ConnectionRefusedError(111, "Connection refused"))
        assert method == "GET" and path == "/api/received", path
        self.world.tick()
        contains = query["contains"][0]
        found = [{k: v for k, v in r.items() if k != "text"} for r in self.records if contains in r["text"]]
        return FakeResponse(json.dumps(found).encode())


class World:
    """Alertmanagers and a sink behind a fake open_url. The first Alertmanager
    sends the notifications (HA dedup), group_wait after an alert was posted."""

    def __init__(self, urls=(AM1, AM2)):
        self.clock = FakeClock()
        self.ams = {url: FakeAlertmanager(self, url) for url in urls}
        self.sink = FakeSink(self)
        self.requests = []
        self.posted_at = {}
        self.resolved = set()
        self.notified = set()
        self.notified_resolved = set()
        self.group_wait = 3.0
        self.drop_channels = set()  # receivers whose notifications never arrive
        self.extra_channels = set()  # channels that get every notification as well
        self.failing = set()  # integrations whose notifications fail
        self.deliver_suppressed = False
        self.no_resolved = set()  # receivers whose resolved notifications never arrive
        self.refuse = {}  # channel -> status code the sink answers (recorded with accepted false)
        self.twice = set()  # channels that get every firing notification twice (HA dedup broken)

    def open_url(self, url, data=None, headers=None, method=None, **kwargs):
        parts = urlsplit(url)
        base = f"{parts.scheme}://{parts.netloc}"
        method = method or ("POST" if data else "GET")
        self.requests.append((method, url, kwargs))
        assert kwargs.get("timeout") is not None, "every request needs a timeout"
        query = parse_qs(parts.query)
        if base == SINK:
            return self.sink.handle(method, parts.path, query, data, kwargs)
        if base in self.ams:
            return self.ams[base].handle(method, parts.path, query, data, kwargs)
        raise URLError(OSError(-2, "Name or service not known"))

    def tick(self):
        # The first Alertmanager that still runs sends (its peer took over when it went down).
        primary = next((am for am in self.ams.values() if not am.down), next(iter(self.ams.values())))
        active = primary.active()
        for fp, alert in primary.alerts.items():
            text = f"{alert['annotations'].get('summary')} {alert['annotations'].get('description')}"
            receivers = primary.routing(alert["labels"])
            if fp in active:
                due = self.clock.now >= self.posted_at.get(fp, 0) + self.group_wait
                suppressed = primary.status_of(alert)["state"] == "suppressed"
                if not due or (suppressed and not self.deliver_suppressed):
                    continue
                for receiver in receivers + sorted(self.extra_channels):
                    if (fp, receiver) in self.notified or receiver in self.drop_channels:
                        continue
                    self.notified.add((fp, receiver))
                    integration = INTEGRATION.get(receiver, receiver)
                    primary.total[integration] = primary.total.get(integration, 0) + 1
                    if integration in self.failing:
                        primary.failed[integration] = primary.failed.get(integration, 0) + 1
                        continue
                    record = {
                        "channel": receiver,
                        "status": "firing",
                        "received_at": self.clock.now,
                        "text": text,
                        "sender": urlsplit(primary.url).hostname,
                    }
                    if receiver in self.refuse:
                        record.update(accepted=False, response_status=self.refuse[receiver])
                    self.sink.records.append(record)
                    if receiver in self.twice:  # also sent by the other Alertmanager
                        other = next(url for url in self.ams if url != primary.url)
                        self.sink.records.append(dict(record, sender=urlsplit(other).hostname))
            elif (primary.url, fp) in self.resolved:
                for receiver in receivers:
                    key = (fp, receiver)
                    if receiver not in SEND_RESOLVED or receiver in self.no_resolved:
                        continue
                    if key in self.notified and key not in self.notified_resolved:
                        self.notified_resolved.add(key)
                        self.sink.records.append(
                            {"channel": receiver, "status": "resolved", "received_at": self.clock.now, "text": text}
                        )

    def active_ids(self, url):
        return sorted(a["labels"].get("smoke_test_id") for a in self.ams[url].active().values())


@pytest.fixture
def world(monkeypatch):
    world = World()
    monkeypatch.setattr(http_mod, "open_url", world.open_url)
    monkeypatch.setattr(polling, "_monotonic", world.clock.monotonic)
    monkeypatch.setattr(polling, "_sleep", world.clock.sleep)
    return world


@pytest.fixture
def run(run_module):
    def _run(check_mode=False, **overrides):
        args = {
            "urls": [AM1, AM2],
            "cases": [CRITICAL_API, WARNING_API],
            "run_id": "run",
            "wait_active_timeout": 5,
            "poll_interval": 1,
            **overrides,
        }
        if check_mode:
            args["_ansible_check_mode"] = True
        return run_module(check.main, args)

    return _run


def _case(result, index):
    return result["cases"][index]


# ------------------------------------------------------------------- routing
def test_routing_match_posts_to_both_alertmanagers_and_resolves(world, run):
    result = run()

    assert not result.get("failed"), result["msg"]
    assert result["changed"] is True
    assert result["failed_cases"] == []
    assert [c["id"] for c in result["cases"]] == ["run-01", "run-02"]
    first = _case(result, 0)
    assert first["routed"] == ["email", "pagerduty", "slack"]
    assert first["routed_per_am"] == {AM1: ["email", "pagerduty", "slack"], AM2: ["email", "pagerduty", "slack"]}
    assert first["matched"] is True and first["resolved"] is True and first["delivered"] is None
    assert first["labels"]["smoke_test_id"] == "run-01"
    assert first["seconds_to_active"] is not None
    for url in (AM1, AM2):
        posts = world.ams[url].posts
        assert [[a["labels"]["smoke_test_id"] for a in body] for body in posts] == [["run-01", "run-02"]] * 2
        firing, resolving = posts
        assert all(_parse_time(a["endsAt"]) > _parse_time(a["startsAt"]) for a in firing)
        assert all(
            r["endsAt"] <= f["endsAt"] and r["startsAt"] == f["startsAt"]
            for f, r in zip(firing, resolving, strict=True)
        )
        assert world.active_ids(url) == []
    assert "ok" in result["table"].splitlines()[2]
    assert result["table"].splitlines()[0].split() == ["case", "expected", "routed", "delivered", "result"]


def test_the_id_is_in_summary_and_description_of_every_alert(world, run):
    run(annotations={"runbook_url": "https://runbooks/smoke", "summary": "overridden?"}, generator_url="https://gen")

    alert = world.ams[AM1].posts[0][0]
    assert alert["annotations"]["summary"] == f"Smoke test run-01: {CRITICAL_API['name']}"
    assert "run-01" in alert["annotations"]["description"]
    assert alert["annotations"]["runbook_url"] == "https://runbooks/smoke"
    assert alert["generatorURL"] == "https://gen"


def test_get_alerts_filter_is_url_encoded_with_all_states(world, run):
    run(cases=[WARNING_API])

    queries = [q for q in world.ams[AM1].get_filters if q.get("filter") == ['smoke_test_id="run-01"']]
    assert queries, world.ams[AM1].get_filters
    assert {k: v for k, v in queries[0].items() if k != "filter"} == {
        "active": ["true"],
        "silenced": ["true"],
        "inhibited": ["true"],
        "unprocessed": ["true"],
    }
    raw = next(url for method, url, _ in world.requests if method == "GET" and "/api/v2/alerts?" in url)
    assert "filter=smoke_test_id%3D%22run-01%22" in raw


def test_mismatch_fails_with_table_and_still_resolves(world, run):
    wrong = dict(CRITICAL_API, name="critical must only go to Slack", receivers=["slack"])
    result = run(cases=[wrong, WARNING_API])

    assert result["failed"] is True
    assert result["failed_cases"] == ["critical must only go to Slack"]
    assert "1 of 2 smoke test case(s) failed" in result["msg"]
    assert result["table"] in result["msg"]
    assert "routed to [email, pagerduty, slack], expected [slack]" in result["msg"]
    row = next(line for line in result["table"].splitlines() if line.startswith("critical must only"))
    assert row.split()[-1] == "FAIL" and "email,pagerduty,slack" in row
    assert _case(result, 0)["matched"] is False and _case(result, 1)["matched"] is True
    assert _case(result, 0)["resolved"] is True
    assert result["changed"] is True
    for url in (AM1, AM2):
        assert world.active_ids(url) == []
        assert len(world.ams[url].posts) == 2


def test_alertmanagers_that_route_differently_are_reported(world, run):
    world.ams[AM2].routing = lambda labels: ["email"]
    result = run(cases=[WARNING_API])

    assert result["failed"] is True
    assert f"routed differently by the Alertmanagers ({AM1}: [email, slack]; {AM2}: [email])" in result["msg"]


# ---------------------------------------------------------------- inhibition
def test_inhibition_sources_are_posted_first_and_target_is_suppressed(world, run):
    result = run(cases=[INHIBITED])

    assert not result.get("failed"), result["msg"]
    case = _case(result, 0)
    assert case["expected_inhibited"] is True and case["inhibited"] is True and case["matched"] is True
    assert case["state_per_am"] == {AM1: "suppressed", AM2: "suppressed"}
    assert case["sources"][0]["id"] == "run-src1-01"
    assert case["sources"][0]["routed"] == ["email", "pagerduty", "slack"]
    for url in (AM1, AM2):
        posts = world.ams[url].posts
        assert [a["labels"]["smoke_test_id"] for a in posts[0]] == ["run-src1-01"]
        assert [a["labels"]["smoke_test_id"] for a in posts[1]] == ["run-01"]
        assert sorted(a["labels"]["smoke_test_id"] for a in posts[2]) == ["run-01", "run-src1-01"]
        assert world.active_ids(url) == []
    assert "[inhibited]" in result["table"]


def test_inhibition_cases_run_alone_so_other_cases_cannot_inhibit_them(world, run):
    # The critical API alert would inhibit the warning if both were active at once.
    result = run(cases=[CRITICAL_API, NOT_INHIBITED, INHIBITED])

    assert not result.get("failed"), result["msg"]
    assert [c["inhibited"] for c in result["cases"]] == [False, False, True]
    posts = [[a["labels"]["smoke_test_id"] for a in body] for body in world.ams[AM1].posts]
    assert posts == [
        ["run-01"],
        ["run-01"],  # resolved before the inhibition cases start
        ["run-src1-02"],
        ["run-02"],
        ["run-src1-02", "run-02"],
        ["run-src1-03"],
        ["run-03"],
        ["run-src1-03", "run-03"],
    ]


def test_expected_inhibition_that_does_not_happen_fails_after_the_wait(world, run):
    for am in world.ams.values():
        am.inhibition = False
    result = run(cases=[INHIBITED], wait_active_timeout=7)

    assert result["failed"] is True
    assert f"expected to be inhibited, but is not on {AM1} (state active after 7 s)" in result["msg"]
    assert world.clock.now >= 7
    assert _case(result, 0)["resolved"] is True


def test_inhibition_by_a_foreign_alert_is_described(world, run):
    foreign = {"alertname": "HighErrorRate", "severity": "critical", "component": "api", "team": "real"}
    now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017
    world.ams[AM1].alerts["f00"] = {
        "labels": foreign,
        "annotations": {},
        "startsAt": cases_mod.rfc3339(now),
        "endsAt": cases_mod.rfc3339(now + datetime.timedelta(hours=1)),
        "fingerprint": "f00",
    }
    result = run(cases=[NOT_INHIBITED])

    assert result["failed"] is True
    assert f"expected not to be inhibited, but is inhibited on {AM1} by [f00 {{alertname=" in result["msg"]
    assert 'team="real"' in result["msg"]
    assert _case(result, 0)["inhibited_per_am"] == {AM1: True, AM2: False}
    assert "[inhibited on 1 of 2 Alertmanagers]" in result["table"]


# ---------------------------------------------------------------- check mode
def test_check_mode_posts_nothing_and_returns_the_plan(world, run):
    result = run(check_mode=True, cases=[CRITICAL_API, INHIBITED], run_id="plan")

    assert world.requests == []
    assert result["changed"] is False
    assert [c["id"] for c in result["cases"]] == ["plan-01", "plan-02"]
    assert result["cases"][1]["sources"][0]["id"] == "plan-src1-02"
    assert result["cases"][1]["labels"]["smoke_test_id"] == "plan-02"
    assert "planned: plan-01" in result["table"]


def test_default_run_id_is_a_random_uuid_hex(world, run):
    first = run(check_mode=True, run_id=None)["run_id"]
    second = run(check_mode=True, run_id=None)["run_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second


# -------------------------------------------------------------------- errors
def test_an_alertmanager_lost_mid_run_is_left_out_and_the_run_goes_on(world, run, monkeypatch):
    warnings = []
    monkeypatch.setattr(AnsibleModule, "warn", lambda self, msg: warnings.append(msg))
    world.ams[AM2].down_after_post = True
    result = run(max_unavailable=1)

    assert not result.get("failed"), result["msg"]
    lost = {am["url"]: am["lost"] for am in result["alertmanagers"]}
    assert lost[AM1] is None
    assert lost[AM2].startswith(f"unreachable while listing alerts: Alertmanager {AM2} unreachable")
    assert f"lost during the run (max_unavailable=1): {AM2} unreachable while listing alerts" in result["msg"]
    assert any(f"Alertmanager {AM2} is lost" in w and f"goes on with {AM1}" in w for w in warnings), warnings
    assert all(list(case["routed_per_am"]) == [AM1] for case in result["cases"])
    assert world.active_ids(AM1) == [], "the alerts are resolved on the Alertmanager that is left"


def test_more_alertmanagers_lost_than_allowed_fail_as_a_degraded_cluster(world, run):
    world.ams[AM2].down_after_post = True
    result = run()

    assert result["failed"] is True
    assert result["msg"].startswith(
        f"Alertmanager cluster degraded: 1 of 2 Alertmanager(s) lost during the run (max_unavailable=0): {AM2}"
        " unreachable while listing alerts"
    )
    assert f"The cases ran on the rest ({AM1}). All 2 case(s) passed there." in result["msg"]
    assert result["failed_cases"] == []
    assert world.active_ids(AM1) == []


def test_when_the_sending_alertmanager_is_lost_its_peer_delivers_once(world, run):
    world.ams[AM1].down_after_post = True
    result = run(cases=[CRITICAL_API], delivery="sink", sink_url=SINK, max_unavailable=1)

    assert not result.get("failed"), result["msg"]
    assert _case(result, 0)["delivered_to"] == ["email", "pagerduty", "slack"]
    assert list(_case(result, 0)["routed_per_am"]) == [AM2]


def test_the_last_alertmanager_is_never_left_out(world, run):
    world.ams[AM1].down_after_post = True
    world.ams[AM2].down_after_post = True
    result = run(max_unavailable=2)

    assert result["failed"] is True
    assert "unreachable: [Errno 111] Connection refused" in result["error"]
    assert "Alertmanager cluster degraded" not in result["msg"], "one of two lost is within max_unavailable"


def test_an_alertmanager_down_before_the_run_is_left_out_within_max_unavailable(world, run):
    world.ams[AM2].down = True
    result = run(max_unavailable=1, delivery="metrics")

    assert not result.get("failed"), result["msg"]
    assert result["alertmanagers"][1]["lost"].startswith("unreachable while reading its status")
    assert world.ams[AM2].posts == []


def test_a_notification_sent_twice_fails_the_case(world, run):
    world.twice.add("slack")
    result = run(cases=[WARNING_API], delivery="sink", sink_url=SINK)

    assert result["failed"] is True
    senders = ", ".join(urlsplit(url).hostname for url in (AM1, AM2))
    assert f"was notified more than once (slack 2x firing from {senders}): two senders mean" in result["msg"]
    assert _case(result, 0)["delivered"] is False


def test_unreachable_alertmanager(world, run):
    world.ams[AM2].down = True
    result = run()

    assert result["failed"] is True
    assert result["msg"].startswith(f"Alertmanager {AM2} unreachable: [Errno 111] Connection refused")
    assert world.ams[AM1].posts == [], "nothing may be posted before every Alertmanager answered"
    assert result["changed"] is False


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'"start time must be before end time"\n', "start time must be before end time"),
        (b'{"code":400,"message":"parsing alerts body failed"}', "parsing alerts body failed"),
    ],
)
def test_http_400_shows_the_server_message(world, run, body, message):
    world.ams[AM2].reject = (400, body)
    result = run()

    assert result["failed"] is True
    assert result["msg"].startswith(f"POST {AM2}/api/v2/alerts returned 400: {message}")
    # AM1 had accepted the alerts: they are resolved there.
    assert len(world.ams[AM1].posts) == 2
    assert world.active_ids(AM1) == []
    assert "Cleanup problems" not in result["msg"]


def test_http_401_without_credentials_mentions_them(world, run):
    world.ams[AM1].auth = ("admin", "s3cret")
    result = run()

    assert result["failed"] is True
    assert f"GET {AM1}/api/v2/status returned 401: Unauthorized" in result["msg"]
    assert "requires credentials: set url_username and url_password" in result["msg"]


def test_http_401_with_wrong_credentials_names_the_user(world, run):
    world.ams[AM1].auth = ("admin", "s3cret")
    result = run(url_username="bob", url_password="wrong")

    assert result["failed"] is True
    assert "returned 401" in result["msg"]
    assert "rejected the credentials of user 'bob': check url_username and url_password" in result["msg"]
    assert "wrong" not in result["msg"]


def test_credentials_are_sent_with_basic_auth_to_alertmanager_but_not_to_the_sink(world, run):
    for am in world.ams.values():
        am.auth = ("admin", "s3cret")
    world.group_wait = 0
    result = run(url_username="admin", url_password="s3cret", delivery="sink", sink_url=SINK, delivery_grace=1)

    assert not result.get("failed"), result["msg"]
    for _method, url, kwargs in world.requests:
        if url.startswith(SINK):
            assert kwargs.get("url_username") is None and not kwargs.get("force_basic_auth")
        else:
            assert kwargs["url_username"] == "admin" and kwargs["force_basic_auth"] is True


def test_timeout_waiting_for_active_says_what_was_seen(world, run):
    world.ams[AM2].hidden.add("run-02")
    now = datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017
    world.ams[AM2].alerts["other"] = {
        "labels": {"alertname": "Other", "smoke_test_id": "otherrun-07"},
        "annotations": {},
        "startsAt": cases_mod.rfc3339(now),
        "endsAt": cases_mod.rfc3339(now + datetime.timedelta(hours=1)),
        "fingerprint": "other",
    }
    result = run(wait_active_timeout=6)

    assert result["failed"] is True
    assert result["msg"].startswith(
        f"alert run-02 (case {WARNING_API['name']}) not active on {AM2} after 6 s; saw: nothing for"
        ' smoke_test_id="run-02"; other smoke test alerts there:'
    )
    assert "smoke_test_id=otherrun-07 state=active receivers=[email, slack]" in result["msg"]
    assert "smoke_test_id=run-01 state=active" in result["msg"]
    # Everything posted was resolved all the same.
    assert world.active_ids(AM1) == []
    assert world.active_ids(AM2) == ["otherrun-07"]  # run-02 was hidden from the API, and resolved all the same
    assert [a["labels"]["smoke_test_id"] for a in world.ams[AM2].posts[-1]] == ["run-01", "run-02"]
    assert "All 2 posted alert(s) were resolved." in result["msg"]


def test_timeout_waiting_for_an_unprocessed_alert_shows_its_state(world, run):
    world.ams[AM1].unprocessed.add("run-01")
    result = run(cases=[CRITICAL_API], wait_active_timeout=3)

    assert result["failed"] is True
    assert "not active on http://am1:9093 after 3 s; saw: smoke_test_id=run-01 state=unprocessed" in result["msg"]


def test_invalid_options_fail_clearly(world, run):
    result = run(smoke_label="smoke-id")
    assert result["failed"] is True and "smoke_label 'smoke-id' is not a valid label name" in result["msg"]
    result = run(delivery="sink")
    assert result["failed"] is True and "sink_url" in result["msg"]
    assert world.requests == []


# ------------------------------------------------------------ delivery: metrics
def test_delivery_metrics_rose(world, run):
    result = run(cases=[CRITICAL_API, WATCHDOG], delivery="metrics", delivery_grace=2)

    assert not result.get("failed"), result["msg"]
    assert _case(result, 0)["delivered"] is True
    assert _case(result, 0)["delivered_to"] == ["email", "pagerduty", "slack"]
    assert _case(result, 1)["delivered_to"] == ["webhook"]
    assert _case(result, 0)["seconds_to_delivery"] >= world.group_wait


def test_delivery_metrics_failed_rose(world, run):
    world.failing.add("slack")
    result = run(cases=[WARNING_API], delivery="metrics")

    assert result["failed"] is True
    assert _case(result, 0)["delivered"] is False
    assert (
        'alertmanager_notifications_failed_total{integration="slack"} rose (by 1 on http://am1:9093)' in result["msg"]
    )


def test_delivery_metrics_nothing_sent(world, run):
    world.drop_channels.add("email")
    result = run(cases=[WARNING_API], delivery="metrics", delivery_timeout=10)

    assert result["failed"] is True
    assert "no notification sent by integration(s) [email] within 10 s" in result["msg"]


# --------------------------------------------------------------- delivery: sink
def test_sink_delivery_success_with_resolved_notifications(world, run):
    result = run(
        cases=[CRITICAL_API, WARNING_API, INHIBITED],
        delivery="sink",
        sink_url=SINK,
        expect_resolved=["email", "slack", "pagerduty"],
    )

    assert not result.get("failed"), result["msg"]
    first, second, inhibited = result["cases"]
    assert first["delivered"] is True and first["delivered_to"] == ["email", "pagerduty", "slack"]
    assert second["delivered_to"] == ["email", "slack"]
    assert first["seconds_to_delivery"] >= world.group_wait
    assert first["resolved_notified"] is True and second["resolved_notified"] is True
    assert inhibited["delivered"] is True and inhibited["delivered_to"] == []
    assert "nobody" in result["table"]


def test_sink_channel_mapping_and_unobservable_receivers(world, run):
    world.drop_channels.add("watchdog")
    result = run(cases=[WATCHDOG, WARNING_API], delivery="sink", sink_url=SINK, sink_channels={"watchdog": ""})

    assert not result.get("failed"), result["msg"]
    assert _case(result, 0)["delivered"] is True and _case(result, 0)["delivered_to"] == []


def test_sink_missing_receiver_fails_with_who_got_it(world, run):
    world.drop_channels.add("email")
    result = run(cases=[CRITICAL_API], delivery="sink", sink_url=SINK, delivery_timeout=20)

    assert result["failed"] is True
    assert (
        "delivery of alert run-01 (case critical API alert pages) incomplete after 20 s: received by"
        " [pagerduty, slack], missing [email]"
    ) in result["msg"]
    assert _case(result, 0)["delivered"] is False
    assert world.clock.now >= 20


def test_sink_refused_notifications_do_not_count(world, run):
    world.refuse["email"] = 451
    result = run(cases=[WARNING_API], delivery="sink", sink_url=SINK, delivery_timeout=10)

    assert result["failed"] is True
    assert (
        "received by [slack], missing [email] (what those channels got: email: 1 firing refused (451))" in result["msg"]
    )
    assert _case(result, 0)["delivered_to"] == ["slack"]


def test_sink_unexpected_channel_fails(world, run):
    world.extra_channels.add("pagerduty")
    result = run(cases=[WARNING_API], delivery="sink", sink_url=SINK)

    assert result["failed"] is True
    assert "also reached [pagerduty], which must not be notified (expected only [email, slack])" in result["msg"]


def test_sink_inhibited_alert_must_reach_nobody(world, run):
    world.deliver_suppressed = True
    result = run(cases=[INHIBITED], delivery="sink", sink_url=SINK)

    assert result["failed"] is True
    assert "is inhibited and must reach nobody, but reached [email, slack]" in result["msg"]


def test_sink_missing_resolved_notification(world, run):
    world.no_resolved.add("email")
    result = run(
        cases=[WARNING_API], delivery="sink", sink_url=SINK, expect_resolved=["email", "slack"], delivery_timeout=9
    )

    assert result["failed"] is True
    assert "resolved notification of alert run-01 (case warning goes to Slack and the digest)" in result["msg"]
    assert "not received within 9 s by [email] (received by [slack])" in result["msg"]
    assert _case(result, 0)["resolved_notified"] is False and _case(result, 0)["delivered"] is True


def test_sink_unreachable_before_posting(world, run):
    world.sink.down = True
    result = run(delivery="sink", sink_url=SINK)

    assert result["failed"] is True
    assert result["msg"].startswith(
        f"notification sink {SINK} unreachable: [Errno 111] Connection refused (GET {SINK}/api/received?contains=run)"
    )
    assert world.ams[AM1].posts == []


# ------------------------------------------------------------------- finally
def test_resolve_happens_in_finally_when_the_sink_fails_midway(world, run):
    world.sink.down_after = 2
    result = run(delivery="sink", sink_url=SINK)

    assert result["failed"] is True
    assert result["msg"].startswith(f"notification sink {SINK} unreachable")
    assert result["changed"] is True
    for url in (AM1, AM2):
        assert world.active_ids(url) == []
    assert "All 2 posted alert(s) were resolved." in result["msg"]
    assert [c["resolved"] for c in result["cases"]] == [True, True]


def test_resolve_happens_even_on_an_unexpected_exception(world, run):
    world.ams[AM2].explode_on_get = RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        run()
    world.ams[AM2].explode_on_get = None
    assert [a["labels"]["smoke_test_id"] for a in world.ams[AM2].posts[-1]] == ["run-01", "run-02"]
    assert world.active_ids(AM1) == [] and world.active_ids(AM2) == []


def test_resolve_false_leaves_the_alerts(world, run):
    result = run(resolve=False)

    assert not result.get("failed"), result["msg"]
    assert world.active_ids(AM1) == ["run-01", "run-02"]
    assert [c["resolved"] for c in result["cases"]] == [None, None]


def test_cleanup_problem_fails_the_run(world, run):
    original = world.ams[AM2].post_alerts

    def refuse_resolution(url, alerts):
        if world.ams[AM2].posts:  # the alerts were fired: refuse their resolution
            raise HTTPError(url, 503, "Service Unavailable", {}, io.BytesIO(b"overloaded"))
        return original(url, alerts)

    world.ams[AM2].post_alerts = refuse_resolution
    result = run(cases=[WARNING_API])

    assert result["failed"] is True
    assert f"resolving run-01 failed: POST {AM2}/api/v2/alerts returned 503: overloaded" in result["msg"]
    assert _case(result, 0)["resolved"] is False


# ---------------------------------------------------------------- ids / plan
def test_ids_are_never_substrings_of_each_other():
    cases = [dict(INHIBITED, name=f"case {i}") for i in range(12)]
    ids = []
    for case in cases_mod.plan_cases(cases, "r", "smoke_test_id"):
        ids += case.alert_ids
    assert len(ids) == 24 and len(set(ids)) == 24
    assert ids[:2] == ["r-src1-01", "r-01"]
    assert not [(a, b) for a in ids for b in ids if a != b and a in b]


# ------------------------------------------------------------ client helpers
def test_parse_prometheus_text_of_a_real_alertmanager():
    samples = client_mod.parse_prometheus_text((FIXTURES / "am_smoke_metrics.txt").read_text())

    assert samples[("alertmanager_notifications_total", frozenset({("integration", "webhook")}))] == 326
    assert client_mod.sum_samples(samples, "alertmanager_notifications_failed_total", integration="email") == 0
    assert client_mod.sum_samples(samples, "alertmanager_notifications_total") == 326
    build = next(labels for name, labels in samples if name == "alertmanager_build_info")
    assert dict(build)["version"] == "0.28.1+ds"


def test_parse_prometheus_text_escapes_and_timestamps():
    text = '# HELP x y\nm{a="x\\"y,}",b="c\\\\d\\n"} 3 1700000000000\nplain 1.5e3\nbroken{a="x" 1\nnan NaN\n'
    samples = client_mod.parse_prometheus_text(text)

    assert samples[("m", frozenset({("a", 'x"y,}'), ("b", "c\\d\n")}))] == 3
    assert samples[("plain", frozenset())] == 1500
    assert ("broken", frozenset({("a", "x")})) not in samples
    assert len(samples) == 3


def test_receiver_integrations_with_and_without_pyyaml():
    expected = {
        "email": ["email"],
        "slack": ["slack"],
        "pagerduty": ["pagerduty"],
        "watchdog": ["webhook"],
        "blackhole": [],
    }
    assert client_mod.receiver_integrations(STATUS_CONFIG) == expected
    assert client_mod._receiver_integrations_from_lines(STATUS_CONFIG) == expected


def test_matchers_are_escaped():
    assert client_mod.equal_matcher("smoke_test_id", 'a"b\\c') == 'smoke_test_id="a\\"b\\\\c"'
    assert client_mod.regex_matcher("smoke_test_id", ".+") == 'smoke_test_id=~".+"'


def test_client_timeout_and_bad_json(monkeypatch):
    def timing_out(url, **kwargs):
        raise URLError(TimeoutError("timed out"))

    monkeypatch.setattr(http_mod, "open_url", timing_out)
    client = client_mod.AlertmanagerClient(AM1, timeout=3)
    with pytest.raises(
        client_mod.AlertmanagerError, match=r"^Alertmanager http://am1:9093 unreachable: timed out after 3 s"
    ):
        client.status()

    monkeypatch.setattr(http_mod, "open_url", lambda url, **kwargs: FakeResponse(b"<html>proxy</html>"))
    with pytest.raises(client_mod.AlertmanagerError, match="returned a body that is not JSON: <html>proxy</html>"):
        client.get_alerts([])


# --------------------------------------------------------------- documentation
def test_documentation_matches_the_argument_spec():
    doc, _examples, _returned = module_docs("alertmanager_routing_check")
    assert doc["module"] == "alertmanager_routing_check"
    compare_options(doc["options"], check.ARGUMENT_SPEC)
    no_log = {name for name, spec in check.ARGUMENT_SPEC.items() if spec.get("no_log")}
    assert no_log == {name for name in doc["options"] if "password" in name} == {"url_password"}


def test_examples_and_return_are_valid():
    _doc, examples, returned = module_docs("alertmanager_routing_check")
    options = set(check.ARGUMENT_SPEC)
    tasks = [task for item in examples for task in item.get("tasks", [item])]
    used = [task["alertmanager_routing_check"] for task in tasks if "alertmanager_routing_check" in task]
    assert len(used) >= 4
    for args in used:
        assert set(args) <= options, set(args) - options
    assert any(args.get("cases") == "{{ alertmanager_routing_tests }}" for args in used)
    assert any(args.get("delivery") == "sink" for args in used)
    assert {"table", "failed_cases", "cases", "run_id"} <= set(returned)
    documented = set(returned["cases"]["contains"])
    case = cases_mod.Case(1, "n", {"receivers": ["a"], "labels": {"a": "b"}}, "r-01", {"labels": {}})
    assert set(case.result()) - {"index"} <= documented
