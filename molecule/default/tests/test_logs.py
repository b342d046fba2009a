"""Logs: Promtail on every monitored host ships a JSON application log line and the journal to Loki.

Loki and Promtail here are the project's stand-ins (tests/standins/loki, tests/standins/promtail; not
the real programs: their Go module may not be built on this workplace). What these tests prove is the
roles' wiring: units, users, groups, files, config validation, labels, the push path and Grafana's
correlation settings, checked through Loki's HTTP API as a real client would.
"""

import json
import re
import time
import urllib.parse
import uuid

import pytest
import testinfra
from sandbox import curl_args, curl_json, eventually


@pytest.fixture
def promtail(want):
    if not want["promtail"]:
        pytest.skip("this host is not monitored (no Promtail)")
    return want["promtail_expect"]


@pytest.fixture
def loki_host(want):
    """The Loki this host's Promtail pushes to, as a testinfra host, and its local URL."""
    assert want["loki_host"], "the inventory has no loki group"
    return testinfra.get_host(f"docker://{want['loki_host']}")


def _loki_expect(expected, want):
    return expected[want["loki_host"]]["loki_expect"]


def _query(loki, url, query, since_s=600, limit=100):
    params = urllib.parse.urlencode({"query": query, "limit": limit, "start": int((time.time() - since_s) * 1e9)})
    out = loki.run(f"curl -sS --max-time 10 -f {curl_args(f'{url}/loki/api/v1/query_range?{params}')}")
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout)["data"]["result"]


def _wait_for_lines(loki, url, query):
    """The streams a LogQL query returns once it returns any (a minute at most)."""

    def found():
        result = _query(loki, url, query)
        assert result, f"{query} found nothing yet"
        return result

    return eventually(found, timeout=60, interval=1)


def test_loki_running_hardened_and_ready(host, want):
    if not want["loki"]:
        pytest.skip("this host is not in the loki group")
    loki = want["loki_expect"]
    assert host.service("loki").is_running and host.service("loki").is_enabled
    assert host.check_output(f"curl -sS --max-time 5 -f {curl_args(loki['ready_url'])}").strip() == "ready"
    out = host.check_output("systemctl show loki -p User -p ProtectSystem -p ReadWritePaths -p NoNewPrivileges")
    props = dict(line.split("=", 1) for line in out.splitlines())
    assert (props["User"], props["ProtectSystem"], props["NoNewPrivileges"]) == (loki["user"], "strict", "yes")
    assert props["ReadWritePaths"] == loki["storage"]
    live = host.file("/etc/loki/config.yaml")
    assert (live.user, live.group, live.mode) == ("root", loki["user"], 0o640)
    assert live.sha256sum == host.file("/etc/loki/config.yaml.candidate").sha256sum
    config = json.loads(live.content_string)
    assert config["compactor"]["retention_enabled"] is True
    assert config["limits_config"]["retention_period"] == loki["retention_period"]


def test_promtail_runs_unprivileged_with_journal_access(host, promtail):
    assert host.service("promtail").is_running and host.service("promtail").is_enabled
    assert host.check_output(f"curl -sS --max-time 5 -f {curl_args(promtail['ready_url'])}").strip().lower() == "ready"
    user = host.user(promtail["user"])
    assert user.uid != 0 and user.shell == "/usr/sbin/nologin"
    assert set(promtail["groups"]) <= set(user.groups)
    pid = host.check_output("systemctl show promtail -p MainPID --value")
    assert host.check_output(f"stat -c %U /proc/{pid}") == promtail["user"]
    config = json.loads(host.file("/etc/promtail/config.yaml").content_string)
    assert [c["url"] for c in config["clients"]] == promtail["urls"]


