"""Behaviour of the converged stack, checked from inside each test host."""

import json
import re
import urllib.parse

import pytest
import yaml
from dashboards import queries
from sandbox import curl_args, curl_code, curl_json, curl_text, eventually

UNITS = ("node_exporter", "prometheus", "alertmanager")
# ProtectHome per unit: node_exporter's filesystem collector reads /home's mount.
PROTECT_HOME = {"node_exporter": "read-only", "prometheus": "yes", "alertmanager": "yes"}


# The inventory group a unit is deployed by; tests without a unit parameter are about the
# Prometheus (and Alertmanager) host. The application host runs only node_exporter of these.
GROUP_OF_UNIT = {"node_exporter": "monitored", "prometheus": "prometheus", "alertmanager": "alertmanager"}


@pytest.fixture(autouse=True)
def _deployed_here(request, want):
    callspec = getattr(request.node, "callspec", None)
    unit = (callspec.params.get("unit") or callspec.params.get("service")) if callspec else None
    group = GROUP_OF_UNIT.get(unit, "prometheus")
    if group not in want["groups"]:
        pytest.skip(f"{unit or 'this check'} is not deployed on this host (not in group {group})")


def _auth(want, secrets, service):
    return want["auth_usernames"][service], secrets[f"vault_{service}_password"]


@pytest.mark.parametrize("unit", UNITS)
def test_service_running_enabled(host, unit):
    service = host.service(unit)
    assert service.is_running
    assert service.is_enabled


@pytest.mark.parametrize("unit", UNITS)
def test_service_user_is_a_locked_system_account(host, unit, want):
    user = host.user(want["users"][unit])
    assert user.exists
    assert user.uid < 1000
    assert user.shell == "/usr/sbin/nologin"
    props = host.check_output(f"systemctl show {unit} -p User --value")
    assert props == want["users"][unit]


@pytest.mark.parametrize("unit", UNITS)
def test_running_unit_is_hardened(host, unit, want):
    out = host.check_output(
        f"systemctl show {unit} -p NoNewPrivileges -p ProtectSystem -p ProtectHome "
        "-p PrivateTmp -p PrivateDevices -p Restart -p CapabilityBoundingSet -p ReadWritePaths"
    )
    props = dict(line.split("=", 1) for line in out.splitlines())
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == PROTECT_HOME[unit]
    assert props["PrivateTmp"] == "yes"
    assert props["PrivateDevices"] == "yes"
    assert props["Restart"] == "on-failure"
    assert props["CapabilityBoundingSet"] == ""
    assert props["ReadWritePaths"] == want["storage"].get(unit, "")
    # The process itself runs with no_new_privs set, not just the unit file.
    pid = host.check_output(f"systemctl show {unit} -p MainPID --value")
    assert host.check_output(f"grep NoNewPrivs /proc/{pid}/status").split()[-1] == "1"


@pytest.mark.parametrize("unit", UNITS)
def test_installed_version_is_the_inventory_version(host, unit, want):
    """Archive installs run the binary of the pinned version and architecture, linked last."""
    install = want["install"][unit]
    if install["method"] != "archive":
        pytest.skip(f"{unit} is installed from the distro package on this host")
    link = host.file(f"/usr/local/bin/{unit}")
    assert link.is_symlink
    assert link.linked_to.startswith(
        f"/opt/observability/{unit}-{install['version']}/{unit}-{install['version']}.linux-{want['arch']}/"
    ), link.linked_to
    assert install["version"] in host.check_output(f"/usr/local/bin/{unit} --version 2>&1")


@pytest.mark.parametrize(
    "path,owner",
    [
        ("/etc/prometheus/prometheus.yml", "prometheus"),
        ("/etc/prometheus/web.yml", "prometheus"),
        ("/etc/alertmanager/alertmanager.yml", "alertmanager"),
        ("/etc/alertmanager/web.yml", "alertmanager"),
    ],
)
def test_secret_bearing_files_are_0640_root_service(host, path, owner, want):
    f = host.file(path)
    assert f.exists
    assert f.user == "root"
    assert f.group == want["users"][owner]
    assert f.mode == 0o640


@pytest.mark.parametrize("service", ["prometheus", "alertmanager"])
def test_web_config_stores_only_a_bcrypt_hash(host, service, secrets, want):
    content = host.file(f"/etc/{service}/web.yml").content_string
    username, password = _auth(want, secrets, service)
    assert password not in content
    rounds = int(want["bcrypt_rounds"][service])
    pattern = rf"^\s*{re.escape(username)}: \$2[aby]\${rounds:02d}\$[./A-Za-z0-9]{{53}}$"
    assert re.search(pattern, content, re.M), content


@pytest.mark.parametrize("service", ["prometheus", "alertmanager"])
def test_unauthenticated_api_is_refused(host, service, want):
    url = want["urls"][service] + ("/api/v1/targets" if service == "prometheus" else "/api/v2/status")
    assert curl_code(host, url) == "401"


