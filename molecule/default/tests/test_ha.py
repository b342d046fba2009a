"""High availability: every Prometheus of the scenario evaluates the same rules and sends
the same alert; the replica external label (prometheus_replica_label) tells them apart
and is dropped for alerts, so each Alertmanager holds the alert once and the sink gets
it once per notification.

Evidence from the systems under test: each Prometheus' own alerts API and loaded
config, each Alertmanager's alerts API, and what the notification sink received.
"""

import json

import pytest
import sandbox
import testinfra


@pytest.fixture(scope="module")
def servers(expected):
    names = sorted(n for n, e in expected.items() if "prometheus" in e["groups"])
    if len(names) < 2:
        pytest.skip("HA needs two Prometheus servers in the inventory")
    return {n: testinfra.get_host(f"docker://{n}") for n in names}


def _prom(expected, secrets, name, host, path):
    want = expected[name]
    user = want["auth_usernames"]["prometheus"]
    return sandbox.curl_json(host, want["urls"]["prometheus"] + path, user, secrets["vault_prometheus_password"])


def test_every_replica_fires_the_watchdog_with_its_own_replica_label(expected, secrets, servers):
    label = next(iter(expected.values()))["replica_label"]
    assert label, "prometheus_replica_label is empty: the replicas cannot be told apart"
    replicas = set()
    for name, host in servers.items():
        alerts = _prom(expected, secrets, name, host, "/api/v1/alerts")["data"]["alerts"]
        assert any(a["labels"]["alertname"] == "Watchdog" and a["state"] == "firing" for a in alerts), name
        config = _prom(expected, secrets, name, host, "/api/v1/status/config")["data"]["yaml"]
        assert f"{label}: {name}" in config, f"{name} does not run with {label}={name}"
        replicas.add(name)
    assert len(replicas) == len(servers)


def test_each_alertmanager_holds_the_replicas_alert_once(expected, secrets, servers):
    label = next(iter(expected.values()))["replica_label"]
    for name, want in sorted(expected.items()):
        if "alertmanager" not in want["groups"]:
            continue
        host = testinfra.get_host(f"docker://{name}")
        url = want["urls"]["alertmanager"] + "/api/v2/alerts?filter=alertname%3D%22Watchdog%22"
        user = want["auth_usernames"]["alertmanager"]
        alerts = sandbox.curl_json(host, url, user, secrets["vault_alertmanager_password"])
        assert len(alerts) == 1, f"{name} holds {len(alerts)} Watchdog alerts: {[a['labels'] for a in alerts]}"
        assert label not in alerts[0]["labels"], alerts[0]["labels"]


def test_the_sink_gets_the_alert_once_per_notification(expected, servers):
    """Every Watchdog notification the sink received carries exactly one Watchdog alert
    and no replica label (kept, the two copies would arrive together in each notification)."""
    label = next(iter(expected.values()))["replica_label"]
    received = sandbox.sink_received(contains="Watchdog")
    records = [r for r in received if isinstance(r.get("json"), dict) and "alerts" in r["json"]]
    assert records, "the sink received no Watchdog notification"
    for record in records:
        watchdogs = [a for a in record["json"]["alerts"] if a["labels"].get("alertname") == "Watchdog"]
        assert len(watchdogs) == 1, json.dumps(record["json"])[:2000]
        assert label not in watchdogs[0]["labels"], watchdogs[0]["labels"]
