"""Behaviour of the converged stack, checked from inside each test host."""

import json
import re
import urllib.parse

import pytest
from dashboards import queries
from sandbox import curl_json, curl_text, eventually

UNITS = {
    "node_exporter": {"user": "node-exp", "protect_home": "read-only"},
    "prometheus": {"user": "prometheus", "protect_home": "yes"},
    "alertmanager": {"user": "alertmanager", "protect_home": "yes"},
}


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_service_running_enabled(host, unit):
    service = host.service(unit)
    assert service.is_running
    assert service.is_enabled


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_service_user_is_a_locked_system_account(host, unit):
    user = host.user(UNITS[unit]["user"])
    assert user.exists
    assert user.uid < 1000
    assert user.shell == "/usr/sbin/nologin"
    props = host.check_output(f"systemctl show {unit} -p User --value")
    assert props == UNITS[unit]["user"]


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_running_unit_is_hardened(host, unit):
    out = host.check_output(
        f"systemctl show {unit} -p NoNewPrivileges -p ProtectSystem -p ProtectHome "
        "-p PrivateTmp -p PrivateDevices -p Restart -p CapabilityBoundingSet -p ReadWritePaths"
    )
    props = dict(line.split("=", 1) for line in out.splitlines())
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == UNITS[unit]["protect_home"]
    assert props["PrivateTmp"] == "yes"
    assert props["PrivateDevices"] == "yes"
    assert props["Restart"] == "on-failure"
    assert props["CapabilityBoundingSet"] == ""
    if unit != "node_exporter":
        assert props["ReadWritePaths"] == f"/var/lib/{unit}"
    # The process itself runs with no_new_privs set, not just the unit file.
    pid = host.check_output(f"systemctl show {unit} -p MainPID --value")
    assert host.check_output(f"grep NoNewPrivs /proc/{pid}/status").split()[-1] == "1"


@pytest.mark.parametrize(
    "path,group",
    [
        ("/etc/prometheus/prometheus.yml", "prometheus"),
        ("/etc/prometheus/web.yml", "prometheus"),
        ("/etc/alertmanager/alertmanager.yml", "alertmanager"),
        ("/etc/alertmanager/web.yml", "alertmanager"),
    ],
)
def test_secret_bearing_files_are_0640_root_service(host, path, group):
    f = host.file(path)
    assert f.exists
    assert f.user == "root"
    assert f.group == group
    assert f.mode == 0o640


def test_web_config_stores_only_a_bcrypt_hash(host, secrets):
    content = host.file("/etc/prometheus/web.yml").content_string
    assert secrets["vault_prometheus_password"] not in content
    assert re.search(r"admin: \$2[aby]\$10\$", content)


def test_unauthenticated_api_is_refused(host):
    code = host.check_output("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9090/api/v1/targets")
    assert code == "401"


def test_prometheus_and_alertmanager_ready(host, secrets):
    assert "Ready" in curl_text(host, "http://127.0.0.1:9090/-/ready", "admin", secrets["vault_prometheus_password"])
    assert "OK" in curl_text(host, "http://127.0.0.1:9093/-/ready", "admin", secrets["vault_alertmanager_password"])
    assert "node_cpu_seconds_total" in curl_text(host, "http://127.0.0.1:9100/metrics")


def test_every_inventory_target_is_up(host, secrets, scenario_hosts):
    """Real Prometheus scrapes real node_exporter, Prometheus and Alertmanager on every host."""
    expected = {(job, h) for job in ("node", "prometheus", "alertmanager") for h in scenario_hosts}

    def check():
        data = curl_json(
            host,
            "http://127.0.0.1:9090/api/v1/query?query=up",
            "admin",
            secrets["vault_prometheus_password"],
        )
        seen = {(r["metric"]["job"], r["metric"]["instance"]): r["value"][1] for r in data["data"]["result"]}
        assert set(seen) == expected, f"targets {sorted(seen)} != expected {sorted(expected)}"
        down = {k: v for k, v in seen.items() if v != "1"}
        assert not down, f"targets not up: {down}"

    eventually(check)


def test_external_labels_come_from_inventory(host, secrets):
    data = curl_json(host, "http://127.0.0.1:9090/api/v1/status/config", "admin", secrets["vault_prometheus_password"])
    assert "cluster: mdl-sandbox" in data["data"]["yaml"]
    assert "environment: sandbox" in data["data"]["yaml"]


def test_prometheus_sends_to_every_alertmanager(host, secrets, scenario_hosts):
    def check():
        data = curl_json(
            host, "http://127.0.0.1:9090/api/v1/alertmanagers", "admin", secrets["vault_prometheus_password"]
        )
        urls = sorted(a["url"] for a in data["data"]["activeAlertmanagers"])
        assert urls == sorted(f"http://{h}:9093/api/v2/alerts" for h in scenario_hosts)

    eventually(check)


def test_alertmanager_config_loaded_and_clustered(host, secrets, scenario_hosts):
    pw = secrets["vault_alertmanager_password"]
    status = curl_json(host, "http://127.0.0.1:9093/api/v2/status", "admin", pw)
    assert "receivers:" in status["config"]["original"]
    metrics = curl_text(host, "http://127.0.0.1:9093/metrics", "admin", pw)
    assert re.search(r"^alertmanager_config_last_reload_successful 1$", metrics, re.M)

    def peers():
        st = curl_json(host, "http://127.0.0.1:9093/api/v2/status", "admin", pw)
        assert st["cluster"]["status"] == "ready"
        assert len(st["cluster"]["peers"]) == len(scenario_hosts)

    eventually(peers)


