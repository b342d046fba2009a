"""plugins/modules/obs_host_state.py: one read of many paths, users and units, run as Ansible runs it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, _ansible_env

ANSIBLE = REPO_ROOT / ".venv" / "bin" / "ansible"


@pytest.fixture
def run(tmp_path):
    def run(args: dict) -> dict:
        cmd = [str(ANSIBLE), "localhost", "-i", "localhost,", "-c", "local", "-o"]
        cmd += ["-e", f"ansible_python_interpreter={sys.executable}", "-m", "obs_host_state", "-a", json.dumps(args)]
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=_ansible_env(tmp_path), capture_output=True, text=True,
                              timeout=120, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads(proc.stdout.split("=>", 1)[1])

    return run


def test_paths_users_globs_units(run, tmp_path):
    target = tmp_path / "cfg.yml"
    target.write_text("a: 1\n")
    target.chmod(0o640)
    (tmp_path / "link").symlink_to(target)
    (tmp_path / "dir").mkdir(mode=0o750)
    os.chmod(tmp_path / "dir", 0o750)
    result = run({
        "paths": [str(target), str(tmp_path / "link"), str(tmp_path / "dir"), str(tmp_path / "missing")],
        "globs": [str(tmp_path / "*.yml")],
        "users": ["root", "no-such-user-here"],
        "units": ["no-such-unit-here"],
    })  # fmt: skip
    assert result["changed"] is False
    entry = result["paths"][str(target)]
    assert entry["type"] == "file" and entry["mode"] == "0640"
    assert entry["checksum"] == hashlib.sha1(b"a: 1\n").hexdigest()
    assert result["paths"][str(tmp_path / "link")] == {**result["paths"][str(tmp_path / "link")], "type": "link",
                                                       "target": str(target), "checksum": None}  # fmt: skip
    assert result["paths"][str(tmp_path / "dir")]["type"] == "directory"
    assert result["paths"][str(tmp_path / "dir")]["mode"] == "0750"
    assert result["paths"][str(tmp_path / "missing")] == {"exists": False}
    assert result["globs"][str(tmp_path / "*.yml")] == [str(target)]
    assert result["users"]["root"]["exists"] and result["users"]["root"]["uid"] == 0
    assert result["users"]["no-such-user-here"] == {"exists": False}
    assert result["units"]["no-such-unit-here"]["active"] != "active"


def test_check_mode_reads_too(run, tmp_path):
    (tmp_path / "f").write_text("x")
    result = run({"paths": [str(tmp_path / "f")]} | {"_ansible_check_mode": True})
    assert result["paths"][str(tmp_path / "f")]["exists"]
