"""PostgreSQL, Redis and postgres_exporter as the postgresql, redis and postgres_exporter roles configure them.

Rendered through ansible-playbook (fixtures/render_postgresql.yml, render_redis.yml,
render_postgres_exporter.yml) with each role's preflight first: a bad input must be
refused there, naming it, before any file is written. The rendered files are then
given to the real servers: a throwaway PostgreSQL cluster (initdb as the postgres OS
user) that includes the rendered conf.d/obs.conf and answers the same check the role
runs on the host (pg_file_settings, pg_hba_file_rules, pending_restart), and a
throwaway redis-server started with the rendered obs.conf, asked with CONFIG GET.
The Redis config checker the role installs (roles/redis/files/obs-redis-check-config)
is run as the role runs it.

The servers come from Debian's postgresql and redis-server packages (scripts/setup.sh
installs them). Missing, they are a failure under OBS_REQUIRE_TOOLS=1 (make unit) and
a skip otherwise, like the tools of conftest.require_tool. The PostgreSQL tests run
the server as the postgres OS user, so they need root (runuser).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import pytest
from conftest import REPO_ROOT, STRICT, assert_refused, free_port, render_role, rendered_config
from pki import new_key, pem, write_pki

sys.path.insert(0, str(REPO_ROOT / "plugins" / "filter"))
import tls

SETUP_HINT = "scripts/setup.sh installs Debian's postgresql and redis-server packages"
CHECKER = REPO_ROOT / "roles" / "redis" / "files" / "obs-redis-check-config"


def _missing(message: str):
    """A missing server binary: a failure under OBS_REQUIRE_TOOLS=1, else a skip (conftest.require_tool)."""
    if STRICT:
        pytest.fail(f"{message}: {SETUP_HINT} (OBS_REQUIRE_TOOLS=1: make unit and make test never skip)", pytrace=False)
    pytest.skip(f"{message}: {SETUP_HINT}")


def _pg_bindir() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin with initdb and postgres (or OBS_PG_BINDIR)."""
    candidates = [Path(os.environ["OBS_PG_BINDIR"])] if os.environ.get("OBS_PG_BINDIR") else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    _missing("no PostgreSQL server binaries under /usr/lib/postgresql/<major>/bin")
    raise AssertionError  # unreachable: _missing fails or skips


def _redis_binaries() -> tuple[Path, Path]:
    server = Path(os.environ.get("OBS_REDIS_SERVER", "/usr/bin/redis-server"))
    cli = Path(os.environ.get("OBS_REDIS_CLI", "/usr/bin/redis-cli"))
    for path in (server, cli):
        if not (path.is_file() and os.access(path, os.X_OK)):
            _missing(f"{path} is missing")
    return server, cli


def _conf_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


# --------------------------------------------------------------------------
# PostgreSQL: rendering and preflight
# --------------------------------------------------------------------------


def _pg_settings(text: str) -> dict[str, str]:
    """obs.conf as PostgreSQL reads it: name = 'value' with '' and backslash escapes."""
    out = {}
    for line in _conf_lines(text):
        match = re.fullmatch(r"([a-z_][a-z0-9_.]*) = '((?:[^'\\]|''|\\.)*)'", line)
        assert match, f"not a name = 'value' line: {line!r}"
        out[match.group(1)] = re.sub(r"\\(.)", r"\1", match.group(2).replace("''", "'"))
    return out


def test_postgresql_defaults_render_the_contract_variables(tmp_path):
    rendered = rendered_config(tmp_path, "postgresql")
    assert _pg_settings(rendered["obs.conf"]) == {
        "listen_addresses": "127.0.0.1",
        "port": "5432",
        "max_connections": "100",
        "log_min_duration_statement": "500ms",
        "log_lock_waits": "on",
        "track_io_timing": "on",
        "password_encryption": "scram-sha-256",
    }
    assert rendered["settings"] == _pg_settings(rendered["obs.conf"])


def test_postgresql_settings_are_quoted_and_escaped(tmp_path):
    extra = {
        "postgresql_listen_addresses": ["127.0.0.1", "::1", "db-1.example.org"],
        "postgresql_port": 5433,
        "postgresql_max_connections": 250,
        "postgresql_settings": {"Work_Mem": "8MB", "jit": False, "application_name": "it's \\ mdl"},
    }
    settings = _pg_settings(rendered_config(tmp_path, "postgresql", extra)["obs.conf"])
    assert settings == {
        "listen_addresses": "127.0.0.1,::1,db-1.example.org",
        "port": "5433",
        "max_connections": "250",
        "work_mem": "8MB",
        "jit": "off",
        "application_name": "it's \\ mdl",
    }


