"""Secrets never leak: site.yml and the verify playbook run with -vvv against the
converged scenario, and every vault value of the sandbox (and every host's TLS
private key) is searched for in

- every line those runs print,
- every file on every host that is not 0640 or 0600 (the modes the roles give
  files that carry secrets) under /etc, /opt, /var and /tmp,
- the whole journal of every host (every service's log),

with zero hits allowed. The search itself is shown to work: a file planted
with one of the values, 0644, is found.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import sandbox
import testinfra

PROJECT = Path(__file__).resolve().parents[3]
# Shorter values would match by chance in unrelated text.
MIN_LENGTH = 8


@pytest.fixture(scope="module")
def secret_values(secrets, expected):
    values = {k: str(v) for k, v in secrets.items() if len(str(v)) >= MIN_LENGTH}
    pki = Path(sandbox.playbook_inventory_dir() + ".pki")
    for name in expected:
        key = pki / f"{name}.key"
        if key.exists():
            # The base64 body of the key, one line of it is enough to be a leak.
            body = [line for line in key.read_text().splitlines() if line and not line.startswith("-----")]
            values[f"tls key of {name}"] = max(body, key=len)
    assert len(values) >= len(secrets) // 2, values.keys()
    return values


@pytest.fixture(scope="module")
def verbose_runs():
    runs = {}
    for playbook in ("site.yml", "playbooks/verify.yml"):
        proc = sandbox.playbook(PROJECT / playbook, "-vvv", timeout=1500)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        runs[playbook] = proc.stdout + proc.stderr
    return runs


def _hits(text: str, values: dict) -> list[str]:
    return sorted(name for name, value in values.items() if value in text)


def test_verbose_runs_print_no_secret(verbose_runs, secret_values):
    for playbook, output in verbose_runs.items():
        assert len(output.splitlines()) > 1000, f"{playbook} -vvv printed too little to prove anything"
        leaks = _hits(output, secret_values)
        lines = [line[:200] for line in output.splitlines() if any(secret_values[n] in line for n in leaks)]
        assert not leaks, f"{playbook} -vvv printed {leaks}: {lines[:5]}"


def _search(host, values: dict) -> list[str]:
    """Files readable beyond root and the service group that contain a value, and journal hits."""
    patterns = "\n".join(values.values())
    # The pattern file lives in /run (a tmpfs no search below covers) and is removed afterwards.
    script = f"""
set -u
printf '%s\\n' {shlex.quote(patterns)} > /run/obs-secret-patterns
find /etc /opt /var /tmp -xdev -type f ! -perm 0640 ! -perm 0600 -size -50M -print0 2>/dev/null \\
  | xargs -0 -r grep -lF -f /run/obs-secret-patterns 2>/dev/null | sed 's/^/file: /'
journalctl --no-pager -o cat 2>/dev/null | grep -F -f /run/obs-secret-patterns | head -5 | sed 's/^/journal: /'
rm -f /run/obs-secret-patterns
"""
    return host.run(script).stdout.splitlines()


def test_no_secret_outside_protected_files_or_in_journals(verbose_runs, secret_values, expected):
    """After the verbose runs (which restart nothing but read and write everything again)."""
    found = {}
    for name in sorted(expected):
        host = testinfra.get_host(f"docker://{name}")
        hits = _search(host, secret_values)
        if hits:
            found[name] = hits
    assert not found, found


def test_the_search_finds_a_planted_secret(secret_values, expected):
    name = sorted(expected)[0]
    host = testinfra.get_host(f"docker://{name}")
    label, value = next(iter(secret_values.items()))
    planted = "/etc/obs-planted-secret.txt"
    host.run(f"printf '%s' {shlex.quote('x=' + value)} > {planted} && chmod 0644 {planted}")
    try:
        hits = _search(host, {label: value})
        assert f"file: {planted}" in hits, hits
        assert not [h for h in hits if re.match(r"file: .*/obs-secret-patterns", h)]
    finally:
        host.run(f"rm -f {planted}")
