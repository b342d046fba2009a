#!/usr/bin/python
"""Ansible module: read the state of many files, users and units of a host in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: obs_host_state
short_description: Read checksums, owners and modes of files, users and systemd units in one call
description:
  - Reads, in one module execution, what the roles would otherwise ask with one C(stat), C(find),
    C(user) or C(systemd_service) call per item (every path's type, owner, group, mode, link target and
    SHA-1 checksum, the files matching glob patterns, system users, and whether units are active and
    enabled).
  - The roles compare this with what they are about to write and skip the tasks whose result is
    already in place; the tasks that do run keep their own validation, check mode and diff. A re-run
    of an unchanged host so costs one execution per role instead of one per file.
  - Never changes anything.
author:
  - Observability team
options:
  paths:
    description: Paths to describe (files, directories or links; links are not followed).
    type: list
    elements: path
    default: []
  globs:
    description: Glob patterns; the paths matching each are listed (sorted) under RV(globs).
    type: list
    elements: str
    default: []
  users:
    description: User names to look up in the password database.
    type: list
    elements: str
    default: []
  units:
    description: systemd units to ask C(systemctl is-active) and C(is-enabled) about.
    type: list
    elements: str
    default: []
attributes:
  diff_mode:
    support: none
  check_mode:
    support: full
    description: Reads only, in check mode too.
"""

EXAMPLES = r"""
- name: Read the managed files of Prometheus
  obs_host_state:
    paths: [/etc/prometheus, /etc/prometheus/prometheus.yml]
    globs: [/etc/prometheus/rules/*.rules.yml]
    users: [prometheus]
    units: [prometheus]
  register: _state

- name: Write prometheus.yml only when it differs
  when: _state.paths['/etc/prometheus/prometheus.yml'] | obs_differs(_content, 'root', 'prometheus', '0640')
  ansible.builtin.copy:
    content: "{{ _content }}"
    dest: /etc/prometheus/prometheus.yml
    owner: root
    group: prometheus
    mode: "0640"
"""

RETURN = r"""
paths:
  description: One entry per path of O(paths).
  returned: always
  type: dict
  sample:
    /etc/prometheus/prometheus.yml:
      {exists: true, type: file, owner: root, group: prometheus, mode: "0640", checksum: 3f78..., target: null}
globs:
  description: For each pattern of O(globs), the matching paths, sorted.
  returned: always
  type: dict
  sample: {"/etc/prometheus/rules/*.rules.yml": [/etc/prometheus/rules/mdl_api.rules.yml]}
users:
  description: For each user of O(users), C(exists), C(home), C(shell) and C(uid).
  returned: always
  type: dict
units:
  description: For each unit of O(units), C(active) and C(enabled) (the words systemctl printed).
  returned: always
  type: dict
  sample: {prometheus: {active: active, enabled: enabled}}
"""

import glob  # noqa: E402 - Ansible modules keep their imports below the documentation
import grp  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402
import pwd  # noqa: E402
import stat  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

_TYPES = {stat.S_IFREG: "file", stat.S_IFDIR: "directory", stat.S_IFLNK: "link"}


def _name(lookup, ident):
    try:
        return lookup(ident)[0]
    except KeyError:
        return str(ident)


def describe(path):
    """Type, owner, group, mode, link target and SHA-1 of one path (links not followed)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {"exists": False}
    entry = {
        "exists": True,
        "type": _TYPES.get(stat.S_IFMT(st.st_mode), "other"),
        "owner": _name(pwd.getpwuid, st.st_uid),
        "group": _name(grp.getgrgid, st.st_gid),
        "mode": f"{stat.S_IMODE(st.st_mode):04o}",
        "target": os.readlink(path) if stat.S_ISLNK(st.st_mode) else None,
        "checksum": None,
    }
    if stat.S_ISREG(st.st_mode):
        digest = hashlib.sha1()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        entry["checksum"] = digest.hexdigest()
    return entry


def user(name):
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return {"exists": False}
    groups = sorted(g.gr_name for g in grp.getgrall() if name in g.gr_mem)
    return {"exists": True, "home": entry.pw_dir, "shell": entry.pw_shell, "uid": entry.pw_uid, "groups": groups}


def unit(module, name):
    _, active, _ = module.run_command(["systemctl", "is-active", name])
    _, enabled, _ = module.run_command(["systemctl", "is-enabled", name])
    return {"active": active.strip(), "enabled": enabled.strip()}


def main():
    module = AnsibleModule(
        argument_spec={
            "paths": {"type": "list", "elements": "path", "default": []},
            "globs": {"type": "list", "elements": "str", "default": []},
            "users": {"type": "list", "elements": "str", "default": []},
            "units": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    params = module.params
    module.exit_json(
        changed=False,
        paths={path: describe(path) for path in params["paths"]},
        globs={pattern: sorted(glob.glob(pattern)) for pattern in params["globs"]},
        users={name: user(name) for name in params["users"]},
        units={name: unit(module, name) for name in params["units"]},
    )


if __name__ == "__main__":
    main()
