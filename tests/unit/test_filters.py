"""Unit tests for the monitoring wiring filters in plugins/filter/obs.py."""

from __future__ import annotations

import pytest
from conftest import REPO_ROOT


@pytest.fixture(scope="module")
def filters(obs):
    return obs.FilterModule().filters()


# --------------------------------------------------------------------------
# FilterModule
# --------------------------------------------------------------------------


def test_filter_module_exposes_every_filter(obs, filters):
    assert filters == {
        "release_arch": obs.release_arch,
        "listen_port": obs.listen_port,
        "listen_host": obs.listen_host,
        "duration_seconds": obs.duration_seconds,
        "local_url": obs.local_url,
        "bare_flags": obs.bare_flags,
        "scrape_targets": obs.scrape_targets,
        "is_listen_address": obs.is_listen_address,
        "metric_value": obs.metric_value,
        "scrape_configs": obs.scrape_configs,
        "default_listen": obs.default_listen,
        "obs_differs": obs.obs_differs,
        "binaries_linked": obs.binaries_linked,
        "account_differs": obs.account_differs,
        "unit_running": obs.unit_running,
        "code_digest": obs.code_digest,
        "converge_stamp": obs.converge_stamp,
        "converged": obs.converged,
    }


# --------------------------------------------------------------------------
# release_arch
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("architecture", "expected"),
    [
        ("x86_64", "amd64"),
        ("aarch64", "arm64"),
        ("armv7l", "armv7"),
        ("armv6l", "armv6"),
        ("i386", "386"),
        ("i686", "386"),
        ("ppc64le", "ppc64le"),
        ("s390x", "s390x"),
    ],
)
def test_release_arch_maps_kernel_arch(filters, architecture, expected):
    assert filters["release_arch"](architecture) == expected


@pytest.mark.parametrize("architecture", ["riscv64", "mips64", ""])
def test_release_arch_passes_unknown_arch_through(filters, architecture):
    assert filters["release_arch"](architecture) == architecture


# --------------------------------------------------------------------------
# is_listen_address
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "0.0.0.0:9090",
        ":9100",
        "[::]:9093",
        "host.example:80",
        "127.0.0.1:1",
        "[::1]:65535",
        "my_host-1.example.org:8080",
    ],
)
def test_is_listen_address_accepts(filters, value):
    assert filters["is_listen_address"](value) is True


@pytest.mark.parametrize(
    "value",
    [
        "9090",
        "host:",
        "host:99999",
        "host:65536",
        "host:0",
        ":0",
        None,
        123,
        9090.0,
        ["host:80"],
        "a b:1",
        "",
        "host:80:90",
        "::1:9090",
        "[]:80",
        "http://host:80",
        "host:80/",
        " host:80",
        "host:port",
    ],
)
def test_is_listen_address_rejects(filters, value):
    assert filters["is_listen_address"](value) is False


def test_is_listen_address_rejects_trailing_newline(filters):
    assert filters["is_listen_address"]("host:80\n") is False


# --------------------------------------------------------------------------
# listen_port
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.0.0.0:9090", 9090),
        (":9100", 9100),
        ("[::]:9093", 9093),
        ("host.example:80", 80),
        ("127.0.0.1:65535", 65535),
        ("host:08080", 8080),
    ],
)
def test_listen_port(filters, value, expected):
    port = filters["listen_port"](value)
    assert port == expected
    assert type(port) is int


@pytest.mark.parametrize("value", ["9090", "host:", "a b:1", "", None, "host:port"])
def test_listen_port_rejects_non_listen_address(filters, value):
    with pytest.raises(ValueError, match="not a host:port listen address"):
        filters["listen_port"](value)


def test_listen_port_error_names_the_value(filters):
    with pytest.raises(ValueError, match=r"'bogus'"):
        filters["listen_port"]("bogus")


@pytest.mark.parametrize("value", ["host:0", "host:99999"])
def test_listen_port_rejects_out_of_range_port(filters, value):
    with pytest.raises(ValueError):
        filters["listen_port"](value)


# --------------------------------------------------------------------------
# local_url
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("0.0.0.0:9090", "http://127.0.0.1:9090/"),
        (":9100", "http://127.0.0.1:9100/"),
        ("[::]:9093", "http://127.0.0.1:9093/"),
        ("10.1.2.3:9090", "http://10.1.2.3:9090/"),
        ("127.0.0.1:9090", "http://127.0.0.1:9090/"),
        ("prom.example:9090", "http://prom.example:9090/"),
        ("[::1]:9090", "http://[::1]:9090/"),
    ],
)
def test_local_url_default_path(filters, listen, expected):
    assert filters["local_url"](listen) == expected


