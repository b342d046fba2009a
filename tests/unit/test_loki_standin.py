"""Tests of the Loki STAND-IN (tests/standins/loki; not Loki).

The stand-in replaces Grafana Loki in tests because real Loki cannot be built
on the test machines. These tests build its release zip with package.sh, run
the extracted ``loki-linux-ARCH`` (what the loki role installs) on loopback
ports with rendered JSON configs, and check the documented Loki behaviour the
project relies on. The last test pushes through a real Loki client library
(python-logging-loki's LokiHandler).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
import requests
from conftest import dpkg_arch as arch
from conftest import free_port
from pki import new_key, pem, write_pki
from prometheus_client.parser import text_string_to_metric_families

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_SH = REPO_ROOT / "tests" / "standins" / "loki" / "package.sh"
VERSION = "3.6.0"
SEC = 10**9


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def now_ns(offset_s: float = 0) -> int:
    return time.time_ns() + int(offset_s * SEC)


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> dict:
    """Build the release assets and extract the zip as Ansible's unarchive would (modes kept)."""
    out = tmp_path_factory.mktemp("loki-dist")
    (out / "SHA256SUMS").write_text("0" * 64 + "  promtail-linux-amd64.zip\n")  # another asset of the same release
    proc = subprocess.run([str(PACKAGE_SH), VERSION, str(out)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    name = f"loki-linux-{arch()}"
    install = tmp_path_factory.mktemp("loki-install")
    subprocess.run(["unzip", "-q", str(out / f"{name}.zip"), "-d", str(install)], check=True)
    return {"zip": out / f"{name}.zip", "sums": out / "SHA256SUMS", "name": name, "exe": install / name}


def base_config(port: int, grpc_port: int, data: Path) -> dict:
    """A single-binary config of the kind the loki role renders with to_nice_json."""
    return {
        "auth_enabled": False,
        "server": {
            "http_listen_address": "127.0.0.1",
            "http_listen_port": port,
            "grpc_listen_address": "127.0.0.1",
            "grpc_listen_port": grpc_port,
            "log_level": "info",
        },
        "common": {
            "path_prefix": str(data),
            "replication_factor": 1,
            "ring": {"kvstore": {"store": "inmemory"}, "instance_addr": "127.0.0.1"},
        },
        "schema_config": {
            "configs": [
                {
                    "from": "2024-01-01",
                    "store": "tsdb",
                    "object_store": "filesystem",
                    "schema": "v13",
                    "index": {"prefix": "index_", "period": "24h"},
                }
            ]
        },
        "storage_config": {"filesystem": {"directory": str(data / "chunks")}},
        "compactor": {"working_directory": str(data / "compactor")},
        "limits_config": {},
        "ingester": {"lifecycler": {"min_ready_duration": "0s"}},
        "analytics": {"reporting_enabled": False},
    }


class Loki:
    """One stand-in server with its own config and data directory."""

    def __init__(self, exe: Path, base: Path, overrides: dict | None = None, ca: str | None = None) -> None:
        """``ca``: the server serves HTTPS (overrides set server.http_tls_config); requests verify it against ca."""
        self.exe, self.base = exe, base
        self.port, self.grpc_port = free_port(), free_port()
        self.url = f"{'https' if ca else 'http'}://127.0.0.1:{self.port}"
        self.verify = ca or True
        self.data = base / "data"
        self.config = base / "loki.yaml"
        self.log = base / "loki.log"
        self.cfg = merge(base_config(self.port, self.grpc_port, self.data), overrides or {})
        base.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            "# rendered by the tests like the role's to_nice_json\n" + json.dumps(self.cfg, indent=4)
        )
        self.proc: subprocess.Popen | None = None

    def start(self, wait_ready: bool = True) -> Loki:
        cmd = [str(self.exe), f"-config.file={self.config}"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log.open("a"))
        deadline = time.monotonic() + 15
        while wait_ready and time.monotonic() < deadline:
            assert self.proc.poll() is None, f"stand-in exited: {self.log.read_text()}"
            try:
                if requests.get(self.url + "/ready", timeout=1, verify=self.verify).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        assert not wait_ready, f"stand-in did not become ready: {self.log.read_text()}"
        return self

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=10)
        self.proc = None
        return rc

    def push(self, *streams: dict, **kw) -> requests.Response:
        kw.setdefault("verify", self.verify)
        return requests.post(self.url + "/loki/api/v1/push", json={"streams": list(streams)}, timeout=10, **kw)

    def get(self, path: str, **params) -> requests.Response:
        return requests.get(self.url + path, params=params, timeout=10, verify=self.verify)

    def query_range(self, query: str, **params) -> requests.Response:
        return self.get("/loki/api/v1/query_range", query=query, **params)

    def streams(self, query: str, **params) -> list[dict]:
        resp = self.query_range(query, **params)
        assert resp.status_code == 200, resp.text
        assert resp.json()["data"]["resultType"] == "streams"
        return resp.json()["data"]["result"]

    def metrics(self) -> dict[tuple, float]:
        resp = self.get("/metrics")
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        samples = {}
        for family in text_string_to_metric_families(resp.text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples


def stream(labels: dict, *lines: str, ts: int | None = None, meta: dict | None = None) -> dict:
    base = ts if ts is not None else now_ns()
    return {
        "stream": labels,
        "values": [[str(base + i), line, *([meta] if meta else [])] for i, line in enumerate(lines)],
    }


@pytest.fixture(scope="module")
def loki(package, tmp_path_factory):
    """Discovery of service_name and detected_level off: streams come back with exactly the pushed labels."""
    overrides = {"limits_config": {"discover_service_name": [], "discover_log_levels": False}}
    server = Loki(package["exe"], tmp_path_factory.mktemp("loki"), overrides).start()
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def loki_defaults(package, tmp_path_factory):
    server = Loki(package["exe"], tmp_path_factory.mktemp("loki-defaults")).start()
    yield server
    assert server.stop() == 0


STRICT_LIMITS = {
    "max_label_names_per_series": 3,
    "max_label_name_length": 12,  # service_name (12) is a label too
    "max_label_value_length": 20,
    "max_line_size": "100B",
    "allow_structured_metadata": False,
    "ingestion_rate_mb": 0.01,
    "ingestion_burst_size_mb": 0.01,
    "max_query_length": "1h",
    "max_entries_limit_per_query": 50,
    "max_query_series": 2,
}


@pytest.fixture(scope="module")
def strict(package, tmp_path_factory):
    overrides = {
        "limits_config": STRICT_LIMITS,
        "schema_config": {
            "configs": [merge(base_config(0, 0, Path())["schema_config"]["configs"][0], {"schema": "v12"})]
        },
    }
    server = Loki(package["exe"], tmp_path_factory.mktemp("loki-strict"), overrides).start()
    yield server
    assert server.stop() == 0


# --------------------------------------------------------------------------- package and CLI


def test_package_zip_and_sha256sums(package):
    with zipfile.ZipFile(package["zip"]) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == [package["name"]]
    assert infos[0].create_system == 3 and (infos[0].external_attr >> 16) == 0o100755
    assert os.access(package["exe"], os.X_OK) and package["exe"].read_text().startswith("#!/usr/bin/env python3\n")
    digest = hashlib.sha256(package["zip"].read_bytes()).hexdigest()
    # Loki's release format; the promtail line already in the file is kept.
    assert package["sums"].read_text().splitlines() == [
        f"{digest}  {package['name']}.zip",
        "0" * 64 + "  promtail-linux-amd64.zip",
    ]
    again = package["zip"].parent / "again"
    subprocess.run([str(PACKAGE_SH), VERSION, str(again)], capture_output=True, check=True, timeout=60)
    assert (again / package["zip"].name).read_bytes() == package["zip"].read_bytes()
    assert (again / "SHA256SUMS").read_text() == f"{digest}  {package['name']}.zip\n"


def test_version_and_flags(package):
    for flag in ("-version", "--version", "-version=true"):
        out = subprocess.run([str(package["exe"]), flag], capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[0] == f"loki, version {VERSION} stand-in (tests/standins/loki; not Loki)"
    bad = subprocess.run([str(package["exe"]), "-no.such-flag"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "flag provided but not defined: -no.such-flag" in bad.stderr


def verify(package, tmp_path, cfg: dict | str, *flags: str, env: dict | None = None) -> subprocess.CompletedProcess:
    path = tmp_path / f"verify-{time.monotonic_ns()}.yaml"
    path.write_text(cfg if isinstance(cfg, str) else json.dumps(cfg, indent=4))
    cmd = [str(package["exe"]), "-config.file", str(path), "-verify-config", *flags]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=30, check=False, env={**os.environ, **(env or {})}
    )


def logged(proc: subprocess.CompletedProcess) -> str:
    """stderr with logfmt's quoting undone."""
    return proc.stderr.replace('\\"', '"').replace("\\n", "\n")


def good_config(tmp_path: Path) -> dict:
    return base_config(3100, 9095, tmp_path / "data")


def test_verify_config_accepts_a_good_config(package, tmp_path):
    cfg = merge(
        good_config(tmp_path),
        {
            "compactor": {
                "retention_enabled": True,
                "delete_request_store": "filesystem",
                "compaction_interval": "10m",
            },
            "limits_config": {"retention_period": "744h", "reject_old_samples_max_age": "1w", "max_line_size": "256KB"},
        },
    )
    proc = verify(package, tmp_path, cfg)
    assert proc.returncode == 0, proc.stderr
    assert 'msg="config is valid"' in proc.stderr
    assert not (tmp_path / "data").exists()  # -verify-config creates nothing


def set_path(cfg: dict, dotted: str, value: object) -> dict:
    node = cfg
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {}) if not key.isdigit() else node[int(key)]
    node[last] = value
    return cfg


REFUSED_CONFIGS = {  # dotted path, value, message
    "unknown-key": (
        "limits_config.retention_perod",
        "744h",
        "field retention_perod not found in type validation.plain",
    ),
    "unknown-top-level-key": ("table_manager", {}, "field table_manager not found in type loki.ConfigWrapper"),
    "retention-without-delete-request-store": (
        "compactor.retention_enabled",
        True,
        "CONFIG ERROR: invalid compactor config: compactor.delete-request-store should be configured when retention "
        "is enabled",
    ),
    "retention-period-12h": ("limits_config.retention_period", "12h", "retention period must be >= 24h was 12h"),
    "tsdb-period-48h": (
        "schema_config.configs.0.index.period",
        "48h",
        "tsdb must always have periodic config for index set to 24h",
    ),
    "v12-with-structured-metadata": (
        "schema_config.configs.0.schema",
        "v12",
        "CONFIG ERROR: schema v13 is required to store Structured Metadata and use native OTLP ingestion, "
        "your schema version is v12",
    ),
    "unknown-object-store": (
        "schema_config.configs.0.object_store",
        "ceph",
        "unrecognized `object_store` type `ceph`, which also does not match any named_stores",
    ),
    "no-schema-configs": ("schema_config.configs", [], "must specify at least one schema configuration"),
    "auth-enabled-by-default": ("auth_enabled", None, "auth_enabled is true (Loki's default when the key is missing)"),
    "go-duration-with-days": ("compactor.compaction_interval", "1d", 'time: unknown unit "d" in duration "1d"'),
    "bad-prometheus-duration": ("limits_config.retention_period", "30days", 'not a valid duration string: "30days"'),
    "wrong-type": ("limits_config.reject_old_samples", "yes", "cannot unmarshal !!str `yes` into bool"),
    "replication-factor-3": ("common.replication_factor", 3, "common.replication_factor is 3"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_CONFIGS))
def test_verify_config_refuses_with_lokis_message(package, tmp_path, case):
    dotted, value, message = REFUSED_CONFIGS[case]
    cfg = good_config(tmp_path)
    if value is None:
        cfg.pop(dotted)
    else:
        set_path(cfg, dotted, value)
    proc = verify(package, tmp_path, cfg)
    assert proc.returncode == 1, proc.stderr
    assert message in logged(proc), proc.stderr


def test_several_errors_and_env_expansion(package, tmp_path):
    cfg = set_path(
        set_path(good_config(tmp_path), "limits_config.retention_period", "1h"), "compactor.retention_enabled", True
    )
    proc = verify(package, tmp_path, cfg)
    assert proc.returncode == 1 and "MULTIPLE CONFIG ERRORS FOUND, PLEASE READ CAREFULLY" in proc.stderr
    text = json.dumps(good_config(tmp_path))
    text = text.replace('"log_level": "info"', '"log_level": "${LOKI_TEST_LEVEL:-warn}"')
    text = text.replace('"path_prefix": "', '"path_prefix": "${LOKI_TEST_PREFIX}')
    ok = verify(
        package, tmp_path, "---\n# comment\n" + text, "-config.expand-env=true", env={"LOKI_TEST_PREFIX": "/tmp"}
    )
    assert ok.returncode == 0, ok.stderr
    unexpanded = verify(package, tmp_path, text)
    assert unexpanded.returncode == 1 and 'unrecognized log level "${LOKI_TEST_LEVEL:-warn}"' in logged(unexpanded)
    yaml_proper = verify(package, tmp_path, "auth_enabled: false\n")
    assert yaml_proper.returncode == 1 and "JSON-compatible YAML" in yaml_proper.stderr


def test_startup_refuses_a_bad_config(package, tmp_path):
    server = Loki(package["exe"], tmp_path, {"limits_config": {"retention_period": "12h"}})
    proc = subprocess.run(
        [str(package["exe"]), f"-config.file={server.config}"], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 1
    assert "level=error" in proc.stderr and 'msg="validating config"' in proc.stderr
    assert "retention period must be >= 24h was 12h" in proc.stderr
    taken = Loki(package["exe"], tmp_path / "taken")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", taken.port))
        sock.listen()
        proc = subprocess.run(
            [str(package["exe"]), f"-config.file={taken.config}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert proc.returncode == 1 and "listen tcp: Address already in use" in proc.stderr


# --------------------------------------------------------------------------- HTTPS (server.http_tls_config)


def tls_overrides(pki: dict, **extra) -> dict:
    """The server block the loki role renders with obs_tls_enabled."""
    return {
        "server": {
            "http_tls_config": {"cert_file": pki["cert"], "key_file": pki["key"]},
            "tls_min_version": "VersionTLS12",
            **extra,
        }
    }


def test_https_serves_push_and_query_to_clients_that_trust_the_ca(package, tmp_path):
    pki = write_pki(tmp_path / "pki")
    tls = tls_overrides(pki, tls_min_version="VersionTLS13")
    server = Loki(package["exe"], tmp_path / "loki", tls, ca=pki["ca"]).start()
    try:
        labels = {"job": "tls-test", "host": "obs-host"}
        assert server.push(stream(labels, "over https")).status_code == 204
        found = server.streams('{job="tls-test"}', start=now_ns(-60), end=now_ns(5))
        assert [v[1] for s in found for v in s["values"]] == ["over https"]
        # The certificate is verified: a client without the CA refuses the server.
        with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            requests.get(server.url + "/ready", timeout=5)
        # Plain HTTP on the HTTPS port gets Go's answer, not data.
        plain = requests.get(server.url.replace("https:", "http:") + "/loki/api/v1/labels", timeout=5)
        assert plain.status_code == 400 and "Client sent an HTTP request to an HTTPS server." in plain.text
        # Below the configured minimum: the handshake fails, the server logs it and keeps serving.
        old = ssl.create_default_context(cafile=pki["ca"])
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError), socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            old.wrap_socket(sock, server_hostname="127.0.0.1")
        assert server.get("/ready").status_code == 200
    finally:
        assert server.stop() == 0
    log = server.log.read_text()
    assert "tls=enabled" in log and "http: TLS handshake error from 127.0.0.1:" in log


def test_plain_http_when_no_certificate_is_configured(loki):
    assert loki.url.startswith("http://") and loki.get("/ready").status_code == 200
    assert "tls=disabled" in loki.log.read_text()


def _other_key(pki: dict, tmp_path: Path) -> str:
    path = tmp_path / "other.key"
    path.write_text(pem(new_key()))
    return str(path)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("key-of-another-certificate", "private key does not match public key"),
        ("missing-certificate-file", "open {missing}: no such file or directory"),
        ("certificate-without-key", "cert_file and key_file must both be set"),
        ("unknown-min-version", "unknown TLS version: TLS12"),
        ("client-auth-without-ca", "client_auth_type RequireAndVerifyClientCert needs client_ca_file"),
    ],
)
def test_tls_settings_that_cannot_serve_fail_the_start(package, tmp_path, case, message):
    pki = write_pki(tmp_path / "pki")
    missing = str(tmp_path / "nope.crt")
    tls = {
        "key-of-another-certificate": {"key_file": _other_key(pki, tmp_path)},
        "missing-certificate-file": {"cert_file": missing},
        "certificate-without-key": {"key_file": ""},
        "client-auth-without-ca": {"client_auth_type": "RequireAndVerifyClientCert"},
    }.get(case, {})
    overrides = tls_overrides(pki, tls_min_version="TLS12" if case == "unknown-min-version" else "VersionTLS12")
    overrides["server"]["http_tls_config"].update(tls)
    server = Loki(package["exe"], tmp_path / "loki", overrides)
    # -verify-config reads the settings, not the files (as Loki's), so the file errors show at start.
    proc = subprocess.run(
        [str(package["exe"]), f"-config.file={server.config}"], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 1, proc.stderr
    assert 'msg="error initialising module: server"' in proc.stderr
    assert message.format(missing=missing) in logged(proc)


def test_verify_config_knows_the_tls_keys(package, tmp_path):
    pki = write_pki(tmp_path / "pki")
    good = merge(good_config(tmp_path), tls_overrides(pki, tls_cipher_suites=""))
    assert verify(package, tmp_path, good).returncode == 0
    typo = merge(good_config(tmp_path), {"server": {"http_tls_config": {"cert_fle": pki["cert"]}}})
    proc = verify(package, tmp_path, typo)
    assert proc.returncode == 1
    assert "field cert_fle not found in type server.TLSConfig (at server.http_tls_config.cert_fle)" in logged(proc)


# --------------------------------------------------------------------------- push and query


def test_push_then_query_range_returns_exactly_the_pushed_labels(loki):
    labels = {"job": "exact", "host": "h1"}
    t0 = now_ns(-5)
    resp = loki.push(stream(labels, "first line", "second line", ts=t0))
    assert resp.status_code == 204 and resp.text == ""
    assert loki.push().status_code == 204  # {"streams": []}
    result = loki.streams('{job="exact"}')
    assert result == [{"stream": labels, "values": [[str(t0 + 1), "second line"], [str(t0), "first line"]]}]
    forward = loki.streams('{job="exact", host=~"h[0-9]"}', direction="forward", limit=1)
    assert forward == [{"stream": labels, "values": [[str(t0), "first line"]]}]
    # Timestamps as seconds, float seconds and RFC3339 bound the range as documented (start <= ts < end).
    assert loki.streams('{job="exact"}', start=str(t0 // SEC + 1), end=f"{time.time() + 1:.3f}") == []
    rfc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 // SEC - 1))
    assert len(loki.streams('{job="exact"}', start=rfc)[0]["values"]) == 2
    resp = loki.query_range('{job="exact"}')
    assert resp.headers["X-Loki-Standin"] == "tests/standins/loki; not Loki"
    assert set(resp.json()["data"]["stats"]["summary"]) >= {"totalLinesProcessed", "execTime"}


def test_gzip_push_and_structured_metadata_round_trip(loki):
    labels = {"job": "structured"}
    body = json.dumps({"streams": [stream(labels, "with metadata", meta={"trace_id": "0242ac120002"})]})
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    resp = requests.post(loki.url + "/loki/api/v1/push", data=gzip.compress(body.encode()), headers=headers, timeout=10)
    assert resp.status_code == 204, resp.text
    # Without categorize-labels, Loki returns structured metadata among the stream labels.
    result = loki.streams('{job="structured"}')
    assert [r["stream"] for r in result] == [{"job": "structured", "trace_id": "0242ac120002"}]
    assert loki.streams('{job="structured"} | trace_id="0242ac120002"')[0]["values"][0][1] == "with metadata"
    assert loki.streams('{job="structured"} | trace_id="other"') == []
    assert loki.get("/loki/api/v1/labels").json()["data"].count("trace_id") == 0  # not an index label


LINES = [
    '{"level":"error","msg":"disk full","status":507,"req":{"path":"/upload","bytes":2048}}',
    '{"level":"info","msg":"ok","status":200,"req":{"path":"/health","bytes":12}}',
    'level=warn msg="slow request" status=200 duration=1.5',
    "not structured at all",
]


@pytest.fixture(scope="module")
def parsed(loki):
    whole = (now_ns(-10) // SEC) * SEC  # the lines end 1ns before a whole second
    assert loki.push(stream({"job": "parsers"}, *LINES, ts=whole - len(LINES))).status_code == 204
    return whole


def lines_of(result: list[dict]) -> list[str]:
    return sorted(v[1] for s in result for v in s["values"])


def test_line_filters(loki, parsed):
    assert lines_of(loki.streams('{job="parsers"} |= "status"')) == sorted(LINES[:3])
    assert lines_of(loki.streams('{job="parsers"} |= "status" != "disk"')) == sorted(LINES[1:3])
    assert lines_of(loki.streams('{job="parsers"} |~ "(?i)SLOW|full"')) == sorted([LINES[0], LINES[2]])
    assert lines_of(loki.streams('{job="parsers"} !~ "^\\\\{"')) == sorted(LINES[2:])


def test_json_and_logfmt_parsers_and_label_filters(loki, parsed):
    result = loki.streams('{job="parsers"} | json | level="error"')
    assert [r["stream"] for r in result] == [
        {
            "job": "parsers",
            "level": "error",
            "msg": "disk full",
            "req_bytes": "2048",
            "req_path": "/upload",
            "status": "507",
        }
    ]
    assert lines_of(loki.streams('{job="parsers"} | json | __error__="" | status >= 500')) == [LINES[0]]
    assert lines_of(loki.streams('{job="parsers"} | json | __error__="" | req_bytes < 100')) == [LINES[1]]
    # As in Loki, only string matchers filter out entries with a parser error; numeric filters keep them.
    assert lines_of(loki.streams('{job="parsers"} | json | status >= 500')) == sorted([LINES[0], *LINES[2:]])
    assert lines_of(loki.streams('{job="parsers"} | json | __error__="" | level=~"err.*|info"')) == sorted(LINES[:2])
    errors = loki.streams('{job="parsers"} | json | __error__="JSONParserErr"')
    assert lines_of(errors) == sorted(LINES[2:]) and all("__error_details__" in s["stream"] for s in errors)
    logfmt = loki.streams('{job="parsers"} | logfmt | level="warn" | duration > 1')
    assert [r["stream"]["msg"] for r in logfmt] == ["slow request"]
    formatted = loki.streams('{job="parsers"} | json | level="error" | line_format "{{.req_path}}: {{ .msg }}"')
    assert lines_of(formatted) == ["/upload: disk full"]
    assert lines_of(loki.streams('{job="parsers"} | json | line_format "{{.msg}}" |= "ok"')) == ["ok"]


def test_metric_queries(loki, parsed):
    start, end = str(parsed - 60 * SEC), str(parsed + 60 * SEC)

    def matrix(query: str) -> list[dict]:
        resp = loki.query_range(query, start=start, end=end, step="60")
        assert resp.status_code == 200, resp.text
        assert resp.json()["data"]["resultType"] == "matrix"
        return resp.json()["data"]["result"]

    # Steps at start, start+60s (= parsed), start+120s; the (t-2m, t] windows of the last two hold the lines.
    count = matrix('count_over_time({job="parsers"}[2m])')
    assert count == [{"metric": {"job": "parsers"}, "values": [[parsed // SEC, "4"], [parsed // SEC + 60, "4"]]}]
    by_level = matrix('sum by (level) (count_over_time({job="parsers"} | json | __error__="" [2m]))')
    assert {r["metric"]["level"]: r["values"][0][1] for r in by_level} == {"error": "1", "info": "1"}
    after = matrix('sum(count_over_time({job="parsers"} | logfmt | __error__="" [2m])) by (level)')
    # "not structured at all" is valid logfmt (four keys without values): no level, no error.
    assert [(r["metric"], r["values"][0][1]) for r in after] == [({"level": "warn"}, "1"), ({}, "1")]
    rate = matrix('rate({job="parsers"}[2m])')
    assert rate[0]["values"][0][1] == "0.03333333333333333"
    size = matrix('sum(bytes_over_time({job="parsers"}[2m]))')
    assert size == [{"metric": {}, "values": [[v, str(sum(len(x) for x in LINES))] for v, _ in count[0]["values"]]}]
    instant = loki.get(
        "/loki/api/v1/query", query='count(count_over_time({job="parsers"}[5m]))', time=str(parsed + SEC)
    )
    assert instant.json()["data"] == {
        "resultType": "vector",
        "result": [{"metric": {}, "value": [parsed // SEC + 1, "1"]}],
        "stats": instant.json()["data"]["stats"],
    }
    old_syntax = matrix('count_over_time({job="parsers"}[2m] |= "status" | logfmt | __error__="")')
    assert [v[1] for v in old_syntax[0]["values"]] == ["1", "1"]
    pipeline_error = loki.query_range('count_over_time({job="parsers"} | json [2m])', start=start, end=end)
    assert pipeline_error.status_code == 400 and "pipeline error: 'JSONParserErr' for series" in pipeline_error.text


def test_labels_label_values_and_series(loki):
    assert (
        loki.push(stream({"job": "meta", "env": "prod"}, "a"), stream({"job": "meta", "env": "dev"}, "b")).status_code
        == 204
    )
    labels = loki.get("/loki/api/v1/labels").json()
    assert (
        labels["status"] == "success"
        and {"env", "job"} <= set(labels["data"])
        and labels["data"] == sorted(labels["data"])
    )
    assert loki.get("/loki/api/v1/label/env/values", query='{job="meta"}').json()["data"] == ["dev", "prod"]
    series = requests.post(
        loki.url + "/loki/api/v1/series", data={"match[]": ['{job="meta", env="prod"}', '{env="dev"}']}, timeout=10
    )
    assert series.json() == {
        "status": "success",
        "data": [{"env": "dev", "job": "meta"}, {"env": "prod", "job": "meta"}],
    }
    assert loki.get("/loki/api/v1/series").status_code == 400


def test_loki3_defaults_add_service_name_and_detected_level(loki_defaults):
    pushed = [stream({"job": "varlogs", "filename": "/var/log/x.log"}, "an error happened"), stream({"host": "h"}, "x")]
    assert loki_defaults.push(*pushed).status_code == 204
    result = loki_defaults.streams('{job="varlogs"}')
    assert result[0]["stream"] == {
        "detected_level": "error",
        "filename": "/var/log/x.log",
        "job": "varlogs",
        "service_name": "varlogs",
    }
    assert loki_defaults.streams('{host="h"}')[0]["stream"]["service_name"] == "unknown_service"
    assert "service_name" in loki_defaults.get("/loki/api/v1/labels").json()["data"]


# --------------------------------------------------------------------------- refusals


def test_push_validation_refusals(strict):
    old = now_ns(-8 * 86400)
    cases = [  # stream, status, message, discard reason
        (stream({}, "x"), 400, "error at least one label pair is required per stream", "missing_labels"),
        (stream({"app-name": "x"}, "x"), 400, "Error parsing labels '{app-name=\"x\"}' with error", "invalid_labels"),
        (
            stream({"a": "1", "b": "2", "c": "3", "d": "4"}, "x"),
            400,
            "has 4 label names; limit 3",
            "max_label_names_per_series",
        ),
        (
            stream({"a_very_long_name": "x"}, "x"),
            400,
            "has label name too long: 'a_very_long_name'",
            "label_name_too_long",
        ),
        (stream({"job": "v" * 21}, "x"), 400, "has label value too long: '" + "v" * 21 + "'", "label_value_too_long"),
        (
            stream({"job": "long"}, "y" * 101),
            400,
            "Max entry size '100' bytes exceeded for stream '{job=\"long\"}'",
            "line_too_long",
        ),
        (
            stream({"job": "old"}, "x", ts=old),
            400,
            "entry for stream '{job=\"old\"}' has timestamp too old",
            "greater_than_max_sample_age",
        ),
        (stream({"job": "new"}, "x", ts=now_ns(3600)), 400, "has timestamp too new", "too_far_in_future"),
        (
            stream({"job": "sm"}, "x", meta={"trace_id": "1"}),
            400,
            "includes structured metadata, but this feature is disallowed",
            "disallowed_structured_metadata",
        ),
    ]
    before = strict.metrics()
    for body, status, message, reason in cases:
        resp = strict.push(body)
        assert (resp.status_code, message in resp.text) == (status, True), (reason, resp.text)
        key = ("loki_discarded_samples_total", (("reason", reason), ("tenant", "fake")))
        assert strict.metrics()[key] == before.get(key, 0) + 1, reason
    # Valid entries of a request are kept; the answer carries the last error.
    mixed = strict.push(stream({"job": "mixed"}, "kept"), stream({"job": "mixed2"}, "z" * 101))
    assert mixed.status_code == 400 and "Max entry size" in mixed.text
    assert [s["values"][0][1] for s in strict.streams('{job=~"mixed.*"}', limit=10)] == ["kept"]
    # Over the burst (0.01 MiB): 429 and nothing stored.
    flood = strict.push(stream({"job": "flood"}, *(["f" * 90] * 200)))
    assert (
        flood.status_code == 429
        and "Ingestion rate limit exceeded for user fake (limit: 10485 bytes/sec)" in flood.text
    )
    assert strict.streams('{job="flood"}', limit=10) == []
    # JSON only; a malformed body stores nothing.
    proto = requests.post(
        strict.url + "/loki/api/v1/push", data=b"\x00", headers={"Content-Type": "application/x-protobuf"}, timeout=10
    )
    assert proto.status_code == 415 and "JSON push only" in proto.text
    numeric_ts = requests.post(
        strict.url + "/loki/api/v1/push", json={"streams": [{"stream": {"job": "n"}, "values": [[1, "x"]]}]}, timeout=10
    )
    assert numeric_ts.status_code == 400


def test_query_refusals(strict):
    def status_text(path: str, **params) -> tuple[int, str]:
        resp = strict.get(path, **params)
        return resp.status_code, resp.text

    code, text = status_text("/loki/api/v1/query_range", query='{job="x"} | json | level=')
    assert code == 400 and text.startswith("parse error at line 1, col 26: syntax error: unexpected $end")
    code, text = status_text("/loki/api/v1/query_range", query='{job=~".*"}')
    assert (
        code == 400
        and "queries require at least one regexp or equality matcher that does not have an empty-compatible" in text
    )
    code, text = status_text("/loki/api/v1/query_range", query='{job="x"}', limit="51")
    assert (code, text) == (
        400,
        "max entries limit per query exceeded, limit > max_entries_limit_per_query (51 > 50)\n",
    )
    code, text = status_text("/loki/api/v1/query_range", query='{job="x"}', since="2h", limit="10")
    assert code == 400 and text.startswith("the query time range exceeds the limit (query length: 2h0m0s, limit: 1h)")
    code, text = status_text("/loki/api/v1/query", query='{job="x"}')
    assert code == 400 and "log queries are not supported as an instant query type" in text
    code, text = status_text("/loki/api/v1/query_range", query='rate({job="x"}[1m])', step="0")
    assert code == 400 and "zero or negative query resolution step widths are not accepted" in text
    code, text = status_text("/loki/api/v1/query_range", query='{job="x"}', start="200", end="100")
    assert (code, text) == (400, "end timestamp must not be before or equal to start time\n")
    code, text = status_text("/loki/api/v1/query_range", query='{job="x"} | pattern "<ip> <_>"')
    assert code == 400 and "not implemented by the Loki stand-in" in text
    code, text = status_text("/loki/api/v1/query_range", query='{job="x"}', direction="sideways")
    assert (code, text) == (400, "invalid direction 'sideways'\n")
    assert strict.push(*(stream({"job": f"s{i}"}, "x") for i in range(3))).status_code == 204
    code, text = status_text("/loki/api/v1/query", query='count_over_time({job=~"s[0-9]"}[1m])')
    assert code == 400 and text.startswith("maximum number of series (2) reached for a single query")


# --------------------------------------------------------------------------- lifecycle, retention, metrics


def test_ready_waits_min_ready_duration_and_data_survives_restart(package, tmp_path):
    server = Loki(package["exe"], tmp_path, {"ingester": {"lifecycler": {"min_ready_duration": "1s"}}}).start(
        wait_ready=False
    )
    try:
        deadline = time.monotonic() + 10
        first = None
        while time.monotonic() < deadline:
            try:
                first = server.get("/ready")
                break
            except requests.ConnectionError:
                time.sleep(0.02)
        assert first is not None and first.status_code == 503, first
        assert first.text in (
            "Ingester not ready: waiting for 1s after being ready\n",
            "Some services are not Running:\nStarting: 1\n",
        )
        server.proc.terminate()
        assert server.proc.wait(timeout=10) == 0
        server.start()
        assert server.push(stream({"job": "persist"}, "survives")).status_code == 204
        assert server.stop() == 0
        assert (server.data / "loki-standin.db").is_file() and (server.data / "tsdb-index").is_dir()
        server.start()
        assert lines_of(server.streams('{job="persist"}')) == ["survives"]
    finally:
        if server.proc is not None:
            assert server.stop() == 0


def test_retention_deletes_old_entries_after_a_compaction_cycle(package, tmp_path):
    retention = {
        "compactor": {
            "compaction_interval": "1s",
            "retention_enabled": True,
            "retention_delete_delay": "0s",
            "delete_request_store": "filesystem",
        },
        "limits_config": {"retention_period": "24h", "reject_old_samples": False},
    }
    keep_forever = merge(retention, {"limits_config": {"retention_period": "0s"}})
    servers = [Loki(package["exe"], tmp_path / name, cfg) for name, cfg in (("a", retention), ("b", keep_forever))]
    for server in servers:
        server.start()
    try:
        old, new = now_ns(-3 * 86400), now_ns(-60)
        for server in servers:
            assert (
                server.push(
                    stream({"job": "ret"}, "old line", ts=old), stream({"job": "ret"}, "new line", ts=new)
                ).status_code
                == 204
            )
            assert lines_of(server.streams('{job="ret"}', since="4d")) == ["new line", "old line"]
        last_run = "loki_compactor_apply_retention_last_successful_run_timestamp_seconds"
        assert servers[0].metrics()[(last_run, ())] == 0
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not all(s.metrics()[(last_run, ())] > 0 for s in servers):
            time.sleep(0.2)
        assert all(s.metrics()[(last_run, ())] > time.time() - 60 for s in servers)
        assert lines_of(servers[0].streams('{job="ret"}', since="4d")) == ["new line"]
        assert servers[0].metrics()[("loki_standin_retention_deleted_entries_total", ())] == 1
        assert lines_of(servers[1].streams('{job="ret"}', since="4d")) == ["new line", "old line"]  # 0s keeps forever
        runs = servers[1].metrics()[("loki_compactor_apply_retention_operation_total", (("status", "success"),))]
        assert runs >= 1
    finally:
        for server in servers:
            if server.proc is not None:
                assert server.stop() == 0


def test_metrics_move_after_pushes(loki):
    before = loki.metrics()
    key = lambda name: (name, (("tenant", "fake"),))  # noqa: E731
    assert loki.push(stream({"job": "metrics-test", "run": str(time.time_ns())}, "12345", "67890")).status_code == 204
    after = loki.metrics()
    assert (
        after[key("loki_distributor_lines_received_total")]
        == before.get(key("loki_distributor_lines_received_total"), 0) + 2
    )
    assert (
        after[key("loki_distributor_bytes_received_total")]
        == before.get(key("loki_distributor_bytes_received_total"), 0) + 10
    )
    assert (
        after[key("loki_ingester_streams_created_total")]
        == before.get(key("loki_ingester_streams_created_total"), 0) + 1
    )
    assert after[key("loki_ingester_memory_streams")] >= 1
    build = next(key for key in after if key[0] == "loki_build_info")
    assert after[build] == 1
    assert dict(build[1]) == {
        "branch": "standin",
        "goarch": arch(),
        "goos": "linux",
        "goversion": "none (python stand-in)",
        "revision": "standin",
        "tags": "standin",
        "version": VERSION,
    }
    push_count = (
        "loki_request_duration_seconds_count",
        (("method", "POST"), ("route", "loki_api_v1_push"), ("status_code", "204"), ("ws", "false")),
    )
    assert after[push_count] == before.get(push_count, 0) + 1
    assert loki.get("/loki/api/v1/status/buildinfo").json()["version"] == VERSION
    config = loki.get("/config").text
    assert (
        "retention_period: 0s" in config
        and "reject_old_samples_max_age: 1w" in config
        and "auth_enabled: false" in config
    )


# --------------------------------------------------------------------------- fidelity: a real Loki client


def test_python_logging_loki_handler_pushes_to_the_standin(loki_defaults):
    logging_loki = pytest.importorskip("logging_loki")
    handler = logging_loki.LokiHandler(
        url=loki_defaults.url + "/loki/api/v1/push", tags={"application": "standin-fidelity"}, version="1"
    )
    failures: list[logging.LogRecord] = []
    handler.handleError = failures.append  # the handler swallows errors (e.g. a status other than 204)
    logger = logging.getLogger("standin.fidelity")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("hello from python-logging-loki", extra={"tags": {"request-id": "r-1"}})
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert failures == []
    result = loki_defaults.streams('{application="standin-fidelity", logger="standin.fidelity"}')
    assert result[0]["stream"] == {
        "application": "standin-fidelity",
        "detected_level": "warn",
        "logger": "standin.fidelity",
        "request_id": "r-1",
        "service_name": "standin-fidelity",
        "severity": "warning",
    }
    assert result[0]["values"][0][1] == "hello from python-logging-loki"
