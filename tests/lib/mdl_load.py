#!/usr/bin/env python3
"""Open-loop load generator for the MDL API (importable module and CLI).

``LoadGenerator(base_url, rate, users=[(user, password)], ...)`` sends ``rate``
requests per second to ``base_url`` only: a scheduler thread fires each request
at its planned time into a thread pool (one ``requests.Session`` per worker
thread), so a slow server does not lower the offered rate (requests queue for a
free worker instead; ``stats()["max_backlog"]`` shows how far behind it got).

The mix is mostly reads (lists and single items of metrics, domains and
objectives, over a small hot set of ids so the cache sees hits and misses, with
some unknown ids), some writes (create/update/delete, authenticated with a
token from a login) and logins (``login_share`` of all requests, of which
``bad_password_share`` use a wrong password: the HighAuthFailureRate tests
need more than 10 failed logins per second). ``start()`` first seeds data:
domains, metrics across several domains, categories and tags, objectives
(some completed).

``stats()["samples"]`` holds the last ``sample_size`` answers as ``Sample``:
the tuple (X-Trace-Id, X-Correlation-ID, path, status), also readable by key
(``trace_id``, ``correlation_id``, ``path``, ``status``, ``time``: epoch seconds
it was sent at).

By default only loopback and private addresses are accepted (the sandbox's
published ports and containers); ``allow_remote=True`` lifts that.

CLI::

    python tests/lib/mdl_load.py --url http://127.0.0.1:3000 --rate 40 --duration 60 --user demo:pw

prints a JSON summary (counts by status and operation, latency percentiles,
achieved rate, errors).
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import json
import random
import re
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import requests

DOMAINS = ("finance", "operations", "sales", "engineering", "people")
CATEGORIES = ("kpi", "quality", "efficiency", "risk")
TAGS = ("core", "monthly", "weekly", "customer", "cost", "sla", "growth")
DEFAULT_MIX = {
    "list_metrics": 16,
    "get_metric": 26,
    "list_domains": 7,
    "get_domain": 10,
    "list_objectives": 7,
    "get_objective": 10,
    "create_metric": 4,
    "update_metric": 3,
    "delete_metric": 2,
    "create_domain": 1,
    "create_objective": 3,
    "update_objective": 3,
    "delete_objective": 1,
    "login": 7,
}
WRITE_OPS = {
    "create_metric",
    "update_metric",
    "delete_metric",
    "create_domain",
    "create_objective",
    "update_objective",
    "delete_objective",
}


def check_target(base_url: str, allow_remote: bool = False) -> None:
    """ValueError unless ``base_url`` is http(s) on a loopback or private address (or allow_remote)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{base_url!r} is not an http(s) URL")
    if allow_remote:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 80, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise ValueError(f"cannot resolve {parts.hostname}: {exc}") from exc
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if not (addr.is_loopback or addr.is_private):
            raise ValueError(
                f"{parts.hostname} resolves to {addr}: not loopback or private (allow_remote=True or --allow-remote)"
            )


class Sample(tuple):
    """One answered request: the tuple (trace_id, correlation_id, path, status), also readable by key
    (``s["trace_id"]``, ``s.get("trace_id")``) and with the epoch seconds it was sent at (``s["time"]``)."""

    _KEYS = ("trace_id", "correlation_id", "path", "status")

    def __new__(cls, trace_id: str | None, correlation_id: str | None, path: str, status: int, sent: float):
        obj = super().__new__(cls, (trace_id, correlation_id, path, status))
        obj.time = sent
        return obj

    def __getitem__(self, key):
        if isinstance(key, str):
            if key == "time":
                return self.time
            return tuple.__getitem__(self, self._KEYS.index(key))
        return tuple.__getitem__(self, key)

    def get(self, key: str, default=None):
        try:
            return self[key]
        except ValueError:
            return default

    def as_dict(self) -> dict:
        return {**dict(zip(self._KEYS, self, strict=True)), "time": self.time}