@pytest.mark.parametrize(
    ("listen", "path", "expected"),
    [
        ("0.0.0.0:9090", "/-/ready", "http://127.0.0.1:9090/-/ready"),
        (":9100", "/metrics", "http://127.0.0.1:9100/metrics"),
        ("[::]:9093", "/-/healthy", "http://127.0.0.1:9093/-/healthy"),
        ("10.1.2.3:9093", "/-/ready", "http://10.1.2.3:9093/-/ready"),
        ("host.example:80", "/a/b?c=d", "http://host.example:80/a/b?c=d"),
        ("0.0.0.0:9090", "", "http://127.0.0.1:9090"),
    ],
)
def test_local_url_appends_path(filters, listen, path, expected):
    assert filters["local_url"](listen, path) == expected


def test_local_url_scheme(filters):
    assert filters["local_url"]("0.0.0.0:9090", "/-/ready", "https") == ("https://127.0.0.1:9090/-/ready")
    assert filters["local_url"]("prom.example:443", scheme="https") == ("https://prom.example:443/")


@pytest.mark.parametrize("value", ["9090", "host:", "", None, "a b:1"])
def test_local_url_rejects_non_listen_address(filters, value):
    with pytest.raises(ValueError, match="not a host:port listen address"):
        filters["local_url"](value, "/-/ready")


# --------------------------------------------------------------------------
# bare_flags
# --------------------------------------------------------------------------


def test_bare_flags_with_prefix(filters):
    assert filters["bare_flags"](["systemd", "processes"], "collector.") == {
        "collector.systemd": True,
        "collector.processes": True,
    }


def test_bare_flags_without_prefix(filters):
    assert filters["bare_flags"](["web.enable-lifecycle"]) == {"web.enable-lifecycle": True}


def test_bare_flags_negated_prefix(filters):
    assert filters["bare_flags"](["mdadm"], "no-collector.") == {"no-collector.mdadm": True}


@pytest.mark.parametrize("names", [[], None, ()])
def test_bare_flags_empty(filters, names):
    assert filters["bare_flags"](names, "collector.") == {}


def test_bare_flags_deduplicates(filters):
    assert filters["bare_flags"](["systemd", "systemd"], "collector.") == {"collector.systemd": True}


# --------------------------------------------------------------------------
# scrape_targets
# --------------------------------------------------------------------------

LISTEN_VAR = "node_exporter_listen_address"
DEFAULT_LISTEN = "0.0.0.0:9100"


def _targets(filters, hosts, hostvars, listen_var=LISTEN_VAR, default=DEFAULT_LISTEN):
    return filters["scrape_targets"](hosts, hostvars, listen_var, default)


def test_scrape_targets_address_precedence(filters):
    hostvars = {
        "both": {"obs_address": "both.obs.internal", "ansible_host": "10.0.0.1"},
        "ansible-only": {"ansible_host": "10.0.0.2"},
        "name-only": {},
        "obs-only": {"obs_address": "192.0.2.4"},
    }
    assert _targets(filters, ["both", "ansible-only", "name-only", "obs-only"], hostvars) == [
        {"targets": ["both.obs.internal:9100"], "labels": {"instance": "both"}},
        {"targets": ["10.0.0.2:9100"], "labels": {"instance": "ansible-only"}},
        {"targets": ["name-only:9100"], "labels": {"instance": "name-only"}},
        {"targets": ["192.0.2.4:9100"], "labels": {"instance": "obs-only"}},
    ]


def test_scrape_targets_empty_address_vars_fall_through(filters):
    hostvars = {
        "a": {"obs_address": "", "ansible_host": "10.0.0.1"},
        "b": {"obs_address": None, "ansible_host": ""},
    }
    assert _targets(filters, ["a", "b"], hostvars) == [
        {"targets": ["10.0.0.1:9100"], "labels": {"instance": "a"}},
        {"targets": ["b:9100"], "labels": {"instance": "b"}},
    ]


def test_scrape_targets_per_host_listen_override(filters):
    hostvars = {
        "default-port": {"ansible_host": "10.0.0.1"},
        "custom-port": {"ansible_host": "10.0.0.2", LISTEN_VAR: "0.0.0.0:19100"},
        "specific-bind": {"ansible_host": "10.0.0.3", LISTEN_VAR: "10.0.0.3:9200"},
        "v6-bind": {"ansible_host": "10.0.0.4", LISTEN_VAR: "[::]:9300"},
    }
    result = _targets(filters, list(hostvars), hostvars)
    assert [c["targets"] for c in result] == [
        ["10.0.0.1:9100"],
        ["10.0.0.2:19100"],
        ["10.0.0.3:9200"],
        ["10.0.0.4:9300"],
    ]