def test_pg_hba_puts_the_entries_between_the_admin_line_and_debians_defaults(tmp_path):
    entries = [
        {"type": "host", "database": "mdl", "user": "mdl_api", "address": "10.0.1.0/24"},
        {"type": "local", "database": "mdl", "user": "mdl_api", "method": "scram-sha-256"},
        {"type": "hostssl", "database": "all", "user": "all", "address": "0.0.0.0/0", "method": "reject"},
    ]
    rendered = rendered_config(tmp_path, "postgresql", {"postgresql_hba_entries": entries})
    rules = [line.split() for line in _conf_lines(rendered["pg_hba.conf"])]
    assert rules[0] == ["local", "all", "postgres", "peer", "map=obs_admin"]
    assert rules[1:4] == [
        ["host", "mdl", "mdl_api", "10.0.1.0/24", "scram-sha-256"],
        ["local", "mdl", "mdl_api", "scram-sha-256"],
        ["hostssl", "all", "all", "0.0.0.0/0", "reject"],
    ]
    assert rules[4] == ["local", "all", "all", "peer"]
    assert [line.split() for line in _conf_lines(rendered["pg_ident.conf"])] == [
        ["obs_admin", "postgres", "postgres"],
        ["obs_admin", "root", "postgres"],
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"postgresql_listen_addresses": ["10.0.0.300"]}, "not an address: 10.0.0.300"),
        ({"postgresql_listen_addresses": ["127.0.0.1:5432"]}, "postgresql_listen_addresses must be a list of IP"),
        ({"postgresql_listen_addresses": "127.0.0.1"}, "postgresql_listen_addresses must be a list of IP"),
        ({"postgresql_port": 70000}, "postgresql_port must be a port 1-65535 (got 70000)"),
        ({"postgresql_max_connections": 0}, "postgresql_max_connections a positive number (got 0)"),
        ({"postgresql_settings": {"port": 5433}}, "port cannot be set there: use postgresql_listen_addresses"),
        ({"postgresql_settings": {"work mem": "4MB"}}, "postgresql_settings must map setting names"),
        ({"postgresql_settings": {"work_mem": ["4MB"]}}, "(not a single value: work_mem)"),
        (
            {"postgresql_users": [{"name": "mdl_api", "password": ""}]},
            "postgresql_users: mdl_api has no password: set it from a vault variable",
        ),
        ({"postgresql_users": [{"name": "mdl_api"}]}, "postgresql_users: mdl_api has no password"),
        ({"postgresql_users": [{"name": "postgres", "password": "x"}]}, "needs a name (lower-case letters"),
        (
            {"postgresql_users": [{"name": "a", "password": "x"}, {"name": "a", "password": "y"}]},
            "postgresql_users: a is listed twice",
        ),
        (
            {"postgresql_users": [{"name": "a", "password": "x", "groups": "pg_monitor"}]},
            "a: groups must be a list of role names",
        ),
        (
            {"postgresql_databases": [{"name": "mdl", "owner": "nobody"}]},
            "postgresql_databases: mdl: owner must be one of postgresql_users or postgres",
        ),
        (
            {
                "postgresql_hba_entries": [
                    {"type": "host", "database": "all", "user": "all", "address": "0/0", "method": "trust"}
                ]
            },
            'postgresql_hba_entries[0]: method must be one of scram-sha-256, peer, cert, reject (got "trust")',
        ),
        (
            {"postgresql_hba_entries": [{"type": "hots", "database": "all", "user": "all", "address": "::1/128"}]},
            "postgresql_hba_entries[0]: type must be one of local, host",
        ),
        (
            {"postgresql_hba_entries": [{"type": "host", "database": "all", "user": "all"}]},
            "postgresql_hba_entries[0]: type host needs an address",
        ),
        (
            {"postgresql_hba_entries": [{"type": "local", "database": "all", "user": "all", "address": "::1/128"}]},
            "postgresql_hba_entries[0]: type local takes no address",
        ),
        (
            {"postgresql_hba_entries": [{"type": "host", "database": "my db", "user": "all", "address": "::1/128"}]},
            "postgresql_hba_entries[0]: database must be a name",
        ),
    ],
    ids=[
        "address-octet",
        "address-with-port",
        "addresses-not-a-list",
        "port",
        "max-connections",
        "reserved-setting",
        "setting-name",
        "setting-value",
        "empty-password",
        "no-password",
        "user-postgres",
        "duplicate-user",
        "groups-string",
        "db-owner",
        "hba-method",
        "hba-type",
        "hba-no-address",
        "hba-local-address",
        "hba-database",
    ],
)
def test_postgresql_bad_input_is_refused_in_preflight(tmp_path, extra, message):
    assert_refused(render_role(tmp_path, "postgresql", extra), message, tmp_path, "postgresql")


