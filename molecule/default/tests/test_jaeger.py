"""Jaeger v2 on the hosts of the jaeger group: spans from the real OpenTelemetry SDK, read back from its query API.

With obs_tls_enabled every Jaeger listener but internal telemetry serves TLS:
the SDK on the controller then verifies it against the environment's CA."""

import json
import uuid
from pathlib import Path

import pytest
from otlp import ExportFailed, published, send_span
from sandbox import curl_args, curl_json, curl_text, eventually

# Debian's public trust store (on the controller and the hosts): no CA in it vouches for the sandbox's hosts.
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


@pytest.fixture
def jaeger(host, want):
    if not want["jaeger"]:
        pytest.skip("this host is not in the jaeger group")
    return want["jaeger_expect"]


@pytest.fixture
def controller_ca(want, tmp_path):
    """The environment's CA as a file on the controller (None with TLS off)."""
    if not want["tls"]["enabled"]:
        return None
    path = tmp_path / "ca.crt"
    path.write_text(want["tls"]["ca_pem"])
    return str(path)


def _otlp_endpoint(host, jaeger, protocol, ca):
    """Where the controller's SDK reaches this Jaeger (docker's published port):
    host:port for gRPC, a base URL for HTTP."""
    published_at = published(host.backend.get_hostname(), jaeger[f"otlp_{protocol}_port"])
    return published_at if protocol == "grpc" else f"{'https' if ca else 'http'}://{published_at}"


def _trace(host, jaeger, trace_id):
    """The trace as the query API returns it (/api/traces/<id>), or None when it does not know it."""
    out = host.run(f"curl -sS --max-time 5 {curl_args(jaeger['query_url'] + '/api/traces/' + trace_id)}")
    assert out.rc == 0, out.stderr
    data = json.loads(out.stdout)
    return (data.get("data") or [None])[0]


def _accepted(host, jaeger, transport):
    text = curl_text(host, jaeger["metrics_url"])
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("otelcol_receiver_accepted_spans_total{") and f'transport="{transport}"' in line
    )


def test_jaeger_running_hardened_and_healthy(host, jaeger):
    assert host.service("jaeger").is_running and host.service("jaeger").is_enabled
    status = curl_json(host, jaeger["ready_url"])
    assert status["healthy"] is True and status["status"] == "StatusOK", status
    out = host.check_output("systemctl show jaeger -p User -p ProtectSystem -p NoNewPrivileges -p ReadWritePaths")
    props = dict(line.split("=", 1) for line in out.splitlines())
    assert props["User"] == jaeger["user"]
    assert (props["ProtectSystem"], props["NoNewPrivileges"]) == ("strict", "yes")
    assert props["ReadWritePaths"] == (jaeger["badger_directory"] if jaeger["storage"] == "badger" else "")


def test_jaeger_runs_the_pinned_version(host, jaeger, want):
    link = host.file("/usr/local/bin/jaeger")
    assert link.is_symlink
    prefix = f"/opt/observability/jaeger-{jaeger['version']}/jaeger-{jaeger['version']}-linux-{want['arch']}/"
    assert link.linked_to.startswith(prefix), link.linked_to
    info = json.loads(host.check_output("/usr/local/bin/jaeger version 2>/dev/null"))
    assert info["gitVersion"] == f"v{jaeger['version']}", info


