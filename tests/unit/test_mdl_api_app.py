"""The MDL API reference workload against real PostgreSQL 15, real Redis and a real OTLP/HTTP export.

The app runs as a subprocess of its own venv (build/mdl-api/venv, the pinned
roles/mdl_api/files/requirements.txt; scripts/build-wheelhouse.sh makes it),
on loopback, exporting spans to an in-test OTLP receiver (mdl_api_fixtures.py).
Six instances: the main one (faults on, tracing and metrics on), one with
metrics, tracing and faults off and Redis unreachable, two that start
together on an empty database (one of them then ended by the ``stop`` fault),
and two exporting to an HTTPS receiver (one trusting its CA, one another CA).
Tests sharing the main instance clear their faults when done and compare
counters before and after, never absolute values that other tests move.
"""

from __future__ import annotations

import json
import re
import ssl
import sys
import time
import uuid
from types import SimpleNamespace

import pytest
import requests
from conftest import REPO_ROOT, STRICT, assert_refused, render_role, rendered_config
from mdl_api_fixtures import (
    DB_PASSWORD,
    FAULT_TOKEN,
    USER_PASSWORD,
    AppProcess,
    OtlpReceiver,
    Postgres,
    Redis,
    app_config,
    free_port,
    missing_tools,
    parse_exposition,
    run_app,
    value,
)
from pki import write_pki

sys.path.insert(0, str(REPO_ROOT / "tests" / "lib"))
sys.path.insert(0, str(REPO_ROOT / "plugins" / "filter"))
import mdl_load
import tls

HEX32 = re.compile(r"^[0-9a-f]{32}$")
SPAN_SERVER, SPAN_CLIENT = 2, 3
STATUS_ERROR = 2


# -- fixtures -----------------------------------------------------------------
@pytest.fixture(scope="module")
def servers():
    missing = missing_tools()
    if missing:
        hint = (
            f"missing {', '.join(missing)}: install postgresql-15 and redis-server (apt-get install"
            " postgresql-15 redis-server) and run scripts/build-wheelhouse.sh for the app venv"
        )
        if STRICT:
            pytest.fail(f"{hint} (OBS_REQUIRE_TOOLS=1: make unit and make test never skip)", pytrace=False)
        pytest.skip(hint)
    pg, redis, otlp = Postgres(), Redis(), OtlpReceiver()
    try:
        pg.start()
        redis.start()
        yield SimpleNamespace(pg=pg, redis=redis, otlp=otlp)
    finally:
        otlp.close()
        redis.stop()
        pg.stop()


def _start(servers, tmp_path_factory, name: str, health: int = 200, **overrides) -> AppProcess:
    work = tmp_path_factory.mktemp(name)
    cfg = app_config(servers.pg, servers.redis, servers.otlp.endpoint, work / "log" / "mdl-api.log", **overrides)
    return AppProcess(cfg, work).start(health=health)


@pytest.fixture(scope="module")
def app(servers, tmp_path_factory):
    proc = _start(servers, tmp_path_factory, "mdl-main")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def token(app):
    return login(app)


@pytest.fixture
def faults(app):
    """``faults(body) -> state``; the fault set is cleared after the test."""

    def put(body: dict) -> dict:
        resp = requests.put(app.url + "/admin/faults", json=body, headers={"X-Fault-Token": FAULT_TOKEN}, timeout=30)
        assert resp.status_code == 200, resp.text
        return resp.json()

    yield put
    put({})


def login(app, username: str = "demo", password: str = USER_PASSWORD) -> str:
    resp = requests.post(app.url + "/api/v1/auth/login", json={"username": username, "password": password}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["token"]


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def new_metric(app, token: str, **fields) -> dict:
    body = {
        "metric_id": f"METRIC-T{uuid.uuid4().hex[:8].upper()}-001",
        "name": "Test metric",
        "domain": "finance",
        "category": "kpi",
        "tags": ["core"],
    }
    body.update(fields)
    resp = requests.post(app.url + "/api/v1/metrics", json=body, headers=auth(token), timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()


def scrape(app) -> dict:
    return app.scrape()


# -- configuration ------------------------------------------------------------
def test_check_config_accepts_a_valid_file(servers, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(app_config(servers.pg, servers.redis, servers.otlp.endpoint, tmp_path / "x.log")))
    proc = run_app(["--check-config", "--config", str(path)])
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "x.log").exists(), "--check-config must not start anything"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"database": {"pool_max": "ten"}}, "database.pool_max: expected an integer, got string"),
        ({"database": {"poolmax": 3}}, "database.poolmax: unknown key"),
        ({"colour": "blue"}, "colour: unknown key"),
        ({"tracing": {"enabled": "yes"}}, "tracing.enabled: expected a boolean"),
        ({"tracing": {"sample_ratio": 1.5}}, "tracing.sample_ratio: 1.5 is not between 0 and 1"),
        ({"listen": "3000"}, "listen: '3000' is not host:port"),
        ({"database": {"pool_min": 8, "pool_max": 4}}, "database.pool_max: 4 must be at least 1"),
        ({"users": [{"username": "x"}]}, "users[0].password: expected a non-empty string"),
        ({"log": {"level": "loud"}}, "log.level: 'loud' is not one of"),
        ({"environment": "production"}, "faults.enabled: fault injection is refused in environment 'production'"),
        ({"tracing": {"otlp_ca_file": "/nonexistent/ca.crt"}}, "tracing.otlp_ca_file: '/nonexistent/ca.crt' is not a"),
        # A CA with a plain-HTTP endpoint would read as verified while nothing is.
        (
            {"tracing": {"otlp_ca_file": str(REPO_ROOT / "pyproject.toml")}},
            "tracing.otlp_ca_file: set, but tracing.otlp_endpoint 'http://127.0.0.1:",
        ),
    ],
)
def test_invalid_config_exits_2_naming_the_key(servers, tmp_path, change, message):
    cfg = app_config(servers.pg, servers.redis, servers.otlp.endpoint, tmp_path / "x.log", **change)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    for args in (["--check-config", "--config", str(path)], ["--config", str(path)]):
        proc = run_app(args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr, proc.stderr
    assert not (tmp_path / "x.log").exists(), "a refused config must not start the service"


def test_production_without_faults_is_accepted(servers, tmp_path):
    cfg = app_config(servers.pg, servers.redis, servers.otlp.endpoint, tmp_path / "x.log", environment="production")
    cfg["faults"] = {"enabled": False, "token": ""}
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    proc = run_app(["--check-config", "--config", str(tmp_path / "c.json")])
    assert proc.returncode == 0, proc.stderr


# -- API ----------------------------------------------------------------------
def test_health_reports_both_checks(app):
    resp = requests.get(app.url + "/health", timeout=5)
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "checks": {"database": "ok", "cache": "ok"}}


