"""TLS on the exporter-toolkit servers (Prometheus, Alertmanager, node_exporter), the
dskit servers (Loki, Promtail; stand-ins here), postgres_exporter (the same
exporter-toolkit, Debian's package), Jaeger's collector servers, Grafana (its
[server] settings; the stand-in here) and every client of them, in the mode the inventory says (obs_tls_enabled).

With TLS on, each server answers HTTPS with a certificate the environment's
CA verifies, refuses plain HTTP and unverified clients, keeps its key 0640
root:<service>, and Prometheus itself reports scraping and alerting over
https. With TLS off the same checks expect plain HTTP. Expected values come
from expected.yml (the inventory and the role variables).
"""

import configparser
import json
import time

import pytest
import yaml
from sandbox import curl_code, curl_json, curl_text

# The readiness path of each server (basic auth where the role sets it).
SERVERS = {"prometheus": "/-/ready", "alertmanager": "/-/ready", "node_exporter": "/metrics", "loki": "/ready",
           "promtail": "/ready", "jaeger": "/api/services", "postgres_exporter": "/metrics",
           "grafana": "/api/health"}  # fmt: skip
GROUP = {"prometheus": "prometheus", "alertmanager": "alertmanager", "node_exporter": "monitored", "loki": "loki",
         "promtail": "monitored", "jaeger": "jaeger", "postgres_exporter": "postgres_exporter",
         "grafana": "grafana"}  # fmt: skip
# Where each server is told its certificate: the exporter-toolkit web config,
# dskit's server.http_tls_config in the (JSON) config.yaml, or the `tls:` of
# Jaeger's query HTTP server (every listener but internal telemetry has the same),
# or grafana.ini's [server] (an ini file).
TLS_CONFIG = {
    "prometheus": ("/etc/prometheus/web.yml", lambda doc: doc.get("tls_server_config")),
    "alertmanager": ("/etc/alertmanager/web.yml", lambda doc: doc.get("tls_server_config")),
    "node_exporter": ("/etc/node_exporter/web.yml", lambda doc: doc.get("tls_server_config")),
    "postgres_exporter": ("/etc/postgres_exporter/web.yml", lambda doc: doc.get("tls_server_config")),
    "loki": ("/etc/loki/config.yaml", lambda doc: doc["server"].get("http_tls_config")),
    "promtail": ("/etc/promtail/config.yaml", lambda doc: doc["server"].get("http_tls_config")),
    "jaeger": ("/etc/jaeger/config.yaml", lambda doc: doc["extensions"]["jaeger_query"]["http"].get("tls")),
    "grafana": ("/etc/grafana/grafana.ini", lambda ini: (
        {"cert_file": ini.get("server", "cert_file"), "key_file": ini.get("server", "cert_key")}
        if ini.get("server", "protocol", fallback="http") == "https" else None)),
}  # fmt: skip


def _served_tls(host, service):
    """The TLS settings the service's live config gives it (None: plain HTTP)."""
    path, pick = TLS_CONFIG[service]
    f = host.file(path)
    if not f.exists:
        return None
    text = host.check_output(f"cat {path}")  # 0640 root:<service>: testinfra runs as root
    if path.endswith(".ini"):
        ini = configparser.ConfigParser(interpolation=None)
        ini.read_string(text)
        return pick(ini)
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


# Connects to the gossip port over TLS with the CA (and the host's key pair when given)
# and reports whether the peer kept the connection: with RequireAndVerifyClientCert a
# TLS 1.3 server sends its refusal after the handshake, so the first read tells.
_GOSSIP_PROBE = """
import socket, ssl, sys
ip, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
if len(sys.argv) > 4:
    ctx.load_cert_chain(sys.argv[4], sys.argv[5])
try:
    s = ctx.wrap_socket(socket.create_connection((ip, port), 5), server_hostname=ip)
    s.settimeout(2)
    s.recv(1)
    print("closed")
except TimeoutError:
    print("kept")
except (ssl.SSLError, OSError) as exc:
    print("refused", exc)
"""


def _check_gossip(host, want, secrets):
    """Evidence from the cluster itself: /api/v2/status lists every peer (this node at the
    address it advertises); with gossip over TLS the gossip port only keeps a client that shows
    a certificate the CA signed, and the config names the host's key pair and the CA."""
    _deployed(want, "alertmanager")
    cluster = want["alertmanager_cluster"]
    peers = len({u.split("://", 1)[1].rsplit(":", 1)[0] for u in want["alertmanager_urls"]})
    if peers < 2:
        pytest.skip("a single Alertmanager does not gossip")
    status = {}
    for _ in range(30):  # a converge may just have restarted the peers: they rejoin within seconds
        status = curl_json(host, want["urls"]["alertmanager"] + "/api/v2/status", *_auth(want, secrets, "alertmanager"))
        if status["cluster"]["status"] == "ready" and len(status["cluster"]["peers"]) == peers:
            break
        time.sleep(2)
    addresses = [p["address"] for p in status["cluster"]["peers"]]
    assert status["cluster"]["status"] == "ready" and len(addresses) == peers, status["cluster"]
    config = host.file("/etc/alertmanager/cluster-tls.yml")
    if not cluster["tls"]:
        assert not config.exists
        return
    assert cluster["advertise"] in addresses, (cluster["advertise"], addresses)
    files = want["tls"]["files"]["alertmanager"]
    assert (config.user, config.group, config.mode) == ("root", want["users"]["alertmanager"], 0o640)
    doc = yaml.safe_load(host.check_output("cat /etc/alertmanager/cluster-tls.yml"))
    assert doc["tls_server_config"]["client_auth_type"] == "RequireAndVerifyClientCert"
    assert doc["tls_server_config"]["client_ca_file"] == doc["tls_client_config"]["ca_file"] == files["ca"]
    ip, port = cluster["advertise"].rsplit(":", 1)
    probe = f"python3 -c '{_GOSSIP_PROBE}' {ip} {port} {files['ca']}"
    with_cert = host.check_output(f"{probe} {files['cert']} {files['key']}")
    assert with_cert == "kept", with_cert
    without = host.check_output(probe)
    assert without.startswith("refused"), without


def test_alertmanager_gossip_follows_the_inventory_mode(host, want, secrets):
    """The inventory's mode (alertmanager_cluster_tls, off by default: see the role's defaults)."""
    _check_gossip(host, want, secrets)


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
