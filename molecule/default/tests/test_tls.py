"""TLS on the exporter-toolkit servers (Prometheus, Alertmanager, node_exporter), the
dskit servers (Loki, Promtail; stand-ins here), postgres_exporter (the same
exporter-toolkit, Debian's package), Jaeger's collector servers and
every client of them, in the mode the inventory says (obs_tls_enabled).

With TLS on, each server answers HTTPS with a certificate the environment's
CA verifies, refuses plain HTTP and unverified clients, keeps its key 0640
root:<service>, and Prometheus itself reports scraping and alerting over
https. With TLS off the same checks expect plain HTTP. Expected values come
from expected.yml (the inventory and the role variables).
"""

import json

import pytest
import yaml
from sandbox import curl_code, curl_json, curl_text

# The readiness path of each server (basic auth where the role sets it).
SERVERS = {"prometheus": "/-/ready", "alertmanager": "/-/ready", "node_exporter": "/metrics", "loki": "/ready",
           "promtail": "/ready", "jaeger": "/api/services", "postgres_exporter": "/metrics"}  # fmt: skip
GROUP = {"prometheus": "prometheus", "alertmanager": "alertmanager", "node_exporter": "monitored", "loki": "loki",
         "promtail": "monitored", "jaeger": "jaeger", "postgres_exporter": "postgres_exporter"}  # fmt: skip
# Where each server is told its certificate: the exporter-toolkit web config,
# dskit's server.http_tls_config in the (JSON) config.yaml, or the `tls:` of
# Jaeger's query HTTP server (every listener but internal telemetry has the same).
TLS_CONFIG = {
    "prometheus": ("/etc/prometheus/web.yml", lambda doc: doc.get("tls_server_config")),
    "alertmanager": ("/etc/alertmanager/web.yml", lambda doc: doc.get("tls_server_config")),
    "node_exporter": ("/etc/node_exporter/web.yml", lambda doc: doc.get("tls_server_config")),
    "postgres_exporter": ("/etc/postgres_exporter/web.yml", lambda doc: doc.get("tls_server_config")),
    "loki": ("/etc/loki/config.yaml", lambda doc: doc["server"].get("http_tls_config")),
    "promtail": ("/etc/promtail/config.yaml", lambda doc: doc["server"].get("http_tls_config")),
    "jaeger": ("/etc/jaeger/config.yaml", lambda doc: doc["extensions"]["jaeger_query"]["http"].get("tls")),
}


def _served_tls(host, service):
    """The TLS settings the service's live config gives it (None: plain HTTP)."""
    path, pick = TLS_CONFIG[service]
    f = host.file(path)
    if not f.exists:
        return None
    text = host.check_output(f"cat {path}")  # 0640 root:<service>: testinfra runs as root
    return pick(yaml.safe_load(text) or {})  # JSON is YAML too


def _auth(want, secrets, service):
    user = want["auth_usernames"].get(service, "")
    return (user, secrets[f"vault_{service}_password"]) if user else (None, None)


def _deployed(want, service):
    if GROUP[service] not in want["groups"]:
        pytest.skip(f"{service} is not deployed on this host (not in group {GROUP[service]})")


@pytest.mark.parametrize("service", SERVERS)
def test_server_speaks_the_scheme_the_inventory_says(host, want, secrets, service):
    _deployed(want, service)
    url = want["urls"][service] + SERVERS[service]
    assert url.startswith("https://" if want["tls"]["enabled"] else "http://"), url
    assert curl_code(host, url, *_auth(want, secrets, service)) == "200"
    if want["tls"]["enabled"]:
        plain = "http://" + url.split("://", 1)[1]
        # Go's TLS servers answer a plain request on their TLS port with 400, never the page.
        assert curl_code(host, plain, *_auth(want, secrets, service)) != "200"
        # With the public trust store instead of the environment's CA, curl must refuse the
        # certificate (exit 60: cannot verify it).
        result = host.run(f"curl -s -o /dev/null --max-time 5 --cacert /etc/ssl/certs/ca-certificates.crt '{url}'")
        assert result.rc == 60, (result.rc, result.stderr)


