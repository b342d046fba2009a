#!/usr/bin/env bash
# Print where each sandbox service answers on this machine (ports published on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ansible-inventory -i inventories/local --list | .venv/bin/python -c '
import json, sys
names = {"9090": "Prometheus", "9093": "Alertmanager", "9100": "node_exporter"}
inv = json.load(sys.stdin)
print("\nSandbox services (credentials: user admin, passwords in inventories/local/group_vars/all/vault.yml):")
for host, hv in sorted(inv["_meta"]["hostvars"].items()):
    for spec in hv.get("sandbox_published_ports", []):
        ip, port, cport = spec.split(":")
        print(f"  {host:<12} {names.get(cport, cport):<14} http://{ip}:{port}/")
'
