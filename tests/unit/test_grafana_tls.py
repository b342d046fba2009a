"""Grafana over HTTPS (obs_tls_enabled): the grafana role's grafana.ini, served by the
Grafana STAND-IN (tests/standins/grafana; not Grafana), and the project's modules
verifying it.

The role's own render (fixtures/render_grafana.yml, preflight first) is what the
stand-in runs, with only the host paths moved under tmp_path through cfg:
overrides (the same command-line overrides Grafana has). Real clients check what
is served: curl and Python's ssl module. The modules (grafana_dashboards,
obs_grafana_datasource) verify the server with ca_path or with ca_cert (the CA as
PEM text, for plays delegated to the controller) and refuse a server the CA did
not sign with the URL and the reason.
"""

from __future__ import annotations

import configparser
import json
import socket
import ssl
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, assert_refused, load_ansible_module, render_role
from pki import new_key, pem, write_pki
from test_grafana_standin import ADMIN_PASSWORD, Standin, package  # noqa: F401  (package: a fixture)

sys.path.insert(0, str(REPO_ROOT / "plugins" / "filter"))
import tls

dash_mod = load_ansible_module("grafana_dashboards")
ds_mod = load_ansible_module("obs_grafana_datasource")
SECRET_KEY = "0123456789abcdef-unit"


def _secrets(**extra) -> dict:
    return {"grafana_admin_password": ADMIN_PASSWORD, "grafana_secret_key": SECRET_KEY, **extra}


def _render(tmp_path, extra: dict) -> tuple[configparser.ConfigParser, dict]:
    proc = render_role(tmp_path, "grafana", _secrets(**extra))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (tmp_path / "grafana.yaml").read_text()
    ini = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=None)
    ini.read_string(text)
    return ini, json.loads((tmp_path / "grafana.yaml.expected.json").read_text())


@pytest.fixture
def pki(tmp_path):
    return write_pki(tmp_path / "pki", "mon-1", names=("10.0.0.1",))


def test_tls_mode_serves_https_with_the_hosts_material(tmp_path, pki):
    ini, reach = _render(tmp_path, pki["vars"])
    files = tls.tls_files("grafana")
    server = dict(ini["server"])
    assert (server["protocol"], server["cert_file"], server["cert_key"]) == ("https", files["cert"], files["key"])
    assert server["min_tls_version"] == "TLS1.2"
    # Users reach Grafana over https: its session cookie must not travel over plain HTTP.
    assert ini["security"]["cookie_secure"] == "true"
    assert reach["local_url"].startswith("https://127.0.0.1:") and reach["ca"] == files["ca"]
    assert reach["api_url"] == "https://10.0.0.1:" + server["http_port"]


def test_plain_mode_has_no_tls_settings(tmp_path):
    ini, reach = _render(tmp_path, {"obs_tls_enabled": False})
    assert not {"protocol", "cert_file", "cert_key", "min_tls_version"} & set(ini["server"])
    assert ini["security"]["cookie_secure"] == "false"
    assert reach["local_url"].startswith("http://") and reach["api_url"].startswith("http://") and reach["ca"] == ""


def test_material_that_cannot_serve_is_refused_in_preflight(tmp_path, pki):
    proc = render_role(tmp_path, "grafana", _secrets(**{**pki["vars"], "obs_tls_key": pem(new_key())}))
    message = "grafana on mon-1 cannot serve TLS with the certificate from the inventory"
    assert_refused(proc, message, tmp_path, "grafana")
    # A certificate without the address the controller dials (grafana_api_url: 10.0.0.1).
    unnamed = write_pki(tmp_path / "unnamed", "mon-1")["vars"]
    assert_refused(render_role(tmp_path, "grafana", _secrets(**unnamed)), "10.0.0.1", tmp_path, "grafana")


def test_the_api_address_the_controller_dials_is_checked(tmp_path, pki):
    _, reach = _render(tmp_path, {**pki["vars"], "grafana_api_address": "127.0.0.1:13000"})
    assert reach["api_url"] == "https://127.0.0.1:13000"
    (tmp_path / "bad").mkdir()
    proc = render_role(tmp_path / "bad", "grafana", _secrets(grafana_api_address="grafana.example"))
    assert_refused(proc, "so must grafana_api_address (got grafana.example)", tmp_path / "bad", "grafana")
    # With TLS on, the certificate must name the host the controller dials.
    (tmp_path / "dns").mkdir()
    proc = render_role(tmp_path / "dns", "grafana", _secrets(**pki["vars"], grafana_api_address="grafana.internal:443"))
    assert_refused(proc, "grafana.internal", tmp_path / "dns", "grafana")


