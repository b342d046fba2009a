"""Loki's and Promtail's configs as the loki and promtail roles render them.

Rendered through ansible-playbook (fixtures/render_loki.yml, render_promtail.yml)
with each role's preflight first: a bad input must be refused there, naming
it, before any file is written. The rendered files are then checked by the
stand-ins' own validators (tests/standins/loki, tests/standins/promtail:
``-verify-config`` and ``-check-syntax``), the same commands the roles run on
the hosts; real Loki and Promtail cannot be built here (see the README).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO_ROOT, assert_refused, render_role, rendered_config
from pki import new_key, pem, write_pki

sys.path.insert(0, str(REPO_ROOT / "plugins" / "filter"))
import tls

STANDINS = REPO_ROOT / "tests" / "standins"


def _check(tmp_path, role: str) -> subprocess.CompletedProcess:
    script = STANDINS / role / f"{role}_standin.py"
    flag = "-verify-config" if role == "loki" else "-check-syntax"
    cmd = [sys.executable, str(script), f"-config.file={tmp_path / f'{role}.yaml'}", flag]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


# --------------------------------------------------------------------------
# Loki
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [{}, {"loki_retention_period": "168h", "loki_log_level": "debug"}],
    ids=["defaults", "one-week"],
)
def test_loki_config_passes_verify_config(tmp_path, extra):
    rendered_config(tmp_path, "loki", extra)
    proc = _check(tmp_path, "loki")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_loki_defaults_single_binary_tsdb_v13_and_retention_on(tmp_path):
    config = rendered_config(tmp_path, "loki")
    assert config["target"] == "all" and config["auth_enabled"] is False
    (period,) = config["schema_config"]["configs"]
    assert (period["store"], period["schema"], period["object_store"], period["index"]["period"]) == (
        "tsdb",
        "v13",
        "filesystem",
        "24h",
    )
    # Upstream keeps logs forever unless retention is on and a period is set.
    assert config["compactor"]["retention_enabled"] is True
    assert config["compactor"]["delete_request_store"] == "filesystem"
    assert config["limits_config"]["retention_period"] == "744h"
    assert config["common"]["path_prefix"] == "/var/lib/loki"
    assert (config["server"]["http_listen_address"], config["server"]["http_listen_port"]) == ("0.0.0.0", 3100)


def test_loki_object_store_goes_to_its_storage_block(tmp_path):
    s3 = {"bucketnames": "mdl-logs", "region": "eu-west-1", "endpoint": "s3.eu-west-1.amazonaws.com"}
    config = rendered_config(tmp_path, "loki", {"loki_object_store": "s3", "loki_object_store_config": s3})
    assert config["storage_config"]["aws"] == s3
    assert config["schema_config"]["configs"][0]["object_store"] == "s3"
    assert config["compactor"]["delete_request_store"] == "s3"
    assert "storage" not in config["common"] or not config["common"]["storage"]


def test_loki_verify_config_rejects_an_unknown_key(tmp_path):
    """The validation step can fail: a misspelt key merged in through loki_config_overrides is refused."""
    rendered_config(tmp_path, "loki", {"loki_config_overrides": {"limits_config": {"retention_perod": "24h"}}})
    proc = _check(tmp_path, "loki")
    assert proc.returncode != 0
    assert "retention_perod" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"loki_object_store": "cassandra"}, "loki_object_store must be filesystem, s3, gcs, azure (got 'cassandra')"),
        ({"loki_object_store": "s3"}, "an object store needs loki_object_store_config"),
        ({"loki_retention_period": "12h"}, "at least 24h and a multiple of the 24h index period (got 12h)"),
        ({"loki_retention_period": "36h"}, "(got 36h)"),
        ({"loki_retention_period": "forever"}, "not a duration"),
        ({"loki_listen_address": "3100"}, "must be host:port on different ports"),
        ({"loki_storage_path": "/srv/loki"}, "loki_storage_path must be under /var/lib (got '/srv/loki'"),
    ],
    ids=[
        "unknown-store",
        "store-without-config",
        "retention-12h",
        "retention-36h",
        "retention-garbage",
        "listen",
        "path",
    ],
)
def test_loki_bad_input_is_refused_in_preflight(tmp_path, extra, message):
    assert_refused(render_role(tmp_path, "loki", extra), message, tmp_path, "loki")


# --------------------------------------------------------------------------
# Promtail
# --------------------------------------------------------------------------


def test_promtail_config_passes_check_syntax(tmp_path):
    rendered_config(tmp_path, "promtail")
    proc = _check(tmp_path, "promtail")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtail_pushes_to_every_loki_of_the_inventory(tmp_path):
    config = rendered_config(tmp_path, "promtail")
    # fixtures/inventory.yml: the loki group is mon-1 (ansible_host 10.0.0.1).
    assert [c["url"] for c in config["clients"]] == ["http://10.0.0.1:3100/loki/api/v1/push"]
    assert config["clients"][0]["external_labels"] == {"environment": "unit-test", "host": "mon-1"}
    assert config["positions"] == {"filename": "/var/lib/promtail/positions.yaml"}


def test_promtail_app_pipeline_keeps_ids_out_of_the_labels(tmp_path):
    config = rendered_config(tmp_path, "promtail")
    app = next(sc for sc in config["scrape_configs"] if sc["job_name"] == "mdl-api")
    assert app["static_configs"][0]["labels"] == {
        "job": "mdl-api",
        "service": "mdl-api",
        "__path__": "/var/log/mdl-api/*.log",
    }
    stages = {next(iter(stage)): stage[next(iter(stage))] for stage in app["pipeline_stages"]}
    assert stages["labels"] == {"level": ""}
    assert set(stages["structured_metadata"]) == {"trace_id", "span_id", "request_id", "correlation_id"}
    assert stages["json"]["expressions"]["request_id"] == "reqId"
    assert stages["timestamp"]["source"] == "time" and stages["timestamp"]["format"] == "UnixMs"


def test_promtail_journal_scrape_relabels_unit_and_level(tmp_path):
    config = rendered_config(tmp_path, "promtail")
    journal = next(sc for sc in config["scrape_configs"] if sc["job_name"] == "systemd-journal")
    assert journal["journal"]["max_age"] == "12h"
    assert {r["target_label"] for r in journal["relabel_configs"]} == {"unit", "level"}
    assert "systemd-journal" not in {
        sc["job_name"]
        for sc in rendered_config(tmp_path, "promtail", {"promtail_journal_enabled": False})["scrape_configs"]
    }


def test_promtail_check_syntax_rejects_an_unknown_stage(tmp_path):
    """The validation step can fail: a pipeline stage Promtail does not know is refused."""
    extra = {
        "promtail_extra_scrape_configs": [
            {
                "job_name": "x",
                "static_configs": [{"targets": ["localhost"], "labels": {"__path__": "/var/log/x.log"}}],
                "pipeline_stages": [{"jsonn": {}}],
            }
        ]
    }
    rendered_config(tmp_path, "promtail", extra)
    proc = _check(tmp_path, "promtail")
    assert proc.returncode != 0
    assert "jsonn" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"promtail_loki_group": "no_such_group"},
            "Promtail has no Loki to push to: the inventory group 'no_such_group' has no hosts",
        ),
        (
            {"promtail_json_labels": ["level", "trace_id"]},
            "trace_id would become a label, but is a high-cardinality field",
        ),
        ({"promtail_json_labels": ["request_id"]}, "request_id would become a label"),
        ({"promtail_json_labels": ["user_id"]}, "user_id would become a label"),
        ({"promtail_external_labels": {"host": "h", "trace_id": "x"}}, "trace_id would become a label"),
        (
            {"promtail_json_labels": ["status"]},
            "status in promtail_json_labels / promtail_structured_metadata must be a key",
        ),
        ({"promtail_listen_address": "9080"}, "promtail_listen_address must be host:port (got 9080)"),
        ({"promtail_app_logs": [{"job": "a", "service": "a", "path": "logs/*.log"}]}, "needs an absolute path glob"),
    ],
    ids=[
        "no-loki",
        "trace-id-label",
        "request-id-label",
        "user-id-label",
        "static-id-label",
        "unknown-field",
        "listen",
        "relative-path",
    ],
)
def test_promtail_bad_input_is_refused_in_preflight(tmp_path, extra, message):
    assert_refused(render_role(tmp_path, "promtail", extra), message, tmp_path, "promtail")


# --------------------------------------------------------------------------
# TLS (obs_tls_enabled): dskit's server.http_tls_config, Promtail's client tls_config
# --------------------------------------------------------------------------


def _tls_vars(tmp_path) -> dict:
    # fixtures/inventory.yml: loki[0] and monitored[0] are mon-1, dialled as 10.0.0.1.
    return write_pki(tmp_path / "pki", "mon-1", names=("10.0.0.1",))["vars"]


def test_loki_serves_https_with_the_hosts_certificate(tmp_path):
    config = rendered_config(tmp_path, "loki", _tls_vars(tmp_path))
    files = tls.tls_files("loki")
    assert config["server"]["http_tls_config"] == {"cert_file": files["cert"], "key_file": files["key"]}
    assert config["server"]["tls_min_version"] == "VersionTLS12"
    proc = _check(tmp_path, "loki")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plain = rendered_config(tmp_path / "plain", "loki", {"obs_tls_enabled": False})
    assert "http_tls_config" not in plain["server"]


def test_promtail_serves_https_and_verifies_loki_with_the_ca(tmp_path):
    config = rendered_config(tmp_path, "promtail", _tls_vars(tmp_path))
    files = tls.tls_files("promtail")
    assert [c["url"] for c in config["clients"]] == ["https://10.0.0.1:3100/loki/api/v1/push"]
    assert [c["tls_config"] for c in config["clients"]] == [{"ca_file": files["ca"], "min_version": "TLS12"}]
    assert config["server"]["http_tls_config"] == {"cert_file": files["cert"], "key_file": files["key"]}
    proc = _check(tmp_path, "promtail")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("role", ["loki", "promtail"])
def test_tls_material_that_cannot_serve_is_refused_in_preflight(tmp_path, role):
    bad_key = {**_tls_vars(tmp_path), "obs_tls_key": pem(new_key())}
    assert_refused(
        render_role(tmp_path, role, bad_key),
        f"{role} on mon-1 cannot serve TLS with the certificate from the inventory",
        tmp_path,
        role,
    )
    # A certificate without the address Prometheus and Promtail dial (10.0.0.1).
    unnamed = write_pki(tmp_path / "unnamed", "mon-1")["vars"]
    assert_refused(render_role(tmp_path, role, unnamed), "10.0.0.1", tmp_path, role)
