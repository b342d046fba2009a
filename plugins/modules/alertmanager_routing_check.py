#!/usr/bin/python
"""Ansible module: send synthetic alerts through Alertmanager and check routing and delivery."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: alertmanager_routing_check
short_description: Prove that alerts reach the right receivers through every Alertmanager
extends_documentation_fragment:
  - obs_http
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
author:
  - Observability team
options:
  urls:
    description:
      - Base URLs of B(every) Alertmanager of the environment, for example V(http://obs-mon-1:9093).
      - Alerts are posted to all of them, and routing is read back from each of them.
      - A path prefix (C(--web.route-prefix)) is part of the base URL.
      - O(url_username) and O(url_password) are the basic auth credentials of their API; they are never sent to
        the sink.
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
  max_unavailable:
    description:
      - How many Alertmanagers of O(urls) may be lost (not reached at all, as when stopped, killed or cut off)
        while the run still passes.
      - A lost Alertmanager, before or during the run, is left out for the rest of it, and the cases go on
        through the others (as Prometheus alerts to the rest of a cluster), so the run shows whether the
        remaining cluster still routes and notifies. More lost than this fails the run with a message that
        names each lost Alertmanager and the request it did not answer (the cluster is degraded). Before the
        first alert is posted, more unreachable than this fail at once; the last one is never left out.
      - An Alertmanager that answers with an HTTP error is never counted as lost; that fails the run.
    type: int
    default: 0
  expect_resolved:
    description:
      - Receivers that have C(send_resolved). With O(delivery=sink), after resolving, wait until the sink got
        a record with status C(resolved) for the case id on each of these receivers' channels that the case
        expects (at most O(delivery_timeout)).
    type: list
    elements: str
    default: []
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
  alertmanager_routing_check:
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
  alertmanager_routing_check:
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
  alertmanager_routing_check:
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
  alertmanager_routing_check:
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
  alertmanager_routing_check:
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
  description:
    - Version and cluster state of every Alertmanager, read before posting (empty in check mode).
    - C(lost) says why an Alertmanager was left out of the run (see O(max_unavailable)), else null.
  returned: always
  type: list
  elements: dict
  sample: [{url: "http://obs-mon-1:9093", version: 0.28.1, cluster_status: ready, peers: 2, lost: null}]
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

import uuid  # noqa: E402 - Ansible modules keep their imports below the documentation

from ansible.module_utils.alertmanager_cases import option_problems, outcome, plan_cases, report  # noqa: E402
from ansible.module_utils.alertmanager_client import AlertmanagerError  # noqa: E402
from ansible.module_utils.alertmanager_delivery import delivery_check  # noqa: E402
from ansible.module_utils.alertmanager_fleet import Fleet  # noqa: E402
from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.http_client import CONNECTION_MUTUALLY_EXCLUSIVE, connection_argument_spec  # noqa: E402
from ansible.module_utils.polling import now  # noqa: E402

ARGUMENT_SPEC = connection_argument_spec(
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
    max_unavailable=dict(type="int", default=0),
)


class RoutingCheck:
    """Plans the cases, runs them in batches through the Fleet and the delivery evidence, and reports."""

    def __init__(self, module):
        self.module = module
        params = module.params
        self.run_id = params["run_id"] or uuid.uuid4().hex
        self.smoke_label = params["smoke_label"]
        self.resolve = params["resolve"]
        self.expect_resolved = set(params["expect_resolved"] or [])
        problems = option_problems(params)
        if problems:
            module.fail_json(msg="; ".join(problems))
        if self.expect_resolved and (params["delivery"] != "sink" or not self.resolve):
            module.warn("expect_resolved is only checked with delivery=sink and resolve=true; ignored")
            self.expect_resolved = set()
        self.fleet = Fleet(params, module.warn)
        self.delivery = delivery_check(params, self.fleet, module.warn)
        self.cases = plan_cases(
            params["cases"], self.run_id, self.smoke_label, params["annotations"], params["generator_url"]
        )

    def run(self):
        if self.module.check_mode:
            self.module.exit_json(
                changed=False,
                msg=f"check mode: {len(self.cases)} case(s) planned, nothing posted (run {self.run_id})",
                **report(self.cases, self.fleet, self.run_id, planned=True),
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
                self.delivery.wait_resolved(self.cases, self.expect_resolved)
            if self.delivery is not None:
                self.delivery.check_duplicates(self.cases)
        except AlertmanagerError as exc:
            error = exc.msg
        finally:
            if self.resolve:
                self.fleet.resolve_rest(self.cases)
        failed, result = outcome(self.cases, self.fleet, self.run_id, self.resolve, error)
        finish = self.module.fail_json if failed else self.module.exit_json
        finish(changed=bool(self.fleet.posted), **result)

    def _preflight(self):
        """Read every Alertmanager's status (and ask the sink once) before posting anything."""
        statuses = self.fleet.read_status()
        if self.delivery is not None:
            self.delivery.prepare(statuses, self.run_id)
        if not self.resolve and len(self.cases) > 1 and any(case.isolated for case in self.cases):
            self.module.warn(
                "resolve=false: alerts of earlier cases stay active and can inhibit the alerts of later inhibition"
                " cases"
            )

    def _run_batch(self, batch):
        """Post the batch's alerts (sources first), check routing, inhibition and delivery, resolve them."""
        fleet = self.fleet
        if self.delivery is not None:
            self.delivery.before_batch()
        fleet.fire_sources(batch)
        posted_at = now()
        fleet.post([case.alert for case in batch])
        seen = fleet.wait_active([(case, fleet.inhibition_accept(case)) for case in batch])
        if any(case.isolated for case in batch):
            fleet.confirm_inhibition(batch, seen)
        for case in batch:
            fleet.evaluate(case, seen, self.cases)
        if self.delivery is not None:
            self.delivery.check(batch, posted_at)
        if self.resolve:
            if self.expect_resolved:
                self.delivery.count_records(batch)
            fleet.resolve_batch(batch)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        required_if=[("delivery", "sink", ["sink_url"])],
        mutually_exclusive=CONNECTION_MUTUALLY_EXCLUSIVE,
    )
    RoutingCheck(module).run()


if __name__ == "__main__":
    main()