def test_live_config_is_the_validated_candidate(host, jaeger):
    live = host.file("/etc/jaeger/config.yaml")
    assert (live.user, live.group, oct(live.mode)) == ("root", jaeger["user"], "0o640")
    assert live.sha256sum == host.file("/etc/jaeger/config.yaml.candidate").sha256sum
    host.check_output("/usr/local/bin/jaeger validate --config=file:/etc/jaeger/config.yaml")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_span_from_the_opentelemetry_sdk_is_returned_by_the_query_api(host, jaeger, protocol, controller_ca):
    endpoint = _otlp_endpoint(host, jaeger, protocol, controller_ca)
    service = f"obs-test-{protocol}-{uuid.uuid4().hex[:8]}"
    before = _accepted(host, jaeger, protocol)
    trace_id = send_span(protocol, endpoint, service, "checkout", {"obs.synthetic": True}, ca=controller_ca)

    def stored():
        trace = _trace(host, jaeger, trace_id)
        assert trace is not None, f"trace {trace_id} not (yet) in Jaeger"
        return trace

    trace = eventually(stored, timeout=30, interval=1)
    (span,) = trace["spans"]
    assert span["traceID"] == trace_id and span["operationName"] == "checkout"
    assert trace["processes"][span["processID"]]["serviceName"] == service
    assert service in curl_json(host, f"{jaeger['query_url']}/api/services")["data"]
    # Jaeger's own telemetry counted it on that transport.
    assert _accepted(host, jaeger, protocol) >= before + 1


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_sdk_refuses_a_jaeger_its_ca_does_not_vouch_for(host, jaeger, want, protocol, tmp_path):
    """Over TLS the export fails against any other CA (here: one made for the test), so the
    verified exports above are proof that the certificate was checked."""
    if not want["tls"]["enabled"]:
        pytest.skip("TLS is off in this inventory")
    other = tmp_path / "other-ca.crt"
    other.write_text(Path(SYSTEM_CA).read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")
    with pytest.raises(ExportFailed):
        send_span(protocol, _otlp_endpoint(host, jaeger, protocol, str(other)), "obs-test-foreign-ca", ca=str(other))


LISTENERS = ["otlp_grpc", "otlp_http", "thrift_http", "query", "query_grpc", "health", "metrics"]


@pytest.mark.parametrize("listener", LISTENERS)
def test_listener_speaks_the_inventory_scheme(host, jaeger, want, listener):
    """Every listener but internal telemetry (its Prometheus reader has no TLS server) serves TLS with TLS on."""
    if listener not in jaeger["listen_ports"]:
        pytest.skip(f"{listener} is not enabled")
    port = jaeger["listen_ports"][listener]
    grpc = listener.endswith("grpc")
    tls = want["tls"]["enabled"] and listener != "metrics"
    if tls:
        # The handshake verifies against the environment's CA (curl rc 0, any HTTP answer; gRPC over h2 by ALPN)...
        ca = want["tls"]["ca"]
        out = host.run(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 --cacert {ca} https://localhost:{port}/")
        assert out.rc == 0 and out.stdout != "000", (out.rc, out.stdout, out.stderr)
        # ...and fails against the public trust store (exit 60).
        out = host.run(f"curl -s -o /dev/null --max-time 5 --cacert {SYSTEM_CA} https://localhost:{port}/")
        assert out.rc == 60, (out.rc, out.stderr)
    else:
        h2 = "--http2-prior-knowledge " if grpc else ""
        out = host.run(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 {h2}http://localhost:{port}/")
        assert out.rc == 0 and out.stdout != "000", (out.rc, out.stdout, out.stderr)


def test_an_unknown_trace_is_not_found(host, jaeger):
    """The lookup above can fail: a trace id that was never sent is not returned."""
    assert _trace(host, jaeger, uuid.uuid4().hex) is None


def test_restart_keeps_spans_only_on_disk_storage(host, jaeger, want, secrets, controller_ca):
    """badger keeps spans across a restart of Jaeger; the memory store loses them (so the check can fail)."""
    endpoint = _otlp_endpoint(host, jaeger, "http", controller_ca)
    trace_id = send_span("http", endpoint, f"obs-test-restart-{uuid.uuid4().hex[:8]}", ca=controller_ca)
    eventually(lambda: _assert_stored(host, jaeger, trace_id), timeout=30, interval=1)
    pid = host.check_output("systemctl show jaeger -p MainPID --value")
    host.check_output("systemctl restart jaeger")
    eventually(lambda: _assert_healthy(host, jaeger), timeout=60, interval=1)
    assert host.check_output("systemctl show jaeger -p MainPID --value") != pid
    found = _trace(host, jaeger, trace_id) is not None
    assert found == (jaeger["storage"] == "badger"), f"storage {jaeger['storage']}: trace kept={found}"
    # Prometheus scrapes Jaeger again before the next checks read its targets.
    user, password = want["auth_usernames"]["prometheus"], secrets["vault_prometheus_password"]
    query = f"{want['urls']['prometheus']}/api/v1/query?query=up%7Bjob%3D%22jaeger%22%7D"

    def scraped_again():
        result = curl_json(host, query, user, password)["data"]["result"]
        assert result and all(r["value"][1] == "1" for r in result), result

    eventually(scraped_again, timeout=60, interval=2)


def _assert_stored(host, jaeger, trace_id):
    assert _trace(host, jaeger, trace_id) is not None


def _assert_healthy(host, jaeger):
    out = host.run(f"curl -sS --max-time 2 {curl_args(jaeger['ready_url'])}")
    assert out.rc == 0 and json.loads(out.stdout).get("healthy") is True, out.stdout + out.stderr
    # The health extension can answer before the query server accepts connections.
    out = host.run(f"curl -sS -f --max-time 2 -o /dev/null {curl_args(jaeger['query_url'] + '/api/services')}")
    assert out.rc == 0, out.stderr


def test_grafana_jaeger_datasource_points_at_the_first_jaeger(host, secrets, want):
    if not want["grafana"]:
        pytest.skip("Grafana is not in this host's groups")
    api, user = want["grafana_api"]["url"], want["grafana_api"]["admin_user"]
    ds = curl_json(host, f"{api}/api/datasources/uid/jaeger", user, secrets["vault_grafana_admin_password"])
    assert (ds["type"], ds["url"]) == ("jaeger", want["grafana_api"]["jaeger_url"])
    assert ds["jsonData"]["tracesToMetrics"]["datasourceUid"] == "prometheus"
