"""plugins/modules/obs_rollback.py: a saved state comes back exactly, run as Ansible runs it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, _ansible_env

ANSIBLE = REPO_ROOT / ".venv" / "bin" / "ansible"


@pytest.fixture
def run(tmp_path):
    def run(args: dict, *, check: bool = False, ok: bool = True) -> dict:
        cmd = [str(ANSIBLE), "localhost", "-i", "localhost,", "-c", "local", "-o"]
        cmd += ["-e", f"ansible_python_interpreter={sys.executable}", "-m", "obs_rollback", "-a", json.dumps(args)]
        cmd += ["--check"] if check else []
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=_ansible_env(tmp_path / "ansible"), capture_output=True,
                              text=True, timeout=120, check=False)  # fmt: skip
        assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
        return json.loads(proc.stdout.split("=>", 1)[1])

    return run


def snapshot(root) -> dict:
    """What a restore must bring back: type, content or target, mode and owner of every path."""
    out = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(base, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[path] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[path] = ("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            else:
                out[path] = ("file", open(path, "rb").read(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return out


@pytest.fixture
def service(tmp_path):
    """A service's state: a config dir with a subdir, a unit file and a binary link to release 1."""
    etc = tmp_path / "etc" / "svc"
    (etc / "rules").mkdir(parents=True)
    (etc / "svc.yml").write_text("a: 1\n")
    (etc / "svc.yml").chmod(0o640)
    (etc / "rules" / "one.rules.yml").write_text("groups: []\n")
    unit = tmp_path / "svc.service"
    unit.write_text("[Service]\nExecStart=/bin/svc\n")
    for release in ("1.0.0", "2.0.0"):
        (tmp_path / "opt" / release).mkdir(parents=True)
        (tmp_path / "opt" / release / "svc").write_text(f"release {release}\n")
    link = tmp_path / "bin-svc"
    link.symlink_to(tmp_path / "opt" / "1.0.0" / "svc")
    return {
        "tree": tmp_path,
        "etc": etc,
        "unit": unit,
        "link": link,
        "args": {"name": "svc", "paths": [str(etc), str(unit), str(link)], "snapshot_dir": str(tmp_path / "snapshots")},
    }


def test_restore_brings_back_content_modes_links_and_removes_new_files(run, service):
    args, etc = service["args"], service["etc"]
    first = run(args)
    assert first["changed"] is True and first["snapshot"] is True
    good = snapshot(service["tree"] / "etc") | {str(service["link"]): os.readlink(service["link"])}
    good_unit = service["unit"].read_text()

    # A bad change: new content and mode, a new file, a removed file, an upgraded link, a new unit.
    (etc / "svc.yml").write_text("a: 2\n")
    (etc / "svc.yml").chmod(0o644)
    (etc / "rules" / "two.rules.yml").write_text("new\n")
    (etc / "rules" / "one.rules.yml").unlink()
    (etc / "new-dir").mkdir()
    (etc / "new-dir" / "x").write_text("x")
    service["link"].unlink()
    service["link"].symlink_to(service["tree"] / "opt" / "2.0.0" / "svc")
    service["unit"].write_text("[Service]\nExecStart=/bin/svc --bad-flag\n")

    result = run(args | {"state": "restored"})
    assert result["changed"] is True
    assert set(result["restored"]) == {
        str(etc / "svc.yml"),
        str(etc / "rules" / "two.rules.yml"),
        str(etc / "rules" / "one.rules.yml"),
        str(etc / "new-dir"),
        str(etc / "new-dir" / "x"),
        str(service["link"]),
        str(service["unit"]),
    }
    assert snapshot(service["tree"] / "etc") | {str(service["link"]): os.readlink(service["link"])} == good
    assert service["unit"].read_text() == good_unit
    assert (service["link"]).read_text() == "release 1.0.0\n"
    # Restored means nothing differs any more: a second restore and a save change nothing.
    assert run(args | {"state": "restored"})["changed"] is False
    assert run(args)["changed"] is False


def test_save_is_idempotent_and_follows_changes(run, service):
    args = service["args"]
    assert run(args)["changed"] is True
    assert run(args)["changed"] is False
    (service["etc"] / "svc.yml").write_text("a: 3\n")
    again = run(args)
    assert again["changed"] is True and again["differing"] == [str(service["etc"] / "svc.yml")]
    # The new save is what a restore returns to.
    (service["etc"] / "svc.yml").write_text("a: 4\n")
    run(args | {"state": "restored"})
    assert (service["etc"] / "svc.yml").read_text() == "a: 3\n"


def test_snapshot_is_root_only_and_holds_no_stale_content(run, service):
    args = service["args"]
    run(args)
    (service["etc"] / "svc.yml").write_text("secret: new\n")
    run(args)
    snap = service["tree"] / "snapshots"
    assert stat.S_IMODE(os.stat(snap).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(snap / "svc").st_mode) == 0o700
    blobs = list((snap / "svc" / "blobs").iterdir())
    assert blobs and all(stat.S_IMODE(b.stat().st_mode) == 0o600 for b in blobs)
    contents = {b.read_bytes() for b in blobs}
    assert b"a: 1\n" not in contents and b"secret: new\n" in contents


def test_check_mode_reports_without_writing(run, service):
    args = service["args"]
    assert run(args, check=True)["changed"] is True
    assert not (service["tree"] / "snapshots").exists()
    run(args)
    (service["etc"] / "svc.yml").write_text("a: 9\n")
    result = run(args | {"state": "restored"}, check=True)
    assert result["changed"] is True and result["restored"] == [str(service["etc"] / "svc.yml")]
    assert (service["etc"] / "svc.yml").read_text() == "a: 9\n"


def test_restore_without_snapshot_changes_nothing_and_says_so(run, service):
    result = run(service["args"] | {"state": "restored"})
    assert result["changed"] is False and result["snapshot"] is False and result["restored"] == []
    assert "never been proven ready" in result["msg"]


def test_restore_uses_the_paths_it_saved(run, service):
    args = service["args"]
    run(args)
    service["unit"].write_text("changed\n")
    result = run(args | {"paths": [str(service["etc"])], "state": "restored"})
    assert result["restored"] == [str(service["unit"])]


@pytest.mark.parametrize(
    ("override", "message"),
    [({"name": "../etc"}, "plain service name"), ({"paths": ["relative/path"]}, "must be absolute")],
)
def test_bad_input_is_refused(run, service, override, message):
    result = run(service["args"] | override, ok=False)
    assert message in result["msg"]
    assert not (service["tree"] / "snapshots").exists()


def test_unreadable_snapshot_is_a_clear_error(run, service):
    run(service["args"])
    (service["tree"] / "snapshots" / "svc" / "manifest.json").write_text("{not json")
    result = run(service["args"] | {"state": "restored"}, ok=False)
    assert "cannot read the rollback snapshot" in result["msg"]
