"""plugins/filter/verify.py: the comparisons playbooks/verify.yml makes, each shown failing on
the broken state it guards against."""

from __future__ import annotations

import pytest
from conftest import REPO_ROOT, load_module_from_path


@pytest.fixture(scope="module")
def verify():
    return load_module_from_path("verify_filters", REPO_ROOT / "plugins/filter/verify.py").FilterModule().filters()


@pytest.fixture(scope="module")
def configs(obs):
    jobs = [
        {"job_name": "prometheus", "group": "prometheus", "var": "prometheus_listen_address",
         "listen": "0.0.0.0:9090", "auth": {"username": "u", "password": "p"}},
        {"job_name": "node", "group": "monitored", "var": "node_exporter_listen_address",
         "listen": "0.0.0.0:9100", "auth": {}},
    ]  # fmt: skip
    groups = {"prometheus": ["mon-1"], "monitored": ["mon-1", "mon-2"]}
    hostvars = {"mon-1": {"ansible_host": "10.0.0.1"}, "mon-2": {"ansible_host": "10.0.0.2"}}
    return obs.scrape_configs(jobs, groups, hostvars)


def _target(job, instance, address, health="up", error=""):
    return {
        "labels": {"job": job, "instance": instance},
        "discoveredLabels": {"__address__": address, "job": job},
        "health": health,
        "lastError": error,
    }


GOOD = [
    _target("prometheus", "mon-1", "10.0.0.1:9090"),
    _target("node", "mon-1", "10.0.0.1:9100"),
    _target("node", "mon-2", "10.0.0.2:9100"),
]


def test_filter_module(verify):
    assert sorted(verify) == ["rule_report", "set_report", "target_report"]


def test_target_report_all_expected_targets_up(verify, configs):
    assert verify["target_report"](GOOD, configs) == {
        "ok": True, "expected": 3, "up": 3, "missing": [], "unexpected": [], "wrong_address": [], "wrong_scheme": [],
        "down": [],
    }  # fmt: skip


def test_target_report_host_missing_from_the_generated_config_fails(verify, configs):
    """The inventory lists mon-2 but Prometheus does not scrape it: a check that only looks
    at the targets that exist passes this."""
    report = verify["target_report"](GOOD[:2], configs)
    assert not report["ok"]
    assert report["missing"] == ["node/mon-2 (10.0.0.2:9100)"]


def test_target_report_unexpected_target_fails(verify, configs):
    report = verify["target_report"]([*GOOD, _target("node", "old-host", "10.9.9.9:9100")], configs)
    assert not report["ok"]
    assert report["unexpected"] == ["node/old-host (10.9.9.9:9100)"]


def test_target_report_target_at_another_address_fails(verify, configs):
    report = verify["target_report"]([GOOD[0], GOOD[1], _target("node", "mon-2", "10.0.0.99:9100")], configs)
    assert not report["ok"]
    assert report["wrong_address"] == ["node/mon-2 (scraped at 10.0.0.99:9100, the inventory says 10.0.0.2:9100)"]


def test_target_report_down_target_fails_with_its_error(verify, configs):
    down = [GOOD[0], GOOD[1], _target("node", "mon-2", "10.0.0.2:9100", "down", "connection refused")]
    report = verify["target_report"](down, configs)
    assert not report["ok"]
    assert report["down"] == ["node/mon-2 (down: connection refused)"]
    assert report["up"] == 2


def test_target_report_no_targets_is_not_ok(verify):
    assert not verify["target_report"]([], [])["ok"]


def test_target_report_service_discovery_jobs_are_exempt_from_membership(verify):
    sd = [{"job_name": "files", "file_sd_configs": [{"files": ["/etc/prometheus/file_sd/*.yml"]}]}]
    assert verify["target_report"]([_target("files", "x", "10.1.1.1:80")], sd)["ok"]
    static = [{"job_name": "blackbox", "static_configs": [{"targets": ["probe:9115"]}]}]
    assert verify["target_report"]([_target("blackbox", "probe:9115", "probe:9115")], static)["ok"]


