#!/usr/bin/env python3
"""Fleet benchmark: node_exporter + Prometheus converged on 1 and then on 20 monitored hosts.

  .venv/bin/python bench/fleet.py [--sizes 1,20] [--reruns 2] [--keep]
                                  [--connection community.docker.docker_api] [--profile 15]
                                  [--forks N] [--strategy free]

For each size N it writes an inventory under bench/results/fleet-N (the local
inventory's group_vars, so the same versions, TLS and credentials), starts N
sandbox containers (playbooks/sandbox.yml; Debian 12, systemd), and times, from
this one controller:
  fresh   playbooks/node_exporter.yml + playbooks/prometheus.yml on new hosts
  no-op   the same again (--reruns times; each must report 0 changed)
in two modes: "default" (the project's ansible.cfg: facts gathered on every
run) and "fact-cache" (the same plus a jsonfile fact cache, warmed by one run
that is not counted, so gathering=smart skips the setup module: the usual
setting for a large fleet), then asks Prometheus (on the first host, which also runs it) for up{job="node"}
and requires one series per monitored host, all 1. Prints the times, the ratio
of the N-host to the 1-host no-op (target: at most 2x) and the Ansible settings
used (forks, strategy, pipelining, connection; --forks and --strategy override
ansible.cfg's for every run, to compare settings). --profile N also prints the N
tasks that took longest in the largest size's last no-op run (profile_tasks).
The sandbox hosts are containers, so the connection is the sandbox's cost, not
one a real fleet pays (SSH): docker_api talks to the engine's API from the
controller process, community.docker.docker starts the docker CLI for every
command. Not a test: its output is quoted in notes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
    "ANSIBLE_VAULT_PASSWORD_FILE": str(ROOT / "inventories/local/vault-password.txt"),
    "ANSIBLE_FORCE_COLOR": "0",
    "PATH": f"{ROOT / '.venv/bin'}:{os.environ.get('PATH', '')}",
}
PLAYBOOKS = ["playbooks/node_exporter.yml", "playbooks/prometheus.yml"]
PREFIX = "obs-fleet-"
# No-op modes: extra environment of ansible-playbook ({inv}: the size's inventory directory).
MODES = {
    "default": {},
    "fact-cache": {"ANSIBLE_CACHE_PLUGIN": "ansible.builtin.jsonfile", "ANSIBLE_CACHE_PLUGIN_CONNECTION": "{inv}/facts",
                   "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "3600"},
}  # fmt: skip


def log(msg: str) -> None:
    print(f"[fleet {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def write_inventory(n: int, connection: str) -> Path:
    inv = ROOT / "bench/results" / f"fleet-{n}"
    shutil.rmtree(inv, ignore_errors=True)
    inv.mkdir(parents=True)
    (inv / "group_vars").symlink_to(os.path.relpath(ROOT / "inventories/local/group_vars", inv))
    hosts = [f"{PREFIX}{i}" for i in range(1, n + 1)]
    doc = {
        "all": {
            "vars": {"ansible_connection": connection, "ansible_python_interpreter": "/usr/bin/python3"},
            "hosts": {h: {"sandbox_image": "obs-sandbox/debian:bookworm"} for h in hosts},
            "children": {"monitored": {"hosts": dict.fromkeys(hosts)}, "prometheus": {"hosts": {hosts[0]: None}}},
        }
    }
    (inv / "hosts.yml").write_text("---\n# Written by bench/fleet.py.\n" + yaml.safe_dump(doc, sort_keys=False))
    return inv


def remove_containers() -> None:
    names = subprocess.run(["docker", "ps", "-aq", "--filter", f"name=^{PREFIX}"], capture_output=True, text=True,
                           check=True).stdout.split()  # fmt: skip
    if names:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True, check=True)


def playbook(inv: Path, *books: str, label: str, profile: bool = False, mode: str = "default") -> tuple[float, dict]:
    """Run the playbooks; return the wall time and the recap summed over hosts."""
    out = inv / f"{label}.log"
    env = {**ENV, **{k: v.format(inv=inv) for k, v in MODES[mode].items()}}
    if profile:
        env.update(ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.default,ansible.posix.profile_tasks",
                   PROFILE_TASKS_TASK_OUTPUT_LIMIT="all", PROFILE_TASKS_SORT_ORDER="descending")  # fmt: skip
    start = time.monotonic()
    with out.open("w") as fh:
        proc = subprocess.run(["ansible-playbook", "-i", str(inv), *books], cwd=ROOT, env=env, stdout=fh,
                              stderr=subprocess.STDOUT, check=False)  # fmt: skip
    took = time.monotonic() - start
    text = out.read_text()
    recap: dict[str, int] = {}
    for line in text.split("PLAY RECAP", 1)[-1].splitlines():
        for key, value in re.findall(r"(\w+)=(\d+)", line):
            recap[key] = recap.get(key, 0) + int(value)
    if proc.returncode != 0 or recap.get("failed", 0) or recap.get("unreachable", 0):
        tail = "\n".join(text.splitlines()[-30:])
        sys.exit(f"{label} failed (rc {proc.returncode}, recap {recap}); see {out}:\n{tail}")
    return took, recap


def inventory_var(inv: Path, host: str, var: str):
    proc = subprocess.run(["ansible", "-i", str(inv), host, "-o", "-m", "ansible.builtin.debug", "-a", f"var={var}"],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(proc.stdout.split("=>", 1)[1])[var]


def node_targets_up(inv: Path, host: str, expected: set[str], timeout: float = 120) -> dict[str, str]:
    """up{job="node"} as Prometheus on `host` reports it, once every expected instance is up (or the timeout)."""
    auth = inventory_var(inv, host, "prometheus_basic_auth")
    tls = inventory_var(inv, host, "obs_tls_enabled")
    scheme, ca = ("https", ["--cacert", "/etc/ssl/obs/ca.crt"]) if tls else ("http", [])
    url = f"{scheme}://localhost:9090/api/v1/query"
    deadline = time.monotonic() + timeout
    while True:
        # The query runs inside the container: Prometheus listens on its loopback and the project network only.
        proc = subprocess.run(["docker", "exec", "-i", host, "curl", "-sf", *ca, "-K", "-", url,
                               "--data-urlencode", 'query=up{job="node"}'],
                              input=f'user = "{auth["username"]}:{auth["password"]}"\n', capture_output=True,
                              text=True, check=False)  # fmt: skip
        series = {}
        if proc.returncode == 0:
            for s in json.loads(proc.stdout)["data"]["result"]:
                series[s["metric"]["instance"]] = s["value"][1]
        up = {i.split(":")[0] for i, v in series.items() if v == "1"}
        if expected <= up or time.monotonic() > deadline:
            return series
        time.sleep(3)


def slowest(log_file: Path, count: int) -> list[str]:
    """The `count` slowest tasks of a run, from profile_tasks' summary at the end of its log."""
    lines = log_file.read_text().splitlines()
    # profile_tasks prints its summary once per playbook run's stats; keep each task once.
    rows = list(dict.fromkeys(line.strip() for line in lines if re.search(r" -+ \d+\.\d+s$", line)))
    return rows[:count]