def test_crud_and_status_codes(app, token):
    url, h = app.url + "/api/v1", auth(token)
    name = f"domain-{uuid.uuid4().hex[:6]}"
    # domains
    d = requests.post(f"{url}/domains", json={"name": name, "description": "d"}, headers=h, timeout=5)
    assert d.status_code == 201 and d.json()["name"] == name
    did = d.json()["id"]
    assert requests.post(f"{url}/domains", json={"name": name}, headers=h, timeout=5).status_code == 409
    assert requests.get(f"{url}/domains/{did}", timeout=5).json() == {"id": did, "name": name, "description": "d"}
    up = requests.put(f"{url}/domains/{did}", json={"description": "new"}, headers=h, timeout=5)
    assert up.status_code == 200 and up.json()["description"] == "new"
    assert requests.get(f"{url}/domains/{did}", timeout=5).json()["description"] == "new", "cache not invalidated"
    listed = requests.get(f"{url}/domains?limit=1000", timeout=5).json()
    assert did in [i["id"] for i in listed["items"]] and listed["count"] == len(listed["items"])
    # metrics
    m = new_metric(app, token, tags=["core", "core", "sla"])
    mid = m["metric_id"]
    assert m["tags"] == ["core", "sla"] and m["description"] == ""
    assert requests.get(f"{url}/metrics/{mid}", timeout=5).json() == m
    dup = requests.post(
        f"{url}/metrics", json={k: m[k] for k in ("metric_id", "name", "domain", "category")}, headers=h, timeout=5
    )
    assert dup.status_code == 409
    up = requests.put(f"{url}/metrics/{mid}", json={"name": "Renamed"}, headers=h, timeout=5)
    assert up.status_code == 200 and up.json()["name"] == "Renamed" and up.json()["domain"] == "finance"
    assert requests.get(f"{url}/metrics/{mid}", timeout=5).json()["name"] == "Renamed"
    assert (
        requests.put(f"{url}/metrics/{mid}", json={"metric_id": "METRIC-OTHER-1"}, headers=h, timeout=5).status_code
        == 400
    )
    # objectives
    o = requests.post(f"{url}/objectives", json={"title": "Ship", "completed": True}, headers=h, timeout=5)
    assert o.status_code == 201 and o.json()["completed"] is True and o.json()["domain"] is None
    oid = o.json()["id"]
    assert (
        requests.put(f"{url}/objectives/{oid}", json={"completed": False}, headers=h, timeout=5).json()["completed"]
        is False
    )
    # deletes, then 404
    for path, change in (
        (f"metrics/{mid}", {"name": "x"}),
        (f"domains/{did}", {"name": "x"}),
        (f"objectives/{oid}", {"title": "x"}),
    ):
        assert requests.delete(f"{url}/{path}", headers=h, timeout=5).status_code == 204
        assert requests.get(f"{url}/{path}", timeout=5).status_code == 404
        assert requests.delete(f"{url}/{path}", headers=h, timeout=5).status_code == 404
        assert requests.put(f"{url}/{path}", json=change, headers=h, timeout=5).status_code == 404
    # 400s name the field
    bad = [
        ("metrics", b"{not json", "body: not valid JSON"),
        ("metrics", {"metric_id": "METRIC-A-1", "name": "n", "domain": "d"}, "category: required"),
        ("metrics", {"metric_id": "metric-lower", "name": "n", "domain": "d", "category": "c"}, "metric_id:"),
        (
            "metrics",
            {"metric_id": "METRIC-A-1", "name": "n", "domain": "d", "category": "c", "x": 1},
            "x: unknown field",
        ),
        ("domains", {"name": ""}, "name: expected a non-empty string"),
        ("objectives", {"title": "t", "completed": "yes"}, "completed: expected true or false"),
        ("domains", [1, 2], "body: expected a JSON object"),
    ]
    for kind, body, message in bad:
        kw = {"data": body} if isinstance(body, bytes) else {"json": body}
        resp = requests.post(f"{url}/{kind}", headers=h, timeout=5, **kw)
        assert resp.status_code == 400 and message in resp.json()["error"], (body, resp.text)
    # writes need a valid token; reads do not
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        assert requests.post(f"{url}/domains", json={"name": "zz"}, headers=headers, timeout=5).status_code == 401
    assert requests.get(f"{url}/domains/2147483648", timeout=5).status_code == 404
    assert requests.get(f"{url}/metrics/not-a-metric", timeout=5).status_code == 404
    assert requests.get(f"{url}/nothing", timeout=5).status_code == 404
    assert requests.patch(f"{url}/domains", timeout=5).status_code == 405
    assert requests.get(f"{url}/domains?limit=0", timeout=5).status_code == 400


