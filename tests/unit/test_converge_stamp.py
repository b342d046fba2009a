"""The converge stamp (plugins/filter/obs.py: code_digest, converge_stamp, converged).

A role skips its install and configure tasks when ``converged`` is true, so
every way the host or the inputs can differ from the last converge must make
it false; these tests change one thing at a time.
"""

from __future__ import annotations

import copy
import hashlib
import shutil

import pytest

STAMP = "/var/lib/obs/converged/node_exporter.stamp"
SECRET = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
INPUTS = {"vars": {"node_exporter_version": "1.9.1", "obs_tls_enabled": True}, "tls": ["ca", "cert", SECRET],
          "arch": "x86_64", "code": "0" * 64}  # fmt: skip
STATE = {
    "paths": {
        "/etc/node_exporter": {"exists": True, "type": "directory", "owner": "root", "group": "node-exp",
                               "mode": "0750", "target": None, "checksum": None},
        "/etc/node_exporter/web.yml": {"exists": True, "type": "file", "owner": "root", "group": "node-exp",
                                       "mode": "0640", "target": None, "checksum": "a" * 40},
        "/usr/local/bin/node_exporter": {"exists": True, "type": "link", "owner": "root", "group": "root",
                                         "mode": "0777", "checksum": None,
                                         "target": "/opt/obs/node_exporter-1.9.1/node_exporter"},
    },
    "globs": {},
    "users": {"node-exp": {"exists": True, "home": "/nonexistent", "shell": "/usr/sbin/nologin", "uid": 999,
                           "groups": []}},
    "units": {"node_exporter": {"active": "active", "enabled": "enabled"}},
}  # fmt: skip


def stamped(obs, state, inputs=INPUTS):
    """What obs_host_state reads on a host where the role recorded ``state`` for ``inputs``:
    the same state, plus the stamp file's own entry (its SHA-1)."""
    text = obs.converge_stamp(state, inputs, STAMP)
    read = copy.deepcopy(state)
    read["paths"][STAMP] = {"exists": True, "type": "file", "owner": "root", "group": "root", "mode": "0644",
                            "target": None, "checksum": hashlib.sha1(text.encode()).hexdigest()}  # fmt: skip
    return read


def test_unchanged_host_and_inputs_are_converged(obs):
    assert obs.converged(stamped(obs, STATE), INPUTS, STAMP)


def test_the_stamp_holds_digests_only(obs):
    text = obs.converge_stamp(STATE, INPUTS, STAMP)
    assert [line.split()[0] for line in text.splitlines()] == ["inputs", "state"]
    assert all(len(line.split()[1]) == 64 for line in text.splitlines())
    assert SECRET not in text and "MIIEvQ" not in text and "1.9.1" not in text


def test_the_stamp_ignores_its_own_entry_and_registered_noise(obs):
    # The record read happens after the stamp's previous version existed; a
    # registered result also carries changed/failed/invocation keys.
    read = stamped(obs, STATE)
    read.update(changed=False, failed=False, invocation={"module_args": {}})
    assert obs.converge_stamp(read, INPUTS, STAMP) == obs.converge_stamp(STATE, INPUTS, STAMP)


@pytest.mark.parametrize(
    ("where", "key", "value"),
    [
        (("paths", "/etc/node_exporter/web.yml"), "checksum", "b" * 40),  # a file edited by hand
        (("paths", "/etc/node_exporter/web.yml"), "mode", "0644"),  # a mode loosened
        (("paths", "/etc/node_exporter"), "group", "root"),  # an owner changed
        (("paths", "/usr/local/bin/node_exporter"), "target", None),  # a link lost
        (("paths", "/usr/local/bin/node_exporter"), "exists", False),
        (("users", "node-exp"), "shell", "/bin/bash"),  # the account edited
        (("units", "node_exporter"), "active", "failed"),  # a stopped or crashed service
        (("units", "node_exporter"), "enabled", "disabled"),
    ],
)
def test_any_drift_on_the_host_is_not_converged(obs, where, key, value):
    read = stamped(obs, STATE)
    read[where[0]][where[1]][key] = value
    assert not obs.converged(read, INPUTS, STAMP)


def test_a_new_managed_path_is_not_converged(obs):
    read = stamped(obs, STATE)
    read["paths"]["/etc/node_exporter/tls/node_exporter.crt"] = {"exists": False}
    assert not obs.converged(read, INPUTS, STAMP)


@pytest.mark.parametrize(
    "change",
    [
        lambda i: i["vars"].update(node_exporter_version="1.9.2"),  # an inventory change
        lambda i: i["vars"].update(obs_tls_enabled=False),
        lambda i: i["tls"].__setitem__(2, SECRET.replace("MIIE", "MIIF")),  # a new key
        lambda i: i.update(arch="aarch64"),
        lambda i: i.update(code="1" * 64),  # a new version of the project
    ],
)
def test_any_new_input_is_not_converged(obs, change):
    inputs = copy.deepcopy(INPUTS)
    change(inputs)
    assert not obs.converged(stamped(obs, STATE), inputs, STAMP)


@pytest.mark.parametrize(
    "entry",
    [None, {"exists": False}, {"exists": True, "type": "directory", "checksum": None}],
)
def test_no_stamp_is_not_converged(obs, entry):
    read = copy.deepcopy(STATE)
    if entry is not None:
        read["paths"][STAMP] = entry
    assert not obs.converged(read, INPUTS, STAMP)
    assert not obs.converged(None, INPUTS, STAMP)


def test_code_digest_covers_the_roles_and_plugins(obs, tmp_path, monkeypatch):
    root = tmp_path / "project"
    for rel in ["roles/node_exporter/tasks/main.yml", "roles/service/templates/unit.service.j2",
                "roles/other/tasks/main.yml", "plugins/filter/obs.py"]:  # fmt: skip
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"# {rel}\n")
    monkeypatch.setattr(obs, "_ROOT", root)
    roles = ["node_exporter", "service"]
    before = obs.code_digest(roles)
    assert before == obs.code_digest(roles)
    (root / "roles/other/tasks/main.yml").write_text("# not a role this one runs\n")
    assert obs.code_digest(roles) == before
    for rel in ["roles/service/templates/unit.service.j2", "plugins/filter/obs.py"]:
        original = (root / rel).read_text()
        (root / rel).write_text(original + "# edited\n")
        assert obs.code_digest(roles) != before, rel
        (root / rel).write_text(original)
    (root / "roles/node_exporter/tasks/new.yml").write_text("---\n")
    assert obs.code_digest(roles) != before
    shutil.rmtree(root / "roles/service")
    with pytest.raises(ValueError, match="roles/service is not a directory"):
        obs.code_digest(roles)


def test_code_digest_of_this_project(obs):
    assert len(obs.code_digest(["node_exporter", "service", "artifact"])) == 64