def route_of(path: str) -> str:
    """``path`` without its query and with ids as ``:id`` (the app's path label), for the per-route counts."""
    path = path.split("?", maxsplit=1)[0]
    return re.sub(r"/\d+(?=/|$)", "/:id", re.sub(r"/METRIC-[A-Z0-9-]+", "/METRIC-:id", path))


class LoadGenerator:
    def __init__(
        self,
        base_url: str,
        rate: float,
        *,
        users: list[tuple[str, str]] | None = None,
        mix: dict[str, float] | None = None,
        seed: int | None = None,
        jitter: float = 0.0,
        login_share: float | None = None,
        bad_password_share: float = 0.0,
        workers: int | None = None,
        sample_size: int = 500,
        timeout: float = 10.0,
        seed_data: bool = True,
        allow_remote: bool = False,
    ):
        check_target(base_url, allow_remote)
        if rate <= 0:
            raise ValueError("rate must be greater than 0")
        if not 0 <= jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        self.base_url = base_url.rstrip("/")
        self.rate = float(rate)
        self.users = list(users or [])
        mix = dict(mix or DEFAULT_MIX)
        unknown = set(mix) - set(DEFAULT_MIX)
        if unknown:
            raise ValueError(f"unknown operations in mix: {sorted(unknown)}")
        if login_share is not None:
            if not 0 <= login_share <= 1:
                raise ValueError("login_share must be between 0 and 1")
            rest = sum(w for op, w in mix.items() if op != "login") or 1
            mix = {op: (w / rest) * (1 - login_share) for op, w in mix.items() if op != "login"}
            mix["login"] = login_share
        if not self.users:
            mix = {op: w for op, w in mix.items() if op != "login" and op not in WRITE_OPS}
        self.mix_ops = [op for op, w in mix.items() if w > 0]
        self.mix_weights = [mix[op] for op in self.mix_ops]
        self.rng = random.Random(seed)
        self.jitter = jitter
        self.bad_password_share = bad_password_share
        self.workers = workers or max(16, min(256, int(self.rate * 2)))
        self.timeout = timeout
        self.seed_data = seed_data
        self.tag = uuid.uuid4().hex[:6].upper()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._token: str | None = None
        self._metric_ids: list[str] = []
        self._domain_ids: list[int] = []
        self._objective_ids: list[int] = []
        self._serial = 0
        self._status: collections.Counter = collections.Counter()
        self._ops: collections.Counter = collections.Counter()
        self._paths: collections.Counter = collections.Counter()
        self._errors: collections.Counter = collections.Counter()
        self._latencies: list[float] = []
        self._samples: collections.deque = collections.deque(maxlen=sample_size)
        self._scheduled = 0
        self._completed = 0
        self._in_flight = 0
        self._max_backlog = 0
        self._started = self._stopped = 0.0
        self._pool: ThreadPoolExecutor | None = None
        self._scheduler: threading.Thread | None = None

    # -- HTTP ---------------------------------------------------------------
    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
        return s

    def _next_serial(self) -> int:
        with self._lock:
            self._serial += 1
            return self._serial

    def _send(self, method: str, path: str, body=None, auth: bool = False, record: str | None = None):
        headers = {"X-Correlation-ID": f"load-{self.tag}-{self._next_serial()}"}
        if auth and self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        sent, start = time.time(), time.perf_counter()
        try:
            resp = self._session().request(
                method, self.base_url + path, json=body, headers=headers, timeout=self.timeout
            )
        except requests.RequestException as exc:
            if record:
                with self._lock:
                    self._errors[type(exc).__name__] += 1
                    self._ops[record] += 1
            return None
        if record:
            elapsed = time.perf_counter() - start
            with self._lock:
                self._status[str(resp.status_code)] += 1
                self._ops[record] += 1
                self._paths[route_of(path)] += 1
                if len(self._latencies) < 200_000:
                    self._latencies.append(elapsed)
                self._samples.append(
                    Sample(
                        resp.headers.get("X-Trace-Id"),
                        resp.headers.get("X-Correlation-ID"),
                        path,
                        resp.status_code,
                        sent,
                    )
                )
        return resp

    def _login(self, record: str | None = None, bad: bool = False) -> requests.Response | None:
        username, password = self.rng.choice(self.users)
        if bad:
            password += "-wrong"
        resp = self._send("POST", "/api/v1/auth/login", {"username": username, "password": password}, record=record)
        if resp is not None and resp.status_code == 200:
            self._token = resp.json()["token"]
        return resp

    # -- seeding ------------------------------------------------------------
    def seed(self) -> None:
        """Domains, metrics in several domains/categories/tags, objectives (some completed)."""
        if self.users:
            self._login()
            for name in DOMAINS:
                self._send("POST", "/api/v1/domains", {"name": name, "description": f"{name} metrics"}, auth=True)
            for i in range(24):
                self._create_metric(i)
            for i in range(10):
                resp = self._send(
                    "POST",
                    "/api/v1/objectives",
                    {
                        "title": f"objective {self.tag}-{i}",
                        "domain": DOMAINS[i % len(DOMAINS)],
                        "completed": i % 3 == 0,
                    },
                    auth=True,
                )
                if resp is not None and resp.status_code == 201:
                    self._objective_ids.append(resp.json()["id"])
        for path, target in (
            ("/api/v1/domains?limit=1000", self._domain_ids),
            ("/api/v1/objectives?limit=1000", self._objective_ids),
        ):
            resp = self._send("GET", path)
            if resp is not None and resp.status_code == 200:
                target[:] = sorted({*target, *(item["id"] for item in resp.json()["items"])})
        resp = self._send("GET", "/api/v1/metrics?limit=1000")
        if resp is not None and resp.status_code == 200:
            self._metric_ids[:] = list(
                dict.fromkeys([*self._metric_ids, *(m["metric_id"] for m in resp.json()["items"])])
            )

    def _create_metric(self, i: int, record: str | None = None):
        metric_id = f"METRIC-{self.tag}-{i:03d}"
        body = {
            "metric_id": metric_id,
            "name": f"Metric {i}",
            "domain": DOMAINS[i % len(DOMAINS)],
            "category": CATEGORIES[i % len(CATEGORIES)],
            "tags": sorted({TAGS[i % len(TAGS)], TAGS[(i * 3 + 1) % len(TAGS)]}),
            "description": "seeded by mdl_load",
        }
        resp = self._send("POST", "/api/v1/metrics", body, auth=True, record=record)
        if resp is not None and resp.status_code == 201:
            with self._lock:
                self._metric_ids.append(metric_id)
        return resp

    # -- the mix ------------------------------------------------------------
    def _pick(self, ids: list, unknown) -> object:
        """Mostly a hot id (first few), sometimes any id, sometimes one that does not exist."""
        r = self.rng.random()
        with self._lock:
            if not ids or r < 0.05:
                return unknown
            if r < 0.75:
                return ids[self.rng.randrange(min(5, len(ids)))]
            return self.rng.choice(ids)

    def use_ids(self, metrics: list[str], domains: list[int], objectives: list[int]) -> None:
        """Work on these existing ids (seeded elsewhere) instead of seeding its own."""
        with self._lock:
            self._metric_ids[:], self._domain_ids[:], self._objective_ids[:] = metrics, domains, objectives

    def next_op(self) -> str:
        """An operation drawn from the mix."""
        return self.rng.choices(self.mix_ops, self.mix_weights)[0]

    def counters(self) -> dict:
        """Answers so far: status counts, transport errors, and how many latencies are recorded."""
        with self._lock:
            return {
                "status": collections.Counter(self._status),
                "errors": collections.Counter(self._errors),
                "latencies": len(self._latencies),
            }

    def latencies_between(self, start: int, end: int) -> list[float]:
        """Sorted latencies (s) of the answers recorded between two counters() readings."""
        with self._lock:
            return sorted(self._latencies[start:end])

    def samples(self) -> list[dict]:
        """The sampled answers kept (trace and correlation ids, path, status)."""
        with self._lock:
            return list(self._samples)

    def run_op(self, op: str) -> None:  # noqa: PLR0912 - one branch per operation
        """Send the requests of one operation now (the open-loop scheduler and closed-loop drivers)."""
        rec = op
        if op in WRITE_OPS and not self._token:
            self._login()
        if op == "login":
            self._login(record=rec, bad=self.rng.random() < self.bad_password_share)
        elif op.startswith("list_"):
            page = self.rng.choice((0, 0, 0, 10))
            self._send("GET", f"/api/v1/{op[5:]}?limit=20&offset={page}", record=rec)
        elif op == "get_metric":
            self._send("GET", f"/api/v1/metrics/{self._pick(self._metric_ids, 'METRIC-NONE-404')}", record=rec)
        elif op == "get_domain":
            self._send("GET", f"/api/v1/domains/{self._pick(self._domain_ids, 999999)}", record=rec)
        elif op == "get_objective":
            self._send("GET", f"/api/v1/objectives/{self._pick(self._objective_ids, 999999)}", record=rec)
        elif op == "create_metric":
            self._create_metric(1000 + self._next_serial(), record=rec)
        elif op == "update_metric":
            mid = self._pick(self._metric_ids, "METRIC-NONE-404")
            self._send(
                "PUT", f"/api/v1/metrics/{mid}", {"description": f"updated {time.time():.0f}"}, auth=True, record=rec
            )
        elif op == "delete_metric":
            with self._lock:
                mid = self._metric_ids.pop() if len(self._metric_ids) > 10 else None
            if mid:
                self._send("DELETE", f"/api/v1/metrics/{mid}", auth=True, record=rec)
        elif op == "create_domain":
            self._send(
                "POST", "/api/v1/domains", {"name": f"domain-{self.tag}-{self._next_serial()}"}, auth=True, record=rec
            )
        elif op == "create_objective":
            resp = self._send(
                "POST",
                "/api/v1/objectives",
                {
                    "title": f"objective {self.tag}-{self._next_serial()}",
                    "domain": self.rng.choice(DOMAINS),
                    "completed": self.rng.random() < 0.3,
                },
                auth=True,
                record=rec,
            )
            if resp is not None and resp.status_code == 201:
                with self._lock:
                    self._objective_ids.append(resp.json()["id"])
        elif op == "update_objective":
            oid = self._pick(self._objective_ids, 999999)
            self._send(
                "PUT", f"/api/v1/objectives/{oid}", {"completed": self.rng.random() < 0.5}, auth=True, record=rec
            )
        elif op == "delete_objective":
            with self._lock:
                oid = self._objective_ids.pop() if len(self._objective_ids) > 5 else None
            if oid:
                self._send("DELETE", f"/api/v1/objectives/{oid}", auth=True, record=rec)

    def _task(self, op: str) -> None:
        try:
            self.run_op(op)
        except Exception as exc:
            with self._lock:
                self._errors[type(exc).__name__] += 1
        finally:
            with self._lock:
                self._in_flight -= 1
                self._completed += 1

    def _schedule(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.perf_counter()
        while not self._stop.is_set():
            delay = next_at - time.perf_counter()
            if delay > 0 and self._stop.wait(delay):
                break
            op = self.rng.choices(self.mix_ops, self.mix_weights)[0]
            with self._lock:
                self._scheduled += 1
                self._in_flight += 1
                self._max_backlog = max(self._max_backlog, self._in_flight - self.workers)
            self._pool.submit(self._task, op)
            factor = 1 + self.rng.uniform(-self.jitter, self.jitter) if self.jitter else 1
            next_at += interval * factor

    # -- control ------------------------------------------------------------
    def start(self) -> LoadGenerator:
        if self.seed_data:
            self.seed()
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="mdl-load")
        self._started = time.perf_counter()
        self._scheduler = threading.Thread(target=self._schedule, name="mdl-load-scheduler", daemon=True)
        self._scheduler.start()
        return self

    def stop(self, wait: bool = True) -> dict:
        self._stop.set()
        if self._scheduler:
            self._scheduler.join()
        self._stopped = time.perf_counter()
        if self._pool:
            self._pool.shutdown(wait=wait, cancel_futures=not wait)
        return self.stats()

    def run(self, duration: float) -> dict:
        self.start()
        try:
            time.sleep(duration)
        except KeyboardInterrupt:
            pass  # the summary of what ran so far
        return self.stop()

    def stats(self) -> dict:
        with self._lock:
            lat = sorted(self._latencies)
            end = self._stopped or time.perf_counter()
            elapsed = max(1e-9, end - self._started) if self._started else 0.0

            def pct(q: float) -> float | None:
                return round(lat[min(len(lat) - 1, int(q * len(lat)))], 4) if lat else None

            return {
                "target": self.base_url,
                "rate": self.rate,
                "elapsed_seconds": round(elapsed, 3),
                "scheduled": self._scheduled,
                "completed": self._completed,
                "offered_rate": round(self._scheduled / elapsed, 2) if elapsed else 0.0,
                "achieved_rate": round(sum(self._status.values()) / elapsed, 2) if elapsed else 0.0,
                "max_backlog": max(0, self._max_backlog),
                "status": dict(self._status),
                "operations": dict(self._ops),
                "routes": dict(self._paths),
                "errors": dict(self._errors),
                "latency_seconds": {
                    "p50": pct(0.5),
                    "p95": pct(0.95),
                    "p99": pct(0.99),
                    "max": round(lat[-1], 4) if lat else None,
                    "count": len(lat),
                },
                "latencies": list(lat),
                "samples": list(self._samples),
            }


