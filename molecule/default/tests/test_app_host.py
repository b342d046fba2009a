"""The application host: the reference MDL API, PostgreSQL, Redis and postgres_exporter as the roles left them."""

import json

import pytest


@pytest.fixture
def app(want):
    if not want.get("mdl_api"):
        pytest.skip("this host runs no reference MDL API")
    return want["mdl_api_expect"]


@pytest.mark.parametrize("unit", ["mdl-api", "postgresql", "redis-server", "prometheus-postgres-exporter"])
def test_units_running_and_enabled(host, app, unit):
    assert host.service(unit).is_running, host.run(f"journalctl -u {unit} -n 30 --no-pager").stdout
    assert host.service(unit).is_enabled


def test_mdl_api_runs_unprivileged_and_hardened(host, app):
    out = host.check_output(
        "systemctl show mdl-api -p User -p NoNewPrivileges -p ProtectSystem -p ReadWritePaths -p MainPID"
    )
    props = dict(line.split("=", 1) for line in out.splitlines())
    assert (props["User"], props["NoNewPrivileges"], props["ProtectSystem"]) == (app["user"], "yes", "strict")
    assert props["ReadWritePaths"] == app["log_path"].rsplit("/", 1)[0]
    assert host.check_output(f"stat -c %U /proc/{props['MainPID']}") == app["user"]


def test_config_holds_secrets_so_it_is_0640_root_service_and_was_checked(host, app):
    live = host.file("/etc/mdl-api/config.json")
    assert (live.user, live.group, live.mode) == ("root", app["user"], 0o640)
    assert live.sha256sum == host.file("/etc/mdl-api/config.json.candidate").sha256sum
    config = json.loads(live.content_string)
    assert (config["service_name"], config["version"], config["environment"]) == (
        app["service_name"],
        app["version"],
        app["environment"],
    )
    assert config["database"]["pool_max"] == int(app["pool_max"])
    assert config["tracing"]["otlp_endpoint"] == app["otlp_endpoint"]


def test_health_checks_database_and_cache(host, app):
    health = json.loads(host.check_output(f"curl -sS --max-time 5 -f {app['local_url']}/health"))
    assert health == {"status": "ok", "checks": {"database": "ok", "cache": "ok"}}


def test_exported_pool_size_is_the_inventory_pool(host, app):
    metrics = host.check_output(f"curl -sS --max-time 5 -f {app['local_url']}/metrics")
    (line,) = [m for m in metrics.splitlines() if m.startswith("db_connections_max")]
    assert float(line.rsplit(" ", 1)[1]) == float(app["pool_max"])


def test_log_is_json_and_never_holds_the_login_password(host, app, secrets):
    log = host.file(app["log_path"])
    assert log.exists and log.user == app["user"] and log.group == "adm"
    text = log.content_string
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines and all({"level", "time", "msg"} <= set(line) for line in lines)
    for secret in ("vault_mdl_api_demo_password", "vault_mdl_api_db_password", "vault_redis_password"):
        assert secrets[secret] not in text, f"{secret} appears in the application log"
