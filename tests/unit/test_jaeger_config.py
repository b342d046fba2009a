"""Jaeger v2's config.yaml as the jaeger role renders it, checked by the real `jaeger validate`.

Rendered through ansible-playbook (fixtures/render_jaeger.yml) with the role's
preflight first, so a bad input must be refused there, with a message that
names it, before any file is written. With obs_tls_enabled the rendered config
also runs: the real binary on free loopback ports, its TLS listeners checked
with the CA (and refused without it or in plain text), a span sent over OTLP
HTTPS and gRPC and read back through the query APIs.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import pytest
import requests
import yaml
from conftest import REPO_ROOT, assert_refused, free_port, render_role, rendered_config, require_tool, stop_process
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pki import new_key, pem, write_pki

sys.path.insert(0, str(REPO_ROOT / "plugins" / "filter"))
sys.path.insert(0, str(REPO_ROOT / "tests" / "lib"))
import tls
from otlp import ExportFailed, send_span


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


# --------------------------------------------------------------------------
# TLS (obs_tls_enabled): every listener but internal telemetry serves TLS
# --------------------------------------------------------------------------

# The role variables of the listeners that serve TLS (_jaeger_listen less the metrics endpoint).
TLS_LISTENERS = (
    "jaeger_otlp_grpc_listen_address",
    "jaeger_otlp_http_listen_address",
    "jaeger_query_listen_address",
    "jaeger_query_grpc_listen_address",
    "jaeger_health_listen_address",
)
GRPC_LISTENERS = ("jaeger_otlp_grpc_listen_address", "jaeger_query_grpc_listen_address")
PLAIN_HTTPS = "Client sent an HTTP request to an HTTPS server."
# A gRPC method each gRPC listener serves; an empty message is a valid request to both.
GRPC_METHODS = {
    "jaeger_otlp_grpc_listen_address": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "jaeger_query_grpc_listen_address": "/jaeger.api_v2.QueryService/GetServices",
}


def _tls_pki(tmp_path) -> dict:
    # fixtures/inventory.yml: jaeger[0] is mon-2, dialled as mon-2.obs.internal (obs_address) and 10.0.0.2.
    return write_pki(tmp_path / "pki", "mon-2", names=("mon-2.obs.internal", "10.0.0.2"))


def _tls_blocks(node, where=""):
    """(path, value) of every `tls` key in the config."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "tls":
                yield where, value
            else:
                yield from _tls_blocks(value, f"{where}.{key}" if where else key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _tls_blocks(value, f"{where}[{i}]")


def test_tls_puts_the_hosts_certificate_on_every_listener_but_telemetry(tmp_path):
    extra = {**_tls_pki(tmp_path)["vars"], "jaeger_thrift_http_enabled": True}
    config = rendered_config(tmp_path, "jaeger", extra)
    files = tls.tls_files("jaeger")
    want = {"cert_file": files["cert"], "key_file": files["key"], "min_version": "1.2"}
    assert dict(_tls_blocks(config)) == {
        "receivers.otlp.protocols.grpc": want,
        "receivers.otlp.protocols.http": want,
        "receivers.jaeger.protocols.thrift_http": want,
        "extensions.jaeger_query.http": want,
        "extensions.jaeger_query.grpc": want,
        "extensions.healthcheckv2.http": want,
    }
    proc = _validate(tmp_path / "jaeger.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Written without YAML anchors: each listener reads as a whole.
    assert "&id" not in (tmp_path / "jaeger.yaml").read_text()
    expected = json.loads((tmp_path / "jaeger.yaml.expected.json").read_text())
    assert expected["ca"] == files["ca"]
    assert expected["ready_url"] == "https://127.0.0.1:13133/status"
    assert expected["query_url"].startswith("https://") and expected["otlp_http_url"].startswith("https://")
    assert expected["metrics_url"] == "http://127.0.0.1:18888/metrics"

    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    plain = rendered_config(plain_dir, "jaeger", {"obs_tls_enabled": False, "jaeger_thrift_http_enabled": True})
    assert not dict(_tls_blocks(plain))
    plain_expected = json.loads((plain_dir / "jaeger.yaml.expected.json").read_text())
    assert plain_expected["ca"] == "" and plain_expected["ready_url"] == "http://127.0.0.1:13133/status"


def test_tls_material_that_cannot_serve_is_refused_in_preflight(tmp_path):
    pki = _tls_pki(tmp_path)
    bad_key = {**pki["vars"], "obs_tls_key": pem(new_key())}
    refused = "jaeger on mon-2 cannot serve TLS with the certificate from the inventory"
    assert_refused(render_role(tmp_path, "jaeger", bad_key), refused, tmp_path, "jaeger")
    assert_refused(render_role(tmp_path, "jaeger", bad_key), "the private key does not match", tmp_path, "jaeger")
    # A certificate without obs_address, the name the applications and Grafana dial.
    unnamed = write_pki(tmp_path / "unnamed", "mon-2", names=("10.0.0.2",))["vars"]
    assert_refused(render_role(tmp_path, "jaeger", unnamed), "does not name mon-2.obs.internal", tmp_path, "jaeger")


class _Jaeger:
    """The real jaeger binary on free loopback ports with the config the role renders for TLS."""

    def __init__(self, work, pki: dict):
        self.addr = {var: f"127.0.0.1:{free_port()}" for var in (*TLS_LISTENERS, "jaeger_metrics_listen_address")}
        config = rendered_config(work, "jaeger", {**pki["vars"], **self.addr})
        self.expected = json.loads((work / "jaeger.yaml.expected.json").read_text())
        # The host paths of the material (tls_files) become this test's files.
        files = tls.tls_files("jaeger")
        blocks = dict(_tls_blocks(config))
        assert len(blocks) == len(TLS_LISTENERS), blocks
        for block in blocks.values():
            assert (block["cert_file"], block["key_file"]) == (files["cert"], files["key"])
            block.update(cert_file=pki["cert"], key_file=pki["key"])
        self.config_path = work / "jaeger-test.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = work / "jaeger.log"
        self.pki = pki
        self.proc = None

    def start(self):
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(require_tool("jaeger")), f"--config=file:{self.config_path}"], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"jaeger exited {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(requests.ConnectionError):
                # The role's readiness URL, verified against the CA as its readiness gate does.
                if _session(self.pki["ca"]).get(self.expected["ready_url"], timeout=2).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"{self.expected['ready_url']} never answered 200:\n{self.log_path.read_text()}")
            time.sleep(0.2)

    def stop(self):
        stop_process(self.proc)