def _user(value: str) -> tuple[str, str]:
    name, sep, password = value.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected user:password")
    return name, password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="base URL of the MDL API, e.g. http://127.0.0.1:3000")
    parser.add_argument("--rate", type=float, default=40, help="requests per second (open loop)")
    parser.add_argument("--duration", type=float, default=60, help="seconds of load after seeding")
    parser.add_argument("--user", type=_user, action="append", default=[], help="user:password (repeatable)")
    parser.add_argument("--seed", type=int, default=None, help="random seed of the mix")
    parser.add_argument("--jitter", type=float, default=0.0, help="0..1: spread of the inter-request interval")
    parser.add_argument("--login-share", type=float, default=None, help="0..1: share of requests that are logins")
    parser.add_argument("--bad-password-share", type=float, default=0.0, help="0..1: share of logins that fail")
    parser.add_argument("--workers", type=int, default=None, help="worker threads (default 2 x rate, 16..256)")
    parser.add_argument("--no-seed-data", action="store_true", help="do not create the seed data first")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback, non-private target")
    parser.add_argument("--samples", action="store_true", help="include the last samples in the summary")
    args = parser.parse_args(argv)
    try:
        gen = LoadGenerator(
            args.url,
            args.rate,
            users=args.user,
            seed=args.seed,
            jitter=args.jitter,
            login_share=args.login_share,
            bad_password_share=args.bad_password_share,
            workers=args.workers,
            seed_data=not args.no_seed_data,
            allow_remote=args.allow_remote,
        )
    except ValueError as exc:
        print(f"mdl_load: {exc}", file=sys.stderr)
        return 2
    summary = gen.run(args.duration)
    summary.pop("latencies")
    if args.samples:
        summary["samples"] = [s.as_dict() for s in summary["samples"]]
    else:
        summary.pop("samples")
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
