"""Runbooks in files/runbooks: one per alert, in the plan's structure (Task 6), consistent with the rules.

The alerts come from the rule files rendered by Ansible from the prometheus role's templates
(``default_rules`` in conftest.py), so a new, renamed or re-labelled alert fails here until its
runbook follows. The checker functions return lists of problems; the tests at the bottom feed
them broken input to prove they report it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNBOOK_DIR = REPO_ROOT / "files" / "runbooks"
HEADINGS = ("Alert", "Symptoms", "Diagnosis", "Resolution", "Escalation", "Prevention")
# The alerts the rendered defaults must contain: guards against a parser that finds nothing.
EXPECTED_ALERTS = {
    "HighErrorRate",
    "SlowResponseTime",
    "DatabasePoolExhausted",
    "LowCacheHitRate",
    "HighMemoryUsage",
    "ServiceDown",
    "SlowDatabaseQueries",
    "HighAuthFailureRate",
    "Watchdog",
    "TargetDown",
    "PrometheusRuleEvaluationFailures",
    "PrometheusNotificationQueueRunningFull",
    "PrometheusErrorSendingAlerts",
    "PrometheusNotConnectedToAlertmanagers",
    "PrometheusConfigReloadFailed",
    "AlertmanagerConfigReloadFailed",
    "AlertmanagerFailedToSendNotifications",
    "LokiRequestErrors",
    "LokiDiscardedSamples",
    "PromtailDroppedEntries",
    "PromtailRequestErrors",
    "JaegerSpansRefused",
    "JaegerSpansDropped",
    "NodeFilesystemAlmostFull",
    "NodeMemoryPressure",
    "NodeClockSkew",
}
MIN_LINES, MAX_LINES = 40, 120
PLACEHOLDER = re.compile(r"\b(TODO|TBD|FIXME|XXX)\b|example\.(com|org|net)\b|lorem ipsum", re.IGNORECASE)
FENCE = re.compile(r"^```.*?^```[ \t]*$", re.MULTILINE | re.DOTALL)
PROMQL_BLOCK = re.compile(r"^```promql[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
# A line that continues the previous expression instead of starting a new one.
CONTINUATION = re.compile(r"^(and|or|unless|on|ignoring|group_left|group_right|by|without)\b|^[-+*/%^<>=!)]")


# --- checkers ---------------------------------------------------------------------------------


def load_alerts(rules_dir: Path) -> dict[str, list[dict]]:
    """Every alerting rule of the <name>.rules.yml files in rules_dir, by alert name.

    One alert may be several rules told apart by a label (HighErrorRate's burn-rate
    windows, slo_window: fast|slow); its runbook covers all of them."""
    alerts: dict[str, list[dict]] = {}
    for path in sorted(rules_dir.glob("*.rules.yml")):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            for rule in group.get("rules", []):
                if "alert" in rule:
                    labels = rule.get("labels") or {}
                    for other in alerts.get(rule["alert"], []):
                        theirs = other.get("labels") or {}
                        distinct = any(theirs[key] != labels[key] for key in theirs.keys() & labels.keys())
                        assert distinct, f"alert {rule['alert']} defined twice ({path.name})"
                    alerts.setdefault(rule["alert"], []).append(rule)
    return alerts


def runbook_files(runbook_dir: Path) -> list[Path]:
    return sorted(p for p in runbook_dir.glob("*.md") if p.name != "README.md")


def missing_runbooks(alerts, runbook_dir: Path) -> list[str]:
    """Alert names without <runbook_dir>/<AlertName>.md."""
    return sorted(name for name in alerts if not (runbook_dir / f"{name}.md").is_file())


def field(text: str, name: str) -> str | None:
    """The value of a `**Name:** value` line, or None."""
    match = re.search(rf"^\*\*{re.escape(name)}:\*\*[ \t]*(.*?)[ \t]*$", text, re.MULTILINE)
    return match.group(1) if match else None


def identity_problems(path: Path, alerts) -> list[str]:
    """The file name, its title and its Alert Name line must all name the same, existing alert."""
    name, text = path.stem, path.read_text()
    problems = []
    first = text.splitlines()[0] if text else ""
    if first != f"# Runbook: {name}":
        problems.append(f"{path.name}: first line is {first!r}, expected '# Runbook: {name}'")
    alert_name = field(text, "Alert Name")
    if alert_name != name:
        problems.append(f"{path.name}: **Alert Name:** is {alert_name!r}, expected {name!r}")
    if name not in alerts:
        problems.append(f"{path.name}: no alert named {name!r} in the rules")
    return problems


def strip_code(text: str) -> str:
    """The text without fenced code blocks (a '## ' line in a shell block is no heading)."""
    return FENCE.sub("", text)


def heading_problems(text: str) -> list[str]:
    found = tuple(re.findall(r"^## (.+?)[ \t]*$", strip_code(text), re.MULTILINE))
    if found != HEADINGS:
        return [f"level-2 headings are {list(found)}, expected {list(HEADINGS)}"]
    return []


def section(text: str, heading: str) -> str:
    """The body of `## heading` up to the next level-2 heading (code blocks included)."""
    match = re.search(rf"^## {re.escape(heading)}[ \t]*\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    return match.group(1) if match else ""


def severity_problems(text: str, severity: str) -> list[str]:
    found = field(text, "Severity")
    if found != severity:
        return [f"**Severity:** is {found!r}, the rule's severity label is {severity!r}"]
    return []


def _squash(text: str) -> str:
    return " ".join(text.split())


def alert_section_problems(text: str, rule: dict) -> list[str]:
    """The Alert section shows the rule's real `for:` in the Threshold line and its expression."""
    problems = []
    threshold = field(text, "Threshold")
    duration = str(rule.get("for", "0s"))
    if not threshold:
        problems.append("no **Threshold:** line")
    elif f"for: {duration}" not in threshold:
        problems.append(f"**Threshold:** does not state the rule's 'for: {duration}': {threshold!r}")
    if _squash(rule["expr"]) not in _squash(section(text, "Alert")):
        problems.append(f"the Alert section does not show the rule's expression: {_squash(rule['expr'])!r}")
    return problems


