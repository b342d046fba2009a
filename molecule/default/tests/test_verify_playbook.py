"""playbooks/verify.yml run against the converged scenario: live synthetic alerts
through the real Alertmanagers, delivered by their real integrations to the sink.

The verdicts come from the sink's records and the deployed configuration, not
from the module's own table: the report file only tells which smoke-test id
each case used.
"""

import json
import os
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import sandbox
import yaml

PROJECT = Path(__file__).resolve().parents[3]
SINK_API = sandbox.SINK_API
INVENTORY_DIR = Path(os.environ.get("MOLECULE_INVENTORY_FILE", "/nonexistent/x")).parent


def run_verify(*extra, inventories=(), report=None):
    args = [*extra, "-e", f"verify_report_file={report}"] if report else list(extra)
    return sandbox.playbook(PROJECT / "playbooks/verify.yml", *args, inventories=inventories, timeout=900)


@pytest.fixture(scope="module")
def verify_run(tmp_path_factory):
    with urllib.request.urlopen(urllib.request.Request(SINK_API, method="DELETE"), timeout=10):
        pass
    report = tmp_path_factory.mktemp("verify") / "report.json"
    proc = run_verify(report=report)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    return json.loads(report.read_text())


@pytest.fixture(scope="module")
def table():
    """The inventory's routing test table (molecule links the sandbox's group_vars)."""
    return yaml.safe_load((INVENTORY_DIR / "group_vars/all/alerting.yml").read_text())["alertmanager_routing_tests"]


def _group(name):
    """Hosts of a group of the inventory molecule generated (groups are top-level keys there)."""
    return sorted(yaml.safe_load(Path(os.environ["MOLECULE_INVENTORY_FILE"]).read_text())[name]["hosts"])


@pytest.fixture(scope="module")
def receivers():
    return sandbox.deployed_receivers(_group("alertmanager")[0])


def _received(**params):
    return sandbox.sink_received(**params)


def test_every_case_of_the_inventory_table_ran(verify_run, table):
    assert [c["name"] for c in verify_run["cases"]] == [c["name"] for c in table]
    assert len({c["id"] for c in verify_run["cases"]}) == len(table)


def test_each_expected_receiver_got_its_case_and_no_other_channel_did(verify_run, table, receivers):
    problems = []
    for case, spec in zip(verify_run["cases"], table, strict=True):
        records = _received(contains=case["id"])
        reached = {r["channel"] for r in records}
        refused = [r for r in records if not r["accepted"]]
        if spec.get("inhibited", bool(spec.get("inhibited_by"))):
            if records:
                problems.append(f"{spec['name']}: inhibited, but reached {sorted(reached)}")
            continue
        want = {receivers[name]["channel"] for name in spec["receivers"]}
        firing = {r["channel"] for r in records if r["accepted"] and r["status"] == "firing"}
        if firing != want or reached != want or refused:
            problems.append(
                f"{spec['name']} ({case['id']}): expected {sorted(want)}, firing at {sorted(firing)},"
                f" any record at {sorted(reached)}, refused {[(r['channel'], r.get('refusal')) for r in refused]}"
            )
        for name in spec["receivers"]:
            channel, resolved = receivers[name]["channel"], receivers[name]["send_resolved"]
            got = any(r["channel"] == channel and r["status"] == "resolved" and r["accepted"] for r in records)
            if got != resolved:
                problems.append(f"{spec['name']}: {name} send_resolved={resolved}, resolution received={got}")
    assert not problems, "\n".join(problems)


def test_sink_refused_nothing(verify_run):
    refused = _received(accepted="false")
    assert not refused, [(r["channel"], r.get("refusal")) for r in refused]


def _ghost_inventory(tmp_path, groups):
    path = tmp_path / "ghost.yml"
    path.write_text(
        yaml.safe_dump(
            {"all": {"hosts": {"ghost": {"ansible_host": "192.0.2.10"}}, "children": groups}},
        )
    )
    return path


def test_verify_fails_when_an_inventory_host_is_not_scraped(verify_run, tmp_path):
    """A host in the inventory that the generated prometheus.yml does not carry (the config was
    not redeployed) must fail verify; it is never contacted (TEST-NET address)."""
    ghost = _ghost_inventory(tmp_path, {"monitored": {"hosts": {"ghost": None}}})
    proc = run_verify(inventories=[ghost])
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "differ from the inventory" in proc.stdout
    assert "node/ghost (192.0.2.10:9100)" in proc.stdout


def test_verify_fails_when_prometheus_alerts_to_other_alertmanagers(verify_run, tmp_path, expected):
    """Same number of Alertmanagers, not the same ones: compared by URL, not by count."""
    # Prometheus alerts over the scheme the inventory's obs_tls_enabled says.
    scheme = "https" if next(iter(expected.values()))["tls"]["enabled"] else "http"
    real = _group("alertmanager")
    swapped = {"ghost_alertmanagers": {"hosts": {name: None for name in [*real[1:], "ghost"]}}}
    ghost = _ghost_inventory(tmp_path, swapped)
    proc = run_verify("-e", "prometheus_alertmanager_group=ghost_alertmanagers", inventories=[ghost])
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "does not alert to the inventory's Alertmanagers" in proc.stdout
    assert f"{scheme}://192.0.2.10:9093/api/v2/alerts" in proc.stdout
    assert f"{scheme}://{real[0]}:9093/api/v2/alerts" in proc.stdout


def test_verify_fails_when_jaeger_does_not_return_the_span(verify_run):
    """The span check can fail: asked on a port where no query API listens, verify reports the trace missing."""
    proc = run_verify("-e", "jaeger_query_listen_address=0.0.0.0:16999")
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "accepted the span" in proc.stdout
    assert "127.0.0.1:16999/api/traces/" in proc.stdout


def test_verify_fails_when_loki_does_not_return_the_line(verify_run):
    """The log check can fail: when the inventory's host label differs from the one the deployed Promtail
    sends (the config was not redeployed), Loki returns no line and verify says so."""
    proc = run_verify("-e", json.dumps({"promtail_external_labels": {"host": "ghost", "environment": "sandbox"}}))
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "did not return its synthetic journal line" in proc.stdout


def test_verify_fails_when_the_request_log_line_is_not_in_loki(verify_run):
    """The application's end-to-end check can fail: asked for a job the deployed Promtail does not ship,
    Loki returns no line with the request's trace id and verify says so (the trace check passed before it)."""
    ghost = {"promtail_app_logs": [{"job": "ghost-app", "service": "ghost-app", "path": "/nonexistent/*.log"}]}
    proc = run_verify("-e", json.dumps(ghost))
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "returned no line of job ghost-app" in proc.stdout
    assert "found in Jaeger" in proc.stdout
