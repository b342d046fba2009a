"""Tags: every component role's tasks carry <role>, <role>_install and <role>_configure, so
"reconfigure only Prometheus" is one tag, and preflight runs under each of them."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml
from conftest import ANSIBLE_PLAYBOOK, REPO_ROOT, _ansible_env

COMPONENTS = ["node_exporter", "prometheus", "alertmanager", "grafana", "postgresql", "redis", "postgres_exporter"]


def _imports(role, name="main.yml"):
    """Each imported task file of the role's main.yml and its tags; a file that main.yml
    includes (node_exporter's apply.yml, skipped whole on a converged host) is followed."""
    tasks = yaml.safe_load((REPO_ROOT / "roles" / role / "tasks" / name).read_text())
    parts = {}
    for task in tasks:
        if "ansible.builtin.include_tasks" in task:
            parts.update(_imports(role, task["ansible.builtin.include_tasks"]))
        elif "ansible.builtin.import_tasks" in task or "ansible.builtin.meta" in task:
            parts[task.get("ansible.builtin.import_tasks", "flush")] = set(task.get("tags", []))
    return parts


@pytest.mark.parametrize("role", COMPONENTS)
def test_role_parts_carry_their_tags(role):
    parts = _imports(role)
    assert {role, f"{role}_install", f"{role}_configure", f"{role}_preflight"} <= parts["preflight.yml"]
    assert {role, f"{role}_install"} <= parts["install.yml"]
    assert f"{role}_configure" not in parts["install.yml"]
    assert {role, f"{role}_configure"} <= parts["configure.yml"]
    assert f"{role}_install" not in parts["configure.yml"]
    assert {role, f"{role}_install", f"{role}_configure"} <= parts["flush"]


@pytest.fixture(scope="module")
def configure_only(tmp_path_factory):
    """The tasks `--tags prometheus_configure` selects in site.yml."""
    cmd = [str(ANSIBLE_PLAYBOOK), "-i", "inventories/local", "site.yml", "--list-tasks"]
    cmd += ["--tags", "prometheus_configure"]
    proc = subprocess.run(
        cmd,
        cwd=REPO_ROOT,
        env={**_ansible_env(tmp_path_factory.mktemp("tags")),
             "ANSIBLE_VAULT_PASSWORD_FILE": str(REPO_ROOT / "inventories/local/vault-password.txt")},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Tasks tagged always (argument validation, node_exporter's include whose tasks carry
    # their own tags and so are not selected) do no work of another role.
    return [re.sub(r"\tTAGS:.*", "", line).strip() for line in proc.stdout.splitlines()
            if "\tTAGS:" in line and not re.search(r"TAGS: \[[^]]*\balways\b", line)]  # fmt: skip


def test_one_tag_reconfigures_only_prometheus(configure_only):
    work = list(configure_only)
    assert "prometheus : Write prometheus.yml checked by promtool" in work
    assert "prometheus : Preflight | validate Prometheus variables" in work
    assert not [t for t in work if t.startswith("artifact :")], "the configure tag must not install"
    others = [t for t in work if not t.startswith(("prometheus :", "service :", "play #"))]
    assert others == [], others
