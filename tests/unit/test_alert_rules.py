"""The built-in Prometheus rules, tested with the real promtool.

tests/rules/<name>.test.yml are `promtool test rules` files for the rule files
the prometheus role renders from roles/prometheus/templates/rules/. This module

* validates the rendered files (`promtool check rules`) and runs the unit tests
  next to them (`promtool test rules`);
* enforces coverage: every alert has a case where it fires and one where it
  must not fire;
* checks that the non-firing cases have teeth: each mutant below (operator
  flipped at the threshold, shorter `for:`, selector or aggregation dropped)
  must make its designated non-firing case fail;
* checks the label/annotation conventions and the per-alert overrides;
* HighErrorRate (one rule per burn-rate window, label slo_window): the
  factors, the objective and the minimum request rate reach the rendered rules,
  and changing any of them makes a non-firing case fail (CONFIG_MUTANTS).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
RULE_TESTS_DIR = REPO_ROOT / "tests" / "rules"
ROLE_DEFAULTS = REPO_ROOT / "roles" / "prometheus" / "defaults" / "main.yml"
# Rendered rule file -> its promtool unit test file in RULE_TESTS_DIR.
RULE_TEST_FILES = {"mdl_api.rules.yml": "mdl_api.test.yml", "stack.rules.yml": "stack.test.yml"}
# `promtool test rules` failure: "name: <group>,\n alertname: <alert>, time: <t>, \n exp:[], ..."
FAILURE_RE = re.compile(
    r"^\s*name: (?P<group>.*),\n\s*alertname: (?P<alert>\S+), time: (?P<time>\S+), ?\n\s*exp:(?P<exp>\S*)",
    re.MULTILINE,
)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _defaults() -> dict:
    return yaml.safe_load(ROLE_DEFAULTS.read_text())


def load_rule_files(directory: Path) -> dict[str, dict]:
    """{file name: parsed rule file} for the rendered *.rules.yml in directory."""
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(directory.glob("*.rules.yml"))}


def load_test_files(directory: Path = RULE_TESTS_DIR) -> dict[str, dict]:
    """{file name: parsed promtool test file}."""
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(directory.glob("*.test.yml"))}


def iter_alerts(rule_docs: dict[str, dict]) -> Iterator[tuple[str, dict]]:
    """(rule file, alerting rule) for every alerting rule."""
    for file_name, doc in rule_docs.items():
        for group in doc.get("groups") or []:
            for rule in group.get("rules") or []:
                if "alert" in rule:
                    yield file_name, rule


def is_always_firing(rule: dict) -> bool:
    """A heartbeat (Watchdog): `vector(1)` fires from the first evaluation on, so
    no case where it does not fire can exist."""
    return re.fullmatch(r"vector\(\s*1\s*\)", str(rule.get("expr", "")).strip()) is not None


def coverage_gaps(rule_docs: dict[str, dict], test_docs: dict[str, dict]) -> dict[str, list[str]]:
    """What the promtool tests in test_docs leave untested of the alerts in rule_docs.

    An alert counts as tested by a test file only if that file loads the alert's
    rule file. Returns sorted lists of alert names:
    * ``no_firing_case``: no alert_rule_test with a non-empty exp_alerts;
    * ``no_silent_case``: no alert_rule_test with ``exp_alerts: []`` (or none),
      except always-firing alerts;
    and ``unknown`` ("<test file>: <alertname>"): alert_rule_tests for a name that
    is no alert of the loaded rule files. promtool accepts those, and an
    ``exp_alerts: []`` for a misspelled name passes whatever the rules do.
    """
    alerts = {(file_name, rule["alert"]): rule for file_name, rule in iter_alerts(rule_docs)}
    firing: set[tuple[str, str]] = set()
    silent: set[tuple[str, str]] = set()
    unknown: set[str] = set()
    for test_file, doc in test_docs.items():
        loaded = set(doc.get("rule_files") or [])
        for group in doc.get("tests") or []:
            for case in group.get("alert_rule_test") or []:
                keys = {(file_name, case.get("alertname")) for file_name in loaded} & alerts.keys()
                if not keys:
                    unknown.add(f"{test_file}: {case.get('alertname')}")
                (firing if case.get("exp_alerts") else silent).update(keys)
    return {
        "no_firing_case": sorted({key[1] for key in alerts if key not in firing}),
        "no_silent_case": sorted(
            {key[1] for key, rule in alerts.items() if key not in silent and not is_always_firing(rule)}
        ),
        "unknown": sorted(unknown),
    }


def _promtool(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(promtool), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def _output(proc: subprocess.CompletedProcess) -> str:
    return f"promtool exited with {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"


def silent_case_failures(proc: subprocess.CompletedProcess) -> set[tuple[str, str]]:
    """(test group, alertname) of the failed cases that expected no alert."""
    text = proc.stdout + "\n" + proc.stderr
    return {(m["group"], m["alert"]) for m in FAILURE_RE.finditer(text) if m["exp"].startswith("[]")}


def _with_tests(rules_dir: Path) -> Path:
    """Copy the promtool test files next to the rendered rule files."""
    for test_file in RULE_TEST_FILES.values():
        shutil.copy(RULE_TESTS_DIR / test_file, rules_dir / test_file)
    return rules_dir


@pytest.fixture(scope="module")
def rules_dir(default_rules) -> Path:
    """The rule files rendered with the role defaults, with the test files next to them."""
    return _with_tests(default_rules)


@pytest.fixture(scope="module")
def rule_docs(default_rules) -> dict[str, dict]:
    return load_rule_files(default_rules)


# --------------------------------------------------------------------------
# promtool check rules / test rules
# --------------------------------------------------------------------------


def test_rendered_rule_files_are_the_tested_ones(rule_docs):
    assert set(rule_docs) == set(RULE_TEST_FILES)
    for rule_file, test_file in RULE_TEST_FILES.items():
        assert load_test_files()[test_file]["rule_files"] == [rule_file]


def test_promtool_check_rules(promtool, rules_dir):
    proc = _promtool(promtool, "check", "rules", *sorted(RULE_TEST_FILES), cwd=rules_dir)
    assert proc.returncode == 0, _output(proc)


@pytest.mark.parametrize("test_file", sorted(RULE_TEST_FILES.values()))
def test_promtool_test_rules(promtool, rules_dir, test_file):
    proc = _promtool(promtool, "test", "rules", test_file, cwd=rules_dir)
    assert proc.returncode == 0, _output(proc)
    assert "SUCCESS" in proc.stdout, _output(proc)


# --------------------------------------------------------------------------
# Coverage
# --------------------------------------------------------------------------


def test_every_alert_fires_and_stays_silent_in_some_test(rule_docs):
    alert_names = {rule["alert"] for _, rule in iter_alerts(rule_docs)}
    defaults = _defaults()
    # The parser really sees the alerts (an empty set would make the check pass).
    assert alert_names >= set(defaults["prometheus_mdl_alerts"]) | set(defaults["prometheus_stack_alerts"])
    gaps = coverage_gaps(rule_docs, load_test_files())
    assert gaps == {"no_firing_case": [], "no_silent_case": [], "unknown": []}, (
        f"untested alerts (add cases to tests/rules/*.test.yml): {gaps}"
    )


def test_coverage_check_reports_an_untested_alert(rule_docs):
    docs = copy.deepcopy(rule_docs)
    docs["mdl_api.rules.yml"]["groups"][-1]["rules"].append(
        {"alert": "UntestedAlert", "expr": "up == 0", "labels": {"severity": "warning"}}
    )
    gaps = coverage_gaps(docs, load_test_files())
    assert gaps == {"no_firing_case": ["UntestedAlert"], "no_silent_case": ["UntestedAlert"], "unknown": []}


def test_coverage_check_reports_a_missing_silent_case_and_unknown_names(rule_docs):
    tests = copy.deepcopy(load_test_files())
    for group in tests["mdl_api.test.yml"]["tests"]:
        group["alert_rule_test"] = [
            case
            for case in group.get("alert_rule_test") or []
            if case["alertname"] != "HighMemoryUsage" or case.get("exp_alerts")
        ]
    # A misspelled name, and an alert of the other rule file.
    tests["mdl_api.test.yml"]["tests"][0]["alert_rule_test"] += [
        {"eval_time": "1m", "alertname": "HighMemoryUsag", "exp_alerts": []},
        {"eval_time": "1m", "alertname": "TargetDown", "exp_alerts": []},
    ]
    gaps = coverage_gaps(rule_docs, tests)
    assert gaps == {
        "no_firing_case": [],
        "no_silent_case": ["HighMemoryUsage"],
        "unknown": ["mdl_api.test.yml: HighMemoryUsag", "mdl_api.test.yml: TargetDown"],
    }


def test_only_constant_alerts_are_exempt_from_a_silent_case(rule_docs):
    exempt = {rule["alert"] for _, rule in iter_alerts(rule_docs) if is_always_firing(rule)}
    assert exempt == {"Watchdog"}


# --------------------------------------------------------------------------
# The non-firing cases detect broken rules
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    """Replace (every) `old` by `new` in `field` of the rule named `rule` (alert
    or record) and of the rules named in `also`; the non-firing case(s) of
    `alert` in test group `kills` must fail. `slo_window` picks one of the
    rules that share an alert name (HighErrorRate's burn-rate windows)."""

    rule: str
    field: str
    old: str
    new: str
    kills: str
    alert: str = ""
    slo_window: str = ""
    also: tuple[str, ...] = ()

    @property
    def alertname(self) -> str:
        return self.alert or self.rule

    def __str__(self) -> str:
        window = f"[{self.slo_window}]" if self.slo_window else ""
        also = f" (+{len(self.also)} rules)" if self.also else ""
        return f"{self.rule}{window}.{self.field}: {self.old!r} -> {self.new!r}{also}"


# The error-ratio recording rules of HighErrorRate's windows (5m is errors / requests).
ERROR_RATIO_RECORDS = (
    "job:http_request_error_ratio:rate30m",
    "job:http_request_error_ratio:rate1h",
    "job:http_request_error_ratio:rate6h",
)
HER_BURST = "HighErrorRate: 50% 5xx after an hour of clean traffic pages the fast burn 2 minutes in"
HER_STEADY = "HighErrorRate: a steady 1.2% 5xx burn fires only the slow window, after its 15m"
HER_BLIP = "HighErrorRate: a 3-minute 50% blip pages the fast burn and stops when it leaves the 5m window"
HER_FAST_EDGE = "HighErrorRate: exactly 1.44% 5xx does not fire the fast window (the operator is >)"
HER_SLOW_EDGE = "HighErrorRate: exactly 0.6% 5xx does not fire the slow window (the operator is >)"
HER_4XX = "HighErrorRate: 4xx count as requests but not as errors (40% 404s, 0.5% 5xx) and do not fire"
HER_LOW_TRAFFIC = "HighErrorRate: 60% 5xx below the minimum request rate (0.083 req/s) does not fire"

MUTANTS = [
    # --- mdl_api.rules.yml
    # HighErrorRate, fast window: 14.4 * (1 - 0.999) = 1.44% over 1h and 5m, for 1m.
    Mutant("HighErrorRate", "expr", "> 0.0144", ">= 0.0144", HER_FAST_EDGE, slo_window="fast"),
    # The factor: 10x instead of 14.4x pages on a 1.2% burn.
    Mutant("HighErrorRate", "expr", "> 0.0144", "> 0.01", HER_STEADY, slo_window="fast"),
    # Only the long window: pages for an hour after a 3-minute blip.
    Mutant(
        "HighErrorRate",
        "expr",
        "and on (job) job:http_request_error_ratio:rate5m > 0.0144\n",
        "",
        HER_BLIP,
        slo_window="fast",
    ),
    # Either window instead of both.
    Mutant(
        "HighErrorRate",
        "expr",
        "> 0.0144\nand on (job) job:http_request_error_ratio:rate5m",
        "> 0.0144\nor on (job) job:http_request_error_ratio:rate5m",
        HER_BLIP,
        slo_window="fast",
    ),
    # Only the short window: a 5m ratio pages on its own, a minute earlier.
    Mutant("job:http_request_error_ratio:rate1h", "expr", "[1h]", "[5m]", HER_BLIP, alert="HighErrorRate"),
    Mutant("HighErrorRate", "expr", ">= 0.1", ">= 0.05", HER_LOW_TRAFFIC, slo_window="fast"),
    Mutant("HighErrorRate", "for", "1m", "30s", HER_BURST, slo_window="fast"),
    # HighErrorRate, slow window: 6 * (1 - 0.999) = 0.6% over 6h and 30m, for 15m.
    Mutant("HighErrorRate", "expr", "> 0.006", ">= 0.006", HER_SLOW_EDGE, slo_window="slow"),
    # The factor: 4x instead of 6x pages on the 0.5% of the 4xx case.
    Mutant("HighErrorRate", "expr", "> 0.006", "> 0.004", HER_4XX, slo_window="slow"),
    Mutant(
        "HighErrorRate",
        "expr",
        "job:http_request_error_ratio:rate6h > 0.006\nand on (job) ",
        "",
        HER_BLIP,
        slo_window="slow",
    ),
    Mutant(
        "HighErrorRate",
        "expr",
        "> 0.006\nand on (job) job:http_request_error_ratio:rate30m",
        "> 0.006\nor on (job) job:http_request_error_ratio:rate30m",
        HER_BLIP,
        slo_window="slow",
    ),
    Mutant("job:http_request_error_ratio:rate6h", "expr", "[6h]", "[1h]", HER_BLIP, alert="HighErrorRate"),
    Mutant("HighErrorRate", "expr", ">= 0.1", ">= 0.05", HER_LOW_TRAFFIC, slo_window="slow"),
    Mutant("HighErrorRate", "for", "15m", "14m", HER_STEADY, slo_window="slow"),
    # 4xx counted as errors, in every window.
    Mutant(
        "job:http_request_errors:rate5m",
        "expr",
        'status_code=~"5.."',
        'status_code=~"[45].."',
        HER_4XX,
        alert="HighErrorRate",
        also=ERROR_RATIO_RECORDS,
    ),
    # 4xx left out of the requests (the denominator) of the slow windows: 0.5 of 60 req/s is 0.83%.
    Mutant(
        "job:http_request_error_ratio:rate6h",
        "expr",
        '{job="mdl-api"}[',
        '{job="mdl-api",status_code!~"4.."}[',
        HER_4XX,
        alert="HighErrorRate",
        also=("job:http_request_error_ratio:rate30m",),
    ),
    Mutant(
        "SlowResponseTime", "expr", "> 1", ">= 1", "SlowResponseTime: P95 exactly 1s does not fire (the operator is >)"
    ),
    # The plan's per-series quantile instead of one over the summed buckets.
    Mutant(
        "job:http_request_duration_seconds:p95_5m",
        "expr",
        "sum by (job, le)",
        "sum by (job, path, le)",
        "SlowResponseTime: a slow path with 5% of the traffic does not fire (summed P95 is 0.1s)",
        alert="SlowResponseTime",
    ),
    Mutant(
        "SlowResponseTime",
        "for",
        "10m",
        "9m",
        "SlowResponseTime: P95 of a fast and a slow path summed is 1.875s and fires after 10m",
    ),
    Mutant(
        "DatabasePoolExhausted",
        "expr",
        ">= 0.9",
        ">= 0.85",
        "DatabasePoolExhausted: 17/20 on the fallback pool size does not fire",
    ),
    Mutant(
        "DatabasePoolExhausted",
        "expr",
        ">= 0.9",
        ">= 0.88",
        "DatabasePoolExhausted: 44/50 just below the threshold does not fire",
    ),
    # The plan's hard-coded pool size of 20, ignoring db_connections_max.
    Mutant(
        "DatabasePoolExhausted",
        "expr",
        'db_connections_active{job="mdl-api"} / on (job, instance) db_connections_max{job="mdl-api"}',
        'db_connections_active{job="mdl-api"} / 20',
        "DatabasePoolExhausted: 18 active with db_connections_max=50 does not fire (not 18/20)",
    ),
    Mutant(
        "DatabasePoolExhausted",
        "for",
        "2m",
        "1m",
        "DatabasePoolExhausted: 45/50 (db_connections_max) and 18/20 (fallback pool size) fire after 2m",
    ),
    Mutant(
        "LowCacheHitRate",
        "expr",
        "< 0.5",
        "<= 0.5",
        "LowCacheHitRate: exactly 50% hits does not fire (the operator is <)",
    ),
    Mutant(
        "LowCacheHitRate",
        "expr",
        ">= 0.1",
        ">= 0.01",
        "LowCacheHitRate: 0% hits below the minimum lookup rate (0.05/s) does not fire",
    ),
    Mutant("LowCacheHitRate", "for", "15m", "14m", "LowCacheHitRate: 25% hits summed over instances fires after 15m"),
    # The plan's bug: every job's RSS, Prometheus' own included.
    Mutant(
        "HighMemoryUsage",
        "expr",
        '{job="mdl-api"}',
        "",
        "HighMemoryUsage: 2 GiB on another job (prometheus) does not fire",
    ),
    Mutant(
        "HighMemoryUsage",
        "expr",
        "> 1073741824",
        ">= 1073741824",
        "HighMemoryUsage: exactly 1 GiB does not fire (the operator is >)",
    ),
    Mutant("HighMemoryUsage", "for", "10m", "9m", "HighMemoryUsage: 1.5 GiB on mdl-api fires after 10m"),
    Mutant("ServiceDown", "for", "1m", "30s", "ServiceDown: a single failed scrape (down for 30s of 1m) does not fire"),
    Mutant(
        "ServiceDown",
        "expr",
        '{job="mdl-api"}',
        "",
        "ServiceDown: another job's target down does not fire (TargetDown covers it)",
    ),
    Mutant(
        "SlowDatabaseQueries",
        "expr",
        "> 0.1",
        ">= 0.1",
        "SlowDatabaseQueries: P95 exactly 0.1s does not fire (the operator is >)",
    ),
    Mutant(
        "job:db_query_duration_seconds:p95_5m",
        "expr",
        "sum by (job, le)",
        "sum by (job, operation, le)",
        "SlowDatabaseQueries: slow inserts with 5% of the queries do not fire (summed P95 is 5ms)",
        alert="SlowDatabaseQueries",
    ),
    Mutant(
        "SlowDatabaseQueries",
        "for",
        "10m",
        "9m",
        "SlowDatabaseQueries: P95 of fast selects and slow inserts summed fires after 10m",
    ),
    Mutant(
        "HighAuthFailureRate",
        "expr",
        "> 10",
        ">= 10",
        "HighAuthFailureRate: exactly 10/s does not fire (the operator is >)",
    ),
    Mutant(
        "HighAuthFailureRate",
        "expr",
        ',path="/api/v1/auth/login"',
        "",
        "HighAuthFailureRate: 401s on other paths and non-401s on the login path do not fire",
    ),
    Mutant(
        "HighAuthFailureRate",
        "expr",
        'status_code="401"',
        'status_code=~"4.."',
        "HighAuthFailureRate: 401s on other paths and non-401s on the login path do not fire",
    ),
    Mutant("HighAuthFailureRate", "for", "5m", "4m", "HighAuthFailureRate: 6/s on each of two instances (12/s) fires"),
    # --- stack.rules.yml
    Mutant("TargetDown", "for", "1m", "30s", "TargetDown: a single failed scrape (down for 45s of 1m) does not fire"),
    Mutant(
        "ServiceRestarted",
        "expr",
        "changes(",
        "count_over_time(",
        "ServiceRestarted: a steady start time, a growing uptime and a target that just appeared do not fire",
    ),
    Mutant(
        "ServiceRestarted",
        "expr",
        "resets(",
        "increase(",
        "ServiceRestarted: a steady start time, a growing uptime and a target that just appeared do not fire",
    ),
    Mutant(
        "PrometheusRuleEvaluationFailures",
        "for",
        "3m",
        "1m",
        "PrometheusRuleEvaluationFailures: failures that stay in the 2m window for under 3m do not fire",
    ),
    Mutant(
        "PrometheusRuleEvaluationFailures",
        "expr",
        "> 0",
        ">= 0",
        "PrometheusRuleEvaluationFailures: old failures without new ones do not fire",
    ),
    Mutant(
        "PrometheusNotificationQueueRunningFull",
        "expr",
        "> 0.9",
        ">= 0.9",
        "PrometheusNotificationQueueRunningFull: exactly 90% full does not fire (the operator is >)",
    ),
    Mutant(
        "PrometheusErrorSendingAlerts",
        "expr",
        "> 0.01",
        ">= 0.01",
        "PrometheusErrorSendingAlerts: exactly 1% send errors does not fire (the operator is >)",
    ),
    Mutant(
        "PrometheusErrorSendingAlerts",
        "expr",
        "[5m]) > 0",
        "[5m]) >= 0",
        "PrometheusErrorSendingAlerts: nothing sent (0/0) and no drops does not fire",
    ),
    Mutant(
        "PrometheusNotConnectedToAlertmanagers",
        "expr",
        "< 1",
        "< 2",
        "PrometheusNotConnectedToAlertmanagers: one Alertmanager discovered does not fire",
    ),
    Mutant(
        "PrometheusNotConnectedToAlertmanagers",
        "for",
        "3m",
        "1m",
        "PrometheusNotConnectedToAlertmanagers: losing the Alertmanagers for 2m does not fire",
    ),
    Mutant(
        "PrometheusConfigReloadFailed",
        "expr",
        "== 0",
        "== 1",
        "PrometheusConfigReloadFailed: a successful reload does not fire",
    ),
    Mutant(
        "PrometheusConfigReloadFailed",
        "for",
        "5m",
        "3m",
        "PrometheusConfigReloadFailed: a failed reload fixed within 4m does not fire",
    ),
    Mutant(
        "AlertmanagerConfigReloadFailed",
        "for",
        "5m",
        "3m",
        "AlertmanagerConfigReloadFailed: a failed reload fixed within 4m does not fire",
    ),
    Mutant(
        "AlertmanagerFailedToSendNotifications",
        "expr",
        "> 0.01",
        ">= 0.01",
        "AlertmanagerFailedToSendNotifications: exactly 1% failed does not fire (the operator is >)",
    ),
    Mutant(
        "LokiRequestErrors",
        "expr",
        "> 0.05",
        ">= 0.05",
        "LokiRequestErrors: exactly 5% 5xx does not fire (the operator is >)",
    ),
    Mutant(
        "LokiRequestErrors",
        "expr",
        'status_code=~"5.."',
        'status_code=~"[45].."',
        "LokiRequestErrors: 4xx answers (rate-limited pushes, bad queries) do not fire",
    ),
    # The ratio of the counters since Loki started instead of the last 5 minutes.
    Mutant(
        "LokiRequestErrors",
        "expr",
        "rate(",
        "max_over_time(",
        "LokiRequestErrors: old 5xx without new ones do not fire (the rule divides rates, not totals)",
    ),
    Mutant(
        "LokiRequestErrors",
        "expr",
        'job="loki"',
        'job!=""',
        "LokiRequestErrors: 5xx of another job (a Loki scraped under its own job) do not fire",
    ),
    Mutant(
        "LokiRequestErrors",
        "for",
        "5m",
        "4m",
        "LokiRequestErrors: a burst of 5xx that stays in the 5m window for 4m does not fire",
    ),
    Mutant(
        "LokiDiscardedSamples",
        "expr",
        "> 0",
        ">= 0",
        "LokiDiscardedSamples: old discards without new ones do not fire",
    ),
    Mutant(
        "LokiDiscardedSamples",
        "expr",
        '{job="loki"}',
        "",
        "LokiDiscardedSamples: discards of another job (a Loki scraped under its own job) do not fire",
    ),
    Mutant(
        "LokiDiscardedSamples",
        "for",
        "10m",
        "9m",
        "LokiDiscardedSamples: discards that stay in the 5m window for 9m45s do not fire",
    ),
    Mutant(
        "PromtailDroppedEntries",
        "expr",
        "> 0",
        ">= 0",
        "PromtailDroppedEntries: old drops without new ones do not fire",
    ),
    Mutant(
        "PromtailDroppedEntries",
        "expr",
        '{job="promtail"}',
        "",
        "PromtailDroppedEntries: drops of another job (a Promtail scraped under its own job) do not fire",
    ),
    Mutant(
        "PromtailDroppedEntries",
        "for",
        "5m",
        "4m",
        "PromtailDroppedEntries: a dropped batch that stays in the 5m window for 4m does not fire",
    ),
    Mutant(
        "PromtailRequestErrors",
        "expr",
        "> 0.1",
        ">= 0.1",
        "PromtailRequestErrors: exactly 10% failed pushes does not fire (the operator is >)",
    ),
    # The ratio of the counters since Promtail started instead of the last 5 minutes.
    Mutant(
        "PromtailRequestErrors",
        "expr",
        "rate(",
        "max_over_time(",
        "PromtailRequestErrors: old failures without new ones do not fire (the rule divides rates, not totals)",
    ),
    Mutant(
        "PromtailRequestErrors",
        "expr",
        'job="promtail"',
        'job!=""',
        "PromtailRequestErrors: failed pushes of another job (a Promtail scraped under its own job) do not fire",
    ),
    Mutant(
        "PromtailRequestErrors",
        "for",
        "10m",
        "9m",
        "PromtailRequestErrors: failed pushes that stay in the 5m window for 9m45s do not fire",
    ),
    Mutant(
        "JaegerSpansRefused",
        "expr",
        "> 0",
        ">= 0",
        "JaegerSpansRefused: old refusals without new ones do not fire",
    ),
    Mutant(
        "JaegerSpansRefused",
        "expr",
        '{job="jaeger"}',
        "",
        "JaegerSpansRefused: refusals of another job (an OpenTelemetry Collector) do not fire",
    ),
    Mutant(
        "JaegerSpansRefused",
        "for",
        "5m",
        "4m",
        "JaegerSpansRefused: a burst of refusals that stays in the 5m window for 4m does not fire",
    ),
    Mutant(
        "JaegerSpansDropped",
        "expr",
        "> 0",
        ">= 0",
        "JaegerSpansDropped: old failures without new ones do not fire",
    ),
    Mutant(
        "JaegerSpansDropped",
        "expr",
        '{job="jaeger"}',
        "",
        "JaegerSpansDropped: failed spans of another job (an OpenTelemetry Collector) do not fire",
    ),
    Mutant(
        "JaegerSpansDropped",
        "for",
        "5m",
        "4m",
        "JaegerSpansDropped: failures that stay in the 5m window for 4m do not fire",
    ),
    Mutant(
        "NodeFilesystemAlmostFull",
        "expr",
        "< 0.1",
        "<= 0.1",
        "NodeFilesystemAlmostFull: exactly 10% free does not fire (the operator is <)",
    ),
    Mutant(
        "NodeFilesystemAlmostFull",
        "expr",
        '{fstype!~"tmpfs|',
        '{fstype!~"',
        "NodeFilesystemAlmostFull: a full tmpfs does not fire (ignored filesystem type)",
    ),
    Mutant(
        "NodeFilesystemAlmostFull",
        "expr",
        "and node_filesystem_readonly == 0",
        "",
        "NodeFilesystemAlmostFull: a full read-only filesystem does not fire",
    ),
    Mutant("NodeFilesystemAlmostFull", "for", "15m", "14m", "NodeFilesystemAlmostFull: 5% free on / fires after 15m"),
    Mutant(
        "NodeMemoryPressure",
        "expr",
        "< 0.1",
        "<= 0.1",
        "NodeMemoryPressure: exactly 10% available does not fire (the operator is <)",
    ),
    Mutant("NodeMemoryPressure", "for", "10m", "9m", "NodeMemoryPressure: 5% available fires after 10m"),
    Mutant(
        "NodeClockSkew",
        "expr",
        "> 0.05",
        ">= 0.05",
        "NodeClockSkew: offsets of exactly +-50ms on synchronised clocks do not fire (the operator is >)",
    ),
    Mutant(
        "NodeClockSkew",
        "for",
        "10m",
        "9m",
        "NodeClockSkew: an offset of -80ms and an unsynchronised clock fire after 10m",
    ),
]


def _find_rule(rule_docs: dict[str, dict], name: str, slo_window: str = "") -> tuple[str, int, int]:
    """(rule file, group index, rule index) of the one rule called `name` (in that window)."""
    found = [
        (file_name, g_idx, r_idx)
        for file_name, doc in rule_docs.items()
        for g_idx, group in enumerate(doc["groups"])
        for r_idx, rule in enumerate(group["rules"])
        if name in (rule.get("alert"), rule.get("record"))
        and (not slo_window or (rule.get("labels") or {}).get("slo_window") == slo_window)
    ]
    assert len(found) == 1, f"rule {name} {slo_window} found {len(found)} times"
    return found[0]


def mutate(rule_docs: dict[str, dict], mutant: Mutant) -> tuple[str, dict]:
    """(rule file, its parsed content with the mutant applied)."""
    targets = [_find_rule(rule_docs, mutant.rule, mutant.slo_window)]
    targets += [_find_rule(rule_docs, name) for name in mutant.also]
    files = {file_name for file_name, _, _ in targets}
    assert len(files) == 1, f"{mutant}: rules in several files {files}"
    file_name = files.pop()
    doc = copy.deepcopy(rule_docs[file_name])
    for _, g_idx, r_idx in targets:
        rule = doc["groups"][g_idx]["rules"][r_idx]
        value = str(rule[mutant.field])
        name = rule.get("alert") or rule.get("record")
        assert mutant.old in value, f"{mutant.old!r} is not in {name}.{mutant.field}: {value!r}"
        rule[mutant.field] = value.replace(mutant.old, mutant.new)
    return file_name, doc


def test_every_alert_with_a_silent_case_has_a_mutant(rule_docs):
    alerts = {rule["alert"] for _, rule in iter_alerts(rule_docs) if not is_always_firing(rule)}
    assert alerts - {m.alertname for m in MUTANTS} == set()


@pytest.mark.parametrize("mutant", MUTANTS, ids=str)
def test_silent_case_detects_mutant(mutant, rule_docs, promtool, tmp_path):
    file_name, mutated = mutate(rule_docs, mutant)
    test_file = RULE_TEST_FILES[file_name]
    groups = {g["name"]: g for g in load_test_files()[test_file]["tests"]}
    assert mutant.kills in groups, f"no test group {mutant.kills!r} in {test_file}"
    assert any(
        case["alertname"] == mutant.alertname and not case.get("exp_alerts")
        for case in groups[mutant.kills]["alert_rule_test"]
    ), f"{mutant.kills!r} has no exp_alerts: [] case for {mutant.alertname}"

    (tmp_path / file_name).write_text(yaml.safe_dump(mutated, sort_keys=False))
    shutil.copy(RULE_TESTS_DIR / test_file, tmp_path / test_file)
    proc = _promtool(promtool, "test", "rules", "--run", f"^{re.escape(mutant.kills)}$", test_file, cwd=tmp_path)
    assert proc.returncode != 0, f"mutant survived: {mutant}\n{_output(proc)}"
    assert (mutant.kills, mutant.alertname) in silent_case_failures(proc), _output(proc)


# --------------------------------------------------------------------------
# Conventions and overrides
# --------------------------------------------------------------------------


def test_alerts_have_severity_component_and_annotations(rule_docs):
    defaults = _defaults()
    configured = {**defaults["prometheus_mdl_alerts"], **defaults["prometheus_stack_alerts"]}
    problems = []
    for file_name, rule in iter_alerts(rule_docs):
        name, labels, annotations = rule["alert"], rule.get("labels") or {}, rule.get("annotations") or {}
        where = f"{file_name}: {name}"
        if labels.get("severity") not in defaults["prometheus_alert_severities"]:
            problems.append(f"{where}: severity {labels.get('severity')!r} not in prometheus_alert_severities")
        if not labels.get("component"):
            problems.append(f"{where}: no component label")
        if name in configured:
            for key in ("severity", "component"):
                if labels.get(key) != configured[name][key]:
                    problems.append(f"{where}: {key} {labels.get(key)!r}, configured {configured[name][key]!r}")
        for key in ("summary", "description", "runbook_url"):
            if not str(annotations.get(key) or "").strip():
                problems.append(f"{where}: no {key} annotation")
        runbook = str(annotations.get("runbook_url") or "")
        if runbook != f"{defaults['prometheus_runbook_base_url']}/{name}.md":
            problems.append(f"{where}: runbook_url {runbook!r} does not end in /{name}.md under the runbook base URL")
    assert not problems, "\n".join(problems)


SLOW_RESPONSE_OVERRIDE = {"prometheus_mdl_alert_overrides": {"SlowResponseTime": {"threshold": 0.5}}}


@pytest.fixture(scope="module")
def overridden_rules(render_rules) -> Path:
    return _with_tests(render_rules(SLOW_RESPONSE_OVERRIDE))


def _rule(docs: dict[str, dict], name: str) -> dict:
    return next(rule for _, rule in iter_alerts(docs) if rule["alert"] == name)


def test_override_changes_only_the_overridden_threshold(overridden_rules, rule_docs):
    docs = load_rule_files(overridden_rules)
    default, changed = _rule(rule_docs, "SlowResponseTime"), _rule(docs, "SlowResponseTime")
    assert changed["expr"] == "job:http_request_duration_seconds:p95_5m > 0.5"
    assert default["expr"] == "job:http_request_duration_seconds:p95_5m > 1"
    assert changed["for"] == default["for"] == "10m"
    assert changed["labels"] == default["labels"] == {"severity": "warning", "component": "api"}
    assert changed["annotations"] == {
        **default["annotations"],
        "description": default["annotations"]["description"].replace("threshold: 1s", "threshold: 0.5s"),
    }
    assert "threshold: 0.5s for 10m" in changed["annotations"]["description"]
    # Everything else renders as with the defaults.
    expected = copy.deepcopy(rule_docs)
    _rule(expected, "SlowResponseTime").update(changed)
    assert docs == expected


def test_lowered_threshold_fails_the_boundary_case(overridden_rules, promtool):
    """With a P95 threshold of 0.5s, the 'P95 exactly 1s' case fires: the test notices."""
    proc = _promtool(promtool, "test", "rules", "mdl_api.test.yml", cwd=overridden_rules)
    assert proc.returncode != 0, _output(proc)
    assert (
        "SlowResponseTime: P95 exactly 1s does not fire (the operator is >)",
        "SlowResponseTime",
    ) in silent_case_failures(proc), _output(proc)


# --------------------------------------------------------------------------
# HighErrorRate: the burn-rate configuration reaches the rules
# --------------------------------------------------------------------------


def _error_rules(docs: dict[str, dict]) -> dict[str, dict]:
    """HighErrorRate's rules by slo_window."""
    return {rule["labels"]["slo_window"]: rule for _, rule in iter_alerts(docs) if rule["alert"] == "HighErrorRate"}


def test_high_error_rate_is_one_rule_per_burn_rate_pair(rule_docs):
    defaults = _defaults()
    spec = defaults["prometheus_mdl_alerts"]["HighErrorRate"]
    windows = defaults["prometheus_mdl_windows"]
    rules = _error_rules(rule_docs)
    assert set(rules) == set(spec["burn_rates"]) == {"fast", "slow"}
    records = {
        rule["record"]: rule["expr"]
        for doc in rule_docs.values()
        for group in doc["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    for window, pair in spec["burn_rates"].items():
        rule = rules[window]
        threshold = round(pair["factor"] * (1 - spec["objective"]), 10)
        assert rule["expr"].splitlines() == [
            f"job:http_request_error_ratio:{pair['long']} > {threshold}",
            f"and on (job) job:http_request_error_ratio:{pair['short']} > {threshold}",
            f"and on (job) job:http_requests:rate5m >= {spec['min_request_rate']}",
        ]
        assert rule["for"] == pair["for"]
        assert rule["labels"] == {"severity": "critical", "component": "api", "slo_window": window}
        description = rule["annotations"]["description"]
        for text in (f"over the last {windows[pair['long']]}", f"over the last {windows[pair['short']]}"):
            assert text in description
        assert f"{pair['factor']}x" in description and "objective 99.9%" in description
        # Both windows are recorded, from the same selector.
        for key in (pair["long"], pair["short"]):
            record = f"job:http_request_error_ratio:{key}"
            assert record in records, record
            if key != "rate5m":
                errors = f'sum by (job) (rate(http_requests_total{{job="mdl-api",status_code=~"5.."}}[{windows[key]}]))'
                total = f'sum by (job) (rate(http_requests_total{{job="mdl-api"}}[{windows[key]}]))'
                # A job without a single 5xx has the ratio 0, not no series.
                assert " ".join(records[record].split()) == f"( {errors} or {total} * 0 ) / {total}"


# (overrides of HighErrorRate, test group whose silent case must then fail)
CONFIG_MUTANTS = [
    # factor 10 instead of 14.4: the fast window pages on a 1.2% burn.
    ({"burn_rates": {"fast": {"factor": 10}}}, HER_STEADY),
    # factor 4 instead of 6: the slow window pages on 0.5%.
    ({"burn_rates": {"slow": {"factor": 4}}}, HER_4XX),
    # A stricter objective (99.92%) lowers both thresholds (1.152%, 0.48%).
    ({"objective": 0.9992}, HER_STEADY),
    ({"objective": 0.9992}, HER_4XX),
    ({"min_request_rate": 0.05}, HER_LOW_TRAFFIC),
]


@pytest.mark.parametrize("override, kills", CONFIG_MUTANTS, ids=lambda v: json.dumps(v) if isinstance(v, dict) else "")
def test_high_error_rate_configuration_is_tested(override, kills, render_rules, promtool):
    """Each burn-rate setting changes the rendered rules so that a non-firing promtool case fails."""
    rules_dir = _with_tests(render_rules({"prometheus_mdl_alert_overrides": {"HighErrorRate": override}}))
    proc = _promtool(promtool, "test", "rules", "--run", f"^{re.escape(kills)}$", "mdl_api.test.yml", cwd=rules_dir)
    assert proc.returncode != 0, f"override survived: {override}\n{_output(proc)}"
    assert (kills, "HighErrorRate") in silent_case_failures(proc), _output(proc)


FAST_ALERTING = REPO_ROOT / "inventories" / "local" / "group_vars" / "fast_alerting.yml"


def test_fast_alerting_inventory_shrinks_only_windows_and_for(render_rules, promtool, rule_docs):
    """The test inventory's HighErrorRate: the production thresholds, its short windows and `for:`."""
    settings = yaml.safe_load(FAST_ALERTING.read_text())
    rules_dir = render_rules(settings)
    proc = _promtool(promtool, "check", "rules", "mdl_api.rules.yml", cwd=rules_dir)
    assert proc.returncode == 0, _output(proc)
    fast, default = _error_rules(load_rule_files(rules_dir)), _error_rules(rule_docs)
    windows = settings["prometheus_mdl_windows"]
    for window in ("fast", "slow"):
        assert fast[window]["expr"] == default[window]["expr"]
        assert fast[window]["for"] == "15s"
    assert "over the last 3m," in fast["fast"]["annotations"]["description"]
    assert "over the last 1m (for 15s)" in fast["fast"]["annotations"]["description"]
    assert f"[{windows['rate6h']}]" in (rules_dir / "mdl_api.rules.yml").read_text()