def test_prometheus_and_alertmanager_ready(host, secrets, want):
    assert "Ready" in curl_text(host, want["urls"]["prometheus"] + "/-/ready", *_auth(want, secrets, "prometheus"))
    assert "OK" in curl_text(host, want["urls"]["alertmanager"] + "/-/ready", *_auth(want, secrets, "alertmanager"))
    assert "node_cpu_seconds_total" in curl_text(host, want["urls"]["node_exporter"] + "/metrics")


def test_every_inventory_target_is_up(host, secrets, want):
    """Real Prometheus scrapes real node_exporter, Prometheus and Alertmanager on every host:
    exactly the (job, instance) pairs the inventory generates, all up."""
    expected = {(job, instance) for job, instance, _address in want["targets"]}
    assert expected, "the inventory generates no targets"

    def check():
        url = want["urls"]["prometheus"] + "/api/v1/query?query=up"
        data = curl_json(host, url, *_auth(want, secrets, "prometheus"))
        seen = {(r["metric"]["job"], r["metric"]["instance"]): r["value"][1] for r in data["data"]["result"]}
        assert set(seen) == expected, f"targets {sorted(seen)} != expected {sorted(expected)}"
        down = {k: v for k, v in seen.items() if v != "1"}
        assert not down, f"targets not up: {down}"

    eventually(check)


def test_external_labels_come_from_inventory(host, secrets, want):
    data = curl_json(host, want["urls"]["prometheus"] + "/api/v1/status/config", *_auth(want, secrets, "prometheus"))
    live = yaml.safe_load(data["data"]["yaml"])["global"]["external_labels"]
    assert live == want["external_labels"]


def test_prometheus_sends_to_every_alertmanager(host, secrets, want):
    def check():
        data = curl_json(
            host, want["urls"]["prometheus"] + "/api/v1/alertmanagers", *_auth(want, secrets, "prometheus")
        )
        urls = sorted(a["url"] for a in data["data"]["activeAlertmanagers"])
        assert urls == sorted(want["alertmanager_urls"])

    eventually(check)


def test_alertmanager_config_loaded_and_clustered(host, secrets, want):
    auth = _auth(want, secrets, "alertmanager")
    status = curl_json(host, want["urls"]["alertmanager"] + "/api/v2/status", *auth)
    # The API shows the loaded config re-marshalled (defaults filled in): compare what it names.
    loaded = yaml.safe_load(status["config"]["original"])
    on_disk = yaml.safe_load(host.file("/etc/alertmanager/alertmanager.yml").content_string)
    assert [r["name"] for r in loaded["receivers"]] == [r["name"] for r in on_disk["receivers"]]
    assert loaded["route"]["receiver"] == on_disk["route"]["receiver"]
    assert [r["receiver"] for r in loaded["route"]["routes"]] == [r["receiver"] for r in on_disk["route"]["routes"]]
    assert len(loaded.get("inhibit_rules", [])) == len(on_disk.get("inhibit_rules", []))
    metrics = curl_text(host, want["urls"]["alertmanager"] + "/metrics", *auth)
    assert re.search(r"^alertmanager_config_last_reload_successful 1$", metrics, re.M)
    peers = len({urllib.parse.urlsplit(u).hostname for u in want["alertmanager_urls"]})

    def clustered():
        st = curl_json(host, want["urls"]["alertmanager"] + "/api/v2/status", *auth)
        assert st["cluster"]["status"] == "ready"
        assert len(st["cluster"]["peers"]) == peers

    eventually(clustered)


def test_prometheus_config_reloaded_successfully(host, secrets, want):
    metrics = curl_text(host, want["urls"]["prometheus"] + "/metrics", *_auth(want, secrets, "prometheus"))
    assert re.search(r"^prometheus_config_last_reload_successful 1$", metrics, re.M)


def _rule_files(host):
    """Group name -> (alerting rule names, recording rule names) of the rule files on disk."""
    result = {}
    for path in host.check_output("ls /etc/prometheus/rules/*.rules.yml").split():
        for group in yaml.safe_load(host.file(path).content_string)["groups"]:
            rules = group.get("rules") or []
            result[group["name"]] = (
                sorted(r["alert"] for r in rules if "alert" in r),
                sorted(r["record"] for r in rules if "record" in r),
            )
    return result