def test_scrape_targets_ignores_other_listen_vars(filters):
    # Only the listen variable passed in counts; another service's is ignored.
    hostvars = {"h": {"ansible_host": "10.0.0.1", "alertmanager_listen_address": ":19093"}}
    assert _targets(filters, ["h"], hostvars) == [{"targets": ["10.0.0.1:9100"], "labels": {"instance": "h"}}]


def test_scrape_targets_default_port_when_var_missing_or_empty(filters):
    hostvars = {"missing": {}, "empty": {LISTEN_VAR: ""}, "none": {LISTEN_VAR: None}}
    result = _targets(filters, ["missing", "empty", "none"], hostvars, default="0.0.0.0:3000")
    assert result == [
        {"targets": ["missing:3000"], "labels": {"instance": "missing"}},
        {"targets": ["empty:3000"], "labels": {"instance": "empty"}},
        {"targets": ["none:3000"], "labels": {"instance": "none"}},
    ]


def test_scrape_targets_host_absent_from_hostvars(filters):
    assert _targets(filters, ["ghost"], {}) == [{"targets": ["ghost:9100"], "labels": {"instance": "ghost"}}]


def test_scrape_targets_one_static_config_per_host_in_order(filters):
    hosts = ["c", "a", "b"]
    hostvars = {name: {"ansible_host": f"{name}.example"} for name in hosts}
    result = _targets(filters, hosts, hostvars)
    assert len(result) == 3
    assert [c["labels"] for c in result] == [
        {"instance": "c"},
        {"instance": "a"},
        {"instance": "b"},
    ]
    assert all(len(c["targets"]) == 1 for c in result)
    assert all(set(c) == {"targets", "labels"} for c in result)


@pytest.mark.parametrize("hosts", [[], None])
def test_scrape_targets_no_hosts(filters, hosts):
    assert _targets(filters, hosts, {"a": {}}) == []


def test_scrape_targets_hostvars_without_get(filters):
    """A mapping-like object with only __getitem__ (e.g. a custom hostvars)."""

    class GetItemOnly:
        def __init__(self, data):
            self._data = data

        def __getitem__(self, key):
            return self._data[key]

    hostvars = GetItemOnly({"h": {"ansible_host": "10.9.9.9", LISTEN_VAR: ":9999"}})
    assert _targets(filters, ["h"], hostvars) == [{"targets": ["10.9.9.9:9999"], "labels": {"instance": "h"}}]


def test_scrape_targets_invalid_listen_raises(filters):
    with pytest.raises(ValueError, match="not a host:port listen address: '9100'"):
        _targets(filters, ["h"], {"h": {LISTEN_VAR: "9100"}})


def test_scrape_targets_does_not_mutate_inputs(filters):
    hosts = ["h1", "h2"]
    hostvars = {"h1": {"ansible_host": "10.0.0.1"}, "h2": {LISTEN_VAR: ":1"}}
    snapshot = ({k: dict(v) for k, v in hostvars.items()}, list(hosts))
    _targets(filters, hosts, hostvars)
    assert (hostvars, hosts) == snapshot


def test_scrape_targets_brackets_ipv6_address(filters):
    assert _targets(filters, ["v6"], {"v6": {"ansible_host": "2001:db8::1"}}) == [
        {"targets": ["[2001:db8::1]:9100"], "labels": {"instance": "v6"}}
    ]


# --------------------------------------------------------------------------
# metric_value
# --------------------------------------------------------------------------

EXPOSITION = """# HELP alertmanager_config_last_reload_success_timestamp_seconds Last successful reload.
# TYPE alertmanager_config_last_reload_success_timestamp_seconds gauge
alertmanager_config_last_reload_success_timestamp_seconds 1.7961134698785005e+09
alertmanager_config_last_reload_successful 0
alertmanager_notifications_total{integration="email"} 3
alertmanager_notifications_total 9
"""


def test_metric_value_reads_float_samples(filters):
    value = filters["metric_value"](EXPOSITION, "alertmanager_config_last_reload_success_timestamp_seconds")
    assert value == pytest.approx(1796113469.8785005)
    assert filters["metric_value"](EXPOSITION, "alertmanager_config_last_reload_successful") == 0.0


