#!/usr/bin/python
"""Ansible module: send synthetic alerts through Alertmanager and check routing and delivery."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: alertmanager_smoke_test
short_description: Prove that alerts reach the right receivers through every Alertmanager
description:
  - Sends synthetic alerts to the Alertmanager v2 API of every Alertmanager of an environment (as Prometheus
    does in an HA setup), reads back from each one which receivers the alert was routed to and whether it was
    inhibited, optionally checks that the notifications were really sent (Alertmanager metrics) or really
    arrived (a notification sink), and resolves everything it posted.
  - Every alert carries the label O(smoke_label) with a unique id C(<run_id>-<case number>), so concurrent runs
    never see each other's alerts. The id is also written into the C(summary) and C(description) annotations,
    so it appears in every notification text (a Slack message only shows annotations).
  - Cases without an inhibition expectation run together in one batch, and are resolved together. Each
    inhibition case (one with O(cases[].inhibited_by) or O(cases[].inhibited)) then runs on its own, after
    everything before it was resolved, so that an alert of another case can never inhibit it (otherwise the
    alert of a critical case inhibits the warning of a later "not inhibited" case). Its
    O(cases[].inhibited_by) source alerts are fired and confirmed active on every Alertmanager before the
    target alert.
  - The module fails when any case does not match, with a table of all cases in the message. Alerts it posted
    are resolved before it returns, also when it fails or hits an error (unless O(resolve=false)).
  - Only the Python standard library is needed on the host that runs it (HTTP through
    C(ansible.module_utils.urls)).
author:
  - Observability team
options:
  urls:
    description:
      - Base URLs of B(every) Alertmanager of the environment, for example V(http://obs-mon-1:9093).
      - Alerts are posted to all of them, and routing is read back from each of them.
      - A path prefix (C(--web.route-prefix)) is part of the base URL.
    type: list
    elements: str
    required: true
  cases:
    description:
      - The routing test table, typically the inventory's C(alertmanager_routing_tests).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Name of the case, shown in the table and in messages. Defaults to C(case <number>).
        type: str
      labels:
        description:
          - Labels of the synthetic alert. O(smoke_label) is added.
        type: dict
        required: true
      receivers:
        description:
          - Names of the receivers the routing tree must pick for these labels (order does not matter).
        type: list
        elements: str
        required: true
      inhibited_by:
        description:
          - Label sets of source alerts fired (and confirmed active) before the target alert, to test an
            inhibition rule. Each source carries its own O(smoke_label) id C(<run_id>-src<n>-<case number>).
        type: list
        elements: dict
      inhibited:
        description:
          - Whether the target alert must be inhibited (state C(suppressed) with a non-empty C(inhibitedBy)) on
            every Alertmanager.
          - Defaults to V(true) when O(cases[].inhibited_by) is given. When neither is given, the inhibition
            state is not checked (a suppressed alert is only reported as a warning).
          - When V(true), the alert must be inhibited by its own O(cases[].inhibited_by) alerts, and with
            O(delivery=sink) it must reach nobody.
        type: bool
  smoke_label:
    description:
      - Name of the label that carries the smoke test id on every alert.
    type: str
    default: smoke_test_id
  run_id:
    description:
      - Id of this run; case ids are C(<run_id>-<case number>), the number zero-padded to the same width for
        every case so that no id is a substring of another.
      - Defaults to a random UUID4 hex string.
    type: str
  annotations:
    description:
      - Extra annotations for every alert. C(summary) and C(description) are always set by the module to
        texts that contain the smoke test id.
    type: dict
    default: {}
  generator_url:
    description:
      - C(generatorURL) of the alerts (the link shown in notifications).
    type: str
  wait_active_timeout:
    description:
      - Seconds to wait until a posted alert is listed, processed (state not C(unprocessed)) on every
        Alertmanager; also the time allowed for resolved alerts to disappear.
      - An alert that must be inhibited is polled until it is, at most this long.
    type: int
    default: 60
  poll_interval:
    description:
      - Seconds between two polls of the Alertmanager API, the metrics or the notification sink.
    type: float
    default: 1
  delivery:
    description:
      - How to check that notifications were sent.
      - V(none) checks routing and inhibition only.
      - V(metrics) reads C(/metrics) of every Alertmanager before posting and then polls it until
        C(alertmanager_notifications_total{integration=...}), summed over all Alertmanagers, rose by at least 1
        for every integration of the expected receivers (integrations are read from the loaded config in
        C(/api/v2/status)) and C(alertmanager_notifications_failed_total) of those integrations did not rise,
        also not during O(delivery_grace) after that. Alertmanager counts per integration, not per receiver, so
        two receivers using the same integration cannot be told apart; cases that must be inhibited are not
        checked (their sources notify the same integrations).
      - V(sink) polls O(sink_url)C(/api/received?contains=<id>) until every expected receiver (mapped through
        O(sink_channels)) has a record with status C(firing) for the case id, waits O(delivery_grace) and then
        checks that no other channel got that id. An alert that must be inhibited must reach nobody; the
        module first waits until its source alerts were delivered.
    type: str
    choices: [none, metrics, sink]
    default: none
  sink_url:
    description:
      - Base URL of the notification sink that records every notification (required with O(delivery=sink)).
      - C(GET <sink_url>/api/received?contains=<text>) must return a JSON list of records
        C({channel, status, received_at, ...}) with status V(firing), V(resolved) or V(unknown) (the
        project's C(tests/sink)). Records with C(accepted=false) (notifications the sink refused) do not count
        as delivered, but do count as an attempt on a channel that must not be notified.
    type: str
  sink_channels:
    description:
      - Maps receiver names to the sink's channel names; a receiver that is not listed maps to its own name.
      - Map a receiver to an empty string or null when its notifications do not go to the sink; it is then
        not waited for.
    type: dict
    default: {}
  delivery_timeout:
    description:
      - Seconds to wait for the notifications of a batch (and, with O(expect_resolved), for the resolved
        notifications).
      - An alert that joins an aggregation group which was already notified is only sent at that group's
        next C(group_interval); allow for it.
    type: int
    default: 120
  delivery_grace:
    description:
      - Seconds to keep watching after the expected notifications arrived, for notifications that must not
        happen (another channel, a failed notification).
    type: float
    default: 5
  resolve:
    description:
      - Resolve the alerts afterwards (post them again with C(endsAt=now) to every Alertmanager) and wait
        until C(GET /api/v2/alerts) no longer lists them.
      - With V(false) the alerts stay until their C(endsAt), one hour after posting, and alerts of earlier
        cases can inhibit later inhibition cases.
    type: bool
    default: true
  expect_resolved:
    description:
      - Receivers that have C(send_resolved). With O(delivery=sink), after resolving, wait until the sink got
        a record with status C(resolved) for the case id on each of these receivers' channels that the case
        expects (at most O(delivery_timeout)).
    type: list
    elements: str
    default: []
  url_username:
    description:
      - Username for HTTP basic auth on the Alertmanager API (not sent to the sink).
    type: str
  url_password:
    description:
      - Password for HTTP basic auth on the Alertmanager API.
    type: str
  validate_certs:
    description:
      - Validate TLS certificates of HTTPS URLs.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA that signed the Alertmanager (and sink) certificates.
    type: path
  timeout:
    description:
      - Timeout in seconds of every single HTTP request.
    type: int
    default: 10
attributes:
  check_mode:
    support: full
    description: Nothing is sent or read; the planned cases with their ids and alert labels are returned.
  diff_mode:
    support: none
notes:
  - Run it once per environment (C(run_once)) from a host that reaches every Alertmanager.
  - Notifications from the smoke test are real; the annotations say that the alert is a test.
seealso:
  - name: Alertmanager v2 API
    description: The OpenAPI spec of the API the module uses.
    link: https://github.com/prometheus/alertmanager/blob/main/api/v2/openapi.yaml
"""

