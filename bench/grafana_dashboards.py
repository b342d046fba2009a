#!/usr/bin/env python3
"""Benchmark: provisioning 200 unchanged dashboards with grafana_dashboards (one task)
versus community.grafana.grafana_dashboard (one loop item per file).

Starts the Grafana STAND-IN (tests/standins/grafana; not Grafana) on a free
loopback port, generates 200 dashboards into a temporary directory and seeds
them into a folder through the HTTP API. Then ONE ansible-playbook run
(ANSIBLE_CONFIG=ansible.cfg, inventory localhost, connection local) times, on
the same stand-in:

  (a) one grafana_dashboards task over the directory (nothing changed), and
  (b) community.grafana.grafana_dashboard looped over the same 200 files
      (state present, overwrite true, url and credentials on each item).

Task durations come from the json stdout callback; the write requests of each
come from the stand-in's /api/standin/stats (reset before each task). Exits 1
when (a) is not at least TARGET times faster or made a write.

Usage: .venv/bin/python bench/grafana_dashboards.py [COUNT]
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STANDIN = ROOT / "tests" / "standins" / "grafana" / "grafana_standin.py"
ANSIBLE_PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"
COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 200
TARGET = 10.0
PASSWORD = "bench-admin-pw"
FOLDER_UID = "bench"
FOLDER_TITLE = "Bench"

PLAYBOOK = """\
---
- name: grafana_dashboards versus community.grafana.grafana_dashboard, nothing changed
  hosts: localhost
  gather_facts: false
  vars:
    ansible_connection: local
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
    stats: &stats
      url: "{{ gs_url }}/api/standin/stats"
      url_username: admin
      url_password: "{{ gs_password }}"
      force_basic_auth: true
  tasks:
    - name: Reset the stand-in counters
      ansible.builtin.uri: {<<: *stats, method: DELETE}

    - name: (a) grafana_dashboards, one task over the directory
      grafana_dashboards:
        url: "{{ gs_url }}"
        url_username: admin
        url_password: "{{ gs_password }}"
        path: "{{ dash_dir }}"
        folder: "{{ folder_title }}"
      register: result_a

    - name: Counters after (a)
      ansible.builtin.uri: {<<: *stats, method: GET}
      register: stats_a

    - name: Reset the stand-in counters again
      ansible.builtin.uri: {<<: *stats, method: DELETE}

    - name: (b) community.grafana.grafana_dashboard, one loop item per file
      community.grafana.grafana_dashboard:
        url: "{{ gs_url }}"
        url_username: admin
        url_password: "{{ gs_password }}"
        path: "{{ item }}"
        folder: "{{ folder_title }}"
        state: present
        overwrite: true
      loop: "{{ dash_files }}"
      register: result_b

    - name: Counters after (b)
      ansible.builtin.uri: {<<: *stats, method: GET}
      register: stats_b
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api(url: str, method: str, path: str, body: dict | None = None):
    request = urllib.request.Request(url + path, method=method)
    request.add_header("Authorization", "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode())
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def start_standin(work: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    for sub in ("data", "provisioning", "plugins", "log"):
        (work / sub).mkdir(parents=True)
    ini = work / "grafana.ini"
    ini.write_text(
        f"[server]\nhttp_addr = 127.0.0.1\nhttp_port = {port}\n"
        f"[security]\nadmin_user = admin\nadmin_password = {PASSWORD}\n"
        f"[paths]\ndata = {work / 'data'}\nprovisioning = {work / 'provisioning'}\n"
        f"plugins = {work / 'plugins'}\nlogs = {work / 'log'}\n"
    )
    log = (work / "standin.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(STANDIN), "server", f"--config={ini}", f"--homepath={STANDIN.parent}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the stand-in exited:\n{(work / 'standin.log').read_text()}")
        try:
            if api(url, "GET", "/api/health")["database"] == "ok":
                return proc, url
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    sys.exit("the stand-in did not become healthy")


def generate(directory: Path, count: int) -> list[Path]:
    directory.mkdir()
    files = []
    for i in range(count):
        model = {
            "uid": f"bench-{i:03d}",
            "title": f"Bench dashboard {i:03d}",
            "tags": ["bench"],
            "timezone": "browser",
            "schemaVersion": 39,
            "refresh": "1m",
            "time": {"from": "now-6h", "to": "now"},
            "panels": [
                {
                    "id": p,
                    "type": "timeseries",
                    "title": f"Panel {p}",
                    "datasource": {"type": "prometheus", "uid": "prometheus"},
                    "gridPos": {"h": 8, "w": 12, "x": 12 * (p % 2), "y": 8 * (p // 2)},
                    "targets": [{"refId": "A", "expr": f'rate(http_requests_total{{job="bench-{i}"}}[5m])'}],
                }
                for p in range(1, 7)
            ],
        }
        path = directory / f"{model['uid']}.json"
        path.write_text(json.dumps(model, indent=2))
        files.append(path)
    return files


def seed(url: str, files: list[Path]) -> None:
    api(url, "POST", "/api/folders", {"uid": FOLDER_UID, "title": FOLDER_TITLE})
    for path in files:
        model = json.loads(path.read_text())
        api(url, "POST", "/api/dashboards/db", {"dashboard": model, "folderUid": FOLDER_UID, "overwrite": True})


def seconds(task: dict) -> float:
    duration = task["task"]["duration"]
    start = datetime.fromisoformat(duration["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(duration["end"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def run_playbook(work: Path, url: str, dash_dir: Path, files: list[Path]) -> tuple[dict, float]:
    playbook = work / "bench.yml"
    playbook.write_text(PLAYBOOK)
    extra = work / "vars.json"
    extra.write_text(
        json.dumps(
            {
                "gs_url": url,
                "gs_password": PASSWORD,
                "dash_dir": str(dash_dir),
                "dash_files": [str(f) for f in files],
                "folder_title": FOLDER_TITLE,
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_LOCAL_TEMP=str(work / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
    )
    started = time.monotonic()
    proc = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", str(playbook), "-e", f"@{extra}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"ansible-playbook failed ({proc.returncode}):\n{proc.stdout[-5000:]}\n{proc.stderr[-3000:]}")
    tasks = {t["task"]["name"]: t for t in json.loads(proc.stdout)["plays"][0]["tasks"]}
    return tasks, wall


def main() -> int:
    if not STANDIN.is_file():
        sys.exit(f"the Grafana stand-in {STANDIN} is missing")
    with tempfile.TemporaryDirectory(prefix="bench-grafana-") as tmp:
        work = Path(tmp)
        proc, url = start_standin(work / "standin")
        try:
            files = generate(work / "dashboards", COUNT)
            seed(url, files)
            tasks, wall = run_playbook(work, url, work / "dashboards", files)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)

    task_a = tasks["(a) grafana_dashboards, one task over the directory"]
    task_b = tasks["(b) community.grafana.grafana_dashboard, one loop item per file"]
    result_a = task_a["hosts"]["localhost"]
    results_b = task_b["hosts"]["localhost"]["results"]
    stats_a = tasks["Counters after (a)"]["hosts"]["localhost"]["json"]
    stats_b = tasks["Counters after (b)"]["hosts"]["localhost"]["json"]
    writes_a, writes_b = stats_a["writes"], stats_b["writes"]
    secs_a, secs_b = seconds(task_a), seconds(task_b)
    changed_b = sum(1 for r in results_b if r.get("changed"))
    ratio = secs_b / secs_a if secs_a else float("inf")

    print(f"Grafana stand-in, {COUNT} dashboards seeded into folder {FOLDER_TITLE!r}, nothing changed")
    print(
        f"(a) grafana_dashboards, 1 task:                       {secs_a:7.2f} s  writes {writes_a:3d}"
        f"  changed {result_a['changed']}  unchanged {len(result_a['unchanged'])}"
    )
    print(
        f"(b) community.grafana.grafana_dashboard, {len(results_b)} items: {secs_b:7.2f} s  writes {writes_b:3d}"
        f"  changed items {changed_b}"
    )
    for label, stats in (("(a)", stats_a), ("(b)", stats_b)):
        kinds = sorted({" ".join(w.split()[:2]) for w in stats.get("recent_writes", [])})
        print(f"{label} requests {stats['requests']}, write endpoints: {', '.join(kinds) or 'none'}")
    print(f"ratio (b)/(a): {ratio:.1f}x faster (target >= {TARGET:g}x)")
    print(f"whole ansible-playbook run (both, plus 4 small uri tasks): {wall:.1f} s")
    ok = ratio >= TARGET and writes_a == 0 and not result_a["changed"]
    print("target met" if ok else "TARGET NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
