"""node_exporter's preflight: one task refuses bad TLS material and bad variables.

node_exporter runs on every host of a fleet, so its preflight is a single
task (roles/service/tasks/tls_check.yml with service_preflight_problems)
instead of one per check. Rendered through ansible-playbook
(fixtures/render_node_exporter.yml): a bad input must be refused there,
naming it, before anything is written; several at once are all named.
"""

from __future__ import annotations

import sys

from conftest import REPO_ROOT, assert_refused, render_role, rendered_config
from pki import new_key, pem, write_pki

sys.path.insert(0, str(REPO_ROOT / "plugins" / "filter"))
import tls

ROLE = "node_exporter"
TLS_REFUSED = "node_exporter on mon-1 cannot serve TLS with the certificate from the inventory"
LISTEN_REFUSED = "node_exporter: node_exporter_listen_address must be host:port (got 9100)."


def _tls_vars(tmp_path) -> dict:
    # fixtures/inventory.yml: monitored[0] is mon-1, dialled as 10.0.0.1.
    return write_pki(tmp_path / "pki", "mon-1", names=("10.0.0.1",))["vars"]


def test_good_tls_material_renders_the_tls_web_config(tmp_path):
    config = rendered_config(tmp_path, ROLE, _tls_vars(tmp_path))
    files = tls.tls_files(ROLE)
    assert config["web_config"]["tls_server_config"]["cert_file"] == files["cert"]
    assert config["web_config"]["tls_server_config"]["key_file"] == files["key"]
    assert config["flags"]["web.config.file"] == "/etc/node_exporter/web.yml"


def test_a_bad_listen_address_is_refused(tmp_path):
    proc = render_role(tmp_path, ROLE, {**_tls_vars(tmp_path), "node_exporter_listen_address": "9100"})
    assert_refused(proc, LISTEN_REFUSED, tmp_path, ROLE)
    assert TLS_REFUSED not in proc.stdout


def test_a_key_that_is_not_the_certificates_is_refused(tmp_path):
    proc = render_role(tmp_path, ROLE, {**_tls_vars(tmp_path), "obs_tls_key": pem(new_key())})
    assert_refused(proc, TLS_REFUSED, tmp_path, ROLE)
    assert "node_exporter_listen_address" not in proc.stdout


def test_every_problem_is_named_at_once(tmp_path):
    bad = {**_tls_vars(tmp_path), "obs_tls_key": pem(new_key()), "node_exporter_listen_address": "9100"}
    proc = render_role(tmp_path, ROLE, bad)
    assert_refused(proc, LISTEN_REFUSED, tmp_path, ROLE)
    assert_refused(proc, TLS_REFUSED, tmp_path, ROLE)


def test_tls_material_is_not_checked_with_tls_off(tmp_path):
    config = rendered_config(tmp_path, ROLE, {**_tls_vars(tmp_path), "obs_tls_enabled": False,
                                               "obs_tls_key": pem(new_key())})  # fmt: skip
    assert "tls_server_config" not in config["web_config"]
