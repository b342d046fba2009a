"""plugins/filter/alerting.py: the controller-side checks that run before deploy."""

from __future__ import annotations

import pytest

SEVERITIES = ["critical", "warning", "info", "none"]


def _doc(*rules, group="g"):
    return {"groups": [{"name": group, "rules": list(rules)}]}


def test_rule_problems_accepts_good_rules(alerting):
    docs = {
        "a": _doc({"alert": "X", "expr": "up", "labels": {"severity": "warning"}}, {"record": "r", "expr": "up"}),
        "b": _doc({"alert": "X", "expr": "up", "labels": {"severity": "critical"}}),
    }
    assert alerting.rule_problems(docs, SEVERITIES) == []


def test_rule_problems_reports_missing_and_unknown_severity(alerting):
    docs = {
        "user": _doc({"alert": "NoSev", "expr": "up"}, {"alert": "Odd", "expr": "up", "labels": {"severity": "p1"}})
    }
    assert alerting.rule_problems(docs, SEVERITIES) == [
        "alert NoSev in user (group g) has no severity label",
        "alert Odd in user (group g) has severity 'p1', expected one of critical, warning, info, none",
    ]


def test_rule_problems_reports_duplicates_across_files(alerting):
    rule = {"alert": "Dup", "expr": "up", "labels": {"severity": "warning"}}
    docs = {"mdl_api.rules.yml (built-in)": _doc(rule, group="one"), "user.rules.yml": _doc(rule, group="two")}
    assert alerting.rule_problems(docs, SEVERITIES) == [
        "alert Dup (severity warning) is defined twice: in mdl_api.rules.yml (built-in) (group one) "
        "and in user.rules.yml (group two)"
    ]


def test_rule_problems_accepts_one_alert_made_of_rules_with_distinct_labels(alerting):
    """HighErrorRate's burn-rate windows: same name and severity, told apart by slo_window."""
    fast = {"alert": "Burn", "expr": "up", "labels": {"severity": "critical", "slo_window": "fast"}}
    slow = {"alert": "Burn", "expr": "up", "labels": {"severity": "critical", "slo_window": "slow"}}
    assert alerting.rule_problems({"a": _doc(fast, slow)}, SEVERITIES) == []
    # A rule without slo_window cannot be told apart from either window: a duplicate.
    bare = {"alert": "Burn", "expr": "up", "labels": {"severity": "critical"}}
    assert alerting.rule_problems({"a": _doc(fast, slow), "b": _doc(bare, group="h")}, SEVERITIES) == [
        "alert Burn (severity critical) is defined twice: in a (group g) and in b (group h)"
    ]


def test_receiver_problems(alerting):
    config = {
        "global": {"smtp_smarthost": "smtp:25", "smtp_from": "a@b"},
        "receivers": [
            {"name": "ok-mail", "email_configs": [{"to": "t@b"}]},
            {"name": "no-to", "email_configs": [{"to": ""}]},
            {"name": "slack", "slack_configs": [{"api_url": ""}]},
            {"name": "pd", "pagerduty_configs": [{"routing_key": ""}]},
            {"name": "hook", "webhook_configs": [{"url": "http://x"}]},
            {"name": "blackhole"},
        ],
    }
    assert alerting.receiver_problems(config) == [
        "receiver no-to: email_configs[0] has no to (is its vault variable set?)",
        "receiver slack: slack_configs[0] has no api_url (is its vault variable set?)",
        "receiver pd: pagerduty_configs[0] has no routing_key (is its vault variable set?)",
    ]


def test_receiver_problems_email_needs_smarthost_and_from(alerting):
    config = {"receivers": [{"name": "mail", "email_configs": [{"to": "t@b"}]}]}
    assert alerting.receiver_problems(config) == [
        "receiver mail: email_configs[0] has no smarthost (global smtp_smarthost)",
        "receiver mail: email_configs[0] has no from address (global smtp_from)",
    ]


