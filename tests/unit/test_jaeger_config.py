"""Jaeger v2's config.yaml as the jaeger role renders it, checked by the real `jaeger validate`.

Rendered through ansible-playbook (fixtures/render_jaeger.yml) with the role's
preflight first, so a bad input must be refused there, with a message that
names it, before any file is written.
"""

from __future__ import annotations

import subprocess

import pytest
from conftest import assert_refused, render_role, rendered_config, require_tool


def _validate(path) -> subprocess.CompletedProcess:
    jaeger = require_tool("jaeger")
    return subprocess.run(
        [str(jaeger), "validate", f"--config=file:{path}"], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"jaeger_storage_backend": "badger"},
        {"jaeger_thrift_http_enabled": True, "jaeger_log_level": "debug"},
    ],
    ids=["memory-default", "badger", "thrift-http"],
)
def test_rendered_config_passes_jaeger_validate(tmp_path, extra):
    rendered_config(tmp_path, "jaeger", extra)
    proc = _validate(tmp_path / "jaeger.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_defaults_bind_every_listener_and_keep_spans_in_bounded_memory(tmp_path):
    config = rendered_config(tmp_path, "jaeger")
    otlp = config["receivers"]["otlp"]["protocols"]
    # Upstream binds localhost by default; the role binds the configured address.
    assert (otlp["grpc"]["endpoint"], otlp["http"]["endpoint"]) == ("0.0.0.0:4317", "0.0.0.0:4318")
    assert "jaeger" not in config["receivers"]
    assert config["extensions"]["jaeger_storage"]["backends"]["traces"] == {"memory": {"max_traces": 50000}}
    assert config["service"]["pipelines"]["traces"]["processors"] == ["memory_limiter", "batch"]
    reader = config["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    # fixtures/inventory.yml sets this host's metrics port: the inventory wins over the default.
    assert (reader["host"], reader["port"]) == ("0.0.0.0", 18888)
    assert config["extensions"]["healthcheckv2"]["http"] == {"endpoint": "0.0.0.0:13133", "status": {"path": "/status"}}


def test_badger_keeps_spans_on_disk_with_a_ttl(tmp_path):
    config = rendered_config(tmp_path, "jaeger", {"jaeger_storage_backend": "badger", "jaeger_badger_span_ttl": "24h"})
    badger = config["extensions"]["jaeger_storage"]["backends"]["traces"]["badger"]
    assert badger == {
        "directories": {"keys": "/var/lib/jaeger/keys", "values": "/var/lib/jaeger/values"},
        "ephemeral": False,
        "ttl": {"spans": "24h"},
    }


def test_thrift_http_is_an_option_for_v1_clients(tmp_path):
    config = rendered_config(tmp_path, "jaeger", {"jaeger_thrift_http_enabled": True})
    assert config["receivers"]["jaeger"] == {"protocols": {"thrift_http": {"endpoint": "0.0.0.0:14268"}}}
    assert sorted(config["service"]["pipelines"]["traces"]["receivers"]) == ["jaeger", "otlp"]


def test_jaeger_validate_rejects_an_override_it_does_not_know(tmp_path):
    """The validation step can fail: an unknown key merged in through jaeger_config_overrides is refused."""
    rendered_config(tmp_path, "jaeger", {"jaeger_config_overrides": {"processors": {"batch": {"timeoutt": "1s"}}}})
    proc = _validate(tmp_path / "jaeger.yaml")
    assert proc.returncode != 0
    assert "timeoutt" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"jaeger_storage_backend": "cassandra"},
            "jaeger_storage_backend must be one of memory, badger (got 'cassandra')",
        ),
        ({"jaeger_otlp_grpc_listen_address": "4317"}, "jaeger_otlp_grpc_listen_address=4317"),
        ({"jaeger_query_listen_address": "0.0.0.0:4318"}, "two listeners share a port"),
        (
            {"jaeger_storage_backend": "badger", "jaeger_badger_directory": "/srv/jaeger"},
            "badger needs jaeger_badger_directory under /var/lib (got '/srv/jaeger'",
        ),
        ({"jaeger_storage_backend": "badger", "jaeger_badger_span_ttl": "2 days"}, "(got '2 days')"),
        ({"jaeger_memory_max_traces": 0}, "jaeger_memory_max_traces > 0 (got 0)"),
        ({"jaeger_memory_spike_limit_mib": 2048}, "jaeger_memory_limit_mib (1024) must exceed"),
    ],
    ids=["unknown-backend", "bad-listen", "port-clash", "badger-dir", "badger-ttl", "max-traces", "spike-limit"],
)
def test_bad_input_is_refused_in_preflight(tmp_path, extra, message):
    assert_refused(render_role(tmp_path, "jaeger", extra), message, tmp_path, "jaeger")
