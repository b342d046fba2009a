"""playbooks/verify.yml run against the converged scenario: live synthetic alerts
through the real Alertmanagers, delivered by their real integrations to the sink."""

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[3]
SINK_API = "http://127.0.0.1:18081/api/received"


@pytest.fixture(scope="module")
def verify_run():
    inventory_dir = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"),
        "ANSIBLE_VAULT_PASSWORD_FILE": str(PROJECT / "inventories/local/vault-password.txt"),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
    }
    with urllib.request.urlopen(urllib.request.Request(SINK_API, method="DELETE"), timeout=10):
        pass
    proc = subprocess.run(
        [str(PROJECT / ".venv/bin/ansible-playbook"), "-i", str(inventory_dir), str(PROJECT / "playbooks/verify.yml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    return proc


def _received(**params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    with urllib.request.urlopen(f"{SINK_API}?{query}", timeout=10) as resp:
        return json.loads(resp.read())


def test_verify_playbook_passes(verify_run):
    assert verify_run.returncode == 0, verify_run.stdout[-6000:] + verify_run.stderr[-2000:]


def test_every_routing_case_passed_live(verify_run):
    rows = [line for line in verify_run.stdout.splitlines() if line.strip().startswith('"') and "  " in line]
    results = [r for r in rows if r.rstrip('",').endswith((" ok", " MISMATCH", " FAILED"))]
    assert len(results) == 11, "\n".join(rows)
    assert all(r.rstrip('",').endswith(" ok") for r in results), "\n".join(results)


@pytest.mark.parametrize("channel", ["slack", "pagerduty", "email"])
def test_receivers_with_send_resolved_got_firing_and_resolution(verify_run, channel):
    records = _received(contains="Smoke%20test", channel=channel)
    statuses = {r["status"] for r in records}
    assert {"firing", "resolved"} <= statuses, f"{channel} got {statuses}"


def test_watchdog_receiver_got_only_its_smoke_alert_and_no_resolution(verify_run):
    records = _received(contains="Smoke%20test", channel="watchdog")
    assert records, "the watchdog receiver got no smoke alert"
    assert {r["status"] for r in records} == {"firing"}
    bodies = " ".join(r["body"] for r in records)
    assert "HighErrorRate" not in bodies, "a non-Watchdog smoke alert reached the watchdog receiver"
