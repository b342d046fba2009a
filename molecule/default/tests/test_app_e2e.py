"""End to end against the reference MDL API on the application host, with load running.

What is proven, each time from the system under test (Prometheus' API, Jaeger's API, Loki's API, the
notification sink), with expected values from the inventory and role variables:

* Prometheus scrapes the application and postgres_exporter;
* every panel query of every shipped dashboard returns data;
* a request's trace id is in its log line in Loki and its trace in Jaeger, with the PostgreSQL, Redis
  and store spans; the share of sampled requests whose trace reached Jaeger is reported;
* each of the plan's eight alerts fires on its own fault (the application's test-only fault
  injection), reaches the receivers the deployed routing picks with its labels, annotations and
  runbook link, and resolves once the fault is cleared.

The scenario's hosts are in the inventory group fast_alerting, which shrinks only scrape/evaluation
intervals, rate windows and `for:` (inventories/local/group_vars/fast_alerting.yml).
These tests use no ``host`` fixture: they run once, not once per host.
"""

from __future__ import annotations

import json
import time
import urllib.parse

import mdl_faults
import pytest
import requests
import sandbox
import testinfra
from dashboards import queries
from mdl_load import LoadGenerator

# Offered load: enough logins per second to cross HighAuthFailureRate's threshold with margin.
RATE = 40
LOGIN_SHARE = 0.4


@pytest.fixture(scope="module")
def app(expected):
    hosts = [name for name, e in expected.items() if e.get("mdl_api")]
    if not hosts:
        pytest.skip("the scenario deploys no reference MDL API")
    name = hosts[0]
    want = expected[name]["mdl_api_expect"]
    return {"name": name, **want, "url": sandbox.published_url(name, want["port"])}


@pytest.fixture(scope="module")
def prometheus(expected, secrets):
    """The first Prometheus: a testinfra host and its query function (basic auth from vault)."""
    name = next(n for n, e in sorted(expected.items()) if "prometheus" in e["groups"])
    host = testinfra.get_host(f"docker://{name}")
    url = expected[name]["urls"]["prometheus"]
    user = expected[name]["auth_usernames"]["prometheus"]

    def query(expr: str) -> list[dict]:
        data = sandbox.curl_json(
            host, f"{url}/api/v1/query?query={urllib.parse.quote(expr)}", user, secrets["vault_prometheus_password"]
        )
        assert data["status"] == "success", data
        return data["data"]["result"]

    return {"name": name, "query": query, "alerts": expected[name]["mdl_alerts"], "targets": expected[name]["targets"]}


@pytest.fixture(scope="module")
def load(app, secrets):
    gen = LoadGenerator(
        app["url"],
        rate=RATE,
        users=[(app["login_user"], secrets["vault_mdl_api_demo_password"])],
        login_share=LOGIN_SHARE,
        seed=11,
    )
    gen.start()
    time.sleep(20)  # a few scrapes of traffic before anything is asked
    yield gen
    gen.stop()


def _faults(app, secrets, faults: dict) -> None:
    resp = requests.put(
        f"{app['url']}/admin/faults",
        json=faults,
        headers={"X-Fault-Token": secrets["vault_mdl_api_fault_token"]},
        timeout=10,
    )
    assert resp.status_code in (200, 202), (resp.status_code, resp.text)


def test_application_and_postgres_targets_are_up(app, prometheus, load):
    """The application's and postgres_exporter's targets, as the inventory generates them, are up."""
    wanted = {
        (job, instance) for job, instance, address in prometheus["targets"] if address.startswith(app["name"] + ":")
    }
    assert {job for job, _ in wanted} >= {app["job"], "postgres"}, wanted

    def up():
        results = {(r["metric"]["job"], r["metric"]["instance"]): r["value"][1] for r in prometheus["query"]("up")}
        assert {k: results.get(k) for k in wanted} == dict.fromkeys(wanted, "1")
        # postgres_exporter reaches the database, not only its own HTTP port.
        assert [r["value"][1] for r in prometheus["query"]('pg_up{job="postgres"}')] == ["1"]

    sandbox.eventually(up, timeout=90, interval=5)
    series = prometheus["query"](f'http_requests_total{{job="{app["job"]}"}}')
    assert series, "no request counter scraped"
    labels = series[0]["metric"]
    # The plan's default labels on every sample.
    assert (labels["app"], labels["version"]) == (app["service_name"], app["version"])


def _jaeger(expected):
    name = next(n for n, e in expected.items() if e.get("jaeger"))
    return testinfra.get_host(f"docker://{name}"), expected[name]["jaeger_expect"]["query_url"]