def test_json_log_line_is_found_with_exactly_the_expected_labels(host, promtail, loki_host, expected, want):
    """A Pino-style line with a trace id, appended to the application's log file, is found by LogQL within
    seconds; its stream carries exactly the low-cardinality labels, the ids stay out of them."""
    app = promtail["app"]
    log_dir = app["path"].rsplit("/", 1)[0]
    marker = f"obs-test-{uuid.uuid4().hex[:12]}"
    trace_id = uuid.uuid4().hex
    line = json.dumps(
        {"level": "error", "time": int(time.time() * 1000), "msg": f"payment failed {marker}", "trace_id": trace_id,
         "span_id": trace_id[:16], "reqId": f"req-{marker}", "userId": "u-42"},
        separators=(",", ":"),
    )  # fmt: skip
    host.check_output(f"mkdir -p {log_dir} && printf '%s\\n' '{line}' >> {log_dir}/obs-test.log")
    url = _loki_expect(expected, want)["url"]
    query = f'{{job="{app["job"]}", host="{promtail["external_labels"]["host"]}"}} |= "{marker}"'

    (stream,) = _wait_for_lines(loki_host, url, query)
    labels = stream["stream"]
    expected_labels = {
        "job": app["job"],
        "service": app["service"],
        "level": "error",
        "filename": f"{log_dir}/obs-test.log",
    }
    expected_labels |= promtail["external_labels"]
    # Structured metadata may be returned merged into the stream (Loki 3's default encoding); the index
    # labels are what /series says.
    series = curl_series(loki_host, url, f'{{job="{app["job"]}", host="{promtail["external_labels"]["host"]}"}}')
    assert expected_labels in series, series
    for labelset in series:
        assert not set(labelset) & {"trace_id", "request_id", "span_id", "user_id", "msg"}, labelset
    assert {k: v for k, v in labels.items() if k in expected_labels} == expected_labels
    [(_, returned_line, *_)] = stream["values"]
    assert returned_line == line
    # The "Logs & traces" dashboard's lines-by-level counter (Promtail's metrics stage) counted it.
    metrics = host.check_output(
        f"curl -sS --max-time 5 -f {curl_args(promtail['ready_url'].rsplit('/', 1)[0] + '/metrics')}"
    )
    counted = [
        ln for ln in metrics.splitlines() if ln.startswith("promtail_custom_log_lines_total{") and 'level="error"' in ln
    ]
    assert counted and all(float(ln.rsplit(" ", 1)[1]) >= 1 for ln in counted), counted


def curl_series(loki, url, match):
    params = urllib.parse.urlencode({"match[]": match, "start": int((time.time() - 3600) * 1e9)})
    out = loki.run(f"curl -sS --max-time 10 -f {curl_args(f'{url}/loki/api/v1/series?{params}')}")
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout)["data"]


def test_journal_line_is_shipped(host, promtail, loki_host, expected, want):
    if not promtail["journal"]:
        pytest.skip("the journal is not shipped from this host")
    marker = f"obs-test-journal-{uuid.uuid4().hex[:12]}"
    host.check_output(f"logger -t obs-test {marker}")
    url = _loki_expect(expected, want)["url"]
    query = f'{{job="systemd-journal", host="{promtail["external_labels"]["host"]}"}} |= "{marker}"'

    result = _wait_for_lines(loki_host, url, query)
    assert any(marker in v[1] for s in result for v in s["values"])


def test_positions_are_kept_in_the_state_directory(host, promtail):
    """Promtail writes its positions (every sync period) to its state directory: the application's log file
    and the journal cursor are in it."""
    positions = host.file(f"{promtail['state_dir']}/positions.yaml")
    log_dir = promtail["app"]["path"].rsplit("/", 1)[0]
    host.check_output(
        f'mkdir -p {log_dir} && echo \'{{"level":"info","msg":"positions"}}\' >> {log_dir}/obs-positions.log'
    )
    eventually(
        lambda: _assert(positions.exists and f"{log_dir}/obs-positions.log" in positions.content_string),
        timeout=40,
        interval=2,
    )
    assert positions.user == promtail["user"]


def test_grafana_log_and_trace_datasources_are_correlated(host, secrets, want):
    """The Loki datasource's derived field extracts the trace id from a real log line and links it to the
    Jaeger datasource; the Jaeger datasource links a trace back to Loki."""
    if not want["grafana"]:
        pytest.skip("Grafana is not in this host's groups")
    api, user, pw = (
        want["grafana_api"]["url"],
        want["grafana_api"]["admin_user"],
        secrets["vault_grafana_admin_password"],
    )
    loki = curl_json(host, f"{api}/api/datasources/uid/loki", user, pw)
    assert (loki["type"], loki["url"]) == ("loki", want["grafana_api"]["loki_url"])
    (field,) = loki["jsonData"]["derivedFields"]
    wanted = want["grafana_api"]["loki_datasource"]["jsonData"]["derivedFields"][0]
    # Grafana's provisioning turns $$ into a literal $.
    assert field["url"] == wanted["url"].replace("$$", "$") == "${__value.raw}"
    assert field["datasourceUid"] == "jaeger"
    trace_id = uuid.uuid4().hex
    line = json.dumps({"level": "info", "msg": "ok", "trace_id": trace_id}, separators=(",", ":"))
    assert re.search(field["matcherRegex"], line).group(1) == trace_id
    assert re.search(field["matcherRegex"], json.dumps({"msg": "no trace"})) is None
    jaeger = curl_json(host, f"{api}/api/datasources/uid/jaeger", user, pw)
    assert jaeger["jsonData"]["tracesToLogsV2"]["datasourceUid"] == "loki"
    assert jaeger["jsonData"]["tracesToLogsV2"]["filterByTraceID"] is True


def _assert(condition):
    assert condition