def settings(connection: str) -> str:
    dump = subprocess.run(["ansible-config", "dump", "--only-changed", "-t", "all"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    forks = re.search(r"^DEFAULT_FORKS\(.*\) = (\d+)", dump, re.M)
    strategy = re.search(r"^DEFAULT_STRATEGY\(.*\) = (\w+)", dump, re.M)
    pipelining = re.search(r"^ANSIBLE_PIPELINING\(.*\) = (\w+)", dump, re.M)
    return (f"forks={forks.group(1) if forks else 5}, strategy={strategy.group(1) if strategy else 'linear'}, "
            f"pipelining={pipelining.group(1) if pipelining else 'False'}, connection={connection}, "
            f"{os.cpu_count()} cores")  # fmt: skip


def bench(n: int, reruns: int, keep: bool, connection: str, profile: bool) -> dict:
    inv = write_inventory(n, connection)
    remove_containers()
    log(f"{n} host(s): starting the sandbox containers")
    boot, _ = playbook(inv, "playbooks/sandbox.yml", label="sandbox")
    log(f"{n} host(s): containers up in {boot:.0f} s; fresh converge")
    fresh, fresh_recap = playbook(inv, *PLAYBOOKS, label="fresh")
    log(f"{n} host(s): fresh {fresh:.1f} s ({fresh_recap.get('changed', 0)} changed)")
    noops: dict[str, list[float]] = {}
    for mode, extra in MODES.items():
        if extra:
            playbook(inv, *PLAYBOOKS, label=f"warm-{mode}", mode=mode)  # fills the cache; not counted
        for i in range(1, reruns + 1):
            label = f"noop-{mode}-{i}"
            took, recap = playbook(inv, *PLAYBOOKS, label=label, profile=profile and i == reruns, mode=mode)
            if recap.get("changed", 0):
                sys.exit(
                    f"no-op run {i} ({mode}) on {n} host(s) changed {recap['changed']} task(s); see {inv}/{label}.log"
                )
            noops.setdefault(mode, []).append(took)
            log(f"{n} host(s): no-op {i} ({mode}) {took:.1f} s (0 changed)")
    hosts = [f"{PREFIX}{i}" for i in range(1, n + 1)]
    series = node_targets_up(inv, hosts[0], set(hosts))
    up = sorted(i for i, v in series.items() if v == "1")
    if len(up) != n or {i.split(":")[0] for i in up} != set(hosts):
        sys.exit(f'Prometheus on {hosts[0]} reports up{{job="node"}} = {series}, expected {n} instances up: {hosts}')
    log(f"{n} host(s): Prometheus reports {len(up)}/{n} node targets up")
    if not keep:
        remove_containers()
    return {"hosts": n, "fresh": fresh, "fresh_changed": fresh_recap.get("changed", 0), "noop": noops, "up": len(up),
            "logs": {mode: inv / f"noop-{mode}-{reruns}.log" for mode in MODES}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,20", help="comma-separated host counts (default 1,20)")
    parser.add_argument("--reruns", type=int, default=2, help="no-op runs per size (default 2)")
    parser.add_argument("--keep", action="store_true", help="leave the containers of the last size running")
    parser.add_argument(
        "--connection",
        default="community.docker.docker_api",
        help="connection plugin to the sandbox containers (default community.docker.docker_api)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="print the N slowest tasks of the largest size's last no-op run",
    )
    parser.add_argument("--forks", type=int, help="ANSIBLE_FORKS for every run (default: ansible.cfg's)")
    parser.add_argument("--strategy", help="ANSIBLE_STRATEGY for every run, e.g. free (default: ansible.cfg's)")
    args = parser.parse_args()
    if args.forks:
        ENV["ANSIBLE_FORKS"] = str(args.forks)
    if args.strategy:
        ENV["ANSIBLE_STRATEGY"] = args.strategy
    sizes = [int(s) for s in args.sizes.split(",")]
    results = [bench(n, args.reruns, args.keep and n == sizes[-1], args.connection, args.profile > 0 and n == sizes[-1])
               for n in sizes]  # fmt: skip
    print()
    print(f"fleet benchmark, {time.strftime('%Y-%m-%d', time.gmtime())}: {' + '.join(PLAYBOOKS)}, one controller")
    print(f"settings: {settings(args.connection)}")
    for r in results:
        print(f"  {r['hosts']:>3} host(s): fresh {r['fresh']:6.1f} s ({r['fresh_changed']} changed), "
              f"node targets up {r['up']}/{r['hosts']}")  # fmt: skip
        for mode, times in r["noop"].items():
            print(f"      no-op {mode:<10} median {statistics.median(times):5.1f} s of "
                  f"{', '.join(f'{t:.1f}' for t in times)} s (0 changed)")  # fmt: skip
    if len(results) > 1:
        base, big = results[0], results[-1]
        print(f"  fresh ratio {big['hosts']} vs {base['hosts']} host(s): {big['fresh'] / base['fresh']:.2f}x")
        for mode in MODES:
            ratio = statistics.median(big["noop"][mode]) / statistics.median(base["noop"][mode])
            print(f"  no-op ratio {big['hosts']} vs {base['hosts']} host(s), {mode}: {ratio:.2f}x "
                  f"(target <= 2x: {'met' if ratio <= 2 else 'NOT met'})")  # fmt: skip
    if args.profile:
        for mode in MODES:
            print(f"  slowest tasks of the {results[-1]['hosts']}-host no-op, {mode} (profile_tasks):")
            for row in slowest(results[-1]["logs"][mode], args.profile):
                print(f"    {row.strip()}")


if __name__ == "__main__":
    main()