@pytest.mark.parametrize("service", SERVERS)
def test_key_and_certificate_are_root_and_service_only(host, want, service):
    _deployed(want, service)
    files = want["tls"]["files"][service]
    if not want["tls"]["enabled"]:
        assert _served_tls(host, service) is None
        return
    user = want["users"][service]
    for path in (files["cert"], files["key"]):
        f = host.file(path)
        assert (f.user, f.group, f.mode) == ("root", user, 0o640), path
    ca = host.file(files["ca"])
    assert (ca.user, ca.mode) == ("root", 0o644)
    served = _served_tls(host, service)
    assert (served["cert_file"], served["key_file"]) == (files["cert"], files["key"])
    # The certificate on the host is one the CA on the host verifies, for this host's name.
    name = host.backend.get_hostname()
    out = host.run(f"openssl verify -CAfile {files['ca']} -verify_hostname {name} {files['cert']}")
    if out.rc == 127:  # no openssl on the host: curl made the same check above
        return
    assert out.rc == 0, out.stdout + out.stderr


# The Prometheus jobs of those servers (Jaeger's job scrapes its plain-HTTP telemetry).
TLS_JOBS = {"prometheus", "alertmanager", "node", "loki", "promtail", "postgres"}


def test_prometheus_scrapes_and_alerts_over_the_inventory_scheme(host, want, secrets):
    """Evidence from Prometheus itself: the scrapeUrl of every TLS-capable job and the
    Alertmanager URLs it sends to carry the scheme, and those targets are up."""
    _deployed(want, "prometheus")
    scheme = "https" if want["tls"]["enabled"] else "http"
    auth = _auth(want, secrets, "prometheus")
    targets = curl_json(host, want["urls"]["prometheus"] + "/api/v1/targets?state=active", *auth)
    active = [t for t in targets["data"]["activeTargets"] if t["labels"]["job"] in TLS_JOBS]
    assert {t["labels"]["job"] for t in active} >= TLS_JOBS
    wrong = [(t["labels"]["job"], t["scrapeUrl"], t["health"]) for t in active
             if not t["scrapeUrl"].startswith(scheme + "://") or t["health"] != "up"]  # fmt: skip
    assert not wrong, wrong
    ams = curl_json(host, want["urls"]["prometheus"] + "/api/v1/alertmanagers", *auth)["data"]["activeAlertmanagers"]
    assert ams and all(a["url"].startswith(scheme + "://") for a in ams), ams


def test_promtail_pushes_to_loki_over_the_inventory_scheme(host, want):
    """Promtail's clients carry the scheme and the CA, and Promtail's own counters show it delivered."""
    _deployed(want, "promtail")
    scheme = "https" if want["tls"]["enabled"] else "http"
    config = json.loads(host.check_output("cat /etc/promtail/config.yaml"))
    for client in config["clients"]:
        assert client["url"].startswith(scheme + "://"), client["url"]
        ca = (client.get("tls_config") or {}).get("ca_file")
        assert ca == (want["tls"]["files"]["promtail"]["ca"] if want["tls"]["enabled"] else None)
    metrics = curl_text(host, want["urls"]["promtail"] + "/metrics")
    sent = [line for line in metrics.splitlines() if line.startswith("promtail_sent_entries_total{")]
    assert sent and all(float(line.rsplit(" ", 1)[1]) > 0 for line in sent), sent


@pytest.mark.parametrize("uid", ["prometheus", "loki", "jaeger"])
def test_grafana_verifies_its_datasources_with_the_ca(host, want, secrets, uid):
    if not want["grafana"]:
        pytest.skip("Grafana is not in this host's groups")
    api, user = want["grafana_api"]["url"], want["grafana_api"]["admin_user"]
    ds = curl_json(host, f"{api}/api/datasources/uid/{uid}", user, secrets["vault_grafana_admin_password"])
    assert ds["url"] == want["grafana_api"][f"{uid}_url"]
    assert ds["url"].startswith("https://" if want["tls"]["enabled"] else "http://")
    assert bool(ds["jsonData"].get("tlsAuthWithCACert")) == want["tls"]["enabled"]
    assert bool(ds["secureJsonFields"].get("tlsCACert")) == want["tls"]["enabled"]
