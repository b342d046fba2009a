#!/usr/bin/env python3
"""MTTD benchmark: seconds from a scrape target going down to the notification
arriving at the sink, with the shipped alerting defaults (scrape and rule
evaluation every 15s, TargetDown `for: 1m`, group_wait 30s).

Runs against the sandbox of inventories/local (start it with `make demo`).
Each sample is a fresh incident: Alertmanager's state is reset first, so no
earlier notification or aggregation group shortens or delays it. The fault
itself is injected and timed by playbooks/verify.yml (-e verify_fault_injection=true).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = int(os.environ.get("MTTD_SAMPLES", "3"))
ENV = {
    **os.environ,
    "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
    "ANSIBLE_VAULT_PASSWORD_FILE": str(ROOT / "inventories/local/vault-password.txt"),
    "ANSIBLE_FORCE_COLOR": "0",
}


# The demo sandbox serves HTTPS when inventories/local turns obs_tls_enabled on;
# playbooks/pki.yml keeps its CA under inventories/local.pki.
_TLS = yaml.safe_load((ROOT / "inventories/local/group_vars/all/tls.yml").read_text()).get("obs_tls_enabled", False)
SCHEME = "https" if _TLS else "http"
VERIFY = str(ROOT / "inventories/local.pki/ca.crt") if _TLS else True
PROM, AM = f"{SCHEME}://127.0.0.1:9090", f"{SCHEME}://127.0.0.1:9093"


def vault() -> dict:
    out = subprocess.run(
        [str(ROOT / ".venv/bin/ansible-vault"), "view", str(ROOT / "inventories/local/group_vars/all/vault.yml")],
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(re.findall(r"^(\w+): (.+)$", out, re.M))


def alertmanager_hosts() -> list[str]:
    out = subprocess.run(
        [str(ROOT / ".venv/bin/ansible"), "-i", str(ROOT / "inventories/local"), "alertmanager", "--list-hosts"],
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.strip() for line in out.splitlines()[1:] if line.strip()]


def reset_alertmanagers(hosts: list[str]) -> None:
    for host in hosts:
        subprocess.run(
            [
                "docker",
                "exec",
                host,
                "sh",
                "-c",
                "systemctl stop alertmanager && rm -rf /var/lib/alertmanager/* && systemctl start alertmanager",
            ],
            check=True,
        )


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(2)


def main() -> None:
    secrets = vault()
    prom = ("admin", secrets["vault_prometheus_password"])
    am = ("admin", secrets["vault_alertmanager_password"])

    def no_target_down() -> bool:
        alerts = requests.get(f"{PROM}/api/v1/alerts", auth=prom, timeout=5, verify=VERIFY).json()["data"]["alerts"]
        return not [a for a in alerts if a["labels"]["alertname"] == "TargetDown"]

    def am_ready() -> bool:
        try:
            return requests.get(f"{AM}/-/ready", auth=am, timeout=5, verify=VERIFY).status_code == 200
        except requests.RequestException:
            return False

    hosts = alertmanager_hosts()
    samples = []
    for i in range(1, SAMPLES + 1):
        wait(no_target_down, 300, "no TargetDown alert in Prometheus")
        reset_alertmanagers(hosts)
        wait(am_ready, 60, "Alertmanager ready")
        time.sleep(20)  # let Prometheus resend active alerts (Watchdog) to the fresh Alertmanagers
        proc = subprocess.run(
            [
                str(ROOT / ".venv/bin/ansible-playbook"),
                "-i",
                str(ROOT / "inventories/local"),
                str(ROOT / "playbooks/verify.yml"),
                "--tags",
                "fault",
                "-e",
                "verify_fault_injection=true",
            ],
            env=ENV,
            capture_output=True,
            text=True,
            check=False,
        )
        match = re.search(r"MTTD ([0-9.]+) s: (.*?)\"", proc.stdout)
        if proc.returncode != 0 or not match:
            sys.exit(f"sample {i} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
        samples.append(float(match.group(1)))
        print(f"sample {i}: {samples[-1]:.1f} s ({match.group(2).strip()})", flush=True)

    print(
        f"MTTD over {len(samples)} fresh incidents: mean {statistics.mean(samples):.1f} s, "
        f"min {min(samples):.1f} s, max {max(samples):.1f} s (target < 120 s; plan's success metric < 300 s)"
    )


if __name__ == "__main__":
    main()