def test_routing_case_problems(alerting):
    cases = [
        {"name": "fine", "labels": {"a": "1"}, "receivers": ["slack"]},
        {"name": "typo", "labels": {"a": "1"}, "receivers": ["slak"]},
        {"labels": {}, "receivers": []},
        {"name": "noexp", "labels": {"a": "1"}},
    ]
    assert alerting.routing_case_problems(cases, ["slack", "email"]) == [
        "routing case typo: unknown receiver(s) slak; the config has email, slack",
        "routing case case 2: no labels",
        "routing case noexp: no expected receivers",
    ]


CRIT_SUPPRESSES_WARN = [
    {"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'], "equal": ["alertname"]}
]


@pytest.mark.parametrize(
    ("target", "sources", "rules", "expected"),
    [
        (
            {"alertname": "A", "severity": "warning"},
            [{"alertname": "A", "severity": "critical"}],
            CRIT_SUPPRESSES_WARN,
            True,
        ),
        (
            {"alertname": "A", "severity": "warning"},
            [{"alertname": "B", "severity": "critical"}],
            CRIT_SUPPRESSES_WARN,
            False,
        ),
        (
            {"alertname": "A", "severity": "critical"},
            [{"alertname": "A", "severity": "critical"}],
            CRIT_SUPPRESSES_WARN,
            False,
        ),
        # equal on a label both lack counts as equal, as in Alertmanager
        (
            {"alertname": "A", "severity": "warning"},
            [{"alertname": "A", "severity": "critical"}],
            [{**CRIT_SUPPRESSES_WARN[0], "equal": ["alertname", "component"]}],
            True,
        ),
        # regex and negative matchers, and the deprecated source_match maps
        (
            {"alertname": "DiskFull", "severity": "warning"},
            [{"alertname": "NodeDown"}],
            [{"source_matchers": ['alertname=~"Node.*"'], "target_matchers": ['alertname!="Watchdog"']}],
            True,
        ),
        (
            {"alertname": "Watchdog"},
            [{"alertname": "NodeDown"}],
            [{"source_matchers": ['alertname=~"Node.*"'], "target_matchers": ['alertname!="Watchdog"']}],
            False,
        ),
        (
            {"alertname": "A", "severity": "warning"},
            [{"alertname": "A", "severity": "critical"}],
            [{"source_match": {"severity": "critical"}, "target_match_re": {"severity": "warn.*"}}],
            True,
        ),
    ],
)
def test_is_inhibited(alerting, target, sources, rules, expected):
    assert alerting.is_inhibited(target, sources, rules) is expected


def test_an_alert_does_not_inhibit_itself(alerting):
    rules = [{"source_matchers": ['alertname="A"'], "target_matchers": ['alertname="A"']}]
    alert = {"alertname": "A"}
    assert alerting.is_inhibited(alert, [alert], rules) is False


def test_inhibition_problems(alerting):
    cases = [
        {
            "name": "ok",
            "labels": {"alertname": "A", "severity": "warning"},
            "inhibited_by": [{"alertname": "A", "severity": "critical"}],
            "inhibited": True,
        },
        {
            "name": "wrong",
            "labels": {"alertname": "A", "severity": "warning"},
            "inhibited_by": [{"alertname": "A", "severity": "critical"}],
            "inhibited": False,
        },
        {"name": "plain", "labels": {"alertname": "A"}},
    ]
    assert alerting.inhibition_problems(cases, CRIT_SUPPRESSES_WARN) == [
        "inhibition case wrong: expected not inhibited by [{'alertname': 'A', 'severity': 'critical'}], "
        "the inhibit rules say inhibited"
    ]


def test_routing_table(alerting):
    table = alerting.routing_table(
        [
            {
                "labels": {"severity": "critical", "alertname": "X"},
                "expected": ["pagerduty", "slack"],
                "actual": ["slack", "pagerduty"],
            },
            {"labels": {"alertname": "Y"}, "expected": ["email"], "actual": []},
        ]
    )
    assert table.splitlines() == [
        "labels                         expected         actual",
        "alertname=X,severity=critical  pagerduty,slack  slack,pagerduty  ok",
        "alertname=Y                    email            -                MISMATCH",
    ]
