#!/usr/bin/env python3
"""Dashboard load: the time Prometheus takes to answer every query of each shipped dashboard for a
6-hour range, as Grafana would ask it (one query_range per panel query, all panels of a dashboard
in parallel, step = range / 1000 points rounded up to the scrape interval), on a running sandbox
under load. Plan target: a dashboard loads in under 2 seconds.

Runs against a Prometheus in a test container (molecule's obs-trixie by default, or the sandbox's
obs-mon-1: --container obs-mon-1), from inside it with curl, so only the server's own time and
loopback are measured; start load first (tests/lib/mdl_load.py against the application host).
Each dashboard is loaded --repeat times; the slowest query and the wall time of the parallel batch
are reported, with the median and the worst load.

Usage: .venv/bin/python bench/dashboard_load.py [--container obs-trixie] [--hours 6] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "lib"))

from dashboards import dashboard_files, load_dashboard, raw_queries, substitute, substitution_values  # noqa: E402
from mdl_load import LoadGenerator  # noqa: E402
from sandbox import published_url, sandbox_secrets  # noqa: E402

TARGET_SECONDS = 2.0


# Inside the container: curl times the request, python3 counts the series of the answer.
QUERY_SCRIPT = (
    'curl -sS -f --max-time 30 -u "$AUTH" ${CA:+--cacert "$CA"} -o /tmp/q.$$ -w \'%{time_total}\' "$URL"'
    " && python3 -c \"import json,sys; print(); print(len(json.load(open(sys.argv[1]))['data']['result']))\" /tmp/q.$$;"
    " rm -f /tmp/q.$$"
)


def query_range(target: dict, expr: str, start: float, end: float, step: int) -> dict:
    """One query_range asked inside ``target['container']``: the server's time and the series returned."""
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    env = [
        "-e",
        f"AUTH={target['auth']}",
        "-e",
        f"CA={target['ca']}",
        "-e",
        f"URL={target['url']}/api/v1/query_range?{params}",
    ]
    cmd = ["docker", "exec", *env, target["container"], "sh", "-c", QUERY_SCRIPT]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{expr}: {out.stderr.strip()}")
    seconds, series = out.stdout.split()
    return {"seconds": float(seconds), "series": int(series)}


def dashboard_queries(path: Path, overrides: dict) -> list[str]:
    dashboard = load_dashboard(path)
    values = substitution_values(dashboard, overrides)
    return [substitute(expr, values) for panel, expr in raw_queries(dashboard) if not panel.startswith("annotation:")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--container", default="obs-trixie")
    # The scenario serves HTTPS (obs_tls_enabled); --cacert '' with an http URL for a plain one.
    parser.add_argument("--url", default="https://127.0.0.1:9090")
    parser.add_argument("--cacert", default="/etc/ssl/obs/ca.crt", help="CA file inside the container")
    parser.add_argument("--hours", type=float, default=6)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--scrape-interval", type=int, default=15, help="seconds; the step never goes below it")
    parser.add_argument("--app-container", default="obs-app", help="drive load at its port 3000; '' for none")
    parser.add_argument("--rate", type=float, default=40)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    load = None
    if args.app_container:
        user = ("demo", sandbox_secrets()["vault_mdl_api_demo_password"])
        load = LoadGenerator(published_url(args.app_container, 3000), rate=args.rate, users=[user], seed=3)
        load.start()
        time.sleep(30)  # a few scrapes of traffic first
    try:
        run(args)
    finally:
        if load:
            load.stop()


def run(args) -> None:

    target = {
        "container": args.container,
        "url": args.url,
        "ca": args.cacert,
        "auth": f"admin:{sandbox_secrets()['vault_prometheus_password']}",
    }
    span = args.hours * 3600
    step = max(args.scrape_interval, math.ceil(span / 1000 / args.scrape_interval) * args.scrape_interval)
    # Grafana's $__rate_interval for this range and step: max(4 x scrape interval, step + scrape interval).
    rate_interval = f"{max(4 * args.scrape_interval, step + args.scrape_interval)}s"
    overrides = {"__rate_interval": rate_interval, "__interval": f"{step}s", "__range": f"{int(span)}s"}
    results = {}
    print(f"range {args.hours}h, step {step}s, $__rate_interval {rate_interval}, {args.repeat} loads per dashboard")
    print(
        f"{'dashboard':<20} {'queries':>7} {'median load':>12} {'worst load':>11} {'slowest query':>14} {'series':>7}"
    )
    for path in dashboard_files():
        exprs = dashboard_queries(path, overrides)
        loads, slowest, series = [], 0.0, 0
        for _ in range(args.repeat):
            end = time.time()
            with ThreadPoolExecutor(max_workers=len(exprs)) as pool:
                answers = list(pool.map(lambda e, end=end: query_range(target, e, end - span, end, step), exprs))
            # The server's time for the batch: the slowest of the parallel queries (docker exec adds its own).
            loads.append(max(a["seconds"] for a in answers))
            slowest = max(slowest, *(a["seconds"] for a in answers))
            series = sum(a["series"] for a in answers)
        results[path.stem] = {"queries": len(exprs), "loads": loads, "series": series}
        print(
            f"{path.stem:<20} {len(exprs):>7} {statistics.median(loads):>11.3f}s {max(loads):>10.3f}s "
            f"{slowest:>13.3f}s {series:>7}"
        )
    worst = max(max(r["loads"]) for r in results.values())
    verdict = "PASS" if worst < TARGET_SECONDS else "FAIL"
    print(f"{verdict}: the slowest dashboard load took {worst:.3f}s (target < {TARGET_SECONDS:.0f}s)")
    if args.json:
        args.json.write_text(json.dumps({"step": step, "hours": args.hours, "results": results}, indent=2))
    sys.exit(0 if verdict == "PASS" else 1)


if __name__ == "__main__":
    main()
