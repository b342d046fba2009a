"""Jaeger v2 on the hosts of the jaeger group: spans from the real OpenTelemetry SDK, read back from its query API."""

import json
import uuid

import pytest
from otlp import published, send_span
from sandbox import curl_args, curl_json, curl_text, eventually


@pytest.fixture
def jaeger(host, want):
    if not want["jaeger"]:
        pytest.skip("this host is not in the jaeger group")
    return want["jaeger_expect"]


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
def test_span_from_the_opentelemetry_sdk_is_returned_by_the_query_api(host, jaeger, protocol):
    container = host.backend.get_hostname()
    port = jaeger[f"otlp_{protocol}_port"]
    endpoint = published(container, port) if protocol == "grpc" else f"http://{published(container, port)}"
    service = f"obs-test-{protocol}-{uuid.uuid4().hex[:8]}"
    before = _accepted(host, jaeger, protocol)
    trace_id = send_span(protocol, endpoint, service, "checkout", {"obs.synthetic": True})

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


def test_an_unknown_trace_is_not_found(host, jaeger):
    """The lookup above can fail: a trace id that was never sent is not returned."""
    assert _trace(host, jaeger, uuid.uuid4().hex) is None


def test_restart_keeps_spans_only_on_disk_storage(host, jaeger, want, secrets):
    """badger keeps spans across a restart of Jaeger; the memory store loses them (so the check can fail)."""
    container = host.backend.get_hostname()
    endpoint = f"http://{published(container, jaeger['otlp_http_port'])}"
    trace_id = send_span("http", endpoint, f"obs-test-restart-{uuid.uuid4().hex[:8]}")
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


def test_grafana_jaeger_datasource_points_at_the_first_jaeger(host, secrets, want):
    if not want["grafana"]:
        pytest.skip("Grafana is not in this host's groups")
    api, user = want["grafana_api"]["url"], want["grafana_api"]["admin_user"]
    ds = curl_json(host, f"{api}/api/datasources/uid/jaeger", user, secrets["vault_grafana_admin_password"])
    assert (ds["type"], ds["url"]) == ("jaeger", want["grafana_api"]["jaeger_url"])
    assert ds["jsonData"]["tracesToMetrics"]["datasourceUid"] == "prometheus"