def test_postgresql_preflight_never_shows_a_password(tmp_path):
    secret = "Sup3r-secret-pw"
    users = [{"name": "mdl_api", "password": secret}, {"name": "mdl_api", "password": secret}]
    proc = render_role(tmp_path, "postgresql", {"postgresql_users": users})
    assert proc.returncode != 0 and "listed twice" in proc.stdout
    assert secret not in proc.stdout + proc.stderr


def test_postgresql_common_reads_obs_conf(tmp_path):
    """pg_lsclusters, pg_ctlcluster and psql's wrapper parse conf.d themselves (PgCommon) and stop at a line they
    cannot read: the rendered file must be one they read, to the same values."""
    if not Path("/usr/share/perl5/PgCommon.pm").is_file() or not shutil.which("perl"):
        _missing("postgresql-common (PgCommon.pm) is missing")
    extra = {"postgresql_settings": {"application_name": "it's \\ mdl", "work_mem": "8MB"}}
    rendered = rendered_config(tmp_path, "postgresql", extra)
    conf = tmp_path / "obs.conf"
    conf.write_text(rendered["obs.conf"])
    script = "use PgCommon; use JSON::PP; my %c = PgCommon::read_conf_file($ARGV[0]); print encode_json(\\%c);"
    proc = subprocess.run(["perl", "-e", script, str(conf)], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == rendered["settings"]


# --------------------------------------------------------------------------
# PostgreSQL: the rendered files on a real server
# --------------------------------------------------------------------------


class Cluster:
    """A throwaway PostgreSQL cluster run by the postgres OS user, whose postgresql.conf includes conf.d/."""

    def __init__(self, bindir: Path, root: Path, port: int):
        self.bindir, self.root, self.port = bindir, root, port
        self.data = root / "data"
        self.conf_path = self.data / "conf.d" / "obs.conf"

    def as_postgres(self, *argv, check=True, **kwargs) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["runuser", "-u", "postgres", "--", *map(str, argv)],
            capture_output=True, text=True, timeout=120, check=False, **kwargs,
        )  # fmt: skip
        assert not check or proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def write(self, name: str, text: str) -> None:
        path = self.conf_path if name == "obs.conf" else self.data / name
        path.write_text(text)
        shutil.chown(path, "postgres", "postgres")

    def psql(self, *statements: str, user: str | None = None, check=True) -> subprocess.CompletedProcess:
        argv = [self.bindir / "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.root, "-p", self.port]
        argv += ["-d", "postgres"] + [arg for s in statements for arg in ("-c", s)]
        if user is None:
            return self.as_postgres(*argv, check=check)
        proc = subprocess.run(
            [*map(str, argv), "-U", user], capture_output=True, text=True, timeout=60, check=False
        )  # fmt: skip
        assert not check or proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def check(self, statements: list[str]) -> tuple[dict, str]:
        """The role's check (its statements, as rendered): the JSON report and the server's DEBUG messages."""
        proc = self.psql(*statements)
        return json.loads(proc.stdout.splitlines()[-1]), proc.stderr

    def show(self, name: str) -> str:
        return self.psql(f"SHOW {name}").stdout.strip()

    def ctl(self, action: str) -> None:
        self.as_postgres(self.bindir / "pg_ctl", "-D", self.data, "-l", self.root / "log", "-w", action)


def _render_pg(tmp_path, cluster: Cluster, extra: dict | None = None) -> dict:
    """The role's files and check statements for this cluster (its port, its obs.conf path)."""
    base = {"postgresql_port": cluster.port, "_postgresql_conf_path": str(cluster.conf_path)}
    return rendered_config(tmp_path, "postgresql", {**base, **(extra or {})})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    bindir = _pg_bindir()
    if os.geteuid() != 0 or not shutil.which("runuser"):
        _missing("the PostgreSQL tests start the server as the postgres OS user: they need root and runuser")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        _missing("there is no postgres OS user")
    # Under /tmp, not pytest's tmp_path: the postgres user must reach the directory.
    root = Path(tempfile.mkdtemp(prefix="obs-pg-"))
    shutil.chown(root, "postgres", "postgres")
    pg = Cluster(bindir, root, free_port())
    pg.as_postgres(bindir / "initdb", "-D", pg.data, "-A", "peer", "--auth-host=scram-sha-256", "-E", "UTF8")
    (pg.data / "conf.d").mkdir()
    shutil.chown(pg.data / "conf.d", "postgres", "postgres")
    with (pg.data / "postgresql.conf").open("a") as conf:
        # As Debian's postgresql.conf: include_dir 'conf.d' (at its end); the socket in the test's directory.
        conf.write(f"unix_socket_directories = '{root}'\ninclude_dir = 'conf.d'\n")
    rendered = _render_pg(tmp_path_factory.mktemp("render-pg"), pg)
    for name in ("obs.conf", "pg_hba.conf", "pg_ident.conf"):
        pg.write(name, rendered[name])
    pg.ctl("start")
    pg.rendered = rendered
    yield pg
    pg.ctl("stop")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def restore(cluster):
    """Each test leaves the cluster's files as the default render wrote them (and loaded)."""
    yield
    for name in ("obs.conf", "pg_hba.conf", "pg_ident.conf"):
        cluster.write(name, cluster.rendered[name])
    cluster.ctl("reload")


def test_server_accepts_the_rendered_files_and_shows_the_values(cluster, restore):
    report, _ = cluster.check(cluster.rendered["check_statements"])
    assert (report["errors"], report["hba_errors"], report["pending_restart"]) == ([], [], [])
    assert report["included"] == len(cluster.rendered["settings"]), "every obs.conf line is read by the server"
    for name, value in cluster.rendered["settings"].items():
        assert cluster.show(name) == value, name
    assert cluster.show("listen_addresses") == "127.0.0.1"
    assert cluster.show("port") == str(cluster.port)


def test_quoted_values_reach_the_server_unchanged(tmp_path, cluster, restore):
    value = "%m it's \\ mdl "
    rendered = _render_pg(tmp_path, cluster, {"postgresql_settings": {"log_line_prefix": value, "work_mem": "8MB"}})
    cluster.write("obs.conf", rendered["obs.conf"])
    report, _ = cluster.check(rendered["check_statements"])
    assert (report["errors"], report["pending_restart"]) == ([], [])
    cluster.ctl("reload")
    time.sleep(1)
    assert cluster.psql("SELECT current_setting('log_line_prefix')").stdout.rstrip("\n") == value
    assert cluster.show("work_mem") == "8MB"


@pytest.mark.parametrize(
    "case",
    [
        ({"work_mem": "8XB"}, "work_mem", 'invalid value for parameter "work_mem": "8XB"'),
        ({"shared_buffers": "lots"}, "shared_buffers", 'invalid value for parameter "shared_buffers": "lots"'),
        ({"log_min_duration_statement": "soon"}, "log_min_duration_statement", '"log_min_duration_statement"'),
        ({"wrok_mem": "4MB"}, "wrok_mem", ""),
    ],
    ids=["reload-setting", "restart-setting", "duration", "unknown-name"],
)
def test_a_broken_value_is_reported_by_pg_file_settings(tmp_path, cluster, restore, case):
    """The preflight cannot know every setting's syntax; the server's check catches the rest before a reload."""
    settings, name, reason = case
    rendered = _render_pg(tmp_path, cluster, {"postgresql_settings": settings})
    cluster.write("obs.conf", rendered["obs.conf"])
    report, messages = cluster.check(rendered["check_statements"])
    assert [e["name"] for e in report["errors"]] == [name]
    (error,) = report["errors"]
    assert error["file"] == str(cluster.conf_path) and error["line"] > 0 and error["error"]
    assert name not in report["pending_restart"]
    assert reason in messages, messages


def test_a_valid_restart_only_change_is_pending_not_an_error(tmp_path, cluster, restore):
    """pg_file_settings reports a changed max_connections as 'setting could not be applied' too; the role's check
    tells it from a broken value through pending_restart and restarts instead of failing."""
    rendered = _render_pg(tmp_path, cluster, {"postgresql_max_connections": 50})
    cluster.write("obs.conf", rendered["obs.conf"])
    report, _ = cluster.check(rendered["check_statements"])
    assert report["errors"] == []
    assert report["pending_restart"] == ["max_connections"]
    # A restart-only setting dropped from obs.conf (back to its default) is pending as well, not an error.
    extra = {"postgresql_max_connections": 50, "postgresql_settings": {"shared_buffers": "16MB"}}
    rendered = _render_pg(tmp_path, cluster, extra)
    cluster.write("obs.conf", rendered["obs.conf"])
    cluster.ctl("restart")
    cluster.write("obs.conf", cluster.rendered["obs.conf"])
    report, _ = cluster.check(cluster.rendered["check_statements"])
    assert report["errors"] == []
    assert sorted(report["pending_restart"]) == ["max_connections", "shared_buffers"]
    cluster.ctl("restart")


def test_an_hba_rule_the_server_refuses_is_reported(tmp_path, cluster, restore):
    entries = [
        {"type": "host", "database": "all", "user": "all", "address": "10.0.0.0/8", "method": "cert"},
        {"type": "host", "database": "all", "user": "all", "address": "10.0.0.0/33"},
    ]
    rendered = _render_pg(tmp_path, cluster, {"postgresql_hba_entries": entries})
    cluster.write("pg_hba.conf", rendered["pg_hba.conf"])
    report, _ = cluster.check(rendered["check_statements"])
    errors = [e["error"] for e in report["hba_errors"]]
    assert errors == [
        "cert authentication is only supported on hostssl connections",
        'invalid CIDR mask in address "10.0.0.0/33"',
    ]
    assert report["errors"] == []


def test_obs_conf_missing_from_the_includes_is_noticed(tmp_path, cluster, restore):
    rendered = _render_pg(tmp_path, cluster, {"_postgresql_conf_path": str(cluster.data / "conf.d" / "other.conf")})
    report, _ = cluster.check(rendered["check_statements"])
    assert report["included"] == 0


def test_root_logs_in_as_postgres_through_the_map_and_passwords_over_loopback(tmp_path, cluster, restore):
    """The role's modules run as root and log in as postgres over the socket (pg_ident map obs_admin); the API's
    role logs in with its SCRAM password over 127.0.0.1 (Debian's default rule)."""
    assert cluster.psql("SELECT current_user", user="postgres").stdout.strip() == "postgres"
    password = "p@ss/w:rd,%$\"' x"
    literal = password.replace("'", "''")
    cluster.psql("DROP ROLE IF EXISTS obs_test_api", f"CREATE ROLE obs_test_api LOGIN PASSWORD '{literal}'")
    try:
        uri = f"postgresql://obs_test_api:{urllib.parse.quote(password, safe='')}@127.0.0.1:{cluster.port}/postgres"
        proc = subprocess.run(
            [str(cluster.bindir / "psql"), "-X", "-A", "-t", uri, "-c", "SELECT current_user"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert proc.stdout.strip() == "obs_test_api", proc.stderr
    finally:
        cluster.psql("DROP ROLE obs_test_api")


# --------------------------------------------------------------------------
# postgres_exporter
# --------------------------------------------------------------------------

DATA_SOURCE = {
    "host": "127.0.0.1",
    "port": 5432,
    "user": "postgres_exporter",
    "password": "p@ss/w:rd,%$\"' x",
    "dbname": "mdl",
    "sslmode": "disable",
}


def _env(text: str) -> dict[str, str]:
    """KEY="value" lines of the environment file (values with no character systemd or a shell would interpret)."""
    out = {}
    for line in _conf_lines(text):
        match = re.fullmatch(r'([A-Z_]+)="([^"\\$`\']*)"', line)
        assert match, f'not a plain KEY="value" line: {line!r}'
        out[match.group(1)] = match.group(2)
    return out


def test_exporter_environment_holds_an_encoded_uri_and_the_listen_address(tmp_path):
    extra = {"postgres_exporter_data_source": DATA_SOURCE, "postgres_exporter_extra_flags": {"log.level": "warn"}}
    rendered = rendered_config(tmp_path, "postgres_exporter", extra)
    env = _env(rendered["env"])
    assert env["ARGS"] == "--web.listen-address=0.0.0.0:9187 --log.level=warn"
    uri = urllib.parse.urlsplit(env["DATA_SOURCE_NAME"])
    # The exporter splits DATA_SOURCE_NAME on commas: none may be left unencoded.
    assert "," not in env["DATA_SOURCE_NAME"]
    assert (uri.scheme, uri.hostname, uri.port, uri.query) == ("postgresql", "127.0.0.1", 5432, "sslmode=disable")
    assert urllib.parse.unquote(uri.username) == DATA_SOURCE["user"]
    assert urllib.parse.unquote(uri.password) == DATA_SOURCE["password"]
    assert urllib.parse.unquote(uri.path) == "/mdl"
    assert rendered["metrics_url"] == "http://127.0.0.1:9187/metrics"


def test_exporter_serves_https_with_the_hosts_certificate_when_tls_is_on(tmp_path):
    pki = write_pki(tmp_path / "pki", "db-1", names=("10.0.2.1",))
    rendered = rendered_config(
        tmp_path, "postgres_exporter", {"postgres_exporter_data_source": DATA_SOURCE, **pki["vars"]}
    )
    files = tls.tls_files("postgres_exporter")
    assert rendered["web_config"] == {
        "tls_server_config": {"cert_file": files["cert"], "key_file": files["key"], "min_version": "TLS12"}
    }
    # The package's binary takes the exporter-toolkit web config by flag.
    args = _env(rendered["env"])["ARGS"].split(" ")
    assert f"--web.config.file={rendered['web_config_path']}" in args
    assert rendered["metrics_url"] == "https://127.0.0.1:9187/metrics" and rendered["ready_ca"] == files["ca"]
    (tmp_path / "plain").mkdir()
    plain = rendered_config(tmp_path / "plain", "postgres_exporter", {"postgres_exporter_data_source": DATA_SOURCE})
    assert plain["web_config"] == {} and plain["ready_ca"] == ""
    assert not any(a.startswith("--web.config.file") for a in _env(plain["env"])["ARGS"].split(" "))


def test_exporter_tls_material_that_cannot_serve_is_refused_in_preflight(tmp_path):
    extra = {"postgres_exporter_data_source": DATA_SOURCE}
    # A certificate without 10.0.2.1 (db-1's ansible_host), the address Prometheus scrapes.
    unnamed = write_pki(tmp_path / "unnamed", "db-1")["vars"]
    proc = render_role(tmp_path, "postgres_exporter", {**extra, **unnamed})
    assert_refused(proc, "postgres_exporter on db-1 cannot serve TLS", tmp_path, "postgres_exporter")
    assert_refused(proc, "does not name 10.0.2.1", tmp_path, "postgres_exporter")
    wrong_key = {**write_pki(tmp_path / "pki", "db-1", names=("10.0.2.1",))["vars"], "obs_tls_key": pem(new_key())}
    proc = render_role(tmp_path, "postgres_exporter", {**extra, **wrong_key})
    assert_refused(proc, "the private key does not match", tmp_path, "postgres_exporter")


def test_exporter_uri_logs_in_to_a_real_server(tmp_path, cluster):
    """The rendered DATA_SOURCE_NAME, special characters and all, authenticates (libpq parses it as lib/pq does)."""
    literal = DATA_SOURCE["password"].replace("'", "''")
    cluster.psql("DROP ROLE IF EXISTS obs_test_exporter", f"CREATE ROLE obs_test_exporter LOGIN PASSWORD '{literal}'")
    try:
        source = {**DATA_SOURCE, "user": "obs_test_exporter", "port": cluster.port, "dbname": "postgres"}
        env = _env(rendered_config(tmp_path, "postgres_exporter", {"postgres_exporter_data_source": source})["env"])
        proc = subprocess.run(
            [str(cluster.bindir / "psql"), "-X", "-A", "-t", env["DATA_SOURCE_NAME"], "-c", "SELECT current_user"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert proc.stdout.strip() == "obs_test_exporter", proc.stderr
    finally:
        cluster.psql("DROP ROLE obs_test_exporter")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"postgres_exporter_listen_address": "9187"}, "postgres_exporter_listen_address must be host:port (got 9187)"),
        (
            {"postgres_exporter_data_source": {**DATA_SOURCE, "password": ""}},
            "postgres_exporter_data_source password is empty: set it from a vault variable",
        ),
        ({}, "postgres_exporter_data_source password is empty"),
        (
            {"postgres_exporter_data_source": {**DATA_SOURCE, "sslmode": "verify"}},
            "sslmode must be one of disable, allow, prefer, require, verify-ca, verify-full (got verify)",
        ),
        (
            {"postgres_exporter_data_source": {"host": "127.0.0.1", "password": "x"}},
            "needs every key of host, port, user, password, dbname, sslmode (missing: port, user, dbname, sslmode)",
        ),
        ({"postgres_exporter_data_source": {**DATA_SOURCE, "port": "x"}}, "port must be a port 1-65535 (got x)"),
        (
            {"postgres_exporter_data_source": {**DATA_SOURCE, "host": "db 1"}},
            "host must be an IP address or a host name (got db 1)",
        ),
        (
            {"postgres_exporter_data_source": DATA_SOURCE, "postgres_exporter_extra_flags": {"log.level": "a b"}},
            "postgres_exporter_extra_flags must map flag names (without --) to values without spaces",
        ),
    ],
    ids=["listen", "empty-password", "default-password", "sslmode", "missing-keys", "port", "host", "flag-value"],
)
def test_exporter_bad_input_is_refused_in_preflight(tmp_path, extra, message):
    proc = render_role(tmp_path, "postgres_exporter", extra)
    assert_refused(proc, message, tmp_path, "postgres_exporter")
    assert DATA_SOURCE["password"] not in proc.stdout + proc.stderr


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------


def test_redis_defaults_are_a_loopback_cache_without_persistence(tmp_path):
    rendered = rendered_config(tmp_path, "redis")
    assert _conf_lines(rendered["obs.conf"]) == [
        "bind 127.0.0.1",
        "port 6379",
        "protected-mode yes",
        "maxmemory 64mb",
        "maxmemory-policy allkeys-lru",
        'save ""',
        "appendonly no",
    ]
    assert (rendered["host"], rendered["auth"]) == ("127.0.0.1", False)


def test_redis_password_persistence_and_extra_directives(tmp_path):
    extra = {
        "redis_bind": ["0.0.0.0", "-::1"],
        "redis_password": 'pa"ss\\w x',
        "redis_persistence": True,
        "redis_maxmemory_policy": "volatile-ttl",
        "redis_settings": {"maxmemory-samples": 10, "lazyfree-lazy-eviction": True},
    }
    rendered = rendered_config(tmp_path, "redis", extra)
    lines = _conf_lines(rendered["obs.conf"])
    assert lines[0] == "bind 0.0.0.0 -::1"
    assert ["save 3600 1 300 100 60 10000", "appendonly yes", "appendfsync everysec"] == lines[5:8]
    assert "maxmemory-samples 10" in lines and "lazyfree-lazy-eviction yes" in lines
    assert lines[-1] == 'requirepass "pa\\"ss\\\\w x"'
    assert (rendered["host"], rendered["auth"]) == ("127.0.0.1", True)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"redis_bind": ["10.0.0.300"]}, "not an address: 10.0.0.300"),
        ({"redis_bind": ["127.0.0.1:6379"]}, "not an address: 127.0.0.1:6379"),
        ({"redis_bind": []}, "redis_bind must be a non-empty list of IP addresses"),
        ({"redis_bind": "127.0.0.1"}, "redis_bind must be a non-empty list of IP addresses"),
        ({"redis_port": 0}, "redis_port must be a port 1-65535 (got 0)"),
        (
            {"redis_maxmemory_policy": "lru"},
            "redis_maxmemory_policy must be one of noeviction, allkeys-lru, allkeys-lfu, allkeys-random, "
            "volatile-lru, volatile-lfu, volatile-random, volatile-ttl (got lru)",
        ),
        (
            {"redis_maxmemory": "64 MB"},
            "redis_maxmemory must be bytes or a memory value such as 64mb or 1gb (got 64 MB)",
        ),
        ({"redis_persistence": "no"}, "redis_persistence true or false (got no)"),
        ({"redis_password": "two\nlines"}, "redis_password must be a single-line string from a vault variable"),
        ({"redis_settings": {"port": 6380}}, "port cannot be set there: the role sets them from redis_bind"),
        ({"redis_settings": {"maxmemory policy": "x"}}, "(not a directive name: maxmemory policy)"),
        ({"redis_settings": {"rename-command": "A\nB"}}, "(not a single line: rename-command)"),
    ],
    ids=[
        "bind-octet",
        "bind-port",
        "bind-empty",
        "bind-string",
        "port",
        "policy",
        "maxmemory",
        "persistence",
        "password-newline",
        "reserved",
        "directive-name",
        "directive-newline",
    ],
)
def test_redis_bad_input_is_refused_in_preflight(tmp_path, extra, message):
    assert_refused(render_role(tmp_path, "redis", extra), message, tmp_path, "redis")