EXAMPLES = r"""
# playbooks/verify.yml style: send one synthetic alert per case of the
# inventory's routing test table through every Alertmanager.
- name: Route every case of alertmanager_routing_tests through every Alertmanager
  alertmanager_smoke_test:
    urls: "{{ groups['alertmanager'] | map('regex_replace', '^(.*)$', 'http://\\1:9093') | list }}"
    cases: "{{ alertmanager_routing_tests }}"
    url_username: "{{ alertmanager_basic_auth.username | default(omit) }}"
    url_password: "{{ alertmanager_basic_auth.password | default(omit) }}"
    annotations:
      runbook_url: https://git.example.internal/observability/-/blob/main/docs/smoke-test.md
  run_once: true
  register: _smoke

- name: Show the routing table
  ansible.builtin.debug:
    msg: "{{ _smoke.table.splitlines() }}"
  run_once: true

# Loop over the cases one task per case (each case is then its own run with its
# own run id; failures are reported per loop item).
- name: One task per routing test case
  alertmanager_smoke_test:
    urls: [http://obs-mon-1:9093, http://obs-mon-2:9093]
    cases: ["{{ item }}"]
  loop: "{{ alertmanager_routing_tests }}"
  loop_control:
    label: "{{ item.name }}"
  run_once: true

# Sandbox: every receiver points at the notification sink; prove the
# notifications really arrive, nothing else is notified, and resolved
# notifications follow.
- name: Alerts are delivered to the sink
  alertmanager_smoke_test:
    urls: [http://obs-mon-1:9093, http://obs-mon-2:9093]
    cases: "{{ alertmanager_routing_tests }}"
    delivery: sink
    sink_url: http://obs-sink:8080
    sink_channels:
      email: email
      slack: slack
      pagerduty: pagerduty
      watchdog: ""  # goes to the dead man's switch, not to the sink
    expect_resolved: [email, slack, pagerduty]
    delivery_timeout: 300  # group_wait 30s, but group_interval 5m for reused groups
  run_once: true
  delegate_to: localhost

# Production: check that the integrations really sent something (no sink), with
# a fixed id that is easy to find in Slack and in the PagerDuty incident.
- name: Notifications are sent without errors
  alertmanager_smoke_test:
    urls: "{{ alertmanager_urls }}"
    cases:
      - name: critical API alert pages, posts to Slack and lands in the digest
        labels: {alertname: SmokeTest, severity: critical, component: api}
        receivers: [pagerduty, slack, email]
    run_id: "release-{{ release_version }}"
    delivery: metrics
    url_username: "{{ alertmanager_basic_auth.username }}"
    url_password: "{{ alertmanager_basic_auth.password }}"
    ca_path: /etc/ssl/certs/internal-ca.pem
  run_once: true

# Plan only: show the ids and labels that would be posted.
- name: Planned smoke test
  alertmanager_smoke_test:
    urls: [http://obs-mon-1:9093]
    cases: "{{ alertmanager_routing_tests }}"
  check_mode: true
  register: _plan
"""

RETURN = r"""
run_id:
  description: Id of this run; every case id starts with it.
  returned: always
  type: str
  sample: 3f0c5d1e9b7a4c2e8f6d0a1b2c3d4e5f
smoke_label:
  description: Label that carries the case id on every alert.
  returned: always
  type: str
  sample: smoke_test_id
table:
  description: One line per case with the columns case, expected, routed, delivered and result.
  returned: always
  type: str
  sample: |-
    case                        expected                 routed                   delivered              result
    --------------------------  -----------------------  -----------------------  ---------------------  ------
    critical API alert pages    email,pagerduty,slack    email,pagerduty,slack    email,pagerduty,slack  ok
    Watchdog goes only there    watchdog                 watchdog                 watchdog               ok
    warning is inhibited        email,slack [inhibited]  email,slack [inhibited]  nobody                 ok
failed_cases:
  description: Names of the cases that did not match (routing, inhibition, delivery or resolution).
  returned: always
  type: list
  elements: str
  sample: []
posted:
  description: Number of alerts posted (sources included, resolutions not counted).
  returned: always
  type: int
  sample: 13
alertmanagers:
  description: Version and cluster state of every Alertmanager, read before posting (empty in check mode).
  returned: always
  type: list
  elements: dict
  sample: [{url: "http://obs-mon-1:9093", version: 0.28.1, cluster_status: ready, peers: 2}]
cases:
  description: One entry per case, in the order of O(cases).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the case.
      type: str
      sample: critical API alert pages
    id:
      description: Value of O(smoke_label) on the case's alert.
      type: str
      sample: 3f0c5d1e9b7a4c2e8f6d0a1b2c3d4e5f-01
    labels:
      description: All labels of the alert, O(smoke_label) included.
      type: dict
      sample: {alertname: HighErrorRate, severity: critical, component: api, smoke_test_id: 3f0c-01}
    expected:
      description: Expected receivers, sorted.
      type: list
      elements: str
      sample: [email, pagerduty, slack]
    expected_inhibited:
      description: Whether the alert must be inhibited; null when not checked.
      type: bool
    sources:
      description: The inhibited_by source alerts, with their ids, labels and merged routing.
      type: list
      elements: dict
    routed:
      description: Receivers the alert was routed to, merged over all Alertmanagers, sorted; null in check mode.
      type: list
      elements: str
      sample: [email, pagerduty, slack]
    routed_per_am:
      description: Receivers per Alertmanager URL.
      type: dict
      sample: {"http://obs-mon-1:9093": [email, pagerduty, slack]}
    matched:
      description: Routing (and, for inhibition cases, inhibition) as expected on every Alertmanager.
      type: bool
    inhibited:
      description: State C(suppressed) with a non-empty C(inhibitedBy) on every Alertmanager.
      type: bool
    inhibited_per_am:
      description: Inhibition per Alertmanager URL.
      type: dict
    state_per_am:
      description: C(status.state) per Alertmanager URL.
      type: dict
      sample: {"http://obs-mon-1:9093": active}
    silenced:
      description: A silence matched the alert on some Alertmanager.
      type: bool
    delivered:
      description: Delivery expectation met (null when not checked).
      type: bool
    delivered_to:
      description: Sink channels that got the id (O(delivery=sink)) or integrations whose counter rose
        (O(delivery=metrics)).
      type: list
      elements: str
    seconds_to_active:
      description: Seconds from posting the alert until every Alertmanager listed it as processed.
      type: float
      sample: 0.12
    seconds_to_delivery:
      description: Seconds from posting the alert until the last expected notification was seen.
      type: float
      sample: 31.4
    resolved:
      description: The alert (and its sources) were resolved and disappeared from every Alertmanager.
      type: bool
    resolved_notified:
      description: The resolved notifications of O(expect_resolved) arrived (null when not checked).
      type: bool
    ok:
      description: The case passed.
      type: bool
    problems:
      description: Why the case failed.
      type: list
      elements: str
    notes:
      description: Observations that did not fail the case.
      type: list
      elements: str
"""

