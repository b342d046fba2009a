#!/usr/bin/python
"""Ansible module: keep the last state of a service that was proven ready, and put it back."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: obs_rollback
short_description: Save the files of a service that was proven ready, and restore them when a change is not
description:
  - With O(state=saved), records the files, symlinks and directories of O(paths) (directories with
    everything below them) as the last known good state of service O(name). The readiness gate
    calls it right after the service answered ready, so the snapshot is always one that worked.
  - With O(state=restored), makes O(paths) what the snapshot recorded again. Changed files get their
    saved content, owner and mode back, a retargeted symlink points at its saved target again (the
    previous release of a binary), files created since are removed and removed ones come back.
    The caller restarts the service afterwards.
  - File contents are stored in a root-only directory (0700, files 0600), since configs carry
    secrets; the module returns paths only, never contents.
author:
  - Observability team
options:
  name:
    description: Name of the service; the snapshot lives in O(snapshot_dir)/O(name).
    type: str
    required: true
  paths:
    description:
      - Files, symlinks (not followed) and directories (recursive) that make up the service's state
        (its config directory, its unit file, the links of its binaries).
      - With O(state=restored) the paths the snapshot was saved with are restored (a role that
        changed its list since still gets back what was proven ready).
    type: list
    elements: path
    required: true
  state:
    description: V(saved) records the current state, V(restored) puts the recorded one back.
    type: str
    choices: [saved, restored]
    default: saved
  snapshot_dir:
    description: Directory holding the snapshots of all services.
    type: path
    default: /var/lib/observability/rollback
attributes:
  check_mode:
    support: full
    description: Reports what would be saved or restored without writing.
  diff_mode:
    support: partial
    description: The diff lists the paths that differ from the snapshot, not their contents.
"""

EXAMPLES = r"""
- name: Remember the state that answered ready
  obs_rollback:
    name: prometheus
    paths: [/etc/prometheus, /etc/systemd/system/prometheus.service, /usr/local/bin/prometheus]
    state: saved

- name: Put back the last state that answered ready
  obs_rollback:
    name: prometheus
    paths: [/etc/prometheus, /etc/systemd/system/prometheus.service, /usr/local/bin/prometheus]
    state: restored
  register: _rollback
"""

RETURN = r"""
snapshot:
  description: Whether a snapshot exists (after the call).
  returned: always
  type: bool
differing:
  description: The paths whose state differs from the snapshot (before a save or a restore), sorted.
  returned: always
  type: list
  elements: str
  sample: [/etc/systemd/system/prometheus.service, /usr/local/bin/prometheus]
restored:
  description: With O(state=restored), the paths put back (or that would be, in check mode).
  returned: always
  type: list
  elements: str
"""

import hashlib  # noqa: E402 - Ansible modules keep their imports below the documentation
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import stat  # noqa: E402
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

MANIFEST = "manifest.json"