class RedisServer:
    def __init__(self, cli: Path, port: int, password: str):
        self.cli, self.port, self.password = cli, port, password

    def call(self, *args: str, auth=True) -> str:
        env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
        if auth and self.password:
            env["REDISCLI_AUTH"] = self.password  # as the role's readiness check: never on the command line
        proc = subprocess.run(
            [str(self.cli), "-h", "127.0.0.1", "-p", str(self.port), "--no-raw", *args],
            capture_output=True, text=True, timeout=10, check=False, env=env,
        )  # fmt: skip
        return proc.stdout.strip()

    def config_get(self, name: str) -> str:
        lines = self.call("CONFIG", "GET", name).splitlines()
        assert len(lines) == 2, lines
        return json.loads(lines[1].split(") ", 1)[1])


@pytest.fixture
def start_redis(tmp_path):
    """``start(config_path, port, password) -> RedisServer``: a redis-server on 127.0.0.1 with that file."""
    server, cli = _redis_binaries()
    procs = []

    def start(config: Path, port: int, password: str = "") -> RedisServer:
        data = tmp_path / f"data-{port}"
        data.mkdir()
        argv = [str(server), str(config), "--dir", str(data), "--daemonize", "no", "--supervised", "no"]
        argv += ["--pidfile", str(data / "redis.pid"), "--logfile", ""]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        redis = RedisServer(cli, port, password)
        for _ in range(100):
            if proc.poll() is not None:
                pytest.fail(f"redis-server exited {proc.returncode}:\n{proc.stdout.read()}")
            if redis.call("PING") == "PONG":
                return redis
            time.sleep(0.1)
        pytest.fail("redis-server did not answer PING within 10 s")
        raise AssertionError  # unreachable

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


