#!/usr/bin/env python3
"""Benchmark: sustained OTLP/HTTP span intake of ONE Jaeger v2 process with the
jaeger role's default settings (memory store, memory_limiter, batch), before it
refuses or drops spans. A sizing figure: how many spans/s one default Jaeger takes.

The config is the role's own (tests/unit/fixtures/render_jaeger.yml, preflight
first), only the listeners moved to free 127.0.0.1 ports, run by the real binary
(build/tools/bin/jaeger). Prebuilt ExportTraceServiceRequest protobufs (unique
trace ids per request) are POSTed by a few keep-alive threads, paced to a rate
ladder of time-bounded steps. Per step, from Jaeger's /metrics: accepted,
refused and failed spans, exporter sent/send-failed, RSS, CPU; from the OTLP
responses: non-2xx statuses, partial_success rejections, latency. "Sustained
intake" is the highest step that accepted >= 98% of the offered spans with
nothing refused, failed or rejected, and whose sampled trace ids the query API
returns (accepted means stored). The memory store keeps what earlier steps
sent, so steps are cumulative: "held" is the spans accepted so far.
Table on stdout, JSON in bench/results/jaeger_spans.json.

Usage: .venv/bin/python bench/jaeger_spans.py [--step-seconds 10] [--ladder 2000,5000,...,max]
"""

from __future__ import annotations

import argparse
import collections
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import yaml
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp

ROOT = Path(__file__).resolve().parents[1]
JAEGER = ROOT / "build" / "tools" / "bin" / "jaeger"
ANSIBLE_PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"
FIXTURES = ROOT / "tests" / "unit" / "fixtures"
RESULTS = ROOT / "bench" / "results" / "jaeger_spans.json"
LISTENERS = ("otlp_grpc", "otlp_http", "query", "query_grpc", "health", "metrics")
KEEP_UP = 0.98
HEADERS = {"Content-Type": "application/x-protobuf"}
METRICS = {
    "accepted": "otelcol_receiver_accepted_spans_total",
    "refused": "otelcol_receiver_refused_spans_total",
    "recv_failed": "otelcol_receiver_failed_spans_total",
    "sent": "otelcol_exporter_sent_spans_total",
    "send_failed": "otelcol_exporter_send_failed_spans_total",
    "rss": "otelcol_process_memory_rss_bytes",
    "cpu": "otelcol_process_cpu_seconds_total",
}
SAMPLE = re.compile(r"^(\w+)(\{[^}]*\})? (\S+)$", re.M)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120, **kwargs)


def free_ports(count: int) -> list[int]:
    socks = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports


def render(tmp: Path, ports: dict[str, int]) -> dict:
    """The role's config.yaml (preflight first), rendered as tests/unit/test_jaeger_config.py does."""
    dest = tmp / "jaeger.yaml"
    extra = {"dest": str(dest), **{f"jaeger_{k}_listen_address": f"127.0.0.1:{p}" for k, p in ports.items()}}
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(tmp))
    cmd = [str(ANSIBLE_PLAYBOOK), "-i", str(FIXTURES / "inventory.yml"), str(FIXTURES / "render_jaeger.yml")]
    for proc in (
        run([*cmd, "-e", json.dumps(extra)], cwd=ROOT, env=env),
        run([str(JAEGER), "validate", f"--config=file:{dest}"]),
    ):
        if proc.returncode != 0:
            sys.exit(f"{proc.args[0]} failed:\n{proc.stdout}{proc.stderr}")
    return yaml.safe_load(dest.read_text())


def scrape(port: int) -> dict[str, float]:
    out, names = dict.fromkeys(METRICS, 0.0), {v: k for k, v in METRICS.items()}
    for name, labels, value in SAMPLE.findall(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text):
        if name in names and ("receiver" not in name or 'transport="http"' in labels):
            out[names[name]] += float(value)
    return out


def add_attrs(target, attrs: dict) -> None:
    for key, value in attrs.items():
        attr = target.add(key=key)
        if isinstance(value, int):
            attr.value.int_value = value
        else:
            attr.value.string_value = value