def style_problems(text: str) -> list[str]:
    problems = []
    lines = len(text.splitlines())
    if not MIN_LINES <= lines <= MAX_LINES:
        problems.append(f"{lines} lines, expected {MIN_LINES}-{MAX_LINES}")
    problems += [f"placeholder {m.group(0)!r}" for m in PLACEHOLDER.finditer(text)]
    return problems


def link_problems(path: Path) -> list[str]:
    """Relative Markdown links to other runbooks must resolve."""
    targets = re.findall(r"\]\(([^)#\s]+\.md)\)", path.read_text())
    return [f"{path.name}: link to missing {t}" for t in targets if "://" not in t and not (path.parent / t).is_file()]


def runbook_url_problems(alerts, runbook_dir: Path) -> list[str]:
    """Every runbook_url annotation ends with /<AlertName>.md, and that file exists."""
    problems = []
    for name, rules in sorted(alerts.items()):
        for rule in rules:
            url = (rule.get("annotations") or {}).get("runbook_url", "")
            if not url.endswith(f"/{name}.md"):
                problems.append(f"{name}: runbook_url {url!r} does not end with /{name}.md")
            elif not (runbook_dir / f"{name}.md").is_file():
                problems.append(f"{name}: runbook_url {url!r} points at a missing file")
    return problems


def promql_expressions(text: str) -> list[str]:
    """The PromQL expressions of the ```promql blocks: comments dropped; an expression continues while
    its parentheses are open, on indented lines and on lines starting with an operator."""
    expressions: list[str] = []
    for block in PROMQL_BLOCK.findall(text):
        current: list[str] = []
        depth = 0
        for line in block.splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if current and depth == 0 and not line[0].isspace() and not CONTINUATION.match(stripped):
                expressions.append(" ".join(current))
                current = []
            current.append(stripped)
            depth += stripped.count("(") - stripped.count(")")
        if current:
            expressions.append(" ".join(current))
    return expressions