import datetime  # noqa: E402 - Ansible modules keep their imports below the documentation
import re  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

from ansible.module_utils.alertmanager_client import (  # noqa: E402
    AlertmanagerClient,
    AlertmanagerError,
    SinkClient,
    equal_matcher,
    receiver_integrations,
    regex_matcher,
    sum_samples,
)
from ansible.module_utils.basic import AnsibleModule  # noqa: E402

# Indirections so the unit tests can run the module on a fake clock.
_monotonic = time.monotonic
_sleep = time.sleep

ALERT_LIFETIME = datetime.timedelta(hours=1)
NOTIFICATIONS_TOTAL = "alertmanager_notifications_total"
NOTIFICATIONS_FAILED = "alertmanager_notifications_failed_total"
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
GROUP_INTERVAL_HINT = (
    "an alert that joins an aggregation group which was already notified is only sent at the group's next"
    " group_interval"
)

ARGUMENT_SPEC = dict(
    urls=dict(type="list", elements="str", required=True),
    cases=dict(
        type="list",
        elements="dict",
        required=True,
        options=dict(
            name=dict(type="str"),
            labels=dict(type="dict", required=True),
            receivers=dict(type="list", elements="str", required=True),
            inhibited_by=dict(type="list", elements="dict"),
            inhibited=dict(type="bool"),
        ),
    ),
    smoke_label=dict(type="str", default="smoke_test_id"),
    run_id=dict(type="str"),
    annotations=dict(type="dict", default={}),
    generator_url=dict(type="str"),
    wait_active_timeout=dict(type="int", default=60),
    poll_interval=dict(type="float", default=1),
    delivery=dict(type="str", choices=["none", "metrics", "sink"], default="none"),
    sink_url=dict(type="str"),
    sink_channels=dict(type="dict", default={}),
    delivery_timeout=dict(type="int", default=120),
    delivery_grace=dict(type="float", default=5),
    resolve=dict(type="bool", default=True),
    expect_resolved=dict(type="list", elements="str", default=[]),
    url_username=dict(type="str"),
    url_password=dict(type="str", no_log=True),
    validate_certs=dict(type="bool", default=True),
    ca_path=dict(type="path"),
    timeout=dict(type="int", default=10),
)


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc)  # noqa: UP017 - datetime.UTC needs Python 3.11