def test_login_failures_are_401_with_a_reason(app):
    before = scrape(app)
    url = app.url + "/api/v1/auth/login"
    assert requests.post(url, json={"username": "demo", "password": "wrong"}, timeout=5).status_code == 401
    assert requests.post(url, json={"username": "ghost", "password": "x"}, timeout=5).status_code == 401
    assert requests.post(url, json={"username": "demo"}, timeout=5).status_code == 400
    after = scrape(app)
    for reason in ("bad_credentials", "unknown_user"):
        assert (
            value(after, "mdl_auth_failures_total", reason=reason)
            - value(before, "mdl_auth_failures_total", reason=reason)
            == 1
        )
    key = {"path": "/api/v1/auth/login", "status_code": "401", "method": "POST"}
    assert value(after, "http_requests_total", **key) - value(before, "http_requests_total", **key) == 2


def test_correlation_id_is_echoed_or_created(app):
    resp = requests.get(app.url + "/health", headers={"X-Correlation-ID": "corr-abc.123"}, timeout=5)
    assert resp.headers["X-Correlation-ID"] == "corr-abc.123"
    resp = requests.get(app.url + "/api/v1/domains", headers={"X-Correlation-ID": "bad value with spaces"}, timeout=5)
    assert str(uuid.UUID(resp.headers["X-Correlation-ID"])) == resp.headers["X-Correlation-ID"]
    assert HEX32.match(resp.headers["X-Trace-Id"])


# -- metrics ------------------------------------------------------------------
def test_exposition_names_buckets_and_default_labels(app, token):
    requests.post(
        app.url + "/api/v1/domains", json={"name": f"size-{uuid.uuid4().hex[:6]}"}, headers=auth(token), timeout=5
    )
    requests.get(app.url + "/api/v1/domains/123456", timeout=5)
    resp = requests.get(app.url + "/metrics", timeout=5)
    assert resp.headers["Content-Type"].startswith("text/plain")
    samples = parse_exposition(resp.text)
    names = {n for n, _ in samples}
    for name in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_request_size_bytes_bucket",
        "http_response_size_bytes_bucket",
        "mdl_metrics_total",
        "mdl_domains_total",
        "mdl_objectives_total",
        "mdl_objectives_completed",
        "mdl_active_users",
        "db_connections_active",
        "db_connections_idle",
        "db_connections_max",
        "db_query_duration_seconds_bucket",
        "db_queries_total",
        "cache_hits_total",
        "cache_misses_total",
        "cache_size_bytes",
        "errors_total",
        "process_resident_memory_bytes",
        "python_gc_objects_collected_total",
        "python_info",
    ):
        assert name in names, name
    assert not any(n.endswith("_created") for n in names)
    for (name, labels), _ in samples.items():
        # A metric's own label wins over a default one (as in prom-client): python_info has
        # the Python version in its own "version" label.
        assert ("app", "mdl-api") in labels, (name, labels)
        assert ("version", "1.2.3") in labels or name == "python_info", (name, labels)

    def buckets(name, **lbl):
        return sorted(float(dict(lb)["le"]) for n, lb in samples if n == name and set(lbl.items()) <= lb)

    inf = float("inf")
    get = {"method": "GET", "path": "/api/v1/domains/:id", "status_code": "404"}
    assert buckets("http_request_duration_seconds_bucket", **get) == [0.01, 0.05, 0.1, 0.5, 1, 2, 5, inf]
    post = {"method": "POST", "path": "/api/v1/domains"}
    assert buckets("http_request_size_bytes_bucket", **post) == [100, 1000, 10000, 100000, 1000000, inf]
    assert buckets("http_response_size_bytes_bucket", **post) == [100, 1000, 10000, 100000, 1000000, inf]
    assert buckets("db_query_duration_seconds_bucket", operation="select") == [
        0.001,
        0.005,
        0.01,
        0.05,
        0.1,
        0.5,
        1,
        inf,
    ]
    assert value(samples, "http_request_size_bytes_count", **post) >= 1
    assert value(samples, "db_connections_max") == 6


def test_path_label_is_normalized_and_bounded(app):
    before = scrape(app)
    requests.get(app.url + "/api/v1/metrics/METRIC-ZZZ-999", timeout=5)
    requests.get(app.url + "/api/v1/objectives/424242", timeout=5)
    for i in range(40):
        requests.get(f"{app.url}/random/{uuid.uuid4()}/{i}", timeout=5)
        requests.get(f"{app.url}/api/v1/metrics/lower-{i}", timeout=5)
    after = scrape(app)
    paths = {dict(lb)["path"] for n, lb in after if n == "http_requests_total"}
    assert "/api/v1/metrics/METRIC-:id" in paths and "/api/v1/objectives/:id" in paths
    assert (
        value(after, "http_requests_total", path="unmatched") - value(before, "http_requests_total", path="unmatched")
        == 80
    )
    assert all("random" not in p and "lower" not in p and not re.search(r"\d{3}", p) for p in paths), paths
    assert len(paths) <= 14, paths


def test_pool_gauges_follow_held_connections(app, faults):
    samples = scrape(app)
    assert value(samples, "db_connections_max") == 6
    assert 0 <= value(samples, "db_connections_active") + value(samples, "db_connections_idle") <= 6
    state = faults({"hold_connections": 4})
    assert state["held_connections"] == 4
    assert value(scrape(app), "db_connections_active") >= 4
    faults({})
    assert value(scrape(app), "db_connections_active") < 4