# --- fixtures ---------------------------------------------------------------------------------

RUNBOOKS = runbook_files(RUNBOOK_DIR)


@pytest.fixture(scope="module")
def alerts(default_rules) -> dict[str, list[dict]]:
    return load_alerts(default_rules)


def _read(path: Path) -> str:
    return path.read_text()


# --- the runbooks -----------------------------------------------------------------------------


def test_rendered_rules_hold_the_expected_alerts(alerts):
    assert EXPECTED_ALERTS - set(alerts) == set()


def test_every_alert_has_a_runbook(alerts):
    assert missing_runbooks(alerts, RUNBOOK_DIR) == []


def test_runbooks_are_found():
    assert len(RUNBOOKS) >= len(EXPECTED_ALERTS)


@pytest.mark.parametrize("path", RUNBOOKS, ids=lambda p: p.stem)
def test_runbook_names_an_existing_alert(path, alerts):
    assert identity_problems(path, alerts) == []


@pytest.mark.parametrize("path", RUNBOOKS, ids=lambda p: p.stem)
def test_runbook_has_the_plan_sections_in_order(path):
    assert heading_problems(_read(path)) == []


@pytest.mark.parametrize("path", RUNBOOKS, ids=lambda p: p.stem)
def test_runbook_severity_matches_the_rule(path, alerts):
    rules = alerts.get(path.stem)
    assert rules, f"no alert {path.stem}"
    for rule in rules:
        assert severity_problems(_read(path), rule["labels"]["severity"]) == []


@pytest.mark.parametrize("path", RUNBOOKS, ids=lambda p: p.stem)
def test_runbook_alert_section_matches_the_rule(path, alerts):
    """Every rule of the alert: its `for:` and its expression (both burn-rate windows of HighErrorRate)."""
    rules = alerts.get(path.stem)
    assert rules, f"no alert {path.stem}"
    for rule in rules:
        assert alert_section_problems(_read(path), rule) == []


@pytest.mark.parametrize("path", RUNBOOKS, ids=lambda p: p.stem)
def test_runbook_length_placeholders_and_links(path):
    assert style_problems(_read(path)) + link_problems(path) == []


def test_runbook_urls_point_at_existing_runbooks(alerts):
    assert runbook_url_problems(alerts, RUNBOOK_DIR) == []


