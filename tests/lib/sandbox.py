"""Helpers shared by the molecule verifiers: sandbox secrets and polling."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml
from ansible.constants import DEFAULT_VAULT_ID_MATCH
from ansible.parsing.vault import VaultLib, VaultSecret

PROJECT = Path(__file__).resolve().parents[2]
VAULT_FILE = PROJECT / "inventories/local/group_vars/all/vault.yml"
VAULT_PASSWORD_FILE = PROJECT / "inventories/local/vault-password.txt"


def sandbox_secrets() -> dict:
    """Decrypt the sandbox vault the same way ansible-playbook does."""
    password = VAULT_PASSWORD_FILE.read_bytes().strip()
    vault = VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(password))])
    return yaml.safe_load(vault.decrypt(VAULT_FILE.read_bytes()))


# The CA file on the test hosts that verifies their HTTPS endpoints (the
# roles' <role>_local_ca, set by the verifier's conftest from expected.yml);
# empty while the scenario runs without TLS.
TLS_CA = ""


def curl_args(url: str, user: str | None = None, password: str | None = None) -> str:
    """curl options for a URL of a test host: basic auth, and the CA for an https URL."""
    auth = f"-u {user}:{password} " if user else ""
    ca = f"--cacert {TLS_CA} " if url.startswith("https://") and TLS_CA else ""
    return f"{auth}{ca}'{url}'"


def curl_json(host, url: str, user: str | None = None, password: str | None = None):
    """GET a URL from inside a test host (services are checked where they run)."""
    out = host.check_output(f"curl -sS --max-time 5 -f {curl_args(url, user, password)}")
    return json.loads(out)


def curl_text(host, url: str, user: str | None = None, password: str | None = None) -> str:
    return host.check_output(f"curl -sS --max-time 5 -f {curl_args(url, user, password)}")


def curl_code(host, url: str, user: str | None = None, password: str | None = None) -> str:
    """The HTTP status a test host gets for a URL ("000" when no HTTP answer came)."""
    return host.run(
        f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 {curl_args(url, user, password)}"
    ).stdout.strip()


def eventually(check, timeout: float = 90, interval: float = 3):
    """Retry `check` (which raises AssertionError) until it passes or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(interval)


def molecule_hosts() -> list[str]:
    """Names of the scenario's hosts, from the inventory molecule generated."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    data = yaml.safe_load(Path(inventory).read_text())
    return sorted(data["all"]["hosts"].keys())


def playbook_inventory_dir() -> str:
    """The scenario's inventory directory (its ``inventory_dir``; the sandbox PKI sits at <it>.pki)."""
    return str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)


def playbook(playbook: Path, *args: str, inventories=(), timeout: int = 300) -> subprocess.CompletedProcess:
    """ansible-playbook against the scenario's inventory (plus ``inventories``), as the project runs it."""
    cmd, env = playbook_command(playbook, *args, inventories=inventories)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def playbook_command(playbook: Path, *args: str, inventories=()) -> tuple[list[str], dict]:
    """(argv, environment) of ``playbook()``, for a run in the background (subprocess.Popen)."""
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"),
        "ANSIBLE_VAULT_PASSWORD_FILE": str(VAULT_PASSWORD_FILE),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
    }
    cmd = [str(PROJECT / ".venv/bin/ansible-playbook"), "-i", playbook_inventory_dir()]
    for inventory in inventories:
        cmd += ["-i", str(inventory)]
    cmd += [*args, str(playbook)]
    return cmd, env


def expected_state(dest: Path, *args: str) -> dict:
    """Run molecule/default/tests/expected.yml against the scenario (``args``: extra
    ansible-playbook arguments, e.g. ``-e name=value``) and return its JSON."""
    proc = playbook(PROJECT / "molecule/default/tests/expected.yml", "-e", f"dest={dest}", *args)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return json.loads(dest.read_text())


SINK_API = "http://127.0.0.1:18081/api/received"


def sink_received(**params) -> list[dict]:
    """What the notification sink recorded, filtered as its query API allows (channel, status, contains, after)."""
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    with urllib.request.urlopen(f"{SINK_API}?{query}", timeout=10) as resp:
        return json.loads(resp.read())


def deployed_receivers(alertmanager: str) -> dict[str, dict]:
    """receiver -> {channel, send_resolved}, read from the alertmanager.yml deployed on ``alertmanager``:
    the sink's channel is the first path segment of the URL an integration posts to."""
    text = subprocess.run(
        ["docker", "exec", alertmanager, "cat", "/etc/alertmanager/alertmanager.yml"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    result = {}
    for receiver in yaml.safe_load(text)["receivers"]:
        for key, configs in receiver.items():
            if not key.endswith("_configs"):
                continue
            for config in configs:
                url = config.get("api_url") or config.get("url")
                channel = "email" if key == "email_configs" else urllib.parse.urlsplit(url).path.split("/")[1]
                result[receiver["name"]] = {"channel": channel, "send_resolved": bool(config.get("send_resolved"))}
    return result


def published_url(container: str, port: int | str) -> str:
    """http://127.0.0.1:<port> through which the controller reaches ``port`` of a test container."""
    out = subprocess.run(
        ["docker", "port", container, f"{port}/tcp"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    address = next(line for line in out.splitlines() if line.startswith("127.0.0.1:"))
    return f"http://{address}"