def test_pool_exhaustion_answers_503(app, faults):
    state = faults({"hold_connections": 6, "cache_bypass": True})
    assert state["held_connections"] == 6
    start = time.monotonic()
    resp = requests.get(app.url + "/api/v1/domains", timeout=10)
    assert resp.status_code == 503 and resp.json()["error"] == "database unavailable"
    assert time.monotonic() - start >= 0.9, "should wait pool_timeout_seconds (1) for a connection"
    health = requests.get(app.url + "/health", timeout=10)
    assert health.status_code == 503 and health.json()["checks"]["database"] == "error"
    samples = scrape(app)
    assert value(samples, "db_connections_active") == 6
    assert value(samples, "errors_total", error_type="database", error_code="pool_timeout") >= 1
    faults({})
    assert requests.get(app.url + "/api/v1/domains", timeout=10).status_code == 200


def test_cache_hits_and_misses(app, token, faults):
    m = new_metric(app, token)
    item = f"{app.url}/api/v1/metrics/{m['metric_id']}"

    def counts():
        s = scrape(app)
        return (
            value(s, "cache_hits_total", cache_key="metric"),
            value(s, "cache_misses_total", cache_key="metric"),
            value(s, "cache_hits_total", cache_key="metrics_list"),
            value(s, "cache_misses_total", cache_key="metrics_list"),
        )

    h0, m0, lh0, lm0 = counts()
    requests.get(item, timeout=5)
    requests.get(item, timeout=5)
    requests.get(item, timeout=5)
    h1, m1, _, _ = counts()
    assert (h1 - h0, m1 - m0) == (2, 1)
    requests.put(item, json={"description": "changed"}, headers=auth(token), timeout=5)
    assert requests.get(item, timeout=5).json()["description"] == "changed"
    h2, m2, _, _ = counts()
    assert (h2 - h1, m2 - m1) == (0, 1), "an update must invalidate the item"
    page = f"{app.url}/api/v1/metrics?limit=7&offset=1"
    requests.get(page, timeout=5)
    requests.get(page, timeout=5)
    _, _, lh1, lm1 = counts()
    assert (lh1 - lh0, lm1 - lm0) == (1, 1)
    faults({"cache_bypass": True})
    for _ in range(3):
        assert requests.get(item, timeout=5).status_code == 200
    h3, m3, _, _ = counts()
    assert (h3 - h2, m3 - m2) == (0, 3), "cache_bypass: every lookup misses"
    s = scrape(app)
    assert value(s, "cache_size_bytes") > 0


def test_business_gauges_follow_writes_and_the_sync(app, token, servers):
    domain = f"biz-{uuid.uuid4().hex[:6]}"
    before = scrape(app)
    new_metric(app, token, domain=domain, category="bizcat", tags=["biztag-x"])
    resp = requests.post(
        app.url + "/api/v1/objectives", json={"title": "b", "completed": True}, headers=auth(token), timeout=5
    )
    after = scrape(app)
    assert value(after, "mdl_metrics_by_domain", domain=domain) == 1
    assert value(after, "mdl_metrics_by_tag", tag="biztag-x") >= 1
    assert value(after, "mdl_metrics_total") - value(before, "mdl_metrics_total") == 1
    assert value(after, "mdl_objectives_completed") - value(before, "mdl_objectives_completed") == 1
    requests.delete(f"{app.url}/api/v1/objectives/{resp.json()['id']}", headers=auth(token), timeout=5)
    assert value(scrape(app), "mdl_objectives_completed") == value(before, "mdl_objectives_completed")
    # A row written behind the app's back shows up after the periodic sync (2 s here).
    row = {"metric_id": "METRIC-SQL-001", "name": "s", "domain": "sql-only", "category": "c", "tags": []}
    servers.pg.psql(f"INSERT INTO metrics (data) VALUES ('{json.dumps(row)}')", db="mdl")
    deadline = time.monotonic() + 8
    while value(scrape(app), "mdl_metrics_by_domain", domain="sql-only") != 1:
        assert time.monotonic() < deadline, "the business sync did not pick up the new row"
        time.sleep(0.3)
    db_total = int(servers.pg.psql("SELECT count(*) FROM metrics", db="mdl"))
    assert value(scrape(app), "mdl_metrics_total") == db_total


def test_active_users_counts_distinct_logins(app, token):
    login(app, "alice", "alice-pw-42")
    login(app, "alice", "alice-pw-42")
    assert value(scrape(app), "mdl_active_users") == 2  # demo (the token fixture) and alice


# -- faults -------------------------------------------------------------------
def test_fault_admin_needs_the_token_and_a_valid_body(app):
    url = app.url + "/admin/faults"
    assert requests.get(url, timeout=5).status_code == 403
    assert requests.get(url, headers={"X-Fault-Token": "wrong-token"}, timeout=5).status_code == 403
    assert requests.put(url, json={"error_ratio": 1}, headers={"X-Fault-Token": "nope"}, timeout=5).status_code == 403
    ok = requests.get(url, headers={"X-Fault-Token": FAULT_TOKEN}, timeout=5)
    assert ok.status_code == 200 and ok.json()["faults"] == {}
    for body, message in (
        ({"error_ratio": 2}, "error_ratio: expected a number between 0 and 1"),
        ({"explode": True}, "explode: unknown fault"),
        ({"hold_connections": 7}, "hold_connections: expected an integer between 0 and 6"),
        ({"cache_bypass": "yes"}, "cache_bypass: expected true or false"),
        ({"memory_bytes": -1}, "memory_bytes"),
    ):
        resp = requests.put(url, json=body, headers={"X-Fault-Token": FAULT_TOKEN}, timeout=5)
        assert resp.status_code == 400 and message in resp.json()["error"], resp.text
    assert requests.get(url, headers={"X-Fault-Token": FAULT_TOKEN}, timeout=5).json()["faults"] == {}


