"""Tests of the Promtail STAND-IN (tests/standins/promtail; not Promtail).

The stand-in replaces Promtail in tests because real Promtail may not be built
here. These tests build its release zip with package.sh, unpack it as the
installer does, run the executable on free 127.0.0.1 ports against an
in-test Loki push receiver (which can answer 429/500/400 on demand) and check
the Promtail behaviour the project relies on: labels and pipeline stages,
positions across restarts, rotation and truncation, retries and drops, the
journal target (through a fake journalctl first on PATH), -check-syntax,
/ready and /metrics. Pure functions (relabeling, stages) are also tested by
loading the module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from conftest import dpkg_arch as arch
from conftest import free_port, load_module_from_path, stop_process
from pki import write_pki

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDIN_DIR = REPO_ROOT / "tests" / "standins" / "promtail"
PACKAGE_SH = STANDIN_DIR / "package.sh"
VERSION = "3.6.0"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PINO = {"level": "error", "msg": "boom", "reqId": "r-1", "traceId": TRACE_ID, "time": 1764590000000}
PINO_STAGES = [
    {"json": {"expressions": {"level": "", "msg": "", "trace_id": "traceId", "req_id": "reqId", "time": ""}}},
    {"labels": {"level": ""}},
    {"structured_metadata": {"trace_id": ""}},
    {"timestamp": {"source": "time", "format": "UnixMs", "action_on_failure": "fudge"}},
    {"metrics": {"log_lines_total": {"type": "Counter", "description": "Lines by level.",
                                     "config": {"match_all": True, "action": "inc"}}}},
]  # fmt: skip


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> dict:
    """Build the release zip (next to a Loki stand-in's SHA256SUMS line) and unpack it like the installer."""
    out = tmp_path_factory.mktemp("promtail-dist")
    (out / "SHA256SUMS").write_text(f"{'0' * 64}  loki-linux-{arch()}.zip\n")
    proc = subprocess.run([str(PACKAGE_SH), VERSION, str(out)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    archive = out / f"promtail-linux-{arch()}.zip"
    install = tmp_path_factory.mktemp("promtail-install")
    if shutil.which("unzip"):
        subprocess.run(["unzip", "-q", str(archive), "-d", str(install)], check=True)
    else:  # what unzip does: extract, then apply the mode kept in the external attributes
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                zf.extract(info, install)
                os.chmod(install / info.filename, info.external_attr >> 16 & 0o7777)
    return {"dir": out, "archive": archive, "exe": install / f"promtail-linux-{arch()}"}


@pytest.fixture(scope="module")
def mod():
    return load_module_from_path("promtail_standin_under_test", STANDIN_DIR / "promtail_standin.py")


class Receiver:
    """A Loki push endpoint on 127.0.0.1: records every request, answers scripted statuses first, then 204."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        """``tls``: serve HTTPS with that server context (a Loki behind TLS)."""
        self.requests: list[dict] = []
        self.script: list[int] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    status = receiver.script.pop(0) if receiver.script else 204
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.requests.append({"status": status, "headers": headers, "body": body})
                payload = b"" if status == 204 else f"scripted answer {status}\n".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}/loki/api/v1/push"
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def entries(self) -> list[dict]:
        """Delivered entries: {labels, ts, line, sm}."""
        with self.lock:
            done = [r for r in self.requests if r["status"] == 204]
        return [
            {"labels": s["stream"], "ts": v[0], "line": v[1], "sm": v[2] if len(v) > 2 else None}
            for r in done
            for s in r["body"]["streams"]
            for v in s["values"]
        ]

    def lines(self) -> list[str]:
        return [e["line"] for e in self.entries()]

    def wait_lines(self, count: int, timeout: float = 10.0) -> list[str]:
        return wait_for(lambda: len(self.lines()) >= count and self.lines(), timeout, f"{count} delivered lines")


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.httpd.shutdown()


def base_config(tmp: Path, receiver: Receiver, port: int) -> dict:
    (tmp / "logs").mkdir(exist_ok=True)
    return {
        "server": {"http_listen_address": "127.0.0.1", "http_listen_port": port, "grpc_listen_port": 0},
        "positions": {"filename": str(tmp / "positions.yaml"), "sync_period": "200ms"},
        "clients": [
            {
                "url": receiver.url,
                "batchwait": "100ms",
                "external_labels": {"host": "node-1"},
                "backoff_config": {"min_period": "50ms", "max_period": "100ms", "max_retries": 3},
            }
        ],
        "target_config": {"sync_period": "300ms"},
        "scrape_configs": [
            {
                "job_name": "app",
                "static_configs": [
                    {
                        "targets": ["localhost"],
                        "labels": {
                            "job": "app",
                            "service": "checkout",
                            "environment": "test",
                            "__path__": str(tmp / "logs" / "*.log"),
                        },
                    }
                ],
                "pipeline_stages": json.loads(json.dumps(PINO_STAGES)),
            }
        ],
    }


class Promtail:
    """The packaged stand-in with its own config (JSON, as the role's to_nice_json renders it)."""

    def __init__(self, exe: Path, tmp: Path, cfg: dict, env: dict | None = None) -> None:
        self.exe, self.tmp, self.cfg, self.env = exe, tmp, cfg, env
        self.port = cfg["server"]["http_listen_port"]
        tls = cfg["server"].get("http_tls_config")
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        # An HTTPS server is checked against the CA the test put beside its certificate.
        self.verify = str(Path(tls["cert_file"]).with_name("ca.crt")) if tls else True
        self.config = tmp / "config.yaml"
        self.log = tmp / "promtail.log"
        self.proc: subprocess.Popen | None = None

    def write(self) -> None:
        self.config.write_text("# Managed by the project's tests\n" + json.dumps(self.cfg, indent=4) + "\n")

    def start(self, *extra: str) -> Promtail:
        self.write()
        env = {**os.environ, **(self.env or {})}
        cmd = [str(self.exe), f"-config.file={self.config}", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log.open("a"), env=env, text=True)

        def up() -> bool:
            assert self.proc.poll() is None, f"stand-in exited: {self.log.read_text()}"
            try:
                return requests.get(self.url + "/metrics", timeout=1, verify=self.verify).status_code == 200
            except requests.RequestException:
                return False

        wait_for(up, 10, "the stand-in's HTTP server")
        return self

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=20)
        self.stdout = self.proc.stdout.read()
        self.proc = None
        return rc

    def metric(self, name: str, **labels: str) -> float | None:
        text = requests.get(self.url + "/metrics", timeout=5, verify=self.verify).text
        for line in text.splitlines():
            m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(\{.*\})? (\S+)", line)
            if not m or m.group(1) != name:
                continue
            have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            if all(have.get(k) == v for k, v in labels.items()):
                return float(m.group(3))
        return None


@pytest.fixture
def run(package, tmp_path):
    started: list[Promtail] = []

    def make(cfg: dict, env: dict | None = None) -> Promtail:
        p = Promtail(package["exe"], tmp_path, cfg, env)
        started.append(p)
        return p

    yield make
    for p in started:
        stop_process(p.proc, timeout=10)


def check_syntax(package, tmp_path: Path, cfg: dict | str) -> subprocess.CompletedProcess:
    path = tmp_path / "check.yaml"
    path.write_text(cfg if isinstance(cfg, str) else json.dumps(cfg, indent=2))
    cmd = [str(package["exe"]), f"-config.file={path}", "-check-syntax"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)


def append(path: Path, *lines: str) -> None:
    with path.open("a") as fh:
        fh.writelines(line + "\n" for line in lines)


# --------------------------------------------------------------------------- package and CLI


def test_package_zip_checksums_and_version(package):
    archive = package["archive"]
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == [f"promtail-linux-{arch()}"]
    assert infos[0].external_attr >> 16 == 0o100755
    exe = package["exe"]
    assert os.access(exe, os.X_OK) and exe.read_text().startswith("#!/usr/bin/env python3\n")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    sums = (package["dir"] / "SHA256SUMS").read_text().splitlines()
    assert sums == [f"{'0' * 64}  loki-linux-{arch()}.zip", f"{digest}  {archive.name}"]
    # Rebuilding is reproducible and replaces its own line instead of adding one.
    subprocess.run([str(PACKAGE_SH), VERSION, str(package["dir"])], capture_output=True, check=True, timeout=60)
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == digest
    assert (package["dir"] / "SHA256SUMS").read_text().splitlines() == sums
    out = subprocess.run([str(exe), "-version"], capture_output=True, text=True, check=False)
    assert (out.returncode, out.stdout) == (
        0,
        f"promtail, version {VERSION} stand-in (tests/standins/promtail; not Promtail)\n",
    )
    out = subprocess.run([str(exe), "--version=true"], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "not Promtail" in out.stdout


def test_check_syntax_accepts_a_good_config(package, tmp_path, receiver):
    cfg = base_config(tmp_path, receiver, free_port())
    cfg["scrape_configs"].append({"job_name": "journal", "journal": {"max_age": "12h", "labels": {"job": "journal"}}})
    out = check_syntax(package, tmp_path, "# rendered by Ansible\n---\n" + json.dumps(cfg, indent=4))
    assert (out.returncode, out.stdout) == (0, "Valid config file! No syntax issues found\n"), out


def _mutate(tmp_path, receiver, change) -> dict:
    cfg = base_config(tmp_path, receiver, 9080)
    change(cfg)
    return cfg


REFUSALS = [
    (lambda c: c.update(foo=1), r"line \d+: field foo not found in type config\.Config"),
    (lambda c: c["clients"][0].update(batch_wait="1s"), r"field batch_wait not found in type client\.Config"),
    (lambda c: c["scrape_configs"][0]["static_configs"][0]["labels"].pop("__path__"), r"has no __path__ label"),
    (lambda c: c["scrape_configs"][0]["pipeline_stages"].append({"jsonn": {}}),
     r"invalid jsonn stage config: Unknown stage type: jsonn"),
    (lambda c: c["scrape_configs"][0].update(job_name=""), r"job_name is empty"),
    (lambda c: c["scrape_configs"].append(dict(c["scrape_configs"][0])),
     r'found multiple scrape configs with job name "app"'),
    (lambda c: c["clients"][0].update(batchwait="1d"), r"cannot unmarshal !!str `1d` into time\.Duration"),
    (lambda c: c["server"].update(http_listen_port="80"), r"cannot unmarshal !!str `80` into int"),
    (lambda c: c.pop("clients"), r"at least one client config must be provided"),
    (lambda c: c["scrape_configs"][0].update(relabel_configs=[{"action": "labeldrop", "source_labels": ["a"]}]),
     r"labeldrop action requires only 'regex', and no other fields"),
    (lambda c: c["scrape_configs"][0].update(relabel_configs=[{"action": "replace", "regex": "(?=x)"}]),
     r"invalid or unsupported Perl syntax"),
    (lambda c: c["scrape_configs"][0]["pipeline_stages"].insert(0, {"timestamp": {"source": "t"}}),
     r"invalid timestamp stage config: timestamp format is required"),
    (lambda c: c["scrape_configs"][0]["pipeline_stages"].insert(0, {"json": {"expressions": {"a": "x-y"}}}),
     r"could not compile JMES expression"),
    (lambda c: c["scrape_configs"][0].update(kubernetes_sd_configs=[]), r"valid for Promtail but not implemented"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "message"), REFUSALS)
def test_check_syntax_refuses(package, tmp_path, receiver, change, message):
    out = check_syntax(package, tmp_path, _mutate(tmp_path, receiver, change))
    assert out.returncode == 1, out
    assert out.stdout.startswith("Unable to parse config: "), out.stdout
    assert re.search(message, out.stdout), out.stdout


def test_check_syntax_refuses_what_is_not_json_and_duplicate_keys(package, tmp_path):
    out = check_syntax(package, tmp_path, "server:\n  http_listen_port: 9080\n")
    assert out.returncode == 1 and "JSON-compatible YAML" in out.stdout, out
    out = check_syntax(package, tmp_path, '{\n"server": {},\n"server": {}\n}')
    assert out.returncode == 1 and 'line 3: mapping key "server" already defined at line 2' in out.stdout, out
    out = subprocess.run([str(package["exe"]), "-check-syntax"], capture_output=True, text=True, check=False)
    assert (out.returncode, out.stdout) == (1, "Invalid config file\n")
    missing = tmp_path / "nope.yaml"
    out = subprocess.run(
        [str(package["exe"]), "-config.file", str(missing)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 1 and f"{missing} does not exist" in out.stdout, out


def test_startup_errors_and_flags(package, tmp_path, receiver):
    cfg = base_config(tmp_path, receiver, free_port())
    cfg["scrape_configs"][0]["pipeline_stages"] = [{"lables": {"level": ""}}]
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(cfg))
    out = subprocess.run(
        [str(package["exe"]), "-config.file", str(path)], capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 1
    assert re.search(r'level=error .*msg="error creating promtail" error="invalid lables stage config', out.stderr), (
        out.stderr
    )
    out = subprocess.run([str(package["exe"]), "-no-such-flag"], capture_output=True, text=True, check=False)
    assert out.returncode == 2 and "flag provided but not defined: -no-such-flag" in out.stderr
    env_cfg = tmp_path / "env.yaml"
    env_cfg.write_text(json.dumps(base_config(tmp_path, receiver, 9080)).replace(receiver.url, "${LOKI_URL}"))
    env = {**os.environ, "LOKI_URL": receiver.url}
    cmd = [str(package["exe"]), f"-config.file={env_cfg}", "-check-syntax"]
    assert subprocess.run(cmd, capture_output=True, env=env, check=False).returncode == 1  # ${LOKI_URL} is no URL
    out = subprocess.run([*cmd, "--config.expand-env=true"], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out


# --------------------------------------------------------------------------- TLS (client tls_config, server)


@pytest.fixture
def tls_receiver(tmp_path):
    """A Loki push endpoint behind HTTPS, with a certificate of the test CA for 127.0.0.1."""
    pki = write_pki(tmp_path / "loki-pki")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["cert"], pki["key"])
    r = Receiver(context)
    r.pki = pki
    yield r
    r.httpd.shutdown()


def test_pushes_over_https_verifying_the_ca_and_serves_https(run, tmp_path, tls_receiver):
    own = write_pki(tmp_path / "promtail-pki")
    cfg = base_config(tmp_path, tls_receiver, free_port())
    cfg["clients"][0]["tls_config"] = {"ca_file": tls_receiver.pki["ca"], "min_version": "TLS12"}
    cfg["server"] |= {"http_tls_config": {"cert_file": own["cert"], "key_file": own["key"]},
                      "tls_min_version": "VersionTLS12"}  # fmt: skip
    p = run(cfg).start()
    line = json.dumps({"level": 30, "time": int(time.time() * 1000), "msg": "over https"})
    append(tmp_path / "logs" / "app.log", line)
    assert tls_receiver.wait_lines(1) == [line]
    assert requests.get(p.url + "/ready", timeout=5, verify=own["ca"]).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(p.url + "/ready", timeout=5)  # not without the CA
    assert p.stop() == 0
    assert "tls=enabled" in p.log.read_text()


def test_a_loki_the_ca_did_not_sign_gets_nothing(run, tmp_path, tls_receiver):
    stranger = write_pki(tmp_path / "other-pki")  # another CA: the push must fail verification
    cfg = base_config(tmp_path, tls_receiver, free_port())
    cfg["clients"][0]["tls_config"] = {"ca_file": stranger["ca"]}
    p = run(cfg).start()
    append(tmp_path / "logs" / "app.log", json.dumps({"level": 30, "time": int(time.time() * 1000), "msg": "lost"}))
    wait_for(lambda: (p.metric("promtail_dropped_entries_total", reason="ingester_error") or 0) >= 1, 15, "a drop")
    assert tls_receiver.requests == []
    assert p.stop() == 0
    assert "CERTIFICATE_VERIFY_FAILED" in p.log.read_text()


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ({"ca_file": "/nonexistent/ca.crt"}, "unable to load specified CA cert /nonexistent/ca.crt"),
        ({"min_version": "VersionTLS12"}, "unknown TLS version: VersionTLS12"),
        ({"cert_file": "/etc/hostname"}, "cert_file and key_file must both be set"),
        ({"server_name": "loki"}, "tls_config.server_name is not implemented by the stand-in"),
    ],
    ids=["missing-ca", "server-style-version", "cert-without-key", "server-name"],
)
def test_client_tls_settings_that_cannot_work_fail_the_start(package, tmp_path, receiver, tls, message):
    cfg = base_config(tmp_path, receiver, free_port())
    cfg["clients"][0]["tls_config"] = tls
    path = tmp_path / "tls.yaml"
    path.write_text(json.dumps(cfg))
    out = subprocess.run([str(package["exe"]), f"-config.file={path}"], capture_output=True, text=True, check=False)
    assert out.returncode == 1 and message in out.stderr, out.stderr
    assert "failed to create client manager" in out.stderr


# --------------------------------------------------------------------------- file targets and the client


def test_pino_line_arrives_with_exactly_the_configured_labels(run, tmp_path, receiver):
    cfg = base_config(tmp_path, receiver, free_port())
    cfg["clients"][0]["tenant_id"] = "team-a"
    p = run(cfg).start()
    log = tmp_path / "logs" / "app.log"
    append(log, json.dumps(PINO, separators=(",", ":")))
    receiver.wait_lines(1)
    [entry] = receiver.entries()
    assert entry["labels"] == {
        "job": "app",
        "service": "checkout",
        "environment": "test",
        "host": "node-1",
        "level": "error",
        "filename": str(log),
    }
    assert entry["line"] == json.dumps(PINO, separators=(",", ":"))
    assert entry["ts"] == "1764590000000000000"  # from the timestamp stage (UnixMs), in nanoseconds
    assert entry["sm"] == {"trace_id": TRACE_ID}  # trace id as structured metadata, never as a label
    headers = receiver.requests[0]["headers"]
    assert headers["content-type"] == "application/json" and headers["x-scope-orgid"] == "team-a"
    # the metrics stage counts lines with the entry's labels (no external labels: those are the client's)
    labels = {"job": "app", "service": "checkout", "environment": "test", "level": "error", "filename": str(log)}
    assert p.metric("promtail_custom_log_lines_total", **labels) == 1
    assert p.metric("promtail_custom_log_lines_total", host="node-1") is None
    assert p.stop() == 0


def test_positions_survive_a_restart_without_duplicates(run, tmp_path, receiver):
    log = tmp_path / "logs" / "app.log"
    cfg = base_config(tmp_path, receiver, free_port())
    p = run(cfg).start()
    append(log, *(f"line {i}" for i in range(3)))
    receiver.wait_lines(3)
    assert p.stop() == 0
    positions = (tmp_path / "positions.yaml").read_text()
    assert positions == f'positions:\n  {log}: "{log.stat().st_size}"\n'
    assert (tmp_path / "positions.yaml").stat().st_mode & 0o777 == 0o600
    append(log, "line 3", "line 4")  # written while the stand-in is down
    p.start()
    append(log, "line 5")
    receiver.wait_lines(6)
    time.sleep(0.5)
    assert receiver.lines() == [f"line {i}" for i in range(6)]
    assert p.stop() == 0


def test_rotation_and_truncation_are_followed(run, tmp_path, receiver):
    cfg = base_config(tmp_path, receiver, free_port())
    log = tmp_path / "logs" / "app.log"
    append(log, "before rotation", "partial")
    p = run(cfg).start()
    receiver.wait_lines(2)
    log.rename(tmp_path / "logs" / "app.log.1")  # not matched by *.log
    append(tmp_path / "logs" / "app.log.1", "late write to the old file")
    append(log, "after rotation")
    receiver.wait_lines(4)
    log.write_text("truncated\n")  # copytruncate: same inode, smaller
    receiver.wait_lines(5)
    assert receiver.lines() == [
        "before rotation",
        "partial",
        "late write to the old file",
        "after rotation",
        "truncated",
    ]
    with log.open("a") as fh:
        fh.write("no newline yet")
    time.sleep(0.6)
    assert len(receiver.lines()) == 5  # a line is complete only with its newline, as in Promtail
    append(log, "")
    assert receiver.wait_lines(6)[-1] == "no newline yet"
    assert p.stop() == 0


def test_429_is_retried_then_delivered(run, tmp_path, receiver):
    receiver.script = [429, 500]
    p = run(base_config(tmp_path, receiver, free_port())).start()
    append(tmp_path / "logs" / "app.log", "retry me")
    assert receiver.wait_lines(1) == ["retry me"]
    assert [r["status"] for r in receiver.requests] == [429, 500, 204]
    assert receiver.requests[0]["body"] == receiver.requests[2]["body"]
    assert p.metric("promtail_batch_retries_total", host=receiver.host, tenant="") == 2
    assert p.metric("promtail_sent_entries_total", host=receiver.host) == 1
    assert p.metric("promtail_dropped_entries_total", host=receiver.host, reason="rate_limited") == 0
    assert p.metric("promtail_request_duration_seconds_count", host=receiver.host, status_code="429") == 1
    assert p.stop() == 0


def test_400_is_dropped_at_once_and_counted(run, tmp_path, receiver):
    receiver.script = [400]
    p = run(base_config(tmp_path, receiver, free_port())).start()
    log = tmp_path / "logs" / "app.log"
    append(log, "refused")
    wait_for(lambda: receiver.requests, what="the first push")
    wait_for(lambda: p.metric("promtail_dropped_entries_total", host=receiver.host, reason="ingester_error") == 1)
    assert p.metric("promtail_dropped_bytes_total", host=receiver.host, tenant="", reason="ingester_error") > 0
    append(log, "accepted")
    assert receiver.wait_lines(1) == ["accepted"]
    assert [r["status"] for r in receiver.requests] == [400, 204]  # no retry of the 400
    assert p.metric("promtail_batch_retries_total", host=receiver.host) == 0
    assert p.stop() == 0


def test_retries_are_bounded_then_the_batch_is_dropped(run, tmp_path, receiver):
    receiver.script = [503, 503, 503, 503]
    p = run(base_config(tmp_path, receiver, free_port())).start()  # max_retries 3
    append(tmp_path / "logs" / "app.log", "lost")
    wait_for(lambda: p.metric("promtail_dropped_entries_total", host=receiver.host, reason="ingester_error") == 1)
    assert [r["status"] for r in receiver.requests] == [503, 503, 503]
    assert p.stop() == 0


def test_static_target_relabeling_end_to_end(run, tmp_path, receiver):
    cfg = base_config(tmp_path, receiver, free_port())
    job = cfg["scrape_configs"][0]
    job["pipeline_stages"] = []
    job["static_configs"].append(
        {"targets": ["skipped"], "labels": {"job": "other", "__path__": str(tmp_path / "x.log")}}
    )
    job["relabel_configs"] = [
        {"source_labels": ["__address__"], "target_label": "instance"},
        {"source_labels": ["job"], "regex": "app", "action": "keep"},
        {"regex": "environment", "action": "labeldrop"},
        {"source_labels": ["service"], "regex": "(check)(.*)", "replacement": "${2}-$1", "target_label": "svc"},
    ]
    p = run(cfg).start()
    append(tmp_path / "logs" / "app.log", "plain text")
    receiver.wait_lines(1)
    assert receiver.entries()[0]["labels"] == {
        "job": "app",
        "service": "checkout",
        "svc": "out-check",
        "instance": "localhost",
        "host": "node-1",
        "filename": str(tmp_path / "logs" / "app.log"),
    }
    assert p.metric("promtail_targets_failed_total", reason="dropped") == 1
    assert p.metric("promtail_targets_active_total") == 1
    assert p.stop() == 0


def test_ready_and_metrics(run, tmp_path, receiver):
    started = time.time()
    p = run(base_config(tmp_path, receiver, free_port())).start()
    r = requests.get(p.url + "/ready", timeout=5)
    assert r.status_code == 500 and r.text.startswith("Not ready: Unable to find any logs to tail.")
    log = tmp_path / "logs" / "app.log"
    append(log, "hello")
    wait_for(lambda: requests.get(p.url + "/ready", timeout=5).status_code == 200, what="ready")
    assert requests.get(p.url + "/ready", timeout=5).text == "Ready"
    receiver.wait_lines(1)
    wait_for(lambda: p.metric("promtail_sent_entries_total", host=receiver.host) == 1)
    m = requests.get(p.url + "/metrics", timeout=5)
    assert m.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert p.metric("promtail_build_info", version=VERSION) == 1
    # Go's process collector in real Promtail; the ServiceRestarted alert reads it.
    assert started - 1 <= p.metric("process_start_time_seconds") <= time.time()
    assert p.metric("promtail_read_lines_total", path=str(log)) == 1
    assert p.metric("promtail_read_bytes_total", path=str(log)) == 6
    assert p.metric("promtail_file_bytes_total", path=str(log)) == 6
    assert p.metric("promtail_files_active_total") == 1
    assert p.metric("promtail_targets_active_total") == 1
    assert p.metric("promtail_encoded_bytes_total", host=receiver.host) > 0
    assert p.metric("promtail_sent_bytes_total", host=receiver.host) > 0
    assert p.metric("promtail_request_duration_seconds_bucket", host=receiver.host, status_code="204", le="+Inf") == 1
    for name in ("promtail_dropped_entries_total", "promtail_dropped_bytes_total"):
        assert p.metric(name, host=receiver.host, tenant="", reason="ingester_error") == 0
    assert requests.get(p.url + "/nope", timeout=5).status_code == 404
    assert p.stop() == 0


def test_sigterm_flushes_the_pending_batch_and_dry_run_prints(run, tmp_path, receiver):
    cfg = base_config(tmp_path, receiver, free_port())
    cfg["clients"][0]["batchwait"] = "1m"
    p = run(cfg).start()
    append(tmp_path / "logs" / "app.log", json.dumps(PINO))
    wait_for(lambda: p.metric("promtail_read_lines_total") == 1)
    assert receiver.lines() == []
    assert p.stop() == 0
    assert receiver.lines() == [json.dumps(PINO)]  # sent on shutdown
    before = (tmp_path / "positions.yaml").read_text()
    append(tmp_path / "logs" / "app.log", "dry")
    p.start("-dry-run")
    wait_for(lambda: p.metric("promtail_read_lines_total") == 1)
    assert p.stop() == 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+[+-]\d{4}\t\{.*filename=.*job=\"app\".*\}\tdry\n", p.stdout), p.stdout
    assert len(receiver.lines()) == 1 and (tmp_path / "positions.yaml").read_text() == before  # positions read-only


def test_corrupt_positions_file(run, tmp_path, receiver):
    (tmp_path / "positions.yaml").write_text("positions: [unclosed\n")
    cfg = base_config(tmp_path, receiver, free_port())
    p = run(cfg)
    p.write()
    out = subprocess.run(
        [str(p.exe), f"-config.file={p.config}"], capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 1 and "invalid yaml positions file [" in out.stderr, out.stderr
    cfg["positions"]["ignore_invalid_yaml"] = True
    p.start()
    append(tmp_path / "logs" / "app.log", "after corruption")
    receiver.wait_lines(1)
    assert p.stop() == 0
    assert (tmp_path / "positions.yaml").read_text().startswith("positions:\n  ")


# --------------------------------------------------------------------------- journal target

FAKE_JOURNALCTL = """#!{python}
# Fake journalctl for the Promtail stand-in's tests: records its arguments,
# prints the canned entries (after --after-cursor) as `-o json` does, then follows.
import json, os, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_JOURNAL_ARGS"], "a") as fh:
    fh.write(json.dumps(args) + "\\n")
entries = json.load(open(os.environ["FAKE_JOURNAL_ENTRIES"]))
after = [a.split("=", 1)[1] for a in args if a.startswith("--after-cursor=")]
if after:
    cursors = [e["__CURSOR"] for e in entries]
    if after[0] not in cursors:
        sys.exit("Failed to seek to cursor: Invalid argument")
    entries = entries[cursors.index(after[0]) + 1 :]
for entry in entries:
    print(json.dumps(entry), flush=True)
while os.getppid() != 1:  # follow until stopped, or orphaned
    time.sleep(0.2)
"""


def journal_entry(n: int, age_s: float, **fields) -> dict:
    us = int((time.time() - age_s) * 1e6)
    return {
        "__CURSOR": f"s=fake;i={n:x};b=boot;m={n:x};t={us:x};x={n:x}",
        "__REALTIME_TIMESTAMP": str(us),
        "__MONOTONIC_TIMESTAMP": str(n * 1000),
        "_BOOT_ID": "boot",
        "_HOSTNAME": "node-1",
        "PRIORITY": "6",
        "_SYSTEMD_UNIT": "nginx.service",
        "SYSLOG_IDENTIFIER": "nginx",
        **fields,
    }


def test_journal_target_with_a_fake_journalctl(run, tmp_path, receiver):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "journalctl"
    fake.write_text(FAKE_JOURNALCTL.replace("{python}", sys.executable))
    fake.chmod(0o755)
    entries = [
        journal_entry(1, 13 * 3600, MESSAGE="too old for max_age"),
        journal_entry(2, 5, MESSAGE="GET / 200"),
        journal_entry(3, 4, MESSAGE=[0x62, 0x79, 0x74, 0x65, 0x73], PRIORITY="3"),
        journal_entry(4, 3, CODE_LINE="12"),  # no MESSAGE: dropped, counted
    ]
    (tmp_path / "entries.json").write_text(json.dumps(entries))
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_JOURNAL_ARGS": str(tmp_path / "args.jsonl"),
        "FAKE_JOURNAL_ENTRIES": str(tmp_path / "entries.json"),
    }
    cfg = base_config(tmp_path, receiver, free_port())
    relabel = [
        {"source_labels": ["__journal__systemd_unit"], "target_label": "unit"},
        {"source_labels": ["__journal_priority_keyword"], "target_label": "level"},
    ]
    cfg["scrape_configs"] = [
        {
            "job_name": "journal",
            "journal": {"max_age": "12h", "labels": {"job": "systemd-journal"}},
            "relabel_configs": relabel,
        },
        {"job_name": "journal-json", "journal": {"json": True, "labels": {"job": "journal-json"}}},
    ]
    p = run(cfg, env).start()
    wait_for(lambda: len(receiver.lines()) >= 5, what="journal entries")
    time.sleep(0.3)
    by_job: dict[str, list] = {}
    for e in receiver.entries():
        by_job.setdefault(e["labels"]["job"], []).append(e)
    assert [e["line"] for e in by_job["systemd-journal"]] == ["GET / 200", "bytes"]
    assert by_job["systemd-journal"][0]["labels"] == {
        "job": "systemd-journal",
        "unit": "nginx.service",
        "level": "info",
        "host": "node-1",
    }
    assert by_job["systemd-journal"][1]["labels"]["level"] == "error"
    assert by_job["systemd-journal"][0]["ts"] == str(int(entries[1]["__REALTIME_TIMESTAMP"]) * 1000)
    assert not any(k.startswith("__") for e in receiver.entries() for k in e["labels"])
    as_json = [json.loads(e["line"]) for e in by_job["journal-json"]]
    assert [j.get("MESSAGE") for j in as_json] == ["GET / 200", "bytes", None]  # json: every field, no MESSAGE needed
    assert as_json[0]["_SYSTEMD_UNIT"] == "nginx.service" and not any(k.startswith("__") for k in as_json[0])
    assert by_job["journal-json"][0]["labels"] == {"job": "journal-json", "host": "node-1"}
    assert p.metric("promtail_journal_target_lines_total") == 5
    assert p.metric("promtail_journal_target_parsing_errors_total", error="no_message") == 1
    assert p.stop() == 0

    first = [json.loads(x) for x in (tmp_path / "args.jsonl").read_text().splitlines()]
    assert len(first) == 2
    for args in first:
        assert args[:5] == ["--output=json", "--all", "--follow", "--no-pager", "--no-tail"]
        assert any(a.startswith("--since=@") for a in args) and not any(a.startswith("--after-cursor") for a in args)
    positions = (tmp_path / "positions.yaml").read_text()
    assert f'  cursor-journal: "{entries[2]["__CURSOR"]}"\n' in positions  # last entry it sent
    assert f'  cursor-journal-json: "{entries[3]["__CURSOR"]}"\n' in positions

    entries.append(journal_entry(5, 1, MESSAGE="after restart"))
    (tmp_path / "entries.json").write_text(json.dumps(entries))
    (tmp_path / "args.jsonl").unlink()
    p.start()
    wait_for(lambda: len(receiver.lines()) >= 7, what="entries after restart")
    time.sleep(0.3)
    new = receiver.entries()[5:]
    assert len(receiver.lines()) == 7  # nothing read twice
    assert sorted(e["labels"]["job"] for e in new) == ["journal-json", "systemd-journal"]
    assert {
        e["line"] if e["labels"]["job"] == "systemd-journal" else json.loads(e["line"])["MESSAGE"] for e in new
    } == {"after restart"}
    again = [json.loads(x) for x in (tmp_path / "args.jsonl").read_text().splitlines()]
    assert sorted(a for args in again for a in args if a.startswith("--after-cursor=")) == [
        f"--after-cursor={entries[2]['__CURSOR']}",
        f"--after-cursor={entries[3]['__CURSOR']}",
    ]
    assert p.stop() == 0


def test_journal_cursor_journalctl_refuses_falls_back_to_max_age(run, tmp_path, receiver):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "journalctl").write_text(FAKE_JOURNALCTL.replace("{python}", sys.executable))
    (bin_dir / "journalctl").chmod(0o755)
    (tmp_path / "entries.json").write_text(json.dumps([journal_entry(1, 2, MESSAGE="hello")]))
    (tmp_path / "positions.yaml").write_text('positions:\n  cursor-journal: "s=gone;i=9"\n')
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_JOURNAL_ARGS": str(tmp_path / "args.jsonl"),
        "FAKE_JOURNAL_ENTRIES": str(tmp_path / "entries.json"),
    }
    cfg = base_config(tmp_path, receiver, free_port())
    cfg["scrape_configs"] = [{"job_name": "journal", "journal": {"labels": {"job": "j"}}}]
    p = run(cfg, env).start()
    assert receiver.wait_lines(1) == ["hello"]
    args = [json.loads(x) for x in (tmp_path / "args.jsonl").read_text().splitlines()]
    assert "--after-cursor=s=gone;i=9" in args[0] and any(a.startswith("--since=@") for a in args[1])
    assert p.stop() == 0


def test_journal_target_needs_journalctl(package, tmp_path, receiver):
    cfg = base_config(tmp_path, receiver, free_port())
    cfg["scrape_configs"] = [{"job_name": "journal", "journal": {"labels": {"job": "j"}}}]
    path = tmp_path / "j.yaml"
    path.write_text(json.dumps(cfg))
    env = {**os.environ, "PATH": str(tmp_path / "empty")}
    cmd = [sys.executable, str(package["exe"]), f"-config.file={path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30, check=False)
    assert out.returncode == 1 and "journalctl not found in PATH" in out.stderr, out.stderr


# --------------------------------------------------------------------------- relabeling and stages (module level)


def test_relabel_semantics(mod):
    def rule(**kw):
        return mod.relabel_rule(kw)

    base = {"__address__": "localhost", "__journal__systemd_unit": "nginx.service", "job": "app", "env": "prod"}
    assert (
        mod.relabel(base, [rule(source_labels=["__journal__systemd_unit"], target_label="unit")])["unit"]
        == "nginx.service"
    )
    # the regex is anchored: "nginx" alone does not match "nginx.service"
    anchored = [rule(source_labels=["__journal__systemd_unit"], regex="nginx", replacement="x", target_label="svc")]
    assert "svc" not in mod.relabel(base, anchored)
    assert (
        mod.relabel(base, [rule(source_labels=["env"], regex="prod", replacement="x", target_label="svc")])["svc"]
        == "x"
    )
    got = mod.relabel(
        base, [rule(source_labels=["__journal__systemd_unit"], regex=r"(\w+)\.service", target_label="svc")]
    )
    assert got["svc"] == "nginx"
    joined = mod.relabel(base, [rule(source_labels=["job", "env"], target_label="both")])
    assert joined["both"] == "app;prod"
    assert "job" not in mod.relabel(
        base, [rule(source_labels=["env"], regex="prod", replacement="", target_label="job")]
    )
    assert mod.relabel(base, [rule(source_labels=["env"], regex="dev", action="keep")]) is None
    assert mod.relabel(base, [rule(source_labels=["env"], regex="prod", action="drop")]) is None
    assert (
        mod.relabel(base, [rule(source_labels=["env"], regex="PROD", action="Keep")]) is None
    )  # case-insensitive action
    mapped = mod.relabel(base, [rule(regex="__journal_(.+)", action="labelmap")])
    assert mapped["_systemd_unit"] == "nginx.service" and "__journal__systemd_unit" in mapped
    assert set(mod.relabel(base, [rule(regex="env|job", action="labeldrop")])) == {
        "__address__",
        "__journal__systemd_unit",
    }
    assert set(mod.relabel(base, [rule(regex="job", action="labelkeep")])) == {"job"}
    assert mod.relabel(base, [rule(source_labels=["job"], target_label="up", action="uppercase")])["up"] == "APP"
    bucket = mod.relabel(base, [rule(source_labels=["job"], target_label="b", modulus=8, action="hashmod")])["b"]
    assert bucket == str(int.from_bytes(hashlib.md5(b"app").digest()[8:], "big") % 8)
    assert mod.relabel(base, [rule(source_labels=["job"], target_label="env", action="keepequal")]) is None
    with pytest.raises(mod.ParseError, match="requires 'target_label' value"):
        rule(action="uppercase")
    with pytest.raises(mod.ParseError, match='unknown relabel action "explode"'):
        rule(action="explode")
    with pytest.raises(mod.ParseError, match="requires non-zero modulus"):
        rule(action="hashmod", target_label="x")


def _entry(mod, line: str, **labels):
    return mod.Entry({"filename": "/var/log/app.log", **labels}, line, 1)


def test_pipeline_stages(mod):
    m = mod.new_metrics()
    ctx = {"metrics": m}
    pipe = mod.build_pipeline(
        [
            {"regex": {"expression": r"^(?P<ip>\S+) (?<method>[A-Z]+) (?P<path>\S+) (?P<status>\d+)"}},
            {"labels": {"method": "", "code": "status"}},
            {"static_labels": {"team": "web"}},
            {"labeldrop": ["filename"]},
            {"drop": {"source": "path", "value": "/healthz", "drop_counter_reason": "health"}},
            {"match": {"selector": '{method="POST"} |= "secret"', "action": "drop"}},
            {"output": {"source": "path"}},
        ],
        ctx,
    )
    e = _entry(mod, "10.0.0.1 GET /orders 200")
    assert pipe(e) and e.line == "/orders"
    assert e.labels == {"method": "GET", "code": "200", "team": "web"}
    assert not pipe(_entry(mod, "10.0.0.1 GET /healthz 200"))
    assert not pipe(_entry(mod, "10.0.0.1 POST /secret 201"))
    assert m.get("logentry_dropped_lines_total", reason="health") == 1
    assert m.get("logentry_dropped_lines_total", reason="match_stage") == 1

    inner = [{"json": {"expressions": {"user": "ctx.user.id", "first": "tags[0]"}}}, {"labels": {"first": ""}}]
    nested = mod.build_pipeline([{"match": {"selector": '{job="app"}', "stages": inner}}], ctx)
    e = _entry(mod, json.dumps({"ctx": {"user": {"id": 42}}, "tags": ["a", "b"]}), job="app")
    assert nested(e) and e.extracted["user"] == 42.0 and e.labels["first"] == "a"
    e = _entry(mod, "not json", job="other")
    assert nested(e) and "user" not in e.extracted

    missing = mod.build_pipeline(
        [{"json": {"expressions": {"level": "", "gone": "nope"}}}, {"labels": {"gone": ""}}], ctx
    )
    e = _entry(mod, '{"level": 30}')
    assert missing(e) and e.extracted == {"filename": "/var/log/app.log", "level": 30.0, "gone": None}
    assert "gone" not in e.labels  # a nil value is not a label, as in Promtail
    assert not mod.build_pipeline([{"json": {"expressions": {"a": ""}, "drop_malformed": True}}], ctx)(_entry(mod, "{"))

    with pytest.raises(mod.StartupError, match="Unknown stage type: jsn"):
        mod.build_pipeline([{"jsn": {}}], ctx)
    with pytest.raises(mod.StartupError, match="pipeline stage must contain only one key"):
        mod.build_pipeline([{"json": {}, "labels": {}}], ctx)
    with pytest.raises(mod.StartupError, match="invalid labels stage config: invalid label name: bad-name"):
        mod.build_pipeline([{"labels": {"bad-name": ""}}], ctx)
    with pytest.raises(mod.StartupError, match="not implemented by the stand-in"):
        mod.build_pipeline([{"logfmt": {"mapping": {}}}], ctx)


def test_metrics_stage(mod):
    m = mod.new_metrics()
    stages = {
        "errors_total": {"type": "counter", "source": "level", "config": {"value": "error", "action": "inc"}},
        "bytes_total": {"type": "counter", "config": {"match_all": True, "count_entry_bytes": True, "action": "add"}},
        "duration_seconds": {"type": "histogram", "source": "took", "config": {"buckets": [0.1, 1]}},
        "queue": {"type": "gauge", "prefix": "app_", "source": "depth", "config": {"action": "set"}},
    }
    pipe = mod.build_pipeline([{"json": {"expressions": {"level": "", "took": "", "depth": ""}}}, {"metrics": stages}],
                              {"metrics": m})  # fmt: skip
    for line in ('{"level":"error","took":"250ms","depth":3}', '{"level":"info","took":0.05,"depth":"7"}'):
        assert pipe(mod.Entry({"job": "app"}, line, 1))
    text = m.render()
    assert 'promtail_custom_errors_total{job="app"} 1' in text
    assert 'promtail_custom_bytes_total{job="app"} 82' in text
    assert 'promtail_custom_duration_seconds_bucket{job="app",le="0.1"} 1' in text
    assert 'promtail_custom_duration_seconds_bucket{job="app",le="1"} 2' in text
    assert 'app_queue{job="app"} 7' in text and "# TYPE app_queue gauge" in text
    with pytest.raises(mod.StartupError, match="invalid metric type 'summary'"):
        mod.build_pipeline([{"metrics": {"x": {"type": "summary"}}}], {"metrics": m})
    with pytest.raises(mod.StartupError, match="counter action must be defined"):
        mod.build_pipeline([{"metrics": {"x": {"type": "counter", "config": {}}}}], {"metrics": m})
    both = {"match_all": True, "value": "a", "action": "inc"}
    with pytest.raises(mod.StartupError, match="`match_all: true` cannot be combined with `value`"):
        mod.build_pipeline([{"metrics": {"x": {"type": "counter", "config": both}}}], {"metrics": m})


@pytest.mark.parametrize(
    ("fmt", "value", "ns"),
    [
        ("RFC3339", "2025-12-01T12:00:00Z", 1764590400_000000000),
        ("RFC3339", "2025-12-01T13:00:00.5+01:00", 1764590400_500000000),
        ("RFC3339Nano", "2025-12-01T12:00:00.123456789Z", 1764590400_123456789),
        ("Unix", "1764590400", 1764590400_000000000),
        ("Unix", "1764590400.25", 1764590400_250000000),
        ("UnixMs", "1764590400123", 1764590400_123000000),
        ("UnixUs", "1764590400123456", 1764590400_123456000),
        ("UnixNs", "1764590400123456789", 1764590400_123456789),
        ("2006-01-02 15:04:05.000", "2025-12-01 12:00:00.042", 1764590400_042000000),
        ("02/Jan/2006:15:04:05 -0700", "01/Dec/2025:13:00:00 +0100", 1764590400_000000000),
        ("RFC1123", "Mon, 01 Dec 2025 12:00:00 UTC", 1764590400_000000000),
    ],
)
def test_timestamp_formats(mod, fmt, value, ns):
    assert mod.time_parser(fmt, None)(value) == ns


def test_timestamp_fallback_and_fudge(mod):
    ctx = {"metrics": mod.new_metrics()}
    stage = mod.build_pipeline(
        [{"timestamp": {"source": "t", "format": "RFC3339", "fallback_formats": ["UnixMs"]}}], ctx
    )  # fmt: skip
    e = _entry(mod, "x")
    e.extracted["t"] = 1764590400000.0  # a JSON number: float64 formatted as Go does, then UnixMs
    assert stage(e) and e.ts == 1764590400_000000000
    e = _entry(mod, "y")
    e.extracted["t"] = "garbage"
    assert stage(e) and e.ts == 1764590400_000000001  # fudge: 1ns after the last good one of the stream
    skip = mod.build_pipeline([{"timestamp": {"source": "t", "format": "Unix", "action_on_failure": "skip"}}], ctx)
    e = _entry(mod, "z")
    e.extracted["t"] = "garbage"
    assert skip(e) and e.ts == 1


def test_go_helpers(mod):
    assert mod.go_duration("1m30s") == 90 and mod.go_duration("500ms") == 0.5 and mod.go_duration("0") == 0
    assert mod.go_duration("10") is None and mod.go_duration("1d") is None
    assert mod.go_float(1764590000000.0) == "1764590000000" and mod.go_float(0.5) == "0.5"
    assert mod.go_json({"b": 1.0, "a": "<x>"}) == '{"a":"\\u003cx\\u003e","b":1}'
    assert mod.parse_positions('positions:\n  /var/log/a.log: "12"\n  "/x y: z": \'3\'\n') == {
        "/var/log/a.log": "12",
        "/x y: z": "3",
    }
    assert mod.parse_positions("positions: {}\n") == {}
    with pytest.raises(ValueError, match="unsupported YAML"):
        mod.parse_positions("positions:\n  /a: [1\n")
    assert mod.glob_regex("/var/log/{app,web}/**/*.log").fullmatch("/var/log/web/a/b/.hidden.log")
    assert not mod.glob_regex("/var/log/*.log").fullmatch("/var/log/sub/x.log")
