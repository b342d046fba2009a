"""Render roles/prometheus/templates/prometheus.yml.j2 through Ansible and check it.

The template is rendered by ansible-playbook (fixtures/render_prometheus.yml)
with the role defaults and a fixture inventory, then the YAML is inspected and
validated with the real `promtool check config`.
"""

from __future__ import annotations

import pytest
import yaml
from conftest import FIXTURES, REPO_ROOT

PROM_AUTH = {"username": "prom-user", "password": "prom-secret"}
AM_AUTH = {"username": "am-user", "password": "am-secret"}

# fixtures/inventory.yml: job -> {inventory host: expected target}, in group order.
EXPECTED_TARGETS = {
    "prometheus": {"mon-1": "10.0.0.1:9090"},
    "alertmanager": {"mon-1": "10.0.0.1:9093", "mon-2": "mon-2.obs.internal:19093"},
    "node": {
        "mon-1": "10.0.0.1:9100",
        "mon-2": "mon-2.obs.internal:9100",
        "mon-3": "mon-3:9100",
    },
    "loki": {"mon-1": "10.0.0.1:3100"},
    "promtail": {"mon-1": "10.0.0.1:9080", "mon-2": "mon-2.obs.internal:9080", "mon-3": "mon-3:9080"},
    "jaeger": {"mon-2": "mon-2.obs.internal:18888"},
    "mdl-api": {"api-1": "10.0.1.1:3000", "api-2": "10.0.1.2:8080"},
    "postgres": {"db-1": "10.0.2.1:9187"},
}


def _load(path):
    return yaml.safe_load(path.read_text())


def _jobs(config) -> dict:
    return {sc["job_name"]: sc for sc in config["scrape_configs"]}


def _instance_targets(job) -> dict:
    """{labels.instance: target} for a job, asserting one target per static_config."""
    result = {}
    for static in job["static_configs"]:
        assert len(static["targets"]) == 1, static
        assert set(static["labels"]) == {"instance"}, static
        result[static["labels"]["instance"]] = static["targets"][0]
    return result


# --------------------------------------------------------------------------
# Renders (one ansible-playbook run each, shared by the module)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_path(render_prometheus):
    return render_prometheus("inventory.yml")


@pytest.fixture(scope="module")
def full(full_path):
    return _load(full_path)


@pytest.fixture(scope="module")
def no_apps_path(render_prometheus):
    return render_prometheus("inventory_no_apps.yml")


@pytest.fixture(scope="module")
def minimal_path(render_prometheus):
    return render_prometheus("inventory_minimal.yml")


@pytest.fixture(scope="module")
def broken_extra_path(render_prometheus):
    return render_prometheus(
        "inventory.yml",
        {
            "prometheus_scrape_configs_extra": [
                {
                    "job_name": "broken-extra",
                    "scrape_interval": "notaduration",
                    "static_configs": [{"targets": ["extra.example:9999"]}],
                }
            ]
        },
    )


# --------------------------------------------------------------------------
# Full inventory
# --------------------------------------------------------------------------


def test_header_is_a_managed_comment(full_path):
    first_line = full_path.read_text().splitlines()[0]
    assert first_line.startswith("# ")
    assert "Ansible managed" in first_line


def test_top_level_keys(full):
    assert set(full) == {"global", "rule_files", "alerting", "scrape_configs"}


def test_global_section(full):
    assert full["global"] == {
        "scrape_interval": "30s",
        "scrape_timeout": "10s",
        "evaluation_interval": "15s",
        # replica: the rendered host's inventory name (prometheus_replica_label).
        "external_labels": {"cluster": "unit-cluster", "environment": "unit-test", "replica": "mon-1"},
    }


def test_inventory_outranks_role_defaults(full):
    """The render ranks variables as a real run does: the inventory's value wins over the role default."""
    defaults = yaml.safe_load((REPO_ROOT / "roles/prometheus/defaults/main.yml").read_text())
    inventory = yaml.safe_load((FIXTURES / "inventory.yml").read_text())["all"]["vars"]
    assert inventory["prometheus_scrape_interval"] != defaults["prometheus_scrape_interval"]
    assert full["global"]["scrape_interval"] == inventory["prometheus_scrape_interval"]


def test_rule_files(full):
    assert full["rule_files"] == ["/etc/prometheus/rules/*.rules.yml"]


def test_replica_label_is_dropped_from_alerts(full):
    """HA: both servers send an alert with the same labels once the replica label is dropped,
    so Alertmanager keeps one alert and notifies once (the molecule scenario shows it at the sink)."""
    assert full["alerting"]["alert_relabel_configs"] == [{"action": "labeldrop", "regex": "replica"}]
    assert "replica" in full["global"]["external_labels"]


def test_alerting_alertmanagers(full):
    alertmanagers = full["alerting"]["alertmanagers"]
    assert len(alertmanagers) == 1
    am = alertmanagers[0]
    assert am["api_version"] == "v2"
    assert am["scheme"] == "http"
    assert am["static_configs"] == [
        {"targets": ["10.0.0.1:9093", "mon-2.obs.internal:19093"]},
    ]
    assert am["basic_auth"] == AM_AUTH


def test_scrape_job_names_in_order(full):
    assert [sc["job_name"] for sc in full["scrape_configs"]] == [
        "prometheus",
        "alertmanager",
        "node",
        "loki",
        "promtail",
        "jaeger",
        "mdl-api",
        "postgres",
    ]