def _serve_the_render(package, tmp_path, pki, *overrides) -> Standin:  # noqa: F811
    """The stand-in running the role's grafana.ini, with host paths moved under tmp_path."""
    proc = render_role(tmp_path, "grafana", _secrets(**pki["vars"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    server = Standin(package["homepath"], tmp_path / "gs", tls=pki)
    server.ini.write_text((tmp_path / "grafana.yaml").read_text())
    server.args = [
        "cfg:server.http_addr=127.0.0.1",
        f"cfg:server.http_port={server.port}",
        f"cfg:server.cert_file={pki['cert']}",
        f"cfg:server.cert_key={pki['key']}",
        f"cfg:paths.data={server.data}",
        f"cfg:paths.logs={server.base}/log",
        f"cfg:paths.plugins={server.base}/plugins",
        f"cfg:paths.provisioning={server.prov}",
        *overrides,
    ]
    return server


def _curl(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", *args, url],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_the_rendered_ini_serves_https_that_only_the_ca_verifies(package, tmp_path, pki):  # noqa: F811
    server = _serve_the_render(package, tmp_path, pki).start()
    try:
        health = server.url + "/api/health"
        assert _curl(health, "--cacert", pki["ca"]).stdout == "200"
        # The public trust store does not know the environment's CA: curl exit 60.
        assert _curl(health, "--cacert", "/etc/ssl/certs/ca-certificates.crt").returncode == 60
        assert _curl("http://" + health.split("://", 1)[1]).stdout != "200"
        # TLS 1.2, the role's minimum, is accepted. (Below it OpenSSL refuses on its own, so
        # the minimum is proven by raising it to TLS1.3 in the next test.)
        assert _handshake(server.port, pki["ca"], ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    finally:
        assert server.stop() == 0


def _handshake(port: int, ca: str, version: ssl.TLSVersion) -> str:
    context = ssl.create_default_context(cafile=ca)
    context.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            return conn.version()


def test_min_tls_version_is_honoured_and_checked(package, tmp_path, pki):  # noqa: F811
    server = _serve_the_render(package, tmp_path, pki, "cfg:server.min_tls_version=TLS1.3").start()
    try:
        with pytest.raises(ssl.SSLError):
            _handshake(server.port, pki["ca"], ssl.TLSVersion.TLSv1_2)
        assert _handshake(server.port, pki["ca"], ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    finally:
        assert server.stop() == 0
    bad = _serve_the_render(package, tmp_path / "bad", pki, "cfg:server.min_tls_version=TLS1.0")
    proc = subprocess.run(bad.command(), capture_output=True, text=True, timeout=20, check=False)
    assert proc.returncode == 1 and "unknown min_tls_version 'TLS1.0'" in proc.stderr


@pytest.fixture
def https_standin(package, tmp_path, pki):  # noqa: F811
    server = Standin(package["homepath"], tmp_path / "gs", tls=pki).start()
    yield server
    assert server.stop() == 0


def _dashboards_dir(tmp_path):
    directory = tmp_path / "dashboards"
    directory.mkdir()
    board = {"uid": "tls-board", "title": "TLS board", "schemaVersion": 39, "panels": []}
    (directory / "tls-board.json").write_text(json.dumps(board))
    return directory


def test_modules_verify_grafana_with_ca_path_or_ca_cert(https_standin, run_module, tmp_path, pki):
    base = {"url": https_standin.url, "url_username": "admin", "url_password": ADMIN_PASSWORD}
    dash = {**base, "path": str(_dashboards_dir(tmp_path)), "folder": "TLS", "folder_uid": "tls"}
    first = run_module(dash_mod.main, {**dash, "ca_cert": pki["pem"]["ca"]})
    assert "failed" not in first, first["msg"]
    assert first["created"] == ["tls-board"]
    again = run_module(dash_mod.main, {**dash, "ca_path": pki["ca"]})
    assert (again.get("failed"), again["changed"]) == (None, False)
    # Evidence from the server: the dashboard is there, in the folder.
    stored = https_standin.req("GET", "/api/dashboards/uid/tls-board").json()
    assert stored["meta"]["folderUid"] == "tls"
    ds = {**base, "uid": "tls-prom", "name": "TLS Prometheus", "type": "prometheus", "ds_url": "https://prom:9090"}
    created = run_module(ds_mod.main, {**ds, "ca_cert": pki["pem"]["ca"]})
    assert "failed" not in created and created["changed"] is True, created.get("msg")
    assert https_standin.req("GET", "/api/datasources/uid/tls-prom").status_code == 200


def test_modules_refuse_a_server_their_ca_did_not_sign(https_standin, run_module, tmp_path, pki):
    foreign = write_pki(tmp_path / "foreign", "mon-1")
    dash = {"url": https_standin.url, "url_username": "admin", "url_password": ADMIN_PASSWORD,
            "path": str(_dashboards_dir(tmp_path)), "folder": "TLS"}  # fmt: skip
    for ca in ({"ca_cert": foreign["pem"]["ca"]}, {"ca_path": foreign["ca"]}, {}):
        result = run_module(dash_mod.main, {**dash, **ca})
        assert result["failed"] is True, ca
        assert https_standin.url in result["msg"] and "CERTIFICATE_VERIFY_FAILED" in result["msg"], result["msg"]
    both = run_module(dash_mod.main, {**dash, "ca_cert": pki["pem"]["ca"], "ca_path": pki["ca"]})
    assert both["failed"] is True and "mutually exclusive: ca_path|ca_cert" in both["msg"], both["msg"]
    not_pem = run_module(dash_mod.main, {**dash, "ca_cert": "not a certificate"})
    assert not_pem["failed"] is True and "cannot use ca_cert: it holds no PEM certificate" in not_pem["msg"]
    # Nothing was written by the refused runs.
    assert https_standin.req("GET", "/api/folders").json() == []