def test_metric_value_ignores_labelled_series_prefixes_and_comments(filters):
    assert filters["metric_value"](EXPOSITION, "alertmanager_notifications_total") == 9.0
    assert filters["metric_value"](EXPOSITION, "alertmanager_config_last_reload") is None
    assert filters["metric_value"](EXPOSITION, "TYPE") is None
    assert filters["metric_value"]("", "x") is None
    assert filters["metric_value"](None, "x") is None


# --------------------------------------------------------------------------
# scrape_configs
# --------------------------------------------------------------------------

JOBS = [
    {"job_name": "prometheus", "group": "prometheus", "var": "prometheus_listen_address",
     "listen": "0.0.0.0:9090", "auth": {"username": "u", "password": "p"}},
    {"job_name": "node", "group": "monitored", "var": "node_exporter_listen_address", "listen": "0.0.0.0:9100",
     "auth": {}},
    {"job_name": "mdl-api", "group": "mdl_api", "var": "mdl_api_listen_address", "listen": "0.0.0.0:3000",
     "auth": {}, "path": "/metrics"},
]  # fmt: skip
GROUPS = {"prometheus": ["mon-1"], "monitored": ["mon-1", "mon-2"], "mdl_api": []}
HOSTVARS = {"mon-1": {"ansible_host": "10.0.0.1"}, "mon-2": {"ansible_host": "10.0.0.2"}}


def test_scrape_configs_one_job_per_non_empty_group(filters):
    configs = filters["scrape_configs"](JOBS, GROUPS, HOSTVARS)
    assert [c["job_name"] for c in configs] == ["prometheus", "node"]
    assert configs[0]["basic_auth"] == {"username": "u", "password": "p"}
    assert "basic_auth" not in configs[1]
    assert configs[1]["static_configs"] == [
        {"targets": ["10.0.0.1:9100"], "labels": {"instance": "mon-1"}},
        {"targets": ["10.0.0.2:9100"], "labels": {"instance": "mon-2"}},
    ]


def test_scrape_configs_metrics_path_only_where_set(filters):
    configs = filters["scrape_configs"](JOBS, {**GROUPS, "mdl_api": ["mon-2"]}, HOSTVARS)
    assert [c.get("metrics_path") for c in configs] == [None, None, "/metrics"]


# --------------------------------------------------------------------------
# default_listen: one place for the default listen addresses
# --------------------------------------------------------------------------


def test_default_listen_is_the_role_default(filters):
    assert filters["default_listen"]("prometheus") == "0.0.0.0:9090"
    assert filters["default_listen"]("alertmanager_cluster") == "0.0.0.0:9094"
    with pytest.raises(ValueError, match="no default listen address for 'tempo'"):
        filters["default_listen"]("tempo")


def test_no_role_or_playbook_repeats_a_default_listen_address(obs):
    """The literal addresses live only in DEFAULT_LISTEN."""
    literals = set(obs.DEFAULT_LISTEN.values())
    offenders = []
    for path in [
        *REPO_ROOT.glob("roles/**/*.yml"),
        *REPO_ROOT.glob("roles/**/*.j2"),
        *REPO_ROOT.glob("playbooks/**/*.yml"),
    ]:
        text = path.read_text()
        offenders += [f"{path.relative_to(REPO_ROOT)}: {lit}" for lit in literals if lit in text]
    assert offenders == []


# --------------------------------------------------------------------------
# obs_differs / binaries_linked / unit_running (skip work whose result is in place)
# --------------------------------------------------------------------------

CONTENT = "global:\n  scrape_interval: 15s\n"
FILE = {
    "exists": True, "type": "file", "owner": "root", "group": "prometheus", "mode": "0640", "target": None,
    "checksum": __import__("hashlib").sha1(CONTENT.encode()).hexdigest(),
}  # fmt: skip


def test_obs_differs_same_file_is_in_place(filters):
    assert not filters["obs_differs"](FILE, CONTENT, "root", "prometheus", "0640")
    assert not filters["obs_differs"](FILE, CONTENT)


@pytest.mark.parametrize(
    ("entry", "args"),
    [
        ({"exists": False}, (CONTENT, "root", "prometheus", "0640")),
        ({}, (CONTENT,)),
        (FILE, (CONTENT + "# hand edit\n", "root", "prometheus", "0640")),
        (FILE, (CONTENT, "prometheus", "prometheus", "0640")),
        (FILE, (CONTENT, "root", "root", "0640")),
        (FILE, (CONTENT, "root", "prometheus", "0644")),
        ({**FILE, "type": "directory"}, (CONTENT,)),
    ],
    ids=["missing", "unknown", "content", "owner", "group", "mode", "type"],
)
def test_obs_differs_any_drift_differs(filters, entry, args):
    assert filters["obs_differs"](entry, *args)