def test_every_rule_group_loaded_without_evaluation_errors(host, secrets, want):
    """The rules of the rendered rule files are the ones loaded in the real Prometheus, and all evaluate cleanly."""
    on_disk = _rule_files(host)
    assert on_disk, "no rule files on the host"

    def check():
        data = curl_json(host, want["urls"]["prometheus"] + "/api/v1/rules", *_auth(want, secrets, "prometheus"))
        loaded = {
            g["name"]: (
                sorted(r["name"] for r in g["rules"] if r["type"] == "alerting"),
                sorted(r["name"] for r in g["rules"] if r["type"] == "recording"),
            )
            for g in data["data"]["groups"]
        }
        assert loaded == on_disk
        rules = [r for g in data["data"]["groups"] for r in g["rules"]]
        bad = {r["name"]: (r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"}
        assert not bad, f"rules not healthy: {bad}"

    eventually(check, timeout=120)


def test_rule_evaluation_failures_counter_is_zero(host, secrets, want):
    metrics = curl_text(host, want["urls"]["prometheus"] + "/metrics", *_auth(want, secrets, "prometheus"))
    failures = re.findall(r"^prometheus_rule_evaluation_failures_total\{[^}]*\} (\S+)$", metrics, re.M)
    assert failures, "no rule evaluation counters: are the rule groups loaded?"
    assert {float(v) for v in failures} == {0.0}


def test_watchdog_fires_and_is_routed_to_its_own_receiver(host, secrets, want):
    auth = _auth(want, secrets, "alertmanager")
    url = want["urls"]["alertmanager"] + "/api/v2/alerts?filter=alertname%3D%22Watchdog%22"

    def check():
        alerts = curl_json(host, url, *auth)
        assert alerts, "Watchdog is not active in Alertmanager"
        assert {r["name"] for a in alerts for r in a["receivers"]} == {"watchdog"}

    eventually(check, timeout=120)


def test_tested_candidate_is_what_runs(host, want):
    candidate = host.file("/etc/alertmanager/alertmanager.yml.candidate")
    live = host.file("/etc/alertmanager/alertmanager.yml")
    assert candidate.mode == 0o640
    assert candidate.group == want["users"]["alertmanager"]
    assert candidate.sha256sum == live.sha256sum


def test_grafana_ready_with_database_ok(host, want):
    if not want["grafana"]:
        pytest.skip("Grafana is not in this host's groups")
    assert host.service("grafana").is_running
    health = curl_json(host, want["grafana_api"]["url"] + "/api/health")
    assert health["database"] == "ok"
    ini = host.file("/etc/grafana/grafana.ini")
    assert ini.mode == 0o640
    assert ini.group == "grafana"
    assert "allow_sign_up = false" in ini.content_string


def test_grafana_datasource_and_dashboards_provisioned(host, secrets, want):
    if not want["grafana"]:
        pytest.skip("Grafana is not in this host's groups")
    pw = secrets["vault_grafana_admin_password"]
    api, user = want["grafana_api"]["url"], want["grafana_api"]["admin_user"]
    ds = curl_json(host, f"{api}/api/datasources/uid/prometheus", user, pw)
    assert ds["type"] == "prometheus"
    assert ds["isDefault"] is True
    assert ds["secureJsonFields"].get("basicAuthPassword") is True
    folder = want["grafana_api"]["folder_uid"]
    hits = curl_json(host, f"{api}/api/search?type=dash-db&folderUIDs={folder}", user, pw)
    assert sorted(h["uid"] for h in hits) == want["grafana_api"]["dashboard_uids"]


def test_every_dashboard_query_runs_on_real_prometheus(host, secrets, want):
    """Each PromQL query of files/dashboards executes without error against the real Prometheus."""
    failures = []
    for uid, title, expr in queries():
        url = want["urls"]["prometheus"] + "/api/v1/query?query=" + urllib.parse.quote(expr, safe="")
        user, password = _auth(want, secrets, "prometheus")
        result = host.run(f"curl -sS --max-time 10 {curl_args(url, user, password)}")
        body = json.loads(result.stdout or "{}")
        if body.get("status") != "success":
            failures.append(f"{uid} / {title}: {expr} -> {body.get('error', result.stderr)}")
    assert not failures, "\n".join(failures)


def test_grafana_plugin_installed_from_inventory(host, want):
    if not want["grafana"]:
        pytest.skip("Grafana is not in this host's groups")
    plugin = host.file("/var/lib/grafana/plugins/mdl-test-panel/plugin.json")
    assert plugin.exists
    assert json.loads(plugin.content_string)["info"]["version"] == "1.0.0"
    assert plugin.user == "grafana"


def test_grafana_api_datasource_managed_by_module(host, secrets, want):
    if not want["grafana"]:
        pytest.skip("Grafana is not in this host's groups")
    pw = secrets["vault_grafana_admin_password"]
    api, user = want["grafana_api"]["url"], want["grafana_api"]["admin_user"]
    ds = curl_json(host, f"{api}/api/datasources/uid/alertmanager", user, pw)
    assert ds["type"] == "alertmanager"
    assert ds["basicAuth"] is True
    assert ds["secureJsonFields"].get("basicAuthPassword") is True
    assert secrets["vault_alertmanager_password"] not in json.dumps(ds)