def test_error_ratio_fault(app, faults):
    before = scrape(app)
    faults({"error_ratio": 1.0})
    for _ in range(5):
        resp = requests.get(app.url + "/api/v1/domains", timeout=5)
        assert resp.status_code == 500 and resp.json() == {"error": "injected fault"}
    assert requests.get(app.url + "/health", timeout=5).status_code == 200, "only /api requests are hit"
    after = scrape(app)
    assert (
        value(after, "errors_total", error_type="injected", error_code="500")
        - value(before, "errors_total", error_type="injected", error_code="500")
        == 5
    )
    key = {"path": "/api/v1/domains", "status_code": "500"}
    assert value(after, "http_requests_total", **key) - value(before, "http_requests_total", **key) == 5
    error_lines = [line for line in app.log_lines() if line.get("status") == 500 and line["msg"] == "request completed"]
    assert error_lines and all(line["level"] == "error" for line in error_lines)
    faults({"error_ratio": 0.5})
    codes = [requests.get(app.url + "/api/v1/domains", timeout=5).status_code for _ in range(40)]
    assert 5 <= codes.count(500) <= 35 and codes.count(200) >= 5, codes
    faults({})
    assert requests.get(app.url + "/api/v1/domains", timeout=5).status_code == 200


def test_latency_fault(app, faults):
    faults({"latency_seconds": 0.4, "latency_ratio": 1.0})
    start = time.monotonic()
    assert requests.get(app.url + "/api/v1/domains", timeout=5).status_code == 200
    assert time.monotonic() - start >= 0.4
    start = time.monotonic()
    requests.get(app.url + "/health", timeout=5)
    assert time.monotonic() - start < 0.3, "only /api requests are delayed"
    samples = scrape(app)
    key = {"method": "GET", "path": "/api/v1/domains", "status_code": "200"}
    assert value(samples, "http_request_duration_seconds_count", **key) > value(
        samples, "http_request_duration_seconds_bucket", le="0.1", **key
    )


def test_fail_logins_fault(app, faults):
    before = scrape(app)
    faults({"fail_logins": True})
    resp = requests.post(
        app.url + "/api/v1/auth/login", json={"username": "demo", "password": USER_PASSWORD}, timeout=5
    )
    assert resp.status_code == 401
    after = scrape(app)
    assert (
        value(after, "mdl_auth_failures_total", reason="injected")
        - value(before, "mdl_auth_failures_total", reason="injected")
        == 1
    )
    faults({})
    assert login(app)


def test_memory_fault_raises_resident_memory(app, faults):
    rss0 = value(scrape(app), "process_resident_memory_bytes")
    state = faults({"memory_bytes": 256 << 20})
    assert state["allocated_bytes"] == 256 << 20
    rss1 = value(scrape(app), "process_resident_memory_bytes")
    assert rss1 - rss0 >= 200 << 20, (rss0, rss1)
    faults({})
    rss2 = value(scrape(app), "process_resident_memory_bytes")
    assert rss1 - rss2 >= 200 << 20, (rss1, rss2)


def test_slow_query_fault_shows_in_query_duration_and_traces(app, token, faults, servers):
    m = new_metric(app, token)
    before = scrape(app)
    faults({"slow_query_seconds": 0.25, "slow_query_ratio": 1.0, "cache_bypass": True})
    resp = requests.get(f"{app.url}/api/v1/metrics/{m['metric_id']}", timeout=10)
    assert resp.status_code == 200
    after = scrape(app)

    def delta(name, **lbl):
        return value(after, name, operation="select", **lbl) - value(before, name, operation="select", **lbl)

    assert delta("db_query_duration_seconds_count") == 1
    assert delta("db_query_duration_seconds_bucket", le="0.1") == 0
    assert delta("db_query_duration_seconds_sum") >= 0.25
    trace_id = resp.headers["X-Trace-Id"]
    spans = servers.otlp.wait_for(
        lambda s: any("pg_sleep" in str(x["attributes"].get("db.statement")) and x["trace_id"] == trace_id for x in s)
    )
    assert spans


# -- tracing and logs ---------------------------------------------------------
def test_one_trace_holds_server_storage_psycopg_and_redis_spans(app, token, servers):
    m = new_metric(app, token)
    resp = requests.get(
        f"{app.url}/api/v1/metrics/{m['metric_id']}", headers={"X-Correlation-ID": "corr-trace-1"}, timeout=5
    )
    trace_id = resp.headers["X-Trace-Id"]
    assert HEX32.match(trace_id)
    line = next(x for x in app.log_lines() if x.get("correlationId") == "corr-trace-1")
    assert line["trace_id"] == trace_id and re.match(r"^[0-9a-f]{16}$", line["span_id"])

    def complete(spans):
        names = {s["name"] for s in spans if s["trace_id"] == trace_id}
        return "MetricStore.findById" in names and any(
            s["kind"] == SPAN_SERVER for s in spans if s["trace_id"] == trace_id
        )

    servers.otlp.wait_for(complete)
    time.sleep(0.4)  # the client spans of the same batch
    spans = servers.otlp.trace(trace_id)
    server = next(s for s in spans if s["kind"] == SPAN_SERVER)
    assert server["name"] == "GET /api/v1/metrics/METRIC-:id" and server["attributes"]["http.route"]
    assert server["resource"]["service.name"] == "mdl-api"
    assert server["resource"]["service.version"] == "1.2.3"
    assert server["resource"]["deployment.environment"] == "sandbox"
    assert line["span_id"] == server["span_id"]
    store = next(s for s in spans if s["name"] == "MetricStore.findById")
    assert store["scope"] == "mdl-storage" and store["parent_span_id"] == server["span_id"]
    assert store["attributes"]["metric.id"] == m["metric_id"] and store["attributes"]["metric.found"] is True
    pg = [s for s in spans if s["attributes"].get("db.system") == "postgresql"]
    rd = [s for s in spans if s["attributes"].get("db.system") == "redis"]
    assert pg and all(s["kind"] == SPAN_CLIENT and s["parent_span_id"] == store["span_id"] for s in pg), spans
    assert "metrics" in pg[0]["attributes"]["db.statement"]
    assert {s["name"] for s in rd} >= {"GET", "SET"}, rd
    assert all(s["parent_span_id"] == store["span_id"] for s in rd)
    # The background jobs (schema, business sync, cache size) start no traces of their own.
    orphans = [s for s in servers.otlp.spans if not s["parent_span_id"] and s["kind"] == SPAN_CLIENT]
    assert not orphans, orphans[:3]