def _describe(path: str) -> dict:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {"type": "absent"}
    entry = {"mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
    if stat.S_ISLNK(st.st_mode):
        return {"type": "link", "target": os.readlink(path)}
    if stat.S_ISDIR(st.st_mode):
        return {**entry, "type": "dir"}
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as fh:
            return {**entry, "type": "file", "sha256": hashlib.sha256(fh.read()).hexdigest()}
    return {"type": "other"}


def current_state(roots: list[str]) -> dict[str, dict]:
    """Every root and, for directories, everything below it (links not followed)."""
    state: dict[str, dict] = {}
    for root in map(os.path.normpath, roots):
        state[root] = _describe(root)
        if state[root]["type"] != "dir":
            continue
        for base, dirs, files in os.walk(root):
            for name in dirs + files:
                path = os.path.join(base, name)
                state[path] = _describe(path)
    return state


def differing(saved: dict[str, dict], now: dict[str, dict]) -> list[str]:
    absent = {"type": "absent"}
    return sorted(p for p in set(saved) | set(now) if saved.get(p, absent) != now.get(p, absent))


def _write_atomic(path: str, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".obs-rollback-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def save(snap: str, roots: list[str], now: dict[str, dict]) -> None:
    blobs = os.path.join(snap, "blobs")
    os.makedirs(blobs, mode=0o700, exist_ok=True)
    os.chmod(os.path.dirname(snap), 0o700)
    os.chmod(snap, 0o700)
    wanted = {e["sha256"]: p for p, e in now.items() if e["type"] == "file"}
    for digest, path in wanted.items():
        blob = os.path.join(blobs, digest)
        if not os.path.exists(blob):
            with open(path, "rb") as fh:
                _write_atomic(blob, fh.read(), 0o600)
    manifest = {"roots": roots, "entries": now}
    _write_atomic(os.path.join(snap, MANIFEST), json.dumps(manifest, sort_keys=True, indent=1).encode(), 0o600)
    for name in os.listdir(blobs):
        if name not in wanted:
            os.unlink(os.path.join(blobs, name))


def restore(snap: str, saved: dict[str, dict], now: dict[str, dict], paths: list[str]) -> None:
    """Directories first (parents before children), then files and links, then what is new, deepest first."""
    for path in sorted(p for p in paths if saved.get(p, {}).get("type") == "dir"):
        entry = saved[path]
        if now.get(path, {}).get("type") != "dir":
            _remove(path)
            os.makedirs(path, exist_ok=True)
        os.chown(path, entry["uid"], entry["gid"])
        os.chmod(path, entry["mode"])
    for path in sorted(p for p in paths if saved.get(p, {}).get("type") in ("file", "link")):
        entry = saved[path]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        if entry["type"] == "link":
            tmp = os.path.join(os.path.dirname(path), ".obs-rollback-link-" + os.path.basename(path))
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(entry["target"], tmp)
            os.replace(tmp, path)
            continue
        with open(os.path.join(snap, "blobs", entry["sha256"]), "rb") as fh:
            _write_atomic(path, fh.read(), entry["mode"])
        os.chown(path, entry["uid"], entry["gid"])
    for path in sorted((p for p in paths if saved.get(p, {"type": "absent"})["type"] == "absent"), reverse=True):
        _remove(path)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "paths": {"type": "list", "elements": "path", "required": True},
            "state": {"type": "str", "choices": ["saved", "restored"], "default": "saved"},
            "snapshot_dir": {"type": "path", "default": "/var/lib/observability/rollback"},
        },
        supports_check_mode=True,
    )
    name, state = module.params["name"], module.params["state"]
    if not name or "/" in name or name.startswith("."):
        module.fail_json(msg=f"name must be a plain service name, got {name!r}")
    roots = [os.path.normpath(p) for p in module.params["paths"]]
    relative = [p for p in roots if not os.path.isabs(p)]
    if relative:
        module.fail_json(msg=f"paths must be absolute, got {relative}")
    snap = os.path.join(module.params["snapshot_dir"], name)
    manifest = os.path.join(snap, MANIFEST)
    saved, saved_roots = None, []
    if os.path.exists(manifest):
        try:
            with open(manifest, encoding="utf-8") as fh:
                data = json.load(fh)
            saved, saved_roots = data["entries"], data["roots"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            module.fail_json(msg=f"cannot read the rollback snapshot {manifest}: {exc!r}")

    if state == "saved":
        now = current_state(roots)
        changed_paths = differing(saved or {}, now)
        changed = saved is None or bool(changed_paths) or saved_roots != roots
        if changed and not module.check_mode:
            try:
                save(snap, roots, now)
            except OSError as exc:
                module.fail_json(msg=f"cannot save the rollback snapshot of {name} in {snap}: {exc}")
        module.exit_json(changed=changed, snapshot=saved is not None or (changed and not module.check_mode),
                         differing=changed_paths, restored=[], diff={"before": "", "after": ""})  # fmt: skip

    if saved is None:
        module.exit_json(changed=False, snapshot=False, differing=[], restored=[],
                         msg=f"no snapshot of {name} in {snap}: it has never been proven ready here")  # fmt: skip
    now = current_state(saved_roots)
    paths = differing(saved, now)
    if paths and not module.check_mode:
        try:
            restore(snap, saved, now, paths)
        except OSError as exc:
            module.fail_json(msg=f"restoring {name} from {snap} failed at {exc.filename or ''}: {exc}", restored=[])
        left = differing(saved, current_state(saved_roots))
        if left:
            module.fail_json(msg=f"restoring {name} from {snap} left these paths different: {left}", restored=paths)
    module.exit_json(changed=bool(paths), snapshot=True, differing=paths, restored=paths,
                     diff={"before": "".join(p + "\n" for p in paths), "after": ""})  # fmt: skip


if __name__ == "__main__":
    main()