URLS = ["http://10.0.0.1:9093/api/v2/alerts", "http://10.0.0.2:9093/api/v2/alerts"]


def test_set_report_equal_sets(verify):
    assert verify["set_report"](list(reversed(URLS)), URLS) == {"ok": True, "missing": [], "unexpected": []}


def test_set_report_same_count_other_url_fails(verify):
    """Two Alertmanagers known, two expected, but not the same two: a count comparison passes this."""
    seen = [URLS[0], "http://10.0.0.9:9093/api/v2/alerts"]
    report = verify["set_report"](seen, URLS)
    assert not report["ok"]
    assert report["missing"] == [URLS[1]]
    assert report["unexpected"] == ["http://10.0.0.9:9093/api/v2/alerts"]


def test_set_report_nothing_expected_is_not_ok(verify):
    assert not verify["set_report"]([], [])["ok"]


def _group(name, interval, *rules):
    rules = [{"name": n, "health": h, "lastError": e} for n, h, e in rules]
    return {"name": name, "interval": interval, "rules": rules}


def test_rule_report_healthy(verify):
    report = verify["rule_report"]([_group("a", 15, ("r1", "ok", "")), _group("b", 30, ("r2", "ok", ""))])
    assert report == {"ok": True, "groups": 2, "rules": 2, "unhealthy": [], "unknown": [], "max_interval": 30.0}


def test_rule_report_never_evaluated_rule_is_not_ok(verify):
    """health "unknown" used to be accepted forever."""
    report = verify["rule_report"]([_group("a", 15, ("r1", "ok", ""), ("r2", "unknown", ""))])
    assert not report["ok"]
    assert report["unknown"] == ["a/r2"]


def test_rule_report_evaluation_error_is_reported(verify):
    report = verify["rule_report"]([_group("a", 15, ("r1", "err", "vector contains metrics with the same labelset"))])
    assert not report["ok"]
    assert report["unhealthy"] == ["a/r1 (err: vector contains metrics with the same labelset)"]


def test_rule_report_no_groups_is_not_ok(verify):
    assert not verify["rule_report"]([])["ok"]


def test_target_report_a_target_scraped_over_the_wrong_scheme_fails(verify, obs):
    """TLS on: the job says https, Prometheus' own scrapeUrl says http (an old config still loaded)."""
    jobs = [{"job_name": "node", "group": "monitored", "var": "node_exporter_listen_address",
             "listen": "0.0.0.0:9100", "auth": {}, "tls": True}]  # fmt: skip
    configs = obs.scrape_configs(
        jobs, {"monitored": ["mon-1"]}, {"mon-1": {"ansible_host": "10.0.0.1"}}, "/etc/ssl/obs/ca.crt"
    )
    assert configs[0]["scheme"] == "https" and configs[0]["tls_config"] == {"ca_file": "/etc/ssl/obs/ca.crt"}
    target = {**_target("node", "mon-1", "10.0.0.1:9100"), "scrapeUrl": "http://10.0.0.1:9100/metrics"}
    report = verify["target_report"]([target], configs)
    assert not report["ok"]
    assert report["wrong_scheme"] == ["node/mon-1 (scraped over http, the inventory says https)"]
    target["scrapeUrl"] = "https://10.0.0.1:9100/metrics"
    assert verify["target_report"]([target], configs)["ok"]


def test_scrape_configs_refuse_tls_without_a_ca(obs):
    jobs = [{"job_name": "node", "group": "monitored", "var": "v", "listen": "0.0.0.0:9100", "auth": {}, "tls": True}]
    with pytest.raises(ValueError, match="scraped over TLS but no CA file"):
        obs.scrape_configs(jobs, {"monitored": ["mon-1"]}, {"mon-1": {}})