def test_probes_and_scrapes_start_no_trace(app, servers):
    """/health and /metrics: no server span, no X-Trace-Id, and their database and cache pings no
    client spans (roots of their own), even with a sampled caller; an API request next is traced."""
    trace_id = uuid.uuid4().hex
    parent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    start = len(servers.otlp.spans)
    for path in ("/health", "/metrics"):
        resp = requests.get(app.url + path, headers={"traceparent": parent}, timeout=5)
        assert resp.status_code == 200 and "X-Trace-Id" not in resp.headers, (path, dict(resp.headers))
    # Exported in the same or an earlier batch than the marker request's spans.
    marker = requests.get(app.url + "/api/v1/domains", timeout=5).headers["X-Trace-Id"]
    spans = servers.otlp.wait_for(lambda s: any(x["trace_id"] == marker for x in s))
    assert not [s for s in spans if s["trace_id"] == trace_id], "a probe continued the caller's trace"
    targets = {s["attributes"].get("http.target") or s["attributes"].get("url.path") for s in spans[start:]}
    assert not targets & {"/health", "/metrics"}, targets
    orphans = [s for s in spans[start:] if not s["parent_span_id"] and s["kind"] == SPAN_CLIENT]
    assert not orphans, orphans[:3]


def test_incoming_traceparent_is_honoured(app, servers):
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    resp = requests.get(app.url + "/api/v1/domains", headers={"traceparent": f"00-{trace_id}-{parent}-01"}, timeout=5)
    assert resp.headers["X-Trace-Id"] == trace_id
    spans = servers.otlp.wait_for(lambda s: any(x["trace_id"] == trace_id and x["kind"] == SPAN_SERVER for x in s))
    server = next(s for s in spans if s["trace_id"] == trace_id and s["kind"] == SPAN_SERVER)
    assert server["parent_span_id"] == parent


def test_failed_store_operation_span_has_error_status(app, token, servers):
    name = f"dup-{uuid.uuid4().hex[:6]}"
    requests.post(app.url + "/api/v1/domains", json={"name": name}, headers=auth(token), timeout=5)
    resp = requests.post(app.url + "/api/v1/domains", json={"name": name}, headers=auth(token), timeout=5)
    assert resp.status_code == 409
    trace_id = resp.headers["X-Trace-Id"]
    spans = servers.otlp.wait_for(
        lambda s: any(x["trace_id"] == trace_id and x["name"] == "DomainStore.create" for x in s)
    )
    span = next(s for s in spans if s["trace_id"] == trace_id and s["name"] == "DomainStore.create")
    assert span["status_code"] == STATUS_ERROR and "exception" in span["events"]


def test_log_lines_have_the_pino_fields_and_redact_secrets(app):
    password = USER_PASSWORD
    resp = requests.post(
        app.url + "/api/v1/auth/login",
        json={"username": "demo", "password": password},
        headers={"X-Correlation-ID": "corr-login-1"},
        timeout=5,
    )
    token = resp.json()["token"]
    requests.post(
        app.url + "/api/v1/domains",
        json={"name": f"log-{uuid.uuid4().hex[:6]}"},
        headers={**auth(token), "X-Correlation-ID": "corr-write-1", "Cookie": "session=abc"},
        timeout=5,
    )
    requests.get(app.url + "/api/v1/domains/999999", headers={"X-Correlation-ID": "corr-404-1"}, timeout=5)
    text = app.log_path.read_text()
    assert password not in text and "alice-pw-42" not in text and token not in text
    lines = app.log_lines()
    attempt = next(x for x in lines if x.get("correlationId") == "corr-login-1" and x["msg"] == "login attempt")
    assert attempt["body"] == {"username": "demo", "password": "[REDACTED]"}
    done = next(x for x in lines if x.get("correlationId") == "corr-login-1" and x["msg"] == "request completed")
    assert done["level"] == "info" and done["userId"] == "demo" and done["status"] == 200
    assert isinstance(done["time"], int) and abs(done["time"] - time.time() * 1000) < 60_000
    for key in ("reqId", "service", "method", "path", "duration_ms", "trace_id", "span_id", "pid", "hostname"):
        assert key in done, key
    assert done["service"] == "mdl-api" and done["path"] == "/api/v1/auth/login" and done["method"] == "POST"
    write = next(x for x in lines if x.get("correlationId") == "corr-write-1" and x["msg"] == "request completed")
    assert write["userId"] == "demo" and write["status"] == 201
    missing = next(x for x in lines if x.get("correlationId") == "corr-404-1")
    assert missing["level"] == "warn" and missing["status"] == 404
    assert len({x["reqId"] for x in lines if "reqId" in x}) == len(
        [x for x in lines if x["msg"] == "request completed"]
    )


