"""The routing tree of every inventory, checked with the real amtool against its routing test table."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "tests/unit/fixtures/render_alertmanager.yml"
ANSIBLE_PLAYBOOK = REPO / ".venv/bin/ansible-playbook"
EXAMPLE_SECRETS = {
    "vault_prometheus_password": "x",
    "vault_alertmanager_password": "x",
    "vault_smtp_password": "x",
    "vault_slack_webhook_url": "https://hooks.slack.com/services/T0/B0/x",
    "vault_pagerduty_routing_key": "x" * 32,
    "vault_watchdog_url": "https://hc-ping.com/x",
    # These inventories turn TLS on with certificates from their vault, which the
    # example lacks; routing does not depend on it (tests/unit/test_tls_filters.py and
    # the molecule scenario test the TLS preflight).
    "obs_tls_enabled": False,
}


def _render(tmp_path: Path, inventory: str, extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_VAULT_PASSWORD_FILE": str(REPO / "inventories/local/vault-password.txt"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path),
    }
    extra_vars = {"dest": str(tmp_path / "alertmanager.yml"), **(extra or {})}
    cmd = [str(ANSIBLE_PLAYBOOK), "-i", str(REPO / "inventories" / inventory), str(PLAYBOOK)]
    cmd += ["-e", json.dumps(extra_vars)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)


def _route(amtool: Path, config: Path, labels: dict) -> list[str]:
    proc = subprocess.run(
        [str(amtool), "config", "routes", "test", f"--config.file={config}", *(f"{k}={v}" for k, v in labels.items())],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [r for r in proc.stdout.strip().split(",") if r]


@pytest.fixture(scope="module", params=["local", "staging", "production"])
def rendered(request, tmp_path_factory, amtool):
    tmp = tmp_path_factory.mktemp(f"am-{request.param}")
    proc = _render(tmp, request.param, EXAMPLE_SECRETS if request.param != "local" else None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = tmp / "alertmanager.yml"
    data = json.loads((tmp / "alertmanager.yml.cases.json").read_text())
    return request.param, config, data


def test_amtool_accepts_the_config(rendered, amtool):
    _, config, _ = rendered
    proc = subprocess.run([str(amtool), "check-config", str(config)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_routing_table_is_not_empty_and_covers_every_receiver(rendered):
    _, config, data = rendered
    receivers = {r["name"] for r in yaml.safe_load(config.read_text())["receivers"]}
    expected = {r for case in data["cases"] for r in case["receivers"]}
    assert len(data["cases"]) >= 8
    assert expected == receivers, "every receiver should be the expected target of at least one case"
    assert any("inhibited_by" in case for case in data["cases"]), "no inhibition case"


def test_every_case_routes_as_expected(rendered, amtool):
    env, config, data = rendered
    rows = []
    for case in data["cases"]:
        actual = _route(amtool, config, case["labels"])
        if sorted(actual) != sorted(case["receivers"]):
            rows.append(f"{case['labels']}: expected {case['receivers']}, amtool says {actual}")
    assert rows == [], f"{env}: " + "; ".join(rows)


def test_email_is_reachable(rendered, amtool):
    """The plan's tree made the email receiver unreachable; ours must reach it."""
    _, config, _ = rendered
    labels = {"alertname": "SlowResponseTime", "severity": "warning", "component": "api"}
    assert "email" in _route(amtool, config, labels)


def test_inhibition_cases_hold(rendered, alerting):
    _, _, data = rendered
    assert alerting.inhibition_problems(data["cases"], data["inhibit_rules"]) == []


def test_a_tree_change_that_breaks_a_case_is_caught(tmp_path, amtool):
    """The plan's original tree (Slack with continue: false) starves email: the table must catch it."""
    plan_route = {
        "receiver": "email",
        "group_by": ["alertname", "severity"],
        "routes": [
            {"receiver": "pagerduty", "matchers": ['severity="critical"'], "continue": True},
            {"receiver": "slack", "continue": False},
        ],
    }
    proc = _render(tmp_path, "local", {"alertmanager_route": plan_route})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = tmp_path / "alertmanager.yml"
    cases = json.loads((tmp_path / "alertmanager.yml.cases.json").read_text())["cases"]
    broken = [c for c in cases if sorted(_route(amtool, config, c["labels"])) != sorted(c["receivers"])]
    assert len(broken) >= 7, "the plan's tree should fail every case that expects the email digest"


def test_unknown_receiver_in_table_fails_preflight(tmp_path):
    cases = [{"name": "typo", "labels": {"alertname": "X", "severity": "warning"}, "receivers": ["slak", "email"]}]
    proc = _render(tmp_path, "local", {"alertmanager_routing_tests": cases})
    assert proc.returncode != 0
    assert "routing case typo: unknown receiver(s) slak" in proc.stdout


def test_missing_receiver_secret_fails_preflight(tmp_path):
    proc = _render(tmp_path, "staging", {**EXAMPLE_SECRETS, "vault_pagerduty_routing_key": ""})
    assert proc.returncode != 0
    assert "receiver pagerduty: pagerduty_configs[0] has no routing_key" in proc.stdout