def _trace(jaeger_host, query_url, trace_id) -> list[dict]:
    out = jaeger_host.run(f"curl -sS --max-time 5 {sandbox.curl_args(f'{query_url}/api/traces/{trace_id}')}")
    if out.rc != 0:
        return []
    data = json.loads(out.stdout).get("data") or []
    return data[0]["spans"] if data else []


def test_a_request_is_traced_and_logged_end_to_end(app, load, expected):
    jaeger_host, query_url = _jaeger(expected)
    # A read of one metric definition: server span, cache lookup, store span and (on a miss) the query.
    sample = sandbox.eventually(lambda: _pick(load, "/api/v1/metrics/METRIC-"), timeout=60, interval=2)
    trace_id = sample["trace_id"]

    def spans():
        found = _trace(jaeger_host, query_url, trace_id)
        names = {s["operationName"] for s in found}
        tags = [{t["key"]: t["value"] for t in s["tags"]} for s in found]
        assert any(n.startswith("MetricStore.") for n in names), names
        assert any(t.get("db.system") == "redis" or t.get("db.system.name") == "redis" for t in tags), names
        return found

    found = sandbox.eventually(spans, timeout=60, interval=3)
    assert {s["traceID"] for s in found} == {trace_id}
    assert found[0]["processID"] and all(
        p["serviceName"] == app["service_name"] for p in _trace_processes(jaeger_host, query_url, trace_id)
    )

    # The same request's log line, found in Loki by its trace id.
    loki_name = expected[app["name"]]["loki_host"]
    loki = testinfra.get_host(f"docker://{loki_name}")
    loki_url = expected[loki_name]["loki_expect"]["url"]
    job = expected[app["name"]]["promtail_expect"]["app"]["job"]

    def logged():
        params = urllib.parse.urlencode(
            {"query": f'{{job="{job}"}} |= "{trace_id}"', "limit": 10, "start": int((time.time() - 900) * 1e9)}
        )
        out = loki.check_output(
            f"curl -sS --max-time 10 -f {sandbox.curl_args(f'{loki_url}/loki/api/v1/query_range?{params}')}"
        )
        lines = [json.loads(v[1]) for s in json.loads(out)["data"]["result"] for v in s["values"]]
        assert lines, f"no log line with trace id {trace_id} yet"
        return lines

    lines = sandbox.eventually(logged, timeout=60, interval=3)
    request_line = next(line for line in lines if line.get("msg") == "request completed")
    assert request_line["trace_id"] == trace_id
    assert request_line["correlationId"] == sample["correlation_id"]
    assert request_line["service"] == app["service_name"]


def _trace_processes(jaeger_host, query_url, trace_id):
    out = jaeger_host.check_output(f"curl -sS --max-time 5 {sandbox.curl_args(f'{query_url}/api/traces/{trace_id}')}")
    return list(json.loads(out)["data"][0]["processes"].values())


def _pick(load, path_prefix):
    samples = [s for s in load.stats()["samples"] if s["path"].startswith(path_prefix) and s.get("trace_id")]
    assert samples, f"no request to {path_prefix} sampled yet"
    return samples[-1]


def test_trace_coverage_meets_the_plan(load, expected, record_property):
    """Share of requests (sampled by the load generator, all with a trace id) whose trace Jaeger returns."""
    jaeger_host, query_url = _jaeger(expected)
    time.sleep(10)  # the batch span processor exports every few seconds
    cutoff = time.time() - 10
    samples = [s for s in load.stats()["samples"] if s.get("trace_id") and s["time"] < cutoff][-100:]
    assert len(samples) >= 50, f"only {len(samples)} traced requests sampled"
    found = sum(1 for s in samples if _trace(jaeger_host, query_url, s["trace_id"]))
    coverage = found / len(samples)
    record_property("trace_coverage", coverage)
    print(f"trace coverage: {found}/{len(samples)} = {coverage:.1%}")
    assert coverage > 0.8


def test_every_dashboard_panel_returns_data(prometheus, load):
    """Under load, every panel query of every shipped dashboard returns at least one series."""

    def all_have_data():
        empty = [
            f"{dashboard} / {panel}: {expr}"
            for dashboard, panel, expr in queries()
            if not panel.startswith("annotation:") and not prometheus["query"](expr)
        ]
        assert not empty, "panels without data:\n" + "\n".join(empty)

    # Recording rules and rate windows need a few evaluations of traffic.
    sandbox.eventually(all_have_data, timeout=120, interval=10)


def _routes(alertmanager: str, labels: dict) -> list[str]:
    """The receivers the deployed routing tree picks for ``labels`` (amtool on the Alertmanager host)."""
    args = " ".join(f"{k}={v}" for k, v in labels.items())
    out = testinfra.get_host(f"docker://{alertmanager}").check_output(
        f"amtool config routes test --config.file=/etc/alertmanager/alertmanager.yml {args}"
    )
    return out.strip().split(",")