def test_redaction_is_recursive_and_case_insensitive(app):
    sys.path.insert(0, str(REPO_ROOT / "roles" / "mdl_api" / "files"))
    from mdl_api.logs import redact  # noqa: PLC0415 - stdlib-only module of the app

    keys = frozenset({"password", "token", "authorization"})
    data = {"Password": "p", "nested": [{"TOKEN": "t", "ok": 1}], "Authorization": "Bearer x", "user": "u"}
    assert redact(data, keys) == {
        "Password": "[REDACTED]",
        "nested": [{"TOKEN": "[REDACTED]", "ok": 1}],
        "Authorization": "[REDACTED]",
        "user": "u",
    }


# -- tracing over TLS (obs_tls_enabled: Jaeger serves https) --------------------
def _https_receiver(pki: dict) -> OtlpReceiver:
    """An OtlpReceiver behind TLS with the certificate of ``pki`` (for 127.0.0.1)."""
    receiver = OtlpReceiver()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["cert"], pki["key"])
    # Same descriptor, so its serving thread accepts TLS from here on; a failed
    # handshake is an OSError socketserver drops with that connection.
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    receiver.endpoint = receiver.endpoint.replace("http://", "https://", 1)
    return receiver


def test_role_exports_to_jaeger_over_https_verified_with_the_ca(tmp_path, obs):
    pki = write_pki(tmp_path / "pki")
    config = rendered_config(tmp_path, "mdl_api", {**pki["vars"], "mdl_api_db_password": DB_PASSWORD})
    # fixtures/inventory.yml: the first Jaeger is mon-2, on the role's default OTLP/HTTP port.
    port = obs.DEFAULT_LISTEN["jaeger_otlp_http"].rsplit(":", 1)[1]
    assert config["tracing"]["otlp_endpoint"] == f"https://mon-2:{port}/v1/traces"
    assert config["tracing"]["otlp_ca_file"] == tls.tls_files("mdl_api")["ca"]
    # The app's check accepts the role's file once the CA is where it says.
    config["tracing"]["otlp_ca_file"] = pki["ca"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    proc = run_app(["--check-config", "--config", str(tmp_path / "config.json")])
    assert proc.returncode == 0, proc.stderr
    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    plain = rendered_config(plain_dir, "mdl_api", {"obs_tls_enabled": False, "mdl_api_db_password": DB_PASSWORD})
    assert (plain["tracing"]["otlp_endpoint"], plain["tracing"]["otlp_ca_file"]) == (
        f"http://mon-2:{port}/v1/traces",
        "",
    )


def test_preflight_refuses_tls_without_a_ca_certificate(tmp_path):
    extra = {**write_pki(tmp_path / "pki")["vars"], "obs_tls_ca_cert": "not a certificate"}
    proc = render_role(tmp_path, "mdl_api", {**extra, "mdl_api_db_password": DB_PASSWORD})
    assert_refused(proc, "against obs_tls_ca_cert, which is not a PEM certificate", tmp_path, "mdl_api")


def test_spans_reach_an_https_receiver_only_through_the_ca(servers, tmp_path_factory):
    """The exporter verifies the endpoint against otlp_ca_file, also with REQUESTS_CA_BUNDLE set
    (requests would let it replace the CA); a receiver the CA did not sign gets nothing."""
    work = tmp_path_factory.mktemp("mdl-tls")
    pki, stranger = write_pki(work / "pki"), write_pki(work / "stranger")
    receiver = _https_receiver(pki)
    env = {"REQUESTS_CA_BUNDLE": ssl.get_default_verify_paths().openssl_cafile}
    procs = []
    try:
        for name, ca in (("mdl-tls-ok", pki["ca"]), ("mdl-tls-stranger", stranger["ca"])):
            cfg = app_config(
                servers.pg,
                servers.redis,
                receiver.endpoint,
                work / name / "mdl-api.log",
                service_name=name,
                tracing={"otlp_ca_file": ca},
            )
            (work / name).mkdir()
            procs.append(AppProcess(cfg, work / name).start(**env))
        ok, refused = procs
        trace_id = requests.get(ok.url + "/api/v1/domains", timeout=10).headers["X-Trace-Id"]
        spans = receiver.wait_for(lambda s: any(x["trace_id"] == trace_id and x["kind"] == SPAN_SERVER for x in s))
        assert {s["resource"]["service.name"] for s in spans} == {"mdl-tls-ok"}
        lost = requests.get(refused.url + "/api/v1/domains", timeout=10).headers["X-Trace-Id"]
        deadline = time.monotonic() + 15
        while "CERTIFICATE_VERIFY_FAILED" not in refused.stderr_path.read_text() + refused.log_path.read_text():
            assert time.monotonic() < deadline, "the exporter never reported the failed verification"
            time.sleep(0.2)
        assert not receiver.trace(lost)
        assert not [s for s in receiver.spans if s["resource"]["service.name"] == "mdl-tls-stranger"]
    finally:
        for proc in procs:
            proc.stop()
        receiver.close()


# -- instrumentation off, Redis down, stop ------------------------------------
def test_metrics_tracing_and_faults_off_with_redis_down(servers, tmp_path_factory):
    proc = _start(
        servers,
        tmp_path_factory,
        "mdl-off",
        health=503,
        service_name="mdl-api-off",
        metrics={"enabled": False},
        tracing={"enabled": False},
        faults={"enabled": False, "token": ""},
        redis={"port": free_port()},
    )
    try:
        deadline = time.monotonic() + 10
        while (health := requests.get(proc.url + "/health", timeout=10)).json()["checks"]["database"] != "ok":
            assert time.monotonic() < deadline, health.text
            time.sleep(0.2)
        assert health.status_code == 503
        assert health.json()["checks"] == {"database": "ok", "cache": "error"}
        listed = requests.get(proc.url + "/api/v1/domains", timeout=10)
        assert listed.status_code == 200, "a cache failure is a miss: the database answers"
        assert "X-Trace-Id" not in listed.headers and listed.headers["X-Correlation-ID"]
        login = requests.post(
            proc.url + "/api/v1/auth/login", json={"username": "demo", "password": USER_PASSWORD}, timeout=10
        )
        assert login.status_code == 503 and login.json()["error"] == "cache unavailable"
        assert requests.get(proc.url + "/metrics", timeout=5).status_code == 404
        assert (
            requests.get(proc.url + "/admin/faults", headers={"X-Fault-Token": FAULT_TOKEN}, timeout=5).status_code
            == 404
        )
        time.sleep(0.6)
        assert not [s for s in servers.otlp.spans if s["resource"].get("service.name") == "mdl-api-off"]
        lines = [x for x in proc.log_lines() if x["msg"] == "request completed"]
        assert lines and not any("trace_id" in x for x in lines)
    finally:
        assert proc.stop() == 0, "SIGTERM is a clean stop (exit 0)"


def test_fresh_database_concurrent_start_statement_timeout_and_stop_fault(servers, tmp_path_factory):
    """Two instances create the schema of an empty database at once; the queued spans are flushed at exit."""
    servers.pg.psql("CREATE DATABASE mdl_fresh OWNER mdl_api")
    procs = []
    for name in ("mdl-stop-a", "mdl-stop-b"):
        work = tmp_path_factory.mktemp(name)
        cfg = app_config(
            servers.pg,
            servers.redis,
            servers.otlp.endpoint,
            work / "mdl-api.log",
            service_name="mdl-api-stop",
            database={"name": "mdl_fresh", "statement_timeout_ms": 300},
        )
        # Batches every 60 s: a span can only reach the receiver through the shutdown flush.
        procs.append(AppProcess(cfg, work).launch(OTEL_BSP_SCHEDULE_DELAY="60000"))
    try:
        a, b = (p.wait_ready() for p in procs)
        assert servers.pg.psql("SELECT count(*) FROM users", db="mdl_fresh") == "2"
        tables = servers.pg.psql(
            "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'",
            db="mdl_fresh",
        )
        assert tables == "domains,metrics,objectives,users"
        headers = {"X-Fault-Token": FAULT_TOKEN}
        put = requests.put(
            a.url + "/admin/faults", json={"slow_query_seconds": 0.6, "cache_bypass": True}, headers=headers, timeout=10
        )
        assert put.status_code == 200
        resp = requests.get(a.url + "/api/v1/domains", timeout=10)
        assert resp.status_code == 503 and resp.json()["error"] == "database statement timeout"
        assert value(a.scrape(), "errors_total", error_type="database", error_code="57014") >= 1
        assert requests.get(b.url + "/api/v1/domains", timeout=10).status_code == 200
        trace_id = resp.headers["X-Trace-Id"]
        time.sleep(0.5)
        assert not servers.otlp.trace(trace_id), "exported before the shutdown?"
        resp = requests.put(a.url + "/admin/faults", json={"stop": True}, headers=headers, timeout=10)
        assert resp.status_code == 202
        assert a.proc.wait(timeout=15) == 0, "the stop fault exits 0 (systemd Restart=on-failure leaves it down)"
        spans = servers.otlp.trace(trace_id)
        assert any(s["kind"] == SPAN_SERVER for s in spans), "queued spans are flushed on the way out"
        assert b.stop() == 0
    finally:
        for p in procs:
            p.stop()


# -- load generator -----------------------------------------------------------
def test_load_generator_offers_the_rate_and_the_mix(app):
    with pytest.raises(ValueError, match="not loopback or private"):
        mdl_load.LoadGenerator("http://8.8.8.8:3000", 1)
    gen = mdl_load.LoadGenerator(app.url, 25, users=[("demo", USER_PASSWORD)], seed=7, login_share=0.1).start()
    time.sleep(3)
    stats = gen.stop()
    assert 0.85 * 25 <= stats["offered_rate"] <= 1.15 * 25, stats["offered_rate"]
    assert stats["achieved_rate"] >= 0.7 * 25, stats
    assert len(stats["routes"]) >= 6 and "login" in stats["operations"], stats["routes"]
    assert not stats["errors"] and not any(code.startswith("5") for code in stats["status"]), stats["status"]
    assert stats["samples"] and all(HEX32.match(t) and c.startswith("load-") for t, c, _, _ in stats["samples"])
    last = stats["samples"][-1]
    assert (last["trace_id"], last["correlation_id"], last["path"], last["status"]) == tuple(last)
    assert last.get("trace_id") == last[0] and abs(last["time"] - time.time()) < 30
    assert stats["latency_seconds"]["p50"] is not None
    burst = mdl_load.LoadGenerator(
        app.url, 30, users=[("demo", USER_PASSWORD)], login_share=1.0, bad_password_share=1.0, seed_data=False
    ).start()
    time.sleep(2)
    stats = burst.stop()
    assert stats["status"].get("401", 0) / stats["elapsed_seconds"] > 10, stats["status"]