@pytest.mark.parametrize("job_name", list(EXPECTED_TARGETS))
def test_scrape_job_targets_and_instance_labels(full, job_name):
    job = _jobs(full)[job_name]
    assert job["scheme"] == "http"
    # dict equality checks labels.instance == inventory name for every target,
    # and that there is exactly one static_config per inventory host.
    assert _instance_targets(job) == EXPECTED_TARGETS[job_name]
    assert [s["labels"]["instance"] for s in job["static_configs"]] == list(EXPECTED_TARGETS[job_name])


def test_every_target_instance_is_an_inventory_host(full):
    inventory_hosts = {"mon-1", "mon-2", "mon-3", "api-1", "api-2", "db-1"}
    for job in full["scrape_configs"]:
        for static in job["static_configs"]:
            assert static["labels"]["instance"] in inventory_hosts, (job["job_name"], static)


def test_mdl_api_job(full):
    job = _jobs(full)["mdl-api"]
    assert job["metrics_path"] == "/metrics"
    assert sorted(t.rsplit(":", 1)[1] for t in _instance_targets(job).values()) == [
        "3000",
        "8080",
    ]


def test_metrics_path_only_on_app_job(full):
    assert [sc["job_name"] for sc in full["scrape_configs"] if "metrics_path" in sc] == ["mdl-api"]


def test_postgres_job_default_port(full):
    assert _instance_targets(_jobs(full)["postgres"]) == {"db-1": "10.0.2.1:9187"}


def test_basic_auth_per_job(full):
    jobs = _jobs(full)
    assert jobs["prometheus"]["basic_auth"] == PROM_AUTH
    assert jobs["alertmanager"]["basic_auth"] == AM_AUTH
    for name in ("node", "mdl-api", "postgres"):
        assert "basic_auth" not in jobs[name], name


def test_full_config_passes_promtool(full_path, promtool_check_config):
    proc = promtool_check_config(full_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


# --------------------------------------------------------------------------
# Application groups present but empty
# --------------------------------------------------------------------------


def test_empty_app_groups_drop_their_jobs(no_apps_path):
    config = _load(no_apps_path)
    # Promtail runs on every monitored host, so its job stays.
    assert [sc["job_name"] for sc in config["scrape_configs"]] == [
        "prometheus",
        "alertmanager",
        "node",
        "promtail",
    ]
    jobs = _jobs(config)
    assert _instance_targets(jobs["node"]) == {
        "mon-1": "10.0.0.1:9100",
        "mon-2": "10.0.0.2:9100",
    }
    assert config["alerting"]["alertmanagers"][0]["static_configs"] == [{"targets": ["10.0.0.1:9093"]}]


def test_empty_app_groups_config_passes_promtool(no_apps_path, promtool_check_config):
    proc = promtool_check_config(no_apps_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------
# Groups absent, no basic auth
# --------------------------------------------------------------------------


def test_minimal_inventory(minimal_path):
    config = _load(minimal_path)
    assert "alerting" not in config
    assert config["global"]["external_labels"] == {
        "cluster": "minimal-cluster",
        "environment": "minimal",
        "replica": "solo",
    }
    assert config["scrape_configs"] == [
        {
            "job_name": "prometheus",
            "scheme": "http",
            "static_configs": [{"targets": ["192.0.2.10:9090"], "labels": {"instance": "solo"}}],
        },
        {
            "job_name": "node",
            "scheme": "http",
            "static_configs": [{"targets": ["192.0.2.10:9100"], "labels": {"instance": "solo"}}],
        },
        {
            "job_name": "promtail",
            "scheme": "http",
            "static_configs": [{"targets": ["192.0.2.10:9080"], "labels": {"instance": "solo"}}],
        },
    ]


def test_minimal_config_passes_promtool(minimal_path, promtool_check_config):
    proc = promtool_check_config(minimal_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------
# prometheus_scrape_configs_extra
# --------------------------------------------------------------------------


def test_extra_scrape_config_appended_verbatim(broken_extra_path):
    config = _load(broken_extra_path)
    assert [sc["job_name"] for sc in config["scrape_configs"]][-2:] == [
        "postgres",
        "broken-extra",
    ]
    assert config["scrape_configs"][-1] == {
        "job_name": "broken-extra",
        "scrape_interval": "notaduration",
        "static_configs": [{"targets": ["extra.example:9999"]}],
    }


def test_invalid_extra_scrape_config_fails_promtool(broken_extra_path, promtool_check_config):
    proc = promtool_check_config(broken_extra_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "FAILED" in output
    assert 'not a valid duration string: "notaduration"' in output


# --------------------------------------------------------------------------
# The shipped example inventories render a configuration promtool accepts.
# --------------------------------------------------------------------------

EXAMPLE_SECRETS = {"vault_prometheus_password": "example-pw", "vault_alertmanager_password": "example-pw"}


@pytest.mark.parametrize(
    ("environment", "monitored", "alertmanagers"),
    [("staging", 3, 1), ("production", 7, 3)],
)
def test_example_inventory_renders_valid_config(
    render_prometheus, promtool_check_config, environment, monitored, alertmanagers
):
    path = render_prometheus(f"../../../inventories/{environment}", EXAMPLE_SECRETS)
    config = yaml.safe_load(path.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert config["global"]["external_labels"]["cluster"] == f"mdl-{environment}"
    node_targets = [t for sc in jobs["node"]["static_configs"] for t in sc["targets"]]
    assert len(node_targets) == monitored
    assert all(t.startswith("10.") and t.endswith(":9100") for t in node_targets)
    assert len(config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]) == alertmanagers
    assert jobs["mdl-api"]["metrics_path"] == "/metrics"
    result = promtool_check_config(path)
    assert result.returncode == 0, result.stdout + result.stderr