class Sender:
    """Paced OTLP/HTTP protobuf sender; trace id = nonce(6) + trace index(2) + request number(8)."""

    def __init__(self, args, port: int) -> None:
        self.args, self.port, self.counter = args, port, itertools.count(1)
        self.traces, self.nonce, now = args.spans_per_request // args.spans_per_trace, os.urandom(6), time.time_ns()
        req = otlp.ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        add_attrs(rs.resource.attributes, {"service.name": "bench-checkout", "host.name": "bench-1"})
        scope = rs.scope_spans.add()
        scope.scope.name = "bench"
        for n in range(args.spans_per_request):
            trace, i = divmod(n, args.spans_per_trace)
            span = scope.spans.add(trace_id=self.nonce + trace.to_bytes(2, "big") + bytes(8), kind=2)
            span.span_id, span.name = (n + 1).to_bytes(8, "big"), f"GET /api/items/{i % 7}"
            span.parent_span_id = (trace * args.spans_per_trace + 1).to_bytes(8, "big") if i else b""
            span.start_time_unix_nano, span.end_time_unix_nano = now + i * 1000, now + i * 1000 + 250_000
            add_attrs(
                span.attributes, {"http.request.method": "GET", "url.path": f"/api/items/{n}", "user.id": f"u{n}"}
            )
            add_attrs(span.attributes, {"http.response.status_code": 200})
        self.data = req.SerializeToString()
        self.offsets = [m.start() + 8 for m in re.finditer(re.escape(self.nonce), self.data)]
        if len(self.offsets) != args.spans_per_request:
            sys.exit("trace id placeholder not unique in the template")

    def worker(self, t0: float, end: float, interval: float, slots, res: dict) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while True:
            due, now = t0 + next(slots) * interval, time.monotonic()
            if due >= end or now >= end:
                return
            time.sleep(max(0.0, due - now))
            n, body = next(self.counter), bytearray(self.data)
            for off in self.offsets:
                struct.pack_into(">Q", body, off, n)
            start = time.perf_counter()
            try:
                conn.request("POST", "/v1/traces", body, HEADERS)
                resp = conn.getresponse()
                reply, status = resp.read(), str(resp.status)
            except (OSError, http.client.HTTPException) as exc:
                reply, status = b"", f"error:{type(exc).__name__}"
                conn.close()
            res["lat"].append(time.perf_counter() - start)
            res["status"][status] += 1
            res["sent"] += self.args.spans_per_request
            if status == "200":
                rejected = otlp.ExportTraceServiceResponse.FromString(reply).partial_success.rejected_spans
                res["rejected"] += rejected
                if not rejected and n % 10 == 0:
                    res["ids"].append(
                        (self.nonce + (n // 10 % self.traces).to_bytes(2, "big") + n.to_bytes(8, "big")).hex()
                    )
            elif not res["error"]:
                res["error"] = f"{status}: {reply[:200]!r}"

    def step(self, rate: float | None, seconds: float) -> dict:
        """Send for `seconds`, paced to `rate` spans/s (None: as fast as the workers can)."""
        interval, slots, t0 = self.args.spans_per_request / rate if rate else 0.0, itertools.count(), time.monotonic()
        empty = {"rejected": 0, "sent": 0, "error": ""}
        results = [empty | {"lat": [], "status": collections.Counter(), "ids": []} for _ in range(self.args.workers)]
        threads = [
            threading.Thread(target=self.worker, args=(t0, t0 + seconds, interval, slots, r), daemon=True)
            for r in results
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        lat = sorted(x for r in results for x in r["lat"]) or [0.0]
        ids = sorted(i for r in results for i in r["ids"])
        return {
            "elapsed": time.monotonic() - t0,
            "spans_posted": sum(r["sent"] for r in results),
            "statuses": dict(sum((r["status"] for r in results), collections.Counter())),
            "rejected": sum(r["rejected"] for r in results),
            "p50_ms": 1000 * lat[len(lat) // 2],
            "p95_ms": 1000 * lat[int(0.95 * (len(lat) - 1))],
            "ids": ids[:: max(1, len(ids) // self.args.sample)][: self.args.sample],
            "first_error": next((r["error"] for r in results if r["error"]), ""),
        }


def measure(sender: Sender, metrics_port: int, before: dict, rate: float | None, seconds: float) -> dict:
    res = sender.step(rate, seconds)
    after = scrape(metrics_port)
    el = max(seconds, res["elapsed"])  # paced: the window; overrun: until the last response
    delta = {k: after[k] - before[k] for k in METRICS if k != "rss"}
    non2xx = sum(v for k, v in res["statuses"].items() if not k.startswith("2"))
    clean = not (delta["refused"] or delta["recv_failed"] or delta["send_failed"] or non2xx or res["rejected"])
    return res | {
        "target": int(rate) if rate else "max",
        "offered": res["spans_posted"] / el,
        "accepted": delta["accepted"] / el,
        "kept_up": clean and delta["accepted"] >= KEEP_UP * res["spans_posted"],
        "sender_bound": bool(rate) and res["spans_posted"] < 0.9 * rate * seconds,
        **{k: delta[k] for k in ("refused", "recv_failed", "sent", "send_failed")},
        "non2xx": non2xx,
        "held": after["accepted"],
        "rss_mib": after["rss"] / 2**20,
        "jaeger_cores": delta["cpu"] / el,
        "_after": after,
    }


def start_jaeger(tmp: Path, health_port: int) -> subprocess.Popen:
    env, log = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}, tmp / "jaeger.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(JAEGER), f"--config=file:{tmp / 'jaeger.yaml'}"], stdout=out, stderr=out, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            resp = requests.get(f"http://127.0.0.1:{health_port}/status", timeout=2)
            if resp.status_code == 200 and resp.json().get("healthy") is True and proc.poll() is None:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.5)
    stop(proc)
    sys.exit(f"jaeger not healthy within 60s (exit code {proc.returncode}):\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()  # its own tracer retries 127.0.0.1:4317 for ~18s on shutdown: do not wait for it
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def report(steps: list[dict], final: dict, head: dict) -> None:
    cols = "target/s offered/s accept/s refused failed non2xx p50ms p95ms held rssMiB cores stored ok"
    print("\n" + " ".join(f"{c:>9}" for c in cols.split()))
    for s in steps:
        failed = s["recv_failed"] + s["send_failed"] + s["rejected"]
        row = [s["target"], *(f"{s[k]:.0f}" for k in ("offered", "accepted", "refused")), f"{failed:.0f}", s["non2xx"]]
        row += [f"{s['p50_ms']:.1f}", f"{s['p95_ms']:.1f}", f"{s['held']:.0f}", f"{s['rss_mib']:.0f}"]
        row += [f"{s['jaeger_cores']:.2f}", f"{s['stored']}/{s['checked']}", "yes" if s["kept_up"] else "NO"]
        note = " (sender-bound)" if s["sender_bound"] else ""
        print(" ".join(f"{c!s:>9}" for c in row) + note + (f"  {s['first_error'][:80]}" if s["first_error"] else ""))
    print("failed: receiver failed + exporter send-failed + partial_success rejected; held: accepted spans so far;")
    print("cores: Jaeger CPU; stored: sampled trace ids the query API returns")
    good = [s for s in steps if s["kept_up"] and s["stored"] == s["checked"]]
    best = max(good, key=lambda s: s["accepted"], default=None)
    sustained = round(best["accepted"]) if best else 0
    bound = " or more (unpaced and clean: the sender was the limit)" if best and best["target"] == "max" else ""
    print(
        f"\nsustained intake: {sustained} spans/s{bound}" + (f", step {best['target']}" if best else ", no clean step")
    )
    traces = head["settings"]["storage"].get("memory", {}).get("max_traces")
    if traces:
        shape = head["args"]["spans_per_trace"]
        print(f"the memory store evicts only past {traces} traces: {traces * shape} spans of {shape} spans/trace")
    for prev, s in zip([{"held": 0}, *steps], steps, strict=False):
        if s["refused"]:
            print(f"first refusals in step {s['target']}: {prev['held']:.0f} spans held before, {s['held']:.0f} after")
            break
    print(
        f"read back {sum(s['stored'] for s in steps)}/{sum(s['checked'] for s in steps)} sampled trace ids; "
        f"at the end Jaeger had accepted {final['accepted']:.0f} spans, exported {final['sent']:.0f}, "
        f"refused {final['refused']:.0f}, RSS {final['rss'] / 2**20:.0f} MiB"
    )
    result = head | {"steps": steps, "sustained_spans_per_second": sustained, "lower_bound": bool(bound)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result | {"sustained_step": best and best["target"], "totals": final}, indent=2))
    print(f"wrote {RESULTS.relative_to(ROOT)}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ladder", default="2000,5000,10000,20000,40000,max", help="spans/s per step; max: unpaced")
    parser.add_argument("--step-seconds", type=float, default=10.0)
    parser.add_argument("--max-seconds", type=float, default=180.0, help="cap for the whole run")
    parser.add_argument("--workers", type=int, default=4, help="sender threads (keep-alive connections)")
    parser.add_argument("--spans-per-request", type=int, default=500)
    parser.add_argument("--spans-per-trace", type=int, default=50)
    parser.add_argument("--sample", type=int, default=20, help="trace ids per step read back from the query API")
    args = parser.parse_args()
    args.ladder = [None if x.strip() == "max" else float(x) for x in args.ladder.split(",")]
    if args.spans_per_request % args.spans_per_trace:
        parser.error("--spans-per-request must be a multiple of --spans-per-trace")
    return args


def main() -> None:
    args = parse_args()
    deadline = time.monotonic() + args.max_seconds
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    signal.signal(signal.SIGALRM, lambda *_: sys.exit("total cap exceeded"))
    signal.alarm(int(args.max_seconds) + 60)
    tmp, proc = Path(tempfile.mkdtemp(prefix="jaeger-bench-")), None
    try:
        ports = dict(zip(LISTENERS, free_ports(len(LISTENERS)), strict=True))
        config = render(tmp, ports)
        head = {
            "machine": {"nproc": int(run(["nproc"]).stdout), "loadavg": os.getloadavg()},
            "jaeger_version": json.loads(run([str(JAEGER), "version"]).stdout),
            "settings": {
                "storage": config["extensions"]["jaeger_storage"]["backends"]["traces"],
                "memory_limiter": config["processors"]["memory_limiter"],
                "batch": config["processors"]["batch"],
                "pipeline": config["service"]["pipelines"]["traces"],
            },
            "args": vars(args),
        }
        print(f"nproc {head['machine']['nproc']}, load average {head['machine']['loadavg']}; ", end="")
        print(f"jaeger {head['jaeger_version']['gitVersion']}; rendered settings:")
        for key, value in head["settings"].items():
            print(f"  {key}: {json.dumps(value)}")
        proc = start_jaeger(tmp, ports["health"])
        query = f"http://127.0.0.1:{ports['query']}/api/traces/"
        sender, steps, before = Sender(args, ports["otlp_http"]), [], scrape(ports["metrics"])
        for rate in args.ladder:
            seconds = min(args.step_seconds, deadline - time.monotonic() - 20)  # 20s left for read-back and stop
            if seconds < 1:
                print(f"total cap reached: step {f'{rate:.0f}' if rate else 'max'} skipped")
                break
            steps.append(measure(sender, ports["metrics"], before, rate, seconds))
            before = steps[-1].pop("_after")
            # Read back right after the step: later steps may evict these
            # traces from the bounded memory store (oldest first).
            time.sleep(2.5)  # batch timeout is 1s: let the last batch reach the store
            ids = steps[-1].pop("ids")
            steps[-1]["stored"], steps[-1]["checked"] = (
                sum(requests.get(query + i, timeout=10).status_code == 200 for i in ids),
                len(ids),
            )
        report(steps, scrape(ports["metrics"]), head)
    finally:
        signal.alarm(0)
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