def _session(ca=None) -> requests.Session:
    """requests without the environment (REQUESTS_CA_BUNDLE would replace the CA); verifies with ``ca``
    or, without one, the default trust store."""
    session = requests.Session()
    session.trust_env = False
    if ca:
        session.verify = ca
    return session


def _grpc_call(address: str, method: str, credentials=None) -> bytes:
    """One unary call with an empty request; plaintext without ``credentials``."""
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    with channel:
        call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        return call(b"", timeout=5)


@pytest.fixture(scope="module")
def jaeger_tls(tmp_path_factory):
    work = tmp_path_factory.mktemp("jaeger-tls")
    server = _Jaeger(work, _tls_pki(work)).start()
    yield server
    server.stop()


def test_every_tls_listener_presents_the_hosts_certificate(jaeger_tls):
    served = x509.load_pem_x509_certificate(jaeger_tls.pki["pem"]["cert"].encode())
    for var in TLS_LISTENERS:
        host, port = jaeger_tls.addr[var].rsplit(":", 1)
        context = ssl.create_default_context(cafile=jaeger_tls.pki["ca"])
        context.set_alpn_protocols(["h2", "http/1.1"])
        with (
            socket.create_connection((host, int(port)), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=host) as conn,
        ):
            assert conn.getpeercert(binary_form=True) == served.public_bytes(Encoding.DER), var
            assert conn.version() in ("TLSv1.2", "TLSv1.3"), var
        # Without the CA (the default trust store) the same handshake fails verification.
        with (
            socket.create_connection((host, int(port)), timeout=5) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            ssl.create_default_context().wrap_socket(raw, server_hostname=host)


def test_plain_clients_are_refused_and_telemetry_stays_plain_http(jaeger_tls):
    for var in TLS_LISTENERS:
        if var in GRPC_LISTENERS:
            with pytest.raises(grpc.RpcError) as err:
                _grpc_call(jaeger_tls.addr[var], GRPC_METHODS[var])
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, var
        else:
            resp = _session().get(f"http://{jaeger_tls.addr[var]}/", timeout=5)
            assert (resp.status_code, resp.text.strip()) == (400, PLAIN_HTTPS), var
    # The Prometheus reader has no TLS server: Prometheus scrapes it over http.
    metrics = _session().get(jaeger_tls.expected["metrics_url"], timeout=5)
    assert metrics.status_code == 200 and "otelcol_process_uptime_seconds_total" in metrics.text


def test_a_span_sent_over_otlp_https_is_returned_by_the_query_api_over_https(jaeger_tls, monkeypatch):
    ca = jaeger_tls.pki["ca"]
    # An environment CA bundle must not replace the CA the caller names.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ssl.get_default_verify_paths().openssl_cafile)
    service = f"tls-probe-{uuid.uuid4().hex[:8]}"
    trace_id = send_span("http", jaeger_tls.expected["otlp_http_url"], service, "over-https", ca=ca)
    query = _session(ca)
    deadline = time.monotonic() + 20
    while (
        resp := query.get(f"{jaeger_tls.expected['query_url']}/api/traces/{trace_id}", timeout=5)
    ).status_code != 200:
        assert resp.status_code == 404 and time.monotonic() < deadline, resp.text
        time.sleep(0.3)
    trace = resp.json()["data"][0]
    span = trace["spans"][0]
    assert span["operationName"] == "over-https"
    assert trace["processes"][span["processID"]]["serviceName"] == service
    assert service in query.get(f"{jaeger_tls.expected['query_url']}/api/services", timeout=5).json()["data"]
    # Without the CA the query API fails verification.
    with pytest.raises(requests.exceptions.SSLError):
        _session().get(f"{jaeger_tls.expected['query_url']}/api/services", timeout=5)
    # send_span's ca is the CA it trusts: another CA's clients cannot export.
    stranger = write_pki(jaeger_tls.config_path.parent / "stranger")
    with pytest.raises(ExportFailed):
        send_span("http", jaeger_tls.expected["otlp_http_url"], service, ca=stranger["ca"])


def test_a_span_sent_over_otlp_grpc_tls_is_returned_by_the_query_grpc_api(jaeger_tls):
    ca = jaeger_tls.pki["ca"]
    service = f"tls-grpc-probe-{uuid.uuid4().hex[:8]}"
    send_span("grpc", jaeger_tls.expected["otlp_grpc_endpoint"], service, ca=ca)
    credentials = grpc.ssl_channel_credentials(root_certificates=Path(ca).read_bytes())
    method = GRPC_METHODS["jaeger_query_grpc_listen_address"]
    deadline = time.monotonic() + 20
    # GetServicesResponse: field 1, the service names (length-delimited strings).
    while service.encode() not in _grpc_call(jaeger_tls.addr["jaeger_query_grpc_listen_address"], method, credentials):
        assert time.monotonic() < deadline, f"{service} never listed by the query gRPC API"
        time.sleep(0.3)


# --------------------------------------------------------------------------
# The query service's own tracing (jaeger_query enable_tracing, on upstream)
# --------------------------------------------------------------------------


def test_query_self_tracing_is_off_by_default_and_refused_with_tls(tmp_path):
    query = rendered_config(tmp_path, "jaeger", {"obs_tls_enabled": False})["extensions"]["jaeger_query"]
    assert query["enable_tracing"] is False
    (tmp_path / "on").mkdir()
    on = rendered_config(tmp_path / "on", "jaeger", {"obs_tls_enabled": False, "jaeger_query_self_tracing": True})
    assert on["extensions"]["jaeger_query"]["enable_tracing"] is True
    (tmp_path / "tls").mkdir()
    proc = render_role(
        tmp_path / "tls", "jaeger", {**_tls_pki(tmp_path / "tls")["vars"], "jaeger_query_self_tracing": True}
    )
    assert_refused(proc, "jaeger_query_self_tracing exports the query service's spans over plaintext OTLP gRPC",
                   tmp_path / "tls", "jaeger")  # fmt: skip


def test_a_tls_jaeger_stops_promptly_after_serving_queries(tmp_path):
    """With upstream's self-tracing the query spans' plaintext export fails and a stop waits 10 s to flush them."""
    server = _Jaeger(tmp_path, _tls_pki(tmp_path)).start()
    ca = server.pki["ca"]
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=Path(ca).read_bytes())
        method = GRPC_METHODS["jaeger_query_grpc_listen_address"]
        _grpc_call(server.addr["jaeger_query_grpc_listen_address"], method, credentials)
        assert _session(ca).get(f"{server.expected['query_url']}/api/services", timeout=5).status_code == 200
    finally:
        started = time.monotonic()
        server.stop()
        took = time.monotonic() - started
    log = server.log_path.read_text()
    assert took < 5, f"jaeger took {took:.1f} s to stop after SIGTERM:\n{log[-3000:]}"
    assert "traces export" not in log, log[-3000:]