def _rfc3339(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _state(alert):
    return str((alert.get("status") or {}).get("state") or "")


def _processed(alerts):
    """The first listed alert once Alertmanager processed it (state active or suppressed), else None."""
    if alerts and _state(alerts[0]) not in ("", "unprocessed"):
        return alerts[0]
    return None


def _receiver_names(alert):
    return sorted({r.get("name") for r in alert.get("receivers") or [] if isinstance(r, dict) and r.get("name")})


def _accepted(record):
    """The sink also records notifications it refused (accepted false, with the response_status it sent)."""
    return record.get("accepted", True) is not False


def _describe_records(records, channels):
    """What the sink recorded on these channels: '<channel>: <n> <status>[ refused (<code>)]; ...'."""
    counts = {}
    for record in records:
        channel = str(record.get("channel"))
        if channel in channels:
            what = str(record.get("status") or "unknown")
            if not _accepted(record):
                what += f" refused ({record.get('response_status')})"
            counts[(channel, what)] = counts.get((channel, what), 0) + 1
    return "; ".join(f"{channel}: {count} {what}" for (channel, what), count in sorted(counts.items()))


def _join(names):
    return ",".join(names) if names else "(none)"


def _bracket(names):
    return "[" + ", ".join(str(name) for name in names) + "]"


class SourceAlert:
    """An inhibited_by source alert of a case."""

    def __init__(self, case, alert_id, alert):
        self.case = case
        self.id = alert_id
        self.alert = alert
        self.routed = None

    @property
    def what(self):
        return f"inhibiting source alert {self.id} (case {self.case.name})"

    def result(self):
        return {"id": self.id, "labels": self.alert["labels"], "routed": self.routed}


class Case:
    """One row of the routing test table: what is expected and what was observed."""

    def __init__(self, index, name, spec, alert_id, alert):
        self.index = index
        self.name = name
        self.id = alert_id
        self.alert = alert
        self.sources = []
        self.expected = sorted(set(spec["receivers"]))
        inhibited = spec.get("inhibited")
        if inhibited is None and spec.get("inhibited_by"):
            inhibited = True
        self.expected_inhibited = inhibited
        self.routed_per_am = {}
        self.state_per_am = {}
        self.inhibited_per_am = {}
        self.silenced = None
        self.matched = None
        self.delivered = None
        self.delivered_to = None
        self.seconds_to_active = None
        self.seconds_to_delivery = None
        self.resolved = None
        self.resolved_notified = None
        self.problems = []
        self.notes = []

    @property
    def isolated(self):
        """Inhibition cases run on their own, so that no other case's alert can inhibit them."""
        return self.expected_inhibited is not None

    @property
    def what(self):
        return f"alert {self.id} (case {self.name})"

    @property
    def alert_ids(self):
        return [source.id for source in self.sources] + [self.id]

    @property
    def routed(self):
        if not self.routed_per_am:
            return None
        return sorted({name for names in self.routed_per_am.values() for name in names})

    @property
    def inhibited(self):
        if not self.inhibited_per_am:
            return None
        return all(self.inhibited_per_am.values())

    @property
    def ok(self):
        return self.matched is True and not self.problems

    def result(self):
        return {
            "name": self.name,
            "index": self.index,
            "id": self.id,
            "labels": self.alert["labels"],
            "expected": self.expected,
            "expected_inhibited": self.expected_inhibited,
            "sources": [source.result() for source in self.sources],
            "routed": self.routed,
            "routed_per_am": self.routed_per_am,
            "matched": self.matched,
            "inhibited": self.inhibited,
            "inhibited_per_am": self.inhibited_per_am,
            "state_per_am": self.state_per_am,
            "silenced": self.silenced,
            "delivered": self.delivered,
            "delivered_to": self.delivered_to,
            "seconds_to_active": self.seconds_to_active,
            "seconds_to_delivery": self.seconds_to_delivery,
            "resolved": self.resolved,
            "resolved_notified": self.resolved_notified,
            "ok": self.ok,
            "problems": self.problems,
            "notes": self.notes,
        }


# ---------------------------------------------------------------------- table
def _expected_cell(case):
    cell = _join(case.expected)
    if case.expected_inhibited is not None:
        cell += " [inhibited]" if case.expected_inhibited else " [not inhibited]"
    return cell


def _routed_cell(case):
    if not case.routed_per_am:
        return "-"
    if len({tuple(names) for names in case.routed_per_am.values()}) == 1:
        cell = _join(case.routed)
    else:
        cell = "; ".join(f"{url}: {_join(names)}" for url, names in case.routed_per_am.items())
    count = sum(1 for inhibited in case.inhibited_per_am.values() if inhibited)
    if 0 < count < len(case.inhibited_per_am):
        cell += f" [inhibited on {count} of {len(case.inhibited_per_am)} Alertmanagers]"
    elif case.isolated or count:
        cell += " [inhibited]" if count else " [not inhibited]"
    return cell


def _delivered_cell(case):
    if case.delivered_to is None:
        return "-"
    return _join(case.delivered_to) if case.delivered_to else "nobody"


def _result_cell(case):
    if case.ok:
        return "ok"
    if case.matched is None and not case.problems:
        return "not run"
    return "FAIL"


def render_table(cases, planned=False):
    """Plain-text table with the columns case, expected, routed, delivered, result."""
    rows = [("case", "expected", "routed", "delivered", "result")]
    for case in cases:
        if planned:
            rows.append((case.name, _expected_cell(case), "-", "-", f"planned: {case.id}"))
        else:
            rows.append(
                (case.name, _expected_cell(case), _routed_cell(case), _delivered_cell(case), _result_cell(case))
            )
    widths = [max(len(row[col]) for row in rows) for col in range(4)]
    lines = []
    for number, row in enumerate(rows):
        lines.append("  ".join([cell.ljust(widths[col]) for col, cell in enumerate(row[:4])] + [row[4]]))
        if number == 0:
            lines.append("  ".join(["-" * width for width in widths] + ["-" * 6]))
    return "\n".join(lines)


# ------------------------------------------------------------------ the test
class SmokeTest:
    def __init__(self, module):
        self.module = module
        params = module.params
        self.params = params
        self.smoke_label = params["smoke_label"]
        self.run_id = params["run_id"] or uuid.uuid4().hex
        self.poll_interval = params["poll_interval"]
        self.wait_active_timeout = params["wait_active_timeout"]
        self.delivery = params["delivery"]
        self.delivery_timeout = params["delivery_timeout"]
        self.delivery_grace = params["delivery_grace"]
        self.resolve = params["resolve"]
        self.sink_channels = params["sink_channels"] or {}
        self.expect_resolved = set(params["expect_resolved"] or [])
        self._validate()

        self.urls = []
        for raw_url in params["urls"]:
            url = raw_url.strip().rstrip("/")
            if url not in self.urls:
                self.urls.append(url)
        http = dict(timeout=params["timeout"], validate_certs=params["validate_certs"], ca_path=params["ca_path"])
        self.clients = [
            AlertmanagerClient(url, username=params["url_username"], password=params["url_password"], **http)
            for url in self.urls
        ]
        self.sink = SinkClient(params["sink_url"], **http) if self.delivery == "sink" else None

        self.cases = self._plan(params["cases"])
        self.posted = {}  # alert id -> the alert as posted
        self.resolve_attempted = set()
        self.rejected = set()  # URLs of Alertmanagers that answered 400 to a POST of this run
        self.resolved_ids = set()
        self.fingerprints = {}  # fingerprint -> smoke id, for every alert of this run that was listed
        self.sink_counts = {}  # case id -> {channel: notifications with its id} when it was resolved
        self.inhibited_by_own = set()  # (case id, url) where an own inhibited_by source was seen inhibiting
        self.integrations = {}  # receiver -> integrations, from the loaded configs (delivery=metrics)
        self.alertmanagers = []
        self.errors = []  # cleanup problems

    # ------------------------------------------------------------------ plan
    def _validate(self):
        params = self.params
        problems = []
        if not params["urls"]:
            problems.append("urls must list at least one Alertmanager base URL")
        if not params["cases"]:
            problems.append("cases must hold at least one case")
        if not LABEL_NAME.match(self.smoke_label or ""):
            problems.append(f"smoke_label {self.smoke_label!r} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)")
        for option in ("poll_interval", "wait_active_timeout", "delivery_timeout", "timeout"):
            if params[option] <= 0:
                problems.append(f"{option} must be greater than 0, got {params[option]}")
        if params["delivery_grace"] < 0:
            problems.append(f"delivery_grace must not be negative, got {params['delivery_grace']}")
        for number, spec in enumerate(params["cases"] or [], start=1):
            name = spec.get("name") or f"case {number}"
            if not spec["labels"]:
                problems.append(f"case {name!r}: labels must not be empty")
            if any(not isinstance(source, dict) or not source for source in spec.get("inhibited_by") or []):
                problems.append(f"case {name!r}: every inhibited_by entry must be a non-empty dict of labels")
        if problems:
            self.module.fail_json(msg="; ".join(problems))
        if self.expect_resolved and (self.delivery != "sink" or not self.resolve):
            self.module.warn("expect_resolved is only checked with delivery=sink and resolve=true; ignored")
            self.expect_resolved = set()

    def _plan(self, specs):
        width = max(2, len(str(len(specs))))
        starts = _utcnow()
        self.starts, self.ends = _rfc3339(starts), _rfc3339(starts + ALERT_LIFETIME)
        cases = []
        for index, spec in enumerate(specs, start=1):
            number = str(index).zfill(width)
            name = spec.get("name") or f"case {index}"
            case_id = f"{self.run_id}-{number}"
            receivers = ", ".join(sorted(set(spec["receivers"]))) or "none"
            description = (
                f"Synthetic alert {case_id} posted by the alertmanager_smoke_test Ansible module (run {self.run_id},"
                f" case {index} of {len(specs)}: {name}). Expected receivers: {receivers}."
                " It is resolved when the test ends; no action needed."
            )
            alert = self._alert(spec["labels"], case_id, f"Smoke test {case_id}: {name}", description)
            case = Case(index, name, spec, case_id, alert)
            for source_number, source_labels in enumerate(spec.get("inhibited_by") or [], start=1):
                source_id = f"{self.run_id}-src{source_number}-{number}"
                description = (
                    f"Synthetic alert {source_id} posted by the alertmanager_smoke_test Ansible module (run"
                    f" {self.run_id}) to check that it inhibits the alert of case {index} ({name})."
                    " It is resolved when the test ends; no action needed."
                    # Never the case id here: the sink finds a case's notifications by its id.
                )
                summary = f"Smoke test {source_id}: inhibiting source {source_number} of {name}"
                source_alert = self._alert(source_labels, source_id, summary, description)
                case.sources.append(SourceAlert(case, source_id, source_alert))
            cases.append(case)
        return cases

    def _alert(self, labels, alert_id, summary, description):
        labels = {str(key): "" if value is None else str(value) for key, value in labels.items()}
        labels[self.smoke_label] = alert_id
        annotations = {str(k): "" if v is None else str(v) for k, v in (self.params["annotations"] or {}).items()}
        annotations["summary"] = summary
        annotations["description"] = description
        alert = {"labels": labels, "annotations": annotations, "startsAt": self.starts, "endsAt": self.ends}
        if self.params["generator_url"]:
            alert["generatorURL"] = self.params["generator_url"]
        return alert

    # ------------------------------------------------------------------- run
    def run(self):
        if self.module.check_mode:
            self.module.exit_json(
                changed=False,
                msg=f"check mode: {len(self.cases)} case(s) planned, nothing posted (run {self.run_id})",
                **self._result(planned=True),
            )
        error = None
        try:
            self._preflight()
            batch = [case for case in self.cases if not case.isolated]
            if batch:
                self._run_batch(batch)
            for case in self.cases:
                if case.isolated:
                    self._run_batch([case])
            if self.expect_resolved:
                self._wait_resolved_notifications()
        except AlertmanagerError as exc:
            error = exc.msg
        finally:
            self._cleanup()
        self._finish(error)

    def _preflight(self):
        """Read every Alertmanager's status (and ask the sink once) before posting anything."""
        for client in self.clients:
            status = client.status()
            cluster = status.get("cluster") or {}
            self.alertmanagers.append(
                {
                    "url": client.base_url,
                    "version": (status.get("versionInfo") or {}).get("version"),
                    "cluster_status": cluster.get("status"),
                    "peers": len(cluster.get("peers") or []),
                }
            )
            if self.delivery == "metrics":
                config = (status.get("config") or {}).get("original") or ""
                for receiver, integrations in receiver_integrations(config).items():
                    self.integrations.setdefault(receiver, set()).update(integrations)
        if self.sink is not None:
            self.sink.received(self.run_id)
        if not self.resolve and len(self.cases) > 1 and any(case.isolated for case in self.cases):
            self.module.warn(
                "resolve=false: alerts of earlier cases stay active and can inhibit the alerts of later inhibition"
                " cases"
            )

    def _run_batch(self, batch):
        """Post the batch's alerts (sources first), check routing, inhibition and delivery, resolve them."""
        before = [client.metrics() for client in self.clients] if self.delivery == "metrics" else None
        self._fire_sources(batch)
        posted_at = _monotonic()
        self._post([case.alert for case in batch])
        seen = self._wait_active([(case, self._inhibition_accept(case)) for case in batch])
        if any(case.isolated for case in batch):
            self._confirm_inhibition(batch, seen)
        for case in batch:
            self._evaluate(case, seen)
        if self.delivery == "metrics":
            self._check_metrics(batch, before, posted_at)
        elif self.delivery == "sink":
            self._check_sink(batch, posted_at)
        if self.resolve:
            self._resolve_batch(batch)

    def _fire_sources(self, batch):
        """Post the inhibited_by source alerts and wait until every Alertmanager lists them."""
        sources = [source for case in batch for source in case.sources]
        if not sources:
            return
        self._post([source.alert for source in sources])
        seen = self._wait_active([(source, None) for source in sources])
        for source in sources:
            names = set()
            for client in self.clients:
                names.update(_receiver_names(seen[(source.id, client.base_url)][0]))
            source.routed = sorted(names)

    def _confirm_inhibition(self, batch, seen):
        """Inhibition is evaluated whenever the API is read: read the state once more."""
        _sleep(self.poll_interval)
        for case in batch:
            accept = self._inhibition_accept(case)
            for client in self.clients:
                again = _processed(self._listed(client, case.id))
                if again is not None:
                    key = (case.id, client.base_url)
                    seen[key] = (again, seen[key][1])
                    if accept is not None:
                        accept(again, client.base_url)

    def _resolve_batch(self, batch):
        if self.expect_resolved:
            self._count_sink_records(batch)
        self._resolve([alert_id for case in batch for alert_id in case.alert_ids])
        for case in batch:
            case.resolved = all(alert_id in self.resolved_ids for alert_id in case.alert_ids)
            if not case.resolved:
                case.problems.append(f"{case.what} could not be resolved on every Alertmanager")

    def _post(self, alerts):
        for alert in alerts:
            self.posted[alert["labels"][self.smoke_label]] = alert
        for client in self.clients:
            try:
                client.post_alerts(alerts)
            except AlertmanagerError as exc:
                if exc.status == 400:
                    # Alertmanager stores the valid alerts of a rejected batch: they are resolved
                    # in the end, and resolving the batch is expected to be rejected the same way.
                    self.rejected.add(client.base_url)
                raise

    # ------------------------------------------------------- active / routing
    def _listed(self, client, alert_id):
        """The alerts of this id listed by one Alertmanager (remembering their fingerprints)."""
        alerts = client.get_alerts([equal_matcher(self.smoke_label, alert_id)])
        mine = [a for a in alerts if isinstance(a, dict) and (a.get("labels") or {}).get(self.smoke_label) == alert_id]
        for alert in mine:
            if alert.get("fingerprint"):
                self.fingerprints[alert["fingerprint"]] = alert_id
        return mine

    def _inhibition_accept(self, case):
        """An alert that must be inhibited is polled until its own sources inhibit it.

        Alertmanager lists only one inhibiting alert in inhibitedBy, picked at
        random when several match (another run's or a real alert), so whether
        an own source was ever listed is remembered across polls.
        """
        if case.expected_inhibited is not True:
            return None
        source_ids = {source.id for source in case.sources}

        def accept(alert, url):
            inhibited_by = (alert.get("status") or {}).get("inhibitedBy") or []
            if not source_ids:
                return bool(inhibited_by)
            if any(self.fingerprints.get(fp) in source_ids for fp in inhibited_by):
                self.inhibited_by_own.add((case.id, url))
                return True
            return False

        return accept

    def _wait_active(self, probes):
        """Poll every Alertmanager until each probe's alert is listed as processed.

        probes: [(Case or SourceAlert, accept or None)]. Returns {(id, url): (alert,
        seconds until it was first listed as processed)}. An alert that is listed
        but never accepted is returned as last seen (the caller reports the
        mismatch); one that is never listed raises AlertmanagerError.
        """
        started = _monotonic()
        deadline = started + self.wait_active_timeout
        pending = [(probe, accept, client) for probe, accept in probes for client in self.clients]
        processed = {}
        last = {}
        final = {}
        while True:
            still = []
            for probe, accept, client in pending:
                key = (probe.id, client.base_url)
                last[key] = self._listed(client, probe.id)
                alert = _processed(last[key])
                if alert is not None:
                    first = processed[key][1] if key in processed else round(_monotonic() - started, 3)
                    processed[key] = (alert, first)
                    if accept is None or accept(alert, client.base_url):
                        final[key] = processed[key]
                        continue
                still.append((probe, accept, client))
            pending = still
            if not pending:
                return final
            if _monotonic() >= deadline:
                for probe, _accept, client in pending:
                    key = (probe.id, client.base_url)
                    if key not in processed:
                        raise AlertmanagerError(self._not_active_message(probe, client, last.get(key) or []))
                    final[key] = processed[key]
                return final
            _sleep(self.poll_interval)

    def _not_active_message(self, probe, client, seen):
        if seen:
            saw = "; ".join(self._describe(alert) for alert in seen)
        else:
            saw = f"nothing for {equal_matcher(self.smoke_label, probe.id)}"
            try:
                others = client.get_alerts([regex_matcher(self.smoke_label, ".+")])
            except AlertmanagerError as exc:
                saw += f" (listing the other smoke test alerts failed: {exc.msg})"
            else:
                if others:
                    described = [self._describe(alert) for alert in others[:10]]
                    if len(others) > 10:
                        described.append(f"... {len(others) - 10} more")
                    saw += "; other smoke test alerts there: " + "; ".join(described)
                else:
                    saw += ", and no other smoke test alerts either"
        return f"{probe.what} not active on {client.base_url} after {self.wait_active_timeout} s; saw: {saw}"

    def _describe(self, alert):
        smoke_id = (alert.get("labels") or {}).get(self.smoke_label, "?")
        return (
            f"{self.smoke_label}={smoke_id} state={_state(alert) or '?'} receivers={_bracket(_receiver_names(alert))}"
        )

    def _evaluate(self, case, seen):
        inhibited_by = {}
        for client in self.clients:
            url = client.base_url
            alert, first_seen = seen[(case.id, url)]
            status = alert.get("status") or {}
            case.seconds_to_active = max(case.seconds_to_active or 0.0, first_seen)
            case.routed_per_am[url] = _receiver_names(alert)
            case.state_per_am[url] = _state(alert)
            inhibited_by[url] = [self.fingerprints.get(fp, fp) for fp in status.get("inhibitedBy") or []]
            case.inhibited_per_am[url] = _state(alert) == "suppressed" and bool(inhibited_by[url])
            if status.get("silencedBy"):
                case.notes.append(f"silenced on {url} by {', '.join(status['silencedBy'])}")
        case.silenced = any(note.startswith("silenced on ") for note in case.notes)
        routing_ok = self._check_routing(case)
        inhibition_ok = self._check_inhibition(case, inhibited_by)
        case.matched = routing_ok and inhibition_ok
        for note in case.notes:
            self.module.warn(f"case {case.name}: {note}")

    def _check_routing(self, case):
        routings = {tuple(names) for names in case.routed_per_am.values()}
        if routings == {tuple(case.expected)}:
            return True
        if len(routings) == 1:
            case.problems.append(f"routed to {_bracket(case.routed)}, expected {_bracket(case.expected)}")
        else:
            per_am = "; ".join(f"{url}: {_bracket(names)}" for url, names in case.routed_per_am.items())
            case.problems.append(
                f"routed differently by the Alertmanagers ({per_am}), expected {_bracket(case.expected)}"
            )
        return False

    def _check_inhibition(self, case, inhibited_by):
        ok = True
        source_ids = {source.id for source in case.sources}
        for url, inhibited in case.inhibited_per_am.items():
            by = inhibited_by[url]
            if case.expected_inhibited is None:
                if case.state_per_am[url] == "suppressed":
                    note = f"suppressed on {url}" + (f" (inhibited by {_bracket(by)})" if by else "")
                    culprits = sorted({c.name for c in self.cases if c is not case and set(c.alert_ids) & set(by)})
                    if culprits:
                        note += (
                            f"; the alert of case(s) {', '.join(culprits)} of this run inhibits it: give this case an"
                            " inhibition expectation (inhibited_by or inhibited) so that it runs on its own"
                        )
                    case.notes.append(note)
            elif inhibited != case.expected_inhibited:
                ok = False
                if case.expected_inhibited:
                    case.problems.append(
                        f"expected to be inhibited, but is not on {url} (state {case.state_per_am[url]}"
                        f" after {self.wait_active_timeout} s)"
                    )
                else:
                    case.problems.append(
                        f"expected not to be inhibited, but is inhibited on {url} by {self._inhibitors(url, by)}"
                    )
            elif inhibited and source_ids and (case.id, url) not in self.inhibited_by_own:
                ok = False
                case.problems.append(
                    f"inhibited on {url}, but within {self.wait_active_timeout} s only by alerts that are not its"
                    f" inhibited_by alerts: {self._inhibitors(url, by)}"
                )
        return ok

    def _inhibitors(self, url, inhibited_by):
        """Describe inhibiting alerts: smoke ids of this run, else the labels of the (foreign) alert."""
        foreign = [item for item in inhibited_by if item not in self.posted]
        labels = {}
        if foreign:
            client = next(client for client in self.clients if client.base_url == url)
            try:
                labels = {a.get("fingerprint"): a.get("labels") or {} for a in client.get_alerts()}
            except AlertmanagerError:
                labels = {}
        described = []
        for item in inhibited_by:
            if item in labels:
                pairs = ", ".join(f'{k}="{v}"' for k, v in sorted(labels[item].items()))
                described.append(f"{item} {{{pairs}}}")
            else:
                described.append(item)
        return _bracket(described)

    # --------------------------------------------------------------- metrics
    def _metric_deltas(self, before, after, name, integration):
        """[(url, increase of ``name`` for ``integration``)] for every Alertmanager."""
        return [
            (
                client.base_url,
                sum_samples(after[i], name, integration=integration)
                - sum_samples(before[i], name, integration=integration),
            )
            for i, client in enumerate(self.clients)
        ]

    def _metrics_wanted(self, batch):
        """{case id: integrations its expected receivers use}; cases that must be inhibited are skipped."""
        wanted = {}
        for case in batch:
            if case.expected_inhibited:
                case.notes.append(
                    "delivery not checked with delivery=metrics: its sources notify the same integrations"
                )
                continue
            unknown = [receiver for receiver in case.expected if receiver not in self.integrations]
            if unknown:
                case.delivered = False
                case.problems.append(
                    f"receiver(s) {_bracket(unknown)} not found in the loaded config of any Alertmanager:"
                    " cannot tell which integration's metrics to watch"
                )
            wanted[case.id] = sorted({i for r in case.expected for i in self.integrations.get(r, ())})
        return wanted

    def _poll_metrics(self, involved, before, posted_at):
        """Poll /metrics until every involved integration notified (plus the grace) or one failed."""
        rose_at = {}
        failed = {}
        deadline = _monotonic() + self.delivery_timeout
        grace_until = None
        while involved:
            after = [client.metrics() for client in self.clients]
            for integration in involved:
                total = self._metric_deltas(before, after, NOTIFICATIONS_TOTAL, integration)
                if integration not in rose_at and sum(delta for _url, delta in total) >= 1:
                    rose_at[integration] = round(_monotonic() - posted_at, 3)
                failures = self._metric_deltas(before, after, NOTIFICATIONS_FAILED, integration)
                if any(delta > 0 for _url, delta in failures):
                    failed[integration] = [(url, delta) for url, delta in failures if delta > 0]
            now = _monotonic()
            if failed:
                break
            if len(rose_at) == len(involved):
                grace_until = now + self.delivery_grace if grace_until is None else grace_until
                if now >= grace_until:
                    break
            elif now >= deadline:
                break
            _sleep(self.poll_interval)
        return rose_at, failed

    def _check_metrics(self, batch, before, posted_at):
        wanted = self._metrics_wanted(batch)
        involved = sorted({i for integrations in wanted.values() for i in integrations})
        rose_at, failed = self._poll_metrics(involved, before, posted_at)
        for case in batch:
            if case.id not in wanted:
                continue
            integrations = wanted[case.id]
            case.delivered_to = [i for i in integrations if i in rose_at]
            case_failed = [i for i in integrations if i in failed]
            missing = [i for i in integrations if i not in rose_at]
            for integration in case_failed:
                where = ", ".join(f"by {delta:g} on {url}" for url, delta in failed[integration])
                case.problems.append(
                    f'{NOTIFICATIONS_FAILED}{{integration="{integration}"}} rose ({where}): a notification failed,'
                    " see the Alertmanager log"
                )
            if missing and not case_failed:
                case.problems.append(
                    f"no notification sent by integration(s) {_bracket(missing)} within {self.delivery_timeout} s"
                    f" ({NOTIFICATIONS_TOTAL} did not rise on any Alertmanager; {GROUP_INTERVAL_HINT});"
                    f" sent: {_bracket(case.delivered_to)}"
                )
            if case.delivered is None:
                case.delivered = not case_failed and not missing
            if case.delivered and integrations:
                case.seconds_to_delivery = max(rose_at[i] for i in integrations)

    # ------------------------------------------------------------------ sink
    def _channels(self, receivers):
        """Sink channels of these receivers (receivers mapped to nothing are left out)."""
        channels = set()
        for receiver in receivers:
            channel = self.sink_channels.get(receiver, receiver)
            if channel not in (None, ""):
                channels.add(str(channel))
        return sorted(channels)

    def _sink_channels_with(self, alert_id, status):
        """Channels whose notification with this id the sink accepted with this status."""
        return {
            str(record.get("channel"))
            for record in self.sink.received(alert_id)
            if _accepted(record) and record.get("status") == status
        }

    def _sink_waits(self, batch):
        """{alert id: (case, channels that must get it)}. For a case that must be inhibited (and reach
        nobody) wait for its sources instead, so that "nobody" is checked once that group was notified."""
        waits = {}
        for case in batch:
            if case.expected_inhibited:
                for source in case.sources:
                    channels = self._channels(source.routed or [])
                    if channels:
                        waits[source.id] = (case, channels)
            else:
                channels = self._channels(case.expected)
                if channels:
                    waits[case.id] = (case, channels)
        return waits

    def _poll_sink(self, waits, reached, started):
        """Poll the sink until every waited-for id reached its channels with ``status``; {id: seconds}."""
        arrived = {}
        deadline = _monotonic() + self.delivery_timeout
        while waits:
            for alert_id, (_case, channels) in waits.items():
                if alert_id not in arrived and set(channels) <= reached(alert_id):
                    arrived[alert_id] = round(_monotonic() - started, 3)
            if len(arrived) == len(waits) or _monotonic() >= deadline:
                break
            _sleep(self.poll_interval)
        return arrived

    def _check_sink(self, batch, posted_at):
        waits = self._sink_waits(batch)
        arrived = self._poll_sink(waits, lambda alert_id: self._sink_channels_with(alert_id, "firing"), posted_at)
        if self.delivery_grace:
            _sleep(self.delivery_grace)
        for case in batch:
            records = self.sink.received(case.id)
            firing = sorted({str(r.get("channel")) for r in records if _accepted(r) and r.get("status") == "firing"})
            case.delivered_to = sorted({str(r.get("channel")) for r in records if _accepted(r)})
            attempted = sorted({str(r.get("channel")) for r in records})
            if case.expected_inhibited:
                expected = []
                for source in case.sources:
                    if source.id in waits and source.id not in arrived:
                        case.notes.append(
                            f"its inhibiting source {source.id} did not reach {_bracket(waits[source.id][1])} within"
                            f" {self.delivery_timeout} s, so 'reached nobody' was only watched for that long"
                            f" plus {self.delivery_grace} s"
                        )
                        self.module.warn(f"case {case.name}: {case.notes[-1]}")
            else:
                expected = self._channels(case.expected)
            missing = [channel for channel in expected if channel not in firing]
            unexpected = [channel for channel in attempted if channel not in expected]
            if missing:
                seen = _describe_records(records, missing)
                case.problems.append(
                    f"delivery of {case.what} incomplete after {self.delivery_timeout} s: received by"
                    f" {_bracket(firing)}, missing {_bracket(missing)}"
                    + (f" (what those channels got: {seen})" if seen else f" ({GROUP_INTERVAL_HINT})")
                )
            if unexpected and case.expected_inhibited:
                case.problems.append(
                    f"{case.what} is inhibited and must reach nobody, but reached {_bracket(unexpected)}"
                )
            elif unexpected:
                case.problems.append(
                    f"{case.what} also reached {_bracket(unexpected)}, which must not be notified"
                    f" (expected only {_bracket(expected)})"
                )
            case.delivered = not missing and not unexpected
            if case.id in arrived and not missing:
                case.seconds_to_delivery = arrived[case.id]

    def _count_sink_records(self, batch):
        """Remember how many notifications of each case every channel got before resolving."""
        for case in batch:
            counts = {}
            for record in self.sink.received(case.id):
                if _accepted(record):
                    channel = str(record.get("channel"))
                    counts[channel] = counts.get(channel, 0) + 1
            self.sink_counts[case.id] = counts

    def _resolved_channels(self, alert_id):
        """Channels that got the resolved notification of an alert: a record with status resolved, or any
        new notification with its id after it was resolved. A group notification that also lists alerts
        still firing has status firing, and after resolving, the id can only be in it as resolved."""
        before = self.sink_counts.get(alert_id, {})
        counts = {}
        resolved = set()
        for record in self.sink.received(alert_id):
            if not _accepted(record):
                continue
            channel = str(record.get("channel"))
            counts[channel] = counts.get(channel, 0) + 1
            if record.get("status") == "resolved":
                resolved.add(channel)
        return resolved | {channel for channel, count in counts.items() if count > before.get(channel, 0)}

    def _wait_resolved_notifications(self):
        waits = {}
        for case in self.cases:
            if case.expected_inhibited or not case.resolved:
                continue
            channels = self._channels([r for r in case.expected if r in self.expect_resolved])
            if channels:
                waits[case.id] = (case, channels)
        done = self._poll_sink(waits, self._resolved_channels, _monotonic())
        for alert_id, (case, channels) in waits.items():
            case.resolved_notified = alert_id in done
            if not case.resolved_notified:
                got = self._resolved_channels(alert_id)
                missing = [channel for channel in channels if channel not in got]
                case.problems.append(
                    f"resolved notification of {case.what} not received within {self.delivery_timeout} s by"
                    f" {_bracket(missing)} (received by {_bracket(sorted(got))})"
                )

    # --------------------------------------------------------------- resolve
    def _resolve(self, alert_ids):
        """POST the alerts again with endsAt=now to every Alertmanager and wait until they are gone.

        Never raises: problems are collected in self.errors.
        """
        alert_ids = [i for i in alert_ids if i in self.posted and i not in self.resolve_attempted]
        if not alert_ids:
            return
        self.resolve_attempted.update(alert_ids)
        ends = _rfc3339(_utcnow())
        alerts = [dict(self.posted[alert_id], endsAt=ends) for alert_id in alert_ids]
        failed_post = False
        for client in self.clients:
            try:
                client.post_alerts(alerts)
            except AlertmanagerError as exc:
                if exc.status == 400 and client.base_url in self.rejected:
                    continue
                failed_post = True
                self.errors.append(f"resolving {', '.join(alert_ids)} failed: {exc.msg}")
        if failed_post:
            return
        pending = [(alert_id, client) for alert_id in alert_ids for client in self.clients]
        deadline = _monotonic() + self.wait_active_timeout
        while pending:
            try:
                pending = [(alert_id, client) for alert_id, client in pending if self._listed(client, alert_id)]
            except AlertmanagerError as exc:
                self.errors.append(f"checking that the alerts were resolved failed: {exc.msg}")
                return
            if not pending or _monotonic() >= deadline:
                break
            _sleep(self.poll_interval)
        for alert_id, client in pending:
            self.errors.append(
                f"alert {alert_id} is still listed on {client.base_url} {self.wait_active_timeout} s after it was"
                " resolved"
            )
        left = {alert_id for alert_id, _client in pending}
        self.resolved_ids.update(set(alert_ids) - left)

    def _cleanup(self):
        """Resolve whatever was posted and not resolved yet (errors included)."""
        if not self.resolve:
            return
        self._resolve([alert_id for alert_id in self.posted if alert_id not in self.resolve_attempted])
        for case in self.cases:
            posted = [alert_id for alert_id in case.alert_ids if alert_id in self.posted]
            if case.resolved is None and posted:
                case.resolved = all(alert_id in self.resolved_ids for alert_id in posted)

    # ---------------------------------------------------------------- result
    def _result(self, planned=False):
        return dict(
            run_id=self.run_id,
            smoke_label=self.smoke_label,
            posted=len(self.posted),
            alertmanagers=self.alertmanagers,
            cases=[case.result() for case in self.cases],
            failed_cases=[] if planned else [c.name for c in self.cases if c.matched is not None and not c.ok],
            table=render_table(self.cases, planned=planned),
        )

    def _finish(self, error):
        result = self._result()
        changed = bool(self.posted)
        table = result["table"]
        if self.errors:
            cleanup = "\nCleanup problems (the alerts end by themselves at endsAt, 1 h after posting):\n- "
            cleanup += "\n- ".join(self.errors)
        elif self.posted and self.resolve:
            cleanup = f"\nAll {len(self.posted)} posted alert(s) were resolved."
        else:
            cleanup = ""
        if error:
            self.module.fail_json(msg=f"{error}\n{table}{cleanup}", changed=changed, error=error, **result)
        failed = [case for case in self.cases if not case.ok]
        if failed:
            details = "\n".join(f"- {case.name}: {'; '.join(case.problems)}" for case in failed)
            self.module.fail_json(
                msg=f"{len(failed)} of {len(self.cases)} smoke test case(s) failed (run {self.run_id},"
                f" {self.smoke_label}={self.run_id}-*):\n{table}\n{details}{cleanup}",
                changed=changed,
                **result,
            )
        if self.errors:
            self.module.fail_json(
                msg=f"all {len(self.cases)} case(s) passed, but cleaning up failed:\n{table}{cleanup}",
                changed=changed,
                **result,
            )
        self.module.exit_json(
            changed=changed,
            msg=f"{len(self.cases)} smoke test case(s) passed through {len(self.clients)} Alertmanager(s)"
            f" (run {self.run_id})",
            **result,
        )


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        required_if=[("delivery", "sink", ["sink_url"])],
    )
    SmokeTest(module).run()


if __name__ == "__main__":
    main()
