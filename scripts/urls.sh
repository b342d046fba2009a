#!/usr/bin/env bash
# Print where each sandbox service answers on this machine (ports published on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
export ANSIBLE_VAULT_PASSWORD_FILE=${ANSIBLE_VAULT_PASSWORD_FILE:-$PWD/inventories/local/vault-password.txt}
.venv/bin/ansible-inventory -i inventories/local --list | .venv/bin/python -c '
import json, sys
# The sandbox Go-module builds of Prometheus and Jaeger have no web UI; the
# HTTP APIs answer. Grafana, Loki and Promtail are stand-ins.
names = {
    "9090": ("Prometheus", "api/v1/targets"),
    "9093": ("Alertmanager", "api/v2/status"),
    "9100": ("node_exporter", "metrics"),
    "3000": ("Grafana stand-in", "api/search"),
    "16686": ("Jaeger query", "api/services"),
    "4317": ("Jaeger OTLP gRPC", ""),
    "4318": ("Jaeger OTLP HTTP", "v1/traces"),
    "3100": ("Loki stand-in", "loki/api/v1/labels"),
}
inv = json.load(sys.stdin)
# Served over HTTPS while the inventory turns obs_tls_enabled on (verify with the sandbox CA).
tls_ports = {"9090", "9093", "9100", "3000", "3100", "16686", "4317", "4318"}
# Port 3000 is Grafana on the monitoring hosts and the MDL API on its own hosts.
apps = set(inv.get("mdl_api", {}).get("hosts", []))
print("\nSandbox services (credentials: user admin, passwords in inventories/local/group_vars/all/vault.yml;")
print("HTTPS verifies with curl --cacert inventories/local.pki/ca.crt):")
for host, hv in sorted(inv["_meta"]["hostvars"].items()):
    for spec in hv.get("sandbox_published_ports", []):
        ip, port, cport = spec.split(":")
        app = host in apps and cport == "3000"
        name, path = ("MDL API", "health") if app else names.get(cport, (cport, ""))
        # The MDL API itself still serves plain HTTP.
        tls = cport in tls_ports and not app and str(hv.get("obs_tls_enabled", False)).lower() == "true"
        scheme = "https" if tls else "http"
        print(f"  {host:<12} {name:<17} {scheme}://{ip}:{port}/{path}")
'
