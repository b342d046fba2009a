#!/usr/bin/env bash
# Benchmark: fresh converge and idempotent re-run of site.yml (node_exporter,
# Alertmanager, Prometheus) on one all-in-one Debian 13 host over the docker
# connection. Prints the fresh time, the median of 3 re-runs and the number of
# changed tasks on re-run. Not a test: numbers are quoted in issue notes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"
export ANSIBLE_VAULT_PASSWORD_FILE="$PWD/inventories/local/vault-password.txt"
inv=bench/inventory
out=bench/results
mkdir -p "$out"
log="$out/converge-$(date -u +%Y%m%dT%H%M%SZ).log"

docker rm -f obs-bench >/dev/null 2>&1 || true
ansible-playbook -i "$inv" playbooks/sandbox.yml >/dev/null

run() {  # run <label>; prints "<seconds> <changed>"
  local start end changed
  start=$(date +%s%N)
  ansible-playbook -i "$inv" site.yml >"$log.$1" 2>&1 || { tail -n 40 "$log.$1" >&2; exit 1; }
  end=$(date +%s%N)
  changed=$(awk '/^obs-bench/ { for (i = 1; i <= NF; i++) if ($i ~ /^changed=/) { split($i, a, "="); print a[2] } }' "$log.$1")
  printf '%d.%d %s\n' $(((end - start) / 1000000000)) $(((end - start) / 100000000 % 10)) "$changed"
}

read -r fresh fresh_changed < <(run fresh)
times=()
changes=()
for i in 1 2 3; do
  read -r t c < <(run "rerun$i")
  times+=("$t")
  changes+=("$c")
done
median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 2p)
tasks=$(grep -c '^TASK \[' "$log.rerun1" || true)

{
  echo "site.yml on 1 host (Debian 13, docker connection, $(nproc) cores), $(date -u +%F)"
  echo "fresh converge:          ${fresh} s (${fresh_changed} changed)"
  echo "idempotent re-run:       median ${median} s of ${times[*]} s"
  echo "changed tasks on re-run: ${changes[*]}"
  echo "tasks executed on re-run: ${tasks}"
} | tee "$log"
docker rm -f obs-bench >/dev/null 2>&1 || true