def test_redis_serves_the_rendered_settings(tmp_path, start_redis):
    port, password = free_port(), 'pa"ss\\w x#1'
    rendered = rendered_config(tmp_path, "redis", {"redis_port": port, "redis_password": password})
    conf = tmp_path / "obs.conf"
    conf.write_text(rendered["obs.conf"])
    redis = start_redis(conf, port, password)
    for name, value in rendered["expected"].items():
        assert redis.config_get(name) == value, name
    assert redis.config_get("requirepass") == password
    assert redis.config_get("protected-mode") == "yes"
    assert "NOAUTH" in redis.call("PING", auth=False)


def test_redis_persistence_turns_snapshots_and_the_aof_on(tmp_path, start_redis):
    port = free_port()
    extra = {
        "redis_port": port,
        "redis_persistence": True,
        "redis_maxmemory": "1gb",
        "redis_maxmemory_policy": "noeviction",
    }
    rendered = rendered_config(tmp_path, "redis", extra)
    conf = tmp_path / "obs.conf"
    conf.write_text(rendered["obs.conf"])
    redis = start_redis(conf, port)
    assert rendered["expected"]["maxmemory"] == str(1024**3)
    for name, value in rendered["expected"].items():
        assert redis.config_get(name) == value, name


def test_obs_conf_included_at_the_end_of_debians_redis_conf_wins(tmp_path, start_redis):
    """The role's include line goes at the end of Debian's redis.conf: its directives override the package's."""
    debian = Path("/etc/redis/redis.conf")
    if not os.access(debian, os.R_OK):
        _missing(f"{debian} (Debian's redis-server package) is not readable")
    port = free_port()
    rendered = rendered_config(tmp_path, "redis", {"redis_port": port})
    (tmp_path / "obs.conf").write_text(rendered["obs.conf"])
    # Without the package's paths: redis-server opens its logfile while it parses, before the test's overrides.
    package = [
        line for line in debian.read_text().splitlines() if not re.match(r"(logfile|pidfile|dir|daemonize)\s", line)
    ]
    main = tmp_path / "redis.conf"
    main.write_text("\n".join([*package, f"include {tmp_path / 'obs.conf'}", ""]))
    redis = start_redis(main, port)
    assert (redis.config_get("bind"), redis.config_get("port")) == ("127.0.0.1", str(port))
    assert (redis.config_get("save"), redis.config_get("appendonly")) == ("", "no")


