"""Real servers for the MDL API tests: PostgreSQL 15, Redis, an OTLP/HTTP receiver, the app itself.

* ``Postgres``: ``initdb`` + ``pg_ctl`` from /usr/lib/postgresql/15/bin, run as
  the ``postgres`` OS user (PostgreSQL refuses root) in a private directory on
  a free loopback port, socket in that directory, password (SCRAM) auth on TCP.
* ``Redis``: ``redis-server`` on a free loopback port, no persistence, a password.
* ``OtlpReceiver``: a stdlib HTTP server on loopback taking OTLP/HTTP protobuf
  (``ExportTraceServiceRequest``) at /v1/traces and keeping every span.
* ``AppProcess``: ``python -m mdl_api`` from build/mdl-api/venv (the app's own
  pinned dependencies, which the test interpreter does not have) with a config
  written to a temp dir; its log file, its /metrics parsed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from conftest import stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_PYTHONPATH = REPO_ROOT / "roles" / "mdl_api" / "files"
APP_PYTHON = REPO_ROOT / "build" / "mdl-api" / "venv" / "bin" / "python"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
REDIS_SERVER = Path("/usr/bin/redis-server")
DB_PASSWORD = "db-secret-pw"
REDIS_PASSWORD = "redis-secret-pw"
USER_PASSWORD = "demo-Secret-pw1"
FAULT_TOKEN = "fault-token-123"


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def missing_tools() -> list[str]:
    """The server binaries that are not installed (initdb, pg_ctl, postgres, psql, redis-server, the app venv)."""
    needed = [PG_BIN / "initdb", PG_BIN / "pg_ctl", PG_BIN / "postgres", PG_BIN / "psql", REDIS_SERVER, APP_PYTHON]
    return [str(p) for p in needed if not os.access(p, os.X_OK)]


def _as_postgres(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True, check=False, **kw)


class Postgres:
    """A throwaway PostgreSQL cluster with role ``mdl_api`` and database ``mdl``."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="mdl-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = free_port()
        self.user, self.name, self.password = "mdl_api", "mdl", DB_PASSWORD

    def start(self) -> Postgres:
        proc = _as_postgres(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
            "--no-instructions",
        )
        assert proc.returncode == 0, f"initdb failed: {proc.stdout}{proc.stderr}"
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
            " -c full_page_writes=off -c shared_buffers=32MB -c max_connections=60"
        )
        proc = _as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "server.log"),
            "-o",
            opts,
            "-w",
            "-t",
            "30",
            "start",
        )
        assert proc.returncode == 0, f"pg_ctl start failed: {proc.stdout}{proc.stderr}"
        self.psql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'")
        self.psql(f"CREATE DATABASE {self.name} OWNER {self.user}")
        return self

    def psql(self, sql: str, db: str = "postgres") -> str:
        proc = _as_postgres(
            str(PG_BIN / "psql"),
            "-h",
            str(self.dir),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-c",
            sql,
        )
        assert proc.returncode == 0, f"psql {sql!r} failed: {proc.stderr}"
        return proc.stdout.strip()

    def stop(self) -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    def __init__(self):
        self.port = free_port()
        self.password = REDIS_PASSWORD
        self.proc: subprocess.Popen | None = None

    def start(self) -> Redis:
        self.proc = subprocess.Popen(
            [
                str(REDIS_SERVER),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                self.password,
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.command("PING") == "+PONG":
                return self
            time.sleep(0.05)
        raise AssertionError("redis-server did not answer PING")

    def command(self, *args: str) -> str:
        """One RESP command over a plain socket; the first line of the answer ('' if not reachable)."""
        import socket  # noqa: PLC0415

        payload = f"*2\r\n$4\r\nAUTH\r\n${len(self.password)}\r\n{self.password}\r\n"
        payload += f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(payload.encode())
                data = b""
                while data.count(b"\r\n") < 2:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        except OSError:
            return ""
        lines = data.decode().split("\r\n")
        return lines[1] if len(lines) > 1 else ""

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class OtlpReceiver:
    """OTLP/HTTP receiver for traces: every span decoded into a dict, kept in ``spans``."""

    def __init__(self):
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2  # noqa: PLC0415

        self.spans: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                req = trace_service_pb2.ExportTraceServiceRequest()
                req.ParseFromString(body)
                receiver._add(req)
                out = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def _value(v):
        kind = v.WhichOneof("value")
        if kind == "array_value":
            return [OtlpReceiver._value(x) for x in v.array_value.values]
        return getattr(v, kind) if kind else None

    def _add(self, req) -> None:
        spans = []
        for rs in req.resource_spans:
            resource = {a.key: self._value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append(
                        {
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_span_id": s.parent_span_id.hex(),
                            "name": s.name,
                            "kind": s.kind,
                            "scope": ss.scope.name,
                            "attributes": {a.key: self._value(a.value) for a in s.attributes},
                            "status_code": s.status.code,
                            "events": [e.name for e in s.events],
                            "resource": resource,
                        }
                    )
        with self.lock:
            self.spans.extend(spans)

    def trace(self, trace_id: str) -> list[dict]:
        with self.lock:
            return [s for s in self.spans if s["trace_id"] == trace_id]

    def wait_for(self, predicate, timeout: float = 10.0) -> list[dict]:
        """The spans once ``predicate(spans)`` holds (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                spans = list(self.spans)
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"spans never matched; got {[(s['name'], s['trace_id']) for s in spans][-30:]}")
            time.sleep(0.1)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def app_config(pg: Postgres, redis: Redis, otlp_endpoint: str, log_path: Path, /, **overrides) -> dict:
    """A complete config for an app on a free port; ``overrides`` replace top-level keys or merge sections."""
    cfg = {
        "listen": f"127.0.0.1:{free_port()}",
        "service_name": "mdl-api",
        "version": "1.2.3",
        "environment": "sandbox",
        "threads": 8,
        "database": {
            "host": "127.0.0.1",
            "port": pg.port,
            "name": pg.name,
            "user": pg.user,
            "password": pg.password,
            "pool_min": 2,
            "pool_max": 6,
            "pool_timeout_seconds": 1,
            "statement_timeout_ms": 5000,
        },
        "redis": {"host": "127.0.0.1", "port": redis.port, "password": redis.password, "db": 0, "ttl_seconds": 60},
        "tracing": {"enabled": True, "otlp_endpoint": otlp_endpoint, "sample_ratio": 1.0, "export_timeout_seconds": 5},
        "metrics": {"enabled": True},
        "log": {
            "path": str(log_path),
            "level": "info",
            "redact": ["password", "token", "authorization", "secret", "cookie"],
        },
        "users": [{"username": "demo", "password": USER_PASSWORD}, {"username": "alice", "password": "alice-pw-42"}],
        "faults": {"enabled": True, "token": FAULT_TOKEN},
        "business_sync_seconds": 2,
        "active_user_window_seconds": 300,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def run_app(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    """``python -m mdl_api <args>`` to completion (for --check-config and refused configs)."""
    return subprocess.run(
        [str(APP_PYTHON), "-m", "mdl_api", *args],
        env=app_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def app_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    # Export batches every 200 ms so a test sees its spans quickly.
    # No __pycache__ written into roles/mdl_api/files (the role ships that tree).
    env.update(
        {
            "PYTHONPATH": str(APP_PYTHONPATH),
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    return env


class AppProcess:
    def __init__(self, cfg: dict, workdir: Path):
        self.cfg = cfg
        self.workdir = workdir
        self.config_path = workdir / "config.json"
        self.config_path.write_text(json.dumps(cfg))
        self.log_path = Path(cfg["log"]["path"])
        self.url = f"http://{cfg['listen']}"
        self.stderr_path = workdir / "stderr.txt"
        self.proc: subprocess.Popen | None = None

    def launch(self, **env: str) -> AppProcess:
        """Start the process (``env``: extra environment, e.g. OTEL_BSP_SCHEDULE_DELAY)."""
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [str(APP_PYTHON), "-m", "mdl_api", "--config", str(self.config_path)],
                env={**app_env(), **env},
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        return self

    def wait_ready(self, health: int = 200, timeout: float = 30) -> AppProcess:
        """Wait until /health answers ``health`` (503 for an instance meant to be degraded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"app exited {self.proc.returncode}: {self.stderr_path.read_text()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/health", timeout=2).status_code == health:
                    return self
            time.sleep(0.1)
        self.stop()  # never leave a half-started process behind a failed test
        raise AssertionError(f"/health never answered {health} in {timeout}s: {self.stderr_path.read_text()}")

    def start(self, health: int = 200, **env: str) -> AppProcess:
        return self.launch(**env).wait_ready(health)

    def stop(self, timeout: float = 15) -> int | None:
        return stop_process(self.proc, timeout)

    def log_lines(self) -> list[dict]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]

    def scrape(self) -> dict[tuple[str, frozenset], float]:
        """/metrics parsed: {(sample name, frozenset of label items): value}."""
        return parse_exposition(requests.get(self.url + "/metrics", timeout=5).text)


def parse_exposition(text: str) -> dict[tuple[str, frozenset], float]:
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    out: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: dict, name: str, **labels) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels`` (0 if none)."""
    want = set(labels.items())
    return sum(v for (n, lbl), v in samples.items() if n == name and want <= lbl)
