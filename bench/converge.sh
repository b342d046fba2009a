#!/usr/bin/env bash
# Benchmark: fresh converge and idempotent re-runs of site.yml.
#   bench/converge.sh            one all-in-one Debian 13 host (bench/inventory,
#                                container obs-bench): node_exporter,
#                                Alertmanager, Prometheus; fresh + 3 re-runs
#   bench/converge.sh sandbox    the two-host sandbox of `make demo`
#                                (inventories/local, every role): 3 re-runs
# Prints the fresh time, the median of the re-runs, changed tasks, the tasks
# executed (ok + changed) and the ten slowest tasks of a re-run
# (ansible.posix.profile_tasks). Not a test: numbers are quoted in issue notes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"
export ANSIBLE_VAULT_PASSWORD_FILE="$PWD/inventories/local/vault-password.txt"
target=${1:-bench}
out=bench/results
mkdir -p "$out"
log="$out/converge-$target-$(date -u +%Y%m%dT%H%M%SZ).log"

if [ "$target" = sandbox ]; then
  inv=inventories/local
  ansible-playbook -i "$inv" playbooks/sandbox.yml >/dev/null
  ansible-playbook -i "$inv" site.yml >/dev/null  # converged before timing
  hosts=$(ansible -i "$inv" all --list-hosts 2>/dev/null | tail -n +2 | wc -l)
else
  inv=bench/inventory
  hosts=1
  docker rm -f obs-bench >/dev/null 2>&1 || true
  ansible-playbook -i "$inv" playbooks/sandbox.yml >/dev/null
fi

run() {  # run <label>; prints "<seconds> <changed> <executed>"
  local start end
  start=$(date +%s%N)
  ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks PROFILE_TASKS_TASK_OUTPUT_LIMIT=10 \
    ansible-playbook -i "$inv" site.yml >"$log.$1" 2>&1 || { tail -n 40 "$log.$1" >&2; exit 1; }
  end=$(date +%s%N)
  awk -v secs="$(((end - start) / 1000000000)).$(((end - start) / 100000000 % 10))" '
    / : ok=/ { for (i = 1; i <= NF; i++) { split($i, a, "="); if (a[1] == "ok") ok += a[2]; if (a[1] == "changed") ch += a[2] } }
    END { print secs, ch + 0, ok + 0 }' "$log.$1"
}

if [ "$target" != sandbox ]; then
  read -r fresh fresh_changed _ < <(run fresh)
fi
times=()
changes=()
for i in 1 2 3; do
  read -r t c executed < <(run "rerun$i")
  times+=("$t")
  changes+=("$c")
done
median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 2p)

{
  echo "site.yml on $hosts host(s) ($target: $inv, docker connection, $(nproc) cores), $(date -u +%F)"
  [ "$target" = sandbox ] || echo "fresh converge:           ${fresh} s (${fresh_changed} changed)"
  echo "idempotent re-run:        median ${median} s of ${times[*]} s"
  echo "changed tasks on re-run:  ${changes[*]}"
  echo "tasks executed on re-run: ${executed} (ok + changed, all hosts; skipped not counted)"
  echo "slowest tasks of the last re-run:"
  sed -n '/^=\{10,\}/,$p' "$log.rerun3" | grep -E ' -+ +[0-9.]+s$' | head -n 10 | sed 's/^/  /'
} | tee "$log"
if [ "$target" != sandbox ]; then docker rm -f obs-bench >/dev/null 2>&1 || true; fi
