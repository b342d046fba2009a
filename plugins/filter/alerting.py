"""Checks on alerting data that run on the controller before anything is deployed.

Pure functions, unit-tested in tests/unit/test_alerting_filters.py:
- rule_problems: every alert has an allowed severity, no alert is defined twice;
- receiver_problems: every receiver integration has its endpoint/secret;
- routing_case_problems: the routing test table names only known receivers;
- inhibition_problems: inhibition cases behave as the inhibit rules say;
- routing_table: a readable table of routing cases for error messages.
"""

from __future__ import annotations

import re

_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')


def _rules(doc):
    for group in (doc or {}).get("groups") or []:
        for rule in group.get("rules") or []:
            yield group.get("name", "?"), rule


def rule_problems(rule_files: dict, severities) -> list:
    """Problems in {file name: rule document}: missing/unknown severity, duplicate alerts.

    A duplicate is the same alert name defined twice with no static label that
    tells the two apart (a label both rules set, to different values). The
    same name with different severities is the usual warning/critical pair
    (which the critical-suppresses-warning inhibit rule relies on); the same
    name and severity with different values of another label is one alert
    made of several rules, such as HighErrorRate's burn-rate windows
    (slo_window: fast|slow). A rule that sets fewer labels than another one of
    the same name clashes with it.
    """
    problems, seen = [], {}
    for fname, doc in sorted((rule_files or {}).items()):
        for group, rule in _rules(doc):
            name = rule.get("alert")
            if not name:
                continue
            labels = rule.get("labels") or {}
            severity = labels.get("severity")
            where = f"{fname} (group {group})"
            if severity is None:
                problems.append(f"alert {name} in {where} has no severity label")
                continue
            if severity not in severities:
                problems.append(
                    f"alert {name} in {where} has severity {severity!r}, expected one of {', '.join(severities)}"
                )
            earlier = seen.setdefault(name, [])
            clash = next((w for other, w in earlier if all(other[k] == labels[k] for k in other.keys() & labels)), None)
            if clash is not None:
                problems.append(f"alert {name} (severity {severity}) is defined twice: in {clash} and in {where}")
            else:
                earlier.append((labels, where))
    return problems


_REQUIRED = {
    "email_configs": (("to",), "to"),
    "slack_configs": (("api_url", "api_url_file"), "api_url"),
    "pagerduty_configs": (("routing_key", "service_key", "routing_key_file", "service_key_file"), "routing_key"),
    "webhook_configs": (("url", "url_file"), "url"),
    "opsgenie_configs": (("api_key", "api_key_file"), "api_key"),
}


def receiver_problems(config: dict) -> list:
    """Receiver integrations missing their address or secret (e.g. an empty vault variable)."""
    problems = []
    glob = config.get("global") or {}
    for receiver in config.get("receivers") or []:
        name = receiver.get("name", "?")
        for kind, (fields, label) in _REQUIRED.items():
            for i, integration in enumerate(receiver.get(kind) or []):
                if not any(integration.get(f) for f in fields) and not (
                    kind == "slack_configs" and glob.get("slack_api_url")
                ):
                    problems.append(f"receiver {name}: {kind}[{i}] has no {label} (is its vault variable set?)")
                if kind == "email_configs" and not (integration.get("smarthost") or glob.get("smtp_smarthost")):
                    problems.append(f"receiver {name}: {kind}[{i}] has no smarthost (global smtp_smarthost)")
                if kind == "email_configs" and not (integration.get("from") or glob.get("smtp_from")):
                    problems.append(f"receiver {name}: {kind}[{i}] has no from address (global smtp_from)")
    return problems


def routing_case_problems(cases, receiver_names) -> list:
    """Routing test cases that cannot be run: no labels, or an unknown receiver."""
    known = set(receiver_names or [])
    problems = []
    for i, case in enumerate(cases or []):
        labels = case.get("labels") or {}
        title = case.get("name") or ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or f"case {i}"
        if not labels:
            problems.append(f"routing case {title}: no labels")
        unknown = sorted(set(case.get("receivers") or []) - known)
        if unknown:
            problems.append(
                f"routing case {title}: unknown receiver(s) {', '.join(unknown)}; "
                f"the config has {', '.join(sorted(known))}"
            )
        if "receivers" not in case:
            problems.append(f"routing case {title}: no expected receivers")
    return problems


def _parse_matchers(rule, new_key, old_key):
    matchers = []
    for text in rule.get(new_key) or []:
        m = _MATCHER.match(text)
        if not m:
            raise ValueError(f"cannot parse matcher {text!r}")
        matchers.append(m.groups())
    for k, v in (rule.get(old_key) or {}).items():
        matchers.append((k, "=", v))
    for k, v in (rule.get(old_key + "_re") or {}).items():
        matchers.append((k, "=~", v))
    return matchers


def _matches(labels, matchers):
    for name, op, value in matchers:
        have = str(labels.get(name, ""))
        if op == "=" and have != value:
            return False
        if op == "!=" and have == value:
            return False
        if op == "=~" and not re.fullmatch(value, have):
            return False
        if op == "!~" and re.fullmatch(value, have):
            return False
    return True


def is_inhibited(target: dict, sources, inhibit_rules) -> bool:
    """Alertmanager's inhibition: a firing source alert matching source_matchers
    mutes a target matching target_matchers when all `equal` labels agree.
    An alert matching both sides of a rule does not inhibit itself."""
    for rule in inhibit_rules or []:
        src_m = _parse_matchers(rule, "source_matchers", "source_match")
        tgt_m = _parse_matchers(rule, "target_matchers", "target_match")
        if not _matches(target, tgt_m):
            continue
        for source in sources or []:
            if source == target or not _matches(source, src_m):
                continue
            if all(str(source.get(n, "")) == str(target.get(n, "")) for n in rule.get("equal") or []):
                return True
    return False


def inhibition_problems(cases, inhibit_rules) -> list:
    """Cases with `inhibited_by` (list of firing label sets) whose outcome differs from `inhibited`."""
    problems = []
    for case in cases or []:
        if "inhibited_by" not in case:
            continue
        got = is_inhibited(case["labels"], case["inhibited_by"], inhibit_rules)
        want = bool(case.get("inhibited", True))
        if got != want:
            title = case.get("name") or case["labels"]
            problems.append(
                f"inhibition case {title}: expected {'inhibited' if want else 'not inhibited'} "
                f"by {case['inhibited_by']}, the inhibit rules say {'inhibited' if got else 'not inhibited'}"
            )
    return problems


def routing_table(rows) -> str:
    """Rows of {labels, expected, actual} as an aligned text table."""
    rows = list(rows or [])
    cells = [
        (
            ",".join(f"{k}={v}" for k, v in sorted((r.get("labels") or {}).items())),
            ",".join(r.get("expected") or []) or "-",
            ",".join(r.get("actual") or []) or "-",
            "ok" if sorted(r.get("expected") or []) == sorted(r.get("actual") or []) else "MISMATCH",
        )
        for r in rows
    ]
    header = ("labels", "expected", "actual", "")
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(4)]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(4)).rstrip() for c in [header, *cells]]
    return "\n".join(lines)


class FilterModule:
    def filters(self):
        return {
            "rule_problems": rule_problems,
            "receiver_problems": receiver_problems,
            "routing_case_problems": routing_case_problems,
            "inhibition_problems": inhibition_problems,
            "routing_table": routing_table,
        }