def test_obs_differs_directories_and_links(filters):
    directory = {"exists": True, "type": "directory", "owner": "root", "group": "am", "mode": "0750", "target": None}
    assert not filters["obs_differs"](directory, owner="root", group="am", mode="0750", kind="directory")
    assert filters["obs_differs"](
        {**directory, "mode": "0700"}, owner="root", group="am", mode="0750", kind="directory"
    )
    link = {"exists": True, "type": "link", "target": "/opt/x-1/x"}
    assert not filters["obs_differs"](link, kind="link", target="/opt/x-1/x")
    assert filters["obs_differs"](link, kind="link", target="/opt/x-2/x")


def test_binaries_linked_every_binary_must_point_into_the_version(filters):
    binaries = [{"src": "am-1/alertmanager", "name": "alertmanager"}, {"src": "am-1/amtool", "name": "amtool"}]
    paths = {
        "/usr/local/bin/alertmanager": {"exists": True, "type": "link", "target": "/opt/am-1/am-1/alertmanager"},
        "/usr/local/bin/amtool": {"exists": True, "type": "link", "target": "/opt/am-1/am-1/amtool"},
    }
    assert filters["binaries_linked"](binaries, paths, "/usr/local/bin", "/opt/am-1")
    assert not filters["binaries_linked"](binaries, paths, "/usr/local/bin", "/opt/am-2")
    missing = {**paths, "/usr/local/bin/amtool": {"exists": False}}
    assert not filters["binaries_linked"](binaries, missing, "/usr/local/bin", "/opt/am-1")
    assert not filters["binaries_linked"]([], paths, "/usr/local/bin", "/opt/am-1")


def test_unit_running(filters):
    assert filters["unit_running"]({"active": "active", "enabled": "enabled"})
    assert not filters["unit_running"]({"active": "inactive", "enabled": "enabled"})
    assert not filters["unit_running"]({"active": "active", "enabled": "disabled"})
    assert not filters["unit_running"]({})


def test_account_differs(filters):
    account = {"exists": True, "home": "/var/lib/prometheus", "shell": "/usr/sbin/nologin", "uid": 998}
    assert not filters["account_differs"](account, "/var/lib/prometheus")
    assert filters["account_differs"](account, "/srv/prometheus")
    assert filters["account_differs"]({**account, "shell": "/bin/bash"}, "/var/lib/prometheus")
    assert filters["account_differs"]({"exists": False}, "/var/lib/prometheus")
    assert filters["account_differs"]({}, "/var/lib/prometheus")


def test_account_differs_on_missing_supplementary_groups(filters):
    account = {
        "exists": True,
        "home": "/var/lib/promtail",
        "shell": "/usr/sbin/nologin",
        "groups": ["adm", "systemd-journal"],
    }
    assert not filters["account_differs"](account, "/var/lib/promtail", groups=["systemd-journal"])
    assert filters["account_differs"](account, "/var/lib/promtail", groups=["systemd-journal", "mdl"])
    assert filters["account_differs"]({**account, "groups": []}, "/var/lib/promtail", groups=["systemd-journal"])


@pytest.mark.parametrize(
    ("value", "host"),
    [("0.0.0.0:8888", "0.0.0.0"), (":8888", ""), ("[::1]:8888", "::1"), ("jaeger.internal:8888", "jaeger.internal")],
)
def test_listen_host(obs, value, host):
    assert obs.listen_host(value) == host


def test_listen_host_refuses_a_bare_port(obs):
    with pytest.raises(ValueError, match="not a host:port listen address: '8888'"):
        obs.listen_host("8888")


@pytest.mark.parametrize(
    ("value", "seconds"), [("24h", 86400), ("744h", 2678400), ("1h30m", 5400), ("7d", 604800), ("500ms", 0.5)]
)
def test_duration_seconds(obs, value, seconds):
    assert obs.duration_seconds(value) == seconds


@pytest.mark.parametrize("value", ["", "24", "1 day", "24H", "h24", "-1h"])
def test_duration_seconds_refuses_what_is_not_a_duration(obs, value):
    with pytest.raises(ValueError, match="not a duration"):
        obs.duration_seconds(value)