def test_prometheus_config_reloaded_successfully(host, secrets):
    metrics = curl_text(host, "http://127.0.0.1:9090/metrics", "admin", secrets["vault_prometheus_password"])
    assert re.search(r"^prometheus_config_last_reload_successful 1$", metrics, re.M)


EXPECTED_GROUPS = {"mdl-api.recording", "mdl-api.alerts", "stack.alerts"}


def test_every_rule_group_loaded_without_evaluation_errors(host, secrets):
    """The built-in rules are loaded in the real Prometheus and evaluate cleanly."""

    def check():
        data = curl_json(host, "http://127.0.0.1:9090/api/v1/rules", "admin", secrets["vault_prometheus_password"])
        groups = {g["name"]: g for g in data["data"]["groups"]}
        assert EXPECTED_GROUPS <= set(groups), f"groups loaded: {sorted(groups)}"
        rules = [r for g in groups.values() for r in g["rules"]]
        bad = {r["name"]: (r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"}
        assert not bad, f"rules not healthy: {bad}"
        assert len([r for r in rules if r["type"] == "alerting"]) == 20
        assert len([r for r in rules if r["type"] == "recording"]) == 10

    eventually(check, timeout=120)


def test_rule_evaluation_failures_counter_is_zero(host, secrets):
    metrics = curl_text(host, "http://127.0.0.1:9090/metrics", "admin", secrets["vault_prometheus_password"])
    failures = re.findall(r"^prometheus_rule_evaluation_failures_total\{[^}]*\} (\S+)$", metrics, re.M)
    assert failures, "no rule evaluation counters: are the rule groups loaded?"
    assert {float(v) for v in failures} == {0.0}


def test_watchdog_fires_and_is_routed_to_its_own_receiver(host, secrets):
    pw = secrets["vault_alertmanager_password"]

    def check():
        alerts = curl_json(host, "http://127.0.0.1:9093/api/v2/alerts?filter=alertname%3D%22Watchdog%22", "admin", pw)
        assert alerts, "Watchdog is not active in Alertmanager"
        assert {r["name"] for a in alerts for r in a["receivers"]} == {"watchdog"}

    eventually(check, timeout=120)


def test_tested_candidate_is_what_runs(host):
    candidate = host.file("/etc/alertmanager/alertmanager.yml.candidate")
    live = host.file("/etc/alertmanager/alertmanager.yml")
    assert candidate.mode == 0o640
    assert candidate.group == "alertmanager"
    assert candidate.sha256sum == live.sha256sum


def _on_grafana(host):
    return host.backend.get_hostname() == "obs-trixie"


def test_grafana_ready_with_database_ok(host):
    if not _on_grafana(host):
        pytest.skip("Grafana runs on obs-trixie")
    assert host.service("grafana").is_running
    health = curl_json(host, "http://127.0.0.1:3000/api/health")
    assert health["database"] == "ok"
    ini = host.file("/etc/grafana/grafana.ini")
    assert ini.mode == 0o640
    assert ini.group == "grafana"
    assert "allow_sign_up = false" in ini.content_string


def test_grafana_datasource_and_dashboards_provisioned(host, secrets):
    if not _on_grafana(host):
        pytest.skip("Grafana runs on obs-trixie")
    pw = secrets["vault_grafana_admin_password"]
    ds = curl_json(host, "http://127.0.0.1:3000/api/datasources/uid/prometheus", "admin", pw)
    assert ds["type"] == "prometheus"
    assert ds["isDefault"] is True
    assert ds["secureJsonFields"].get("basicAuthPassword") is True
    hits = curl_json(host, "http://127.0.0.1:3000/api/search?type=dash-db&folderUIDs=mdl", "admin", pw)
    assert sorted(h["uid"] for h in hits) == ["infrastructure", "mdl-api-overview", "mdl-business"]


def test_every_dashboard_query_runs_on_real_prometheus(host, secrets):
    """Each PromQL query of files/dashboards executes without error against the real Prometheus."""
    failures = []
    for uid, title, expr in queries():
        url = "http://127.0.0.1:9090/api/v1/query?query=" + urllib.parse.quote(expr, safe="")
        result = host.run(f"curl -sS --max-time 10 -u admin:{secrets['vault_prometheus_password']} '{url}'")
        body = json.loads(result.stdout or "{}")
        if body.get("status") != "success":
            failures.append(f"{uid} / {title}: {expr} -> {body.get('error', result.stderr)}")
    assert not failures, "\n".join(failures)


def test_grafana_plugin_installed_from_inventory(host):
    if not _on_grafana(host):
        pytest.skip("Grafana runs on obs-trixie")
    plugin = host.file("/var/lib/grafana/plugins/mdl-test-panel/plugin.json")
    assert plugin.exists
    assert json.loads(plugin.content_string)["info"]["version"] == "1.0.0"
    assert plugin.user == "grafana"


def test_grafana_api_datasource_managed_by_module(host, secrets):
    if not _on_grafana(host):
        pytest.skip("Grafana runs on obs-trixie")
    pw = secrets["vault_grafana_admin_password"]
    ds = curl_json(host, "http://127.0.0.1:3000/api/datasources/uid/alertmanager", "admin", pw)
    assert ds["type"] == "alertmanager"
    assert ds["basicAuth"] is True
    assert ds["secureJsonFields"].get("basicAuthPassword") is True
    assert secrets["vault_alertmanager_password"] not in json.dumps(ds)
