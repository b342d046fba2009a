"""TLS on the exporter-toolkit servers (Prometheus, Alertmanager, node_exporter) and
every client of them, in the mode the inventory says (obs_tls_enabled).

With TLS on, each server answers HTTPS with a certificate the environment's
CA verifies, refuses plain HTTP and unverified clients, keeps its key 0640
root:<service>, and Prometheus itself reports scraping and alerting over
https. With TLS off the same checks expect plain HTTP. Expected values come
from expected.yml (the inventory and the role variables).
"""

import pytest
from sandbox import curl_code, curl_json

# The readiness path of each server (basic auth where the role sets it).
SERVERS = {"prometheus": "/-/ready", "alertmanager": "/-/ready", "node_exporter": "/metrics"}
GROUP = {"prometheus": "prometheus", "alertmanager": "alertmanager", "node_exporter": "monitored"}


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
        # exporter-toolkit answers a plain request on its TLS port with 400, never the page.
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
        web = host.file(f"/etc/{service}/web.yml")
        assert not web.exists or "tls_server_config" not in web.content_string
        return
    user = want["users"][service]
    for path in (files["cert"], files["key"]):
        f = host.file(path)
        assert (f.user, f.group, f.mode) == ("root", user, 0o640), path
    ca = host.file(files["ca"])
    assert (ca.user, ca.mode) == ("root", 0o644)
    web = host.file(f"/etc/{service}/web.yml").content_string
    assert f"cert_file: {files['cert']}" in web and f"key_file: {files['key']}" in web
    # The certificate on the host is one the CA on the host verifies, for this host's name.
    name = host.backend.get_hostname()
    out = host.run(f"openssl verify -CAfile {files['ca']} -verify_hostname {name} {files['cert']}")
    if out.rc == 127:  # no openssl on the host: curl made the same check above
        return
    assert out.rc == 0, out.stdout + out.stderr


def test_prometheus_scrapes_and_alerts_over_the_inventory_scheme(host, want, secrets):
    """Evidence from Prometheus itself: the scrapeUrl of every TLS-capable job and the
    Alertmanager URLs it sends to carry the scheme, and those targets are up."""
    _deployed(want, "prometheus")
    scheme = "https" if want["tls"]["enabled"] else "http"
    auth = _auth(want, secrets, "prometheus")
    targets = curl_json(host, want["urls"]["prometheus"] + "/api/v1/targets?state=active", *auth)
    active = [
        t for t in targets["data"]["activeTargets"] if t["labels"]["job"] in ("prometheus", "alertmanager", "node")
    ]
    assert active, "no prometheus, alertmanager or node targets"
    wrong = [(t["labels"]["job"], t["scrapeUrl"], t["health"]) for t in active
             if not t["scrapeUrl"].startswith(scheme + "://") or t["health"] != "up"]  # fmt: skip
    assert not wrong, wrong
    ams = curl_json(host, want["urls"]["prometheus"] + "/api/v1/alertmanagers", *auth)["data"]["activeAlertmanagers"]
    assert ams and all(a["url"].startswith(scheme + "://") for a in ams), ams


def test_grafana_verifies_prometheus_with_the_ca(host, want, secrets):
    if not want["grafana"]:
        pytest.skip("Grafana is not in this host's groups")
    api, user = want["grafana_api"]["url"], want["grafana_api"]["admin_user"]
    ds = curl_json(host, f"{api}/api/datasources/uid/prometheus", user, secrets["vault_grafana_admin_password"])
    assert ds["url"] == want["grafana_api"]["prometheus_url"]
    assert ds["url"].startswith("https://" if want["tls"]["enabled"] else "http://")
    assert bool(ds["jsonData"].get("tlsAuthWithCACert")) == want["tls"]["enabled"]
    assert bool(ds["secureJsonFields"].get("tlsCACert")) == want["tls"]["enabled"]