def _records(after: int, alertname: str, status: str) -> list[dict]:
    return [r for r in sandbox.sink_received(after=after, status=status, contains=alertname) if r["accepted"]]


@pytest.fixture(scope="module")
def routing(expected, prometheus):
    """How the deployed Alertmanager routes each plan alert: channel sets for firing and for resolved."""
    alertmanager = next(n for n, e in sorted(expected.items()) if "alertmanager" in e["groups"])
    receivers = sandbox.deployed_receivers(alertmanager)
    result = {}
    for alertname, spec in prometheus["alerts"].items():
        labels = {"alertname": alertname, "severity": spec["severity"], "component": spec["component"]}
        names = _routes(alertmanager, labels)
        result[alertname] = {
            "firing": {receivers[r]["channel"] for r in names},
            "resolved": {receivers[r]["channel"] for r in names if receivers[r]["send_resolved"]},
        }
    return result


def _notification_problems(alertname: str, got: dict, spec: dict, app: dict, runbook_base: str) -> list[str]:
    """What a firing notification lacks: the runbook link, the alert's labels, the job or instance."""
    problems = []
    instance = app["instance"]
    for channel, record in got.items():
        text = json.dumps(record)
        needles = [f"{runbook_base}/{alertname}.md", spec["severity"], spec["component"], app["job"]]
        if alertname in ("ServiceDown", "HighMemoryUsage", "DatabasePoolExhausted"):
            needles.append(instance)
        problems += [f"{alertname} at {channel}: {n!r} missing from the notification" for n in needles if n not in text]
    return problems


def _wait_for(mark: int, alertname: str, status: str, channels: set[str], timeout: float):
    def arrived():
        got = {r["channel"]: r for r in _records(mark, alertname, status)}
        assert channels <= set(got), f"{alertname}: {status} at {sorted(got)}, want {sorted(channels)}"
        return got

    return sandbox.eventually(arrived, timeout=timeout, interval=5)


@pytest.mark.usefixtures("load")
def test_each_plan_alert_fires_on_its_fault_reaches_its_receivers_and_resolves(
    app, prometheus, secrets, routing, record_property
):
    runbook_base = _runbook_base(prometheus)
    (app["instance"],) = {
        i for job, i, a in prometheus["targets"] if job == app["job"] and a.startswith(app["name"] + ":")
    }
    problems, timings = [], {}
    for batch in mdl_faults.batches(prometheus["alerts"], int(app["pool_max"])):
        mark = max([r["id"] for r in sandbox.sink_received()] or [0])
        started = time.monotonic()
        _faults(app, secrets, {k: v for spec in batch.values() for k, v in spec.items()})
        try:
            for alertname in batch:
                try:
                    got = _wait_for(mark, alertname, "firing", routing[alertname]["firing"], timeout=240)
                except AssertionError as exc:
                    problems.append(str(exc))
                    continue
                timings[alertname] = round(time.monotonic() - started)
                problems += _notification_problems(alertname, got, prometheus["alerts"][alertname], app, runbook_base)
        finally:
            _faults_clear(app, secrets, batch)
        for alertname in batch:
            try:
                _wait_for(mark, alertname, "resolved", routing[alertname]["resolved"], timeout=300)
            except AssertionError as exc:
                problems.append(str(exc))
    record_property("seconds_to_notification", timings)
    print("seconds from fault to the first notification:", timings)
    assert not problems, "\n".join(problems)


def _runbook_base(prometheus) -> str:
    rules = prometheus["query"]('ALERTS{alertname="Watchdog"}')
    assert rules is not None
    out = testinfra.get_host(f"docker://{prometheus['name']}").check_output(
        "grep -ho 'runbook_url: .*/Watchdog.md' /etc/prometheus/rules/stack.rules.yml"
    )
    return out.split("runbook_url: ", 1)[1].rsplit("/", 1)[0]


def _faults_clear(app, secrets, batch):
    """Clear the faults; a stopped service is started again (its fault stopped the process)."""
    if "ServiceDown" not in batch:
        _faults(app, secrets, {})
        return
    testinfra.get_host(f"docker://{app['name']}").check_output("systemctl start mdl-api")

    def healthy():
        try:
            status = requests.get(f"{app['url']}/health", timeout=5).status_code
        except requests.RequestException as exc:
            raise AssertionError(f"{app['url']}/health: {exc}") from exc
        assert status == 200, status

    sandbox.eventually(healthy, timeout=60, interval=2)
