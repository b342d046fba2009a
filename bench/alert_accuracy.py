#!/usr/bin/env python3
"""Alert accuracy (plan: > 95 %): each injected fault fires its own alert and no other, and a healthy
soak with realistic load jitter and one rolling restart of the service fires no alert.

Runs against the converged molecule scenario (its hosts are in fast_alerting, so alerts fire and
resolve within minutes; thresholds and expressions are the production ones), with load from
tests/lib/mdl_load.py on the application host's published port:

1. Soak: --soak-minutes of healthy load with --jitter, and in the middle a rolling restart of
   mdl-api on every application host (one after another, each back healthy before the next).
   Every plan alert seen firing in Prometheus (ALERTS) or notified at the sink is a false alert.
2. Faults, one at a time (tests/lib/mdl_faults.py sizes each from its alert's threshold): inject,
   watch Prometheus' firing plan alerts until the fault's own alert fires (or --fault-timeout) and
   --observe seconds more, clear, wait until no plan alert fires. The seconds from injection to
   the first notification at the sink are the measured MTTD with the test settings.

Prints the confusion table (faults x alerts), the accuracy (faults whose own alert fired and no
other, over all faults), false alerts of the soak and the measured MTTD; --json writes them.

Usage (after `molecule converge`):
  .venv/bin/python bench/alert_accuracy.py [--soak-minutes 10] [--json bench/results/alert_accuracy.json]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "lib"))

import mdl_faults  # noqa: E402
import sandbox  # noqa: E402
from mdl_load import LoadGenerator  # noqa: E402


def docker_json(container: str, url: str, auth: str | None = None, ca: str = ""):
    """GET inside a test container; ``ca``: the CA file there that verifies an https URL."""
    tls = ["--cacert", ca] if ca and url.startswith("https://") else []
    cmd = [
        "docker",
        "exec",
        container,
        "curl",
        "-sS",
        "-f",
        "--max-time",
        "10",
        *tls,
        *(["-u", auth] if auth else []),
        url,
    ]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout)


class Stack:
    def __init__(self, expected: dict, secrets: dict):
        self.secrets = secrets
        self.app = next(n for n, e in sorted(expected.items()) if e.get("mdl_api"))
        self.apps = [n for n, e in sorted(expected.items()) if e.get("mdl_api")]
        want = expected[self.app]["mdl_api_expect"]
        self.url = sandbox.published_url(self.app, want["port"])
        self.login_user = want["login_user"]
        self.pool_max = int(want["pool_max"])
        self.prometheus = next(n for n, e in sorted(expected.items()) if "prometheus" in e["groups"])
        self.prom_url = expected[self.prometheus]["urls"]["prometheus"]
        self.prom_ca = expected[self.prometheus]["tls"]["ca"]
        self.alerts = expected[self.prometheus]["mdl_alerts"]

    def firing(self) -> set[str]:
        """Plan alerts Prometheus has firing now."""
        expr = urllib.parse.quote('ALERTS{alertstate="firing"}')
        auth = f"admin:{self.secrets['vault_prometheus_password']}"
        data = docker_json(self.prometheus, f"{self.prom_url}/api/v1/query?query={expr}", auth, self.prom_ca)
        return {r["metric"]["alertname"] for r in data["data"]["result"]} & set(self.alerts)

    def faults(self, body: dict) -> None:
        headers = {"X-Fault-Token": self.secrets["vault_mdl_api_fault_token"]}
        resp = requests.put(f"{self.url}/admin/faults", json=body, headers=headers, timeout=10)
        resp.raise_for_status()

    def wait_healthy(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise RuntimeError(f"{self.url}/health did not answer 200 within {timeout}s")

    def restart(self, host: str) -> None:
        subprocess.run(["docker", "exec", host, "systemctl", "restart", "mdl-api"], check=True, timeout=60)


def sink_mark() -> int:
    return max([r["id"] for r in sandbox.sink_received()] or [0])


def notified(mark: int, alerts) -> dict[str, float]:
    """alertname -> when its first firing notification after ``mark`` was received (epoch seconds)."""
    first: dict[str, float] = {}
    for record in sandbox.sink_received(after=mark, status="firing"):
        text = json.dumps(record)
        for name in alerts:
            if f"{name}" in text and record["accepted"]:
                first.setdefault(name, record.get("received_at", time.time()))
    return first


def soak(stack: Stack, minutes: float) -> dict:
    mark, seen, end = sink_mark(), set(), time.monotonic() + minutes * 60
    restarted = False
    while time.monotonic() < end:
        seen |= stack.firing()
        if not restarted and time.monotonic() > end - minutes * 30:
            for host in stack.apps:  # rolling: each back healthy before the next
                stack.restart(host)
                stack.wait_healthy()
            restarted = True
        time.sleep(10)
    notes = set(notified(mark, stack.alerts))
    return {"minutes": minutes, "rolling_restarts": len(stack.apps), "fired": sorted(seen), "notified": sorted(notes)}


def one_fault(stack: Stack, alertname: str, body: dict, timeout: float, observe: float) -> dict:
    mark, seen = sink_mark(), set()
    started = time.time()
    stack.faults(body)
    own_at = None
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen |= stack.firing()
            if alertname in seen and own_at is None:
                own_at = time.monotonic()
            if own_at is not None and time.monotonic() > own_at + observe:
                break
            time.sleep(5)
        first = notified(mark, [alertname])
    finally:
        if body.get("stop"):
            for host in stack.apps:
                subprocess.run(["docker", "exec", host, "systemctl", "start", "mdl-api"], check=True, timeout=60)
            stack.wait_healthy()
        else:
            stack.faults({})
    deadline = time.monotonic() + 300
    while stack.firing() and time.monotonic() < deadline:
        time.sleep(5)
    leftover = sorted(stack.firing())
    mttd = round(first[alertname] - started) if alertname in first else None
    return {"fault": alertname, "body": body, "fired": sorted(seen), "mttd_seconds": mttd, "unresolved": leftover}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--soak-minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=40)
    parser.add_argument("--jitter", type=float, default=0.3)
    parser.add_argument("--fault-timeout", type=float, default=240)
    parser.add_argument("--observe", type=float, default=45, help="seconds to keep watching after the own alert fired")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    if "MOLECULE_INVENTORY_FILE" not in os.environ:
        found = sorted(glob.glob("/root/.ansible/tmp/molecule.*.default/inventory/ansible_inventory.yml"))
        if not found:
            sys.exit("no molecule inventory: run `molecule converge` first or set MOLECULE_INVENTORY_FILE")
        os.environ["MOLECULE_INVENTORY_FILE"] = found[-1]
    expected = sandbox.expected_state(Path(os.environ.get("TMPDIR", "/tmp")) / "alert_accuracy_expected.json")
    secrets = sandbox.sandbox_secrets()
    stack = Stack(expected, secrets)
    load = LoadGenerator(
        stack.url, rate=args.rate, users=[(stack.login_user, secrets["vault_mdl_api_demo_password"])],
        login_share=0.4, jitter=args.jitter, seed=7,
    )  # fmt: skip
    load.start()
    try:
        time.sleep(30)
        print(f"soak: {args.soak_minutes} min at {args.rate} req/s (jitter {args.jitter}), rolling restart midway")
        soaked = soak(stack, args.soak_minutes)
        print(f"  plan alerts fired: {soaked['fired'] or 'none'}; notified: {soaked['notified'] or 'none'}")
        rows = []
        for alertname, body in mdl_faults.faults(stack.alerts, stack.pool_max).items():
            row = one_fault(stack, alertname, body, args.fault_timeout, args.observe)
            rows.append(row)
            print(f"  {alertname:<22} fired {row['fired']} mttd {row['mttd_seconds']}s unresolved {row['unresolved']}")
    finally:
        load.stop()
    names = list(stack.alerts)
    print("\nconfusion table (rows: injected fault, columns: alerts that fired; X = fired)")
    print(" " * 23 + " ".join(n[:6].ljust(6) for n in names))
    for row in rows:
        print(f"{row['fault']:<22} " + " ".join(("X" if n in row["fired"] else ".").ljust(6) for n in names))
    exact = sum(1 for row in rows if row["fired"] == [row["fault"]])
    accuracy = exact / len(rows)
    false_soak = len(set(soaked["fired"]) | set(soaked["notified"]))
    print(f"\naccuracy: {exact}/{len(rows)} faults fired exactly their own alert = {accuracy:.0%} (plan: > 95 %)")
    restarts = soaked["rolling_restarts"]
    print(f"soak: {args.soak_minutes} min with {restarts} rolling restart(s): {false_soak} false alert(s)")
    print("measured MTTD (test settings), seconds:", {r["fault"]: r["mttd_seconds"] for r in rows})
    if args.json:
        args.json.write_text(json.dumps({"soak": soaked, "faults": rows, "accuracy": accuracy}, indent=2))
    sys.exit(0 if accuracy > 0.95 and false_soak == 0 else 1)


if __name__ == "__main__":
    main()