def test_runbook_promql_parses(promtool, tmp_path):
    """Every PromQL expression in the runbooks is valid: checked as recording rules by the real promtool."""
    rules = [
        {"record": f"runbook:{path.stem}:{i}", "expr": expr}
        for path in RUNBOOKS
        for i, expr in enumerate(promql_expressions(_read(path)))
    ]
    assert len(rules) >= 3 * len(RUNBOOKS), "too few PromQL expressions found in the runbooks"
    rule_file = tmp_path / "runbook_exprs.rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "runbooks", "rules": rules}]}, width=1000))
    proc = subprocess.run(
        [str(promtool), "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- the checkers detect problems -------------------------------------------------------------

GOOD_RUNBOOK = """# Runbook: SyntheticAlert

## Alert
**Alert Name:** SyntheticAlert
**Severity:** warning
**Threshold:** more than 5 of something, `for: 5m`

```promql
synthetic_total > 5
```

## Symptoms
## Diagnosis
```sh
## not a heading: inside a code block
```
## Resolution
## Escalation
## Prevention
"""
GOOD_RULE = {
    "alert": "SyntheticAlert",
    "expr": "synthetic_total > 5\n",
    "for": "5m",
    "labels": {"severity": "warning"},
    "annotations": {"runbook_url": "https://runbooks.invalid/files/runbooks/SyntheticAlert.md"},
}


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def test_checkers_accept_a_good_runbook(tmp_path):
    path = _write(tmp_path, "SyntheticAlert.md", GOOD_RUNBOOK)
    alerts = {"SyntheticAlert": [GOOD_RULE]}
    assert missing_runbooks(alerts, tmp_path) == []
    assert identity_problems(path, alerts) == []
    assert heading_problems(GOOD_RUNBOOK) == []
    assert severity_problems(GOOD_RUNBOOK, "warning") == []
    assert alert_section_problems(GOOD_RUNBOOK, GOOD_RULE) == []
    assert runbook_url_problems(alerts, tmp_path) == []


def test_missing_runbook_is_reported():
    assert missing_runbooks({"HighErrorRate": {}, "NoSuchAlertXyz": {}}, RUNBOOK_DIR) == ["NoSuchAlertXyz"]


def test_runbook_for_an_unknown_or_misnamed_alert_is_reported(tmp_path):
    orphan = _write(tmp_path, "SyntheticAlert.md", GOOD_RUNBOOK)
    assert any("no alert named" in p for p in identity_problems(orphan, {"OtherAlert": {}}))
    misnamed = _write(tmp_path, "Renamed.md", GOOD_RUNBOOK)
    problems = identity_problems(misnamed, {"Renamed": {}})
    assert any("first line" in p for p in problems)
    assert any("Alert Name" in p for p in problems)


def test_wrong_headings_are_reported():
    swapped = GOOD_RUNBOOK.replace("## Symptoms\n## Diagnosis", "## Diagnosis\n## Symptoms")
    assert heading_problems(swapped) != []
    assert heading_problems(GOOD_RUNBOOK.replace("## Escalation\n", "")) != []
    assert heading_problems(GOOD_RUNBOOK.replace("## Resolution", "## Resolution Steps")) != []
    assert heading_problems(GOOD_RUNBOOK + "## Notes\n") != []


def test_severity_mismatch_is_reported():
    assert severity_problems(GOOD_RUNBOOK, "critical") != []
    assert severity_problems(GOOD_RUNBOOK.replace("**Severity:** warning\n", ""), "warning") != []


def test_stale_threshold_or_expression_is_reported():
    assert alert_section_problems(GOOD_RUNBOOK, {**GOOD_RULE, "for": "10m"}) != []
    assert alert_section_problems(GOOD_RUNBOOK, {**GOOD_RULE, "expr": "synthetic_total > 50"}) != []


def test_bad_runbook_urls_are_reported(tmp_path):
    wrong_name = {"SyntheticAlert": [{**GOOD_RULE, "annotations": {"runbook_url": "https://x.invalid/Other.md"}}]}
    assert runbook_url_problems(wrong_name, tmp_path) != []
    no_url = {"SyntheticAlert": [GOOD_RULE, {**GOOD_RULE, "annotations": {}}]}
    assert runbook_url_problems(no_url, tmp_path) != []
    assert runbook_url_problems({"SyntheticAlert": [GOOD_RULE]}, tmp_path) != []  # file does not exist


def test_style_and_link_problems_are_reported(tmp_path):
    assert style_problems("# Runbook: X\n") != []
    assert any("TODO" in p for p in style_problems("TODO\n" * MIN_LINES))
    path = _write(tmp_path, "X.md", "See [Y](NoSuchRunbook.md).\n")
    assert link_problems(path) == ["X.md: link to missing NoSuchRunbook.md"]


def test_promql_expressions_are_split_correctly():
    text = (
        "```promql\n"
        "# comment\n"
        "(\n  a / b\n) > 0.9\n"
        "x > 1\nand on (job) y >= 0.1\n"
        "sum by (job) (rate(c[5m]))\n> 10\n"
        "topk(3,\n  d)\n"
        "e\n"
        "```\n"
    )
    assert promql_expressions(text) == [
        "( a / b ) > 0.9",
        "x > 1 and on (job) y >= 0.1",
        "sum by (job) (rate(c[5m])) > 10",
        "topk(3, d)",
        "e",
    ]