def _checker(path: Path) -> subprocess.CompletedProcess:
    server, cli = _redis_binaries()
    env = {**os.environ, "OBS_REDIS_SERVER": str(server), "OBS_REDIS_CLI": str(cli)}
    return subprocess.run(
        ["/bin/sh", str(CHECKER), str(path)], capture_output=True, text=True, timeout=60, check=False, env=env
    )  # fmt: skip


def test_config_checker_accepts_the_rendered_file(tmp_path):
    rendered = rendered_config(tmp_path, "redis", {"redis_password": "s3cret", "redis_persistence": True})
    conf = tmp_path / "obs.conf"
    conf.write_text(rendered["obs.conf"])
    proc = _checker(conf)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "redis-server accepted" in proc.stdout
    assert not list(Path(tempfile.gettempdir()).glob("obs-redis-check.*")), "the checker leaves nothing behind"


def test_config_checker_refuses_what_redis_refuses(tmp_path):
    """The preflight cannot know every directive; the throwaway server refuses the rest, naming the line."""
    rendered = rendered_config(tmp_path, "redis", {"redis_settings": {"maxmemory-samples": "lots"}})
    conf = tmp_path / "obs.conf"
    conf.write_text(rendered["obs.conf"])
    proc = _checker(conf)
    assert proc.returncode == 1
    assert "FATAL CONFIG FILE ERROR" in proc.stderr and ">>> 'maxmemory-samples lots'" in proc.stderr, proc.stderr
    assert f"redis-server refused {conf}" in proc.stderr


def test_config_checker_never_prints_a_password_line(tmp_path):
    conf = tmp_path / "obs.conf"
    conf.write_text('bind 127.0.0.1\nrequirepass "s3cret-pw" extra\n')
    proc = _checker(conf)
    assert proc.returncode == 1
    assert "a line holding a password, not shown" in proc.stderr
    assert "s3cret-pw" not in proc.stdout + proc.stderr
