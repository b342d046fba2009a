#!/usr/bin/python
"""Ansible module: provision a directory of Grafana dashboards (or one) in one task, idempotently."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: grafana_dashboards
short_description: Provision one Grafana dashboard or a whole directory of them in one task
description:
  - Makes Grafana hold exactly the given dashboards, through the Grafana HTTP API, in B(one) task (a single
    JSON file, every C(*.json) file of a directory, or dashboard models given inline).
  - Every source is read and validated B(before the first request to Grafana). Malformed JSON (the failure
    names the file, line and column), a missing C(uid) or C(title), an invalid uid, and the same uid or the
    same title in two sources all fail the task without any write, even when the other sources are valid.
  - Both the bare dashboard model and the export wrapper C({"dashboard":{...},"meta":{...}}) are
    accepted.
  - Dashboards are matched by C(uid). The source and Grafana's copy are compared after normalisation
    (C(id), C(version) and C(iteration) dropped, key order ignored, numbers as the float64 values Grafana
    stores, so C(1.0) equals C(1)), together with the folder the dashboard is in. Unchanged dashboards are not
    written; a run where nothing changed makes no write request at all (it reads the folder, one search and
    each dashboard).
  - Check mode makes no write and reports what would change; with C(--diff) the normalised before and after
    of every created, updated or deleted dashboard is shown.
  - Writes only start once everything was read and planned. Grafana has no transactions, so a write that
    fails (network, permissions) can still leave the earlier writes of the run done; the failure lists them.
  - Only the Python standard library is needed on the host that runs it (HTTP through
    C(ansible.module_utils.urls)). Files are read on that host; delegate the task to
    C(localhost) when the dashboards are in the playbook repository.
author:
  - Observability team
options:
  url:
    description:
      - Base URL of Grafana, for example V(https://grafana.example.internal). A sub-path (C(root_url) with
        C(serve_from_sub_path)) is part of it.
    type: str
    required: true
  url_username:
    description:
      - User for HTTP basic auth (for example the Grafana admin user).
      - Mutually exclusive with O(token).
    type: str
  url_password:
    description:
      - Password of O(url_username).
    type: str
  token:
    description:
      - Service-account token, sent in the C(Authorization) header as C(Bearer <token>). The service account needs the
        Editor role (Admin to create folders when folder creation is restricted).
      - Mutually exclusive with O(url_username) and O(url_password).
    type: str
  org_id:
    description:
      - Organisation to work in (header C(X-Grafana-Org-Id)); only for basic auth users that belong to several
        organisations. A token always works in its own organisation.
    type: int
  validate_certs:
    description:
      - Validate the TLS certificate of an HTTPS O(url).
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA that signed Grafana's certificate.
    type: path
  timeout:
    description:
      - Timeout in seconds of every single HTTP request.
    type: int
    default: 10
  path:
    description:
      - A dashboard JSON file, or a directory whose C(*.json) files (not its subdirectories) are the
        dashboards.
      - A directory without any C(*.json) file is an error, so that a wrong path can never prune a folder
        empty.
      - Mutually exclusive with O(dashboards); one of them is required.
    type: path
  dashboards:
    description:
      - Dashboard models given inline (for example read with the C(ansible.builtin.file) lookup and the
        C(from_json) filter), each the bare model or the export wrapper C({"dashboard":{...}}).
      - Mutually exclusive with O(path).
    type: list
    elements: dict
  folder:
    description:
      - Title of the folder the dashboards belong in. Without O(folder_uid) the top-level folder with exactly
        this title is used, and created when there is none.
      - With O(folder_uid) it is the title the folder is created with, or renamed to when it differs.
      - Without O(folder) and O(folder_uid) the dashboards go to the General folder (the root).
    type: str
  folder_uid:
    description:
      - Uid of the folder the dashboards belong in; the folder is created (titled O(folder)) when missing.
    type: str
  state:
    description:
      - V(present) creates or updates the dashboards; V(absent) deletes them (by uid, in whatever folder they
        are; a uid is enough for each source then).
    type: str
    choices: [present, absent]
    default: present
  prune:
    description:
      - Also delete every dashboard directly in the managed folder whose uid is not in the sources. Needs
        O(folder) or O(folder_uid) (never prunes the General folder) and O(state=present).
    type: bool
    default: false
  overwrite:
    description:
      - Passed to Grafana on every save. With V(false), a dashboard that was changed in Grafana between the
        module reading it and writing it is not overwritten (Grafana answers 412 and the task fails; re-run).
      - A dashboard of another uid with the same title in the folder is never overwritten; the module fails
        before writing instead (Grafana would otherwise replace that dashboard and keep its uid).
    type: bool
    default: true
  message:
    description:
      - Commit message stored with every dashboard version the module saves (Grafana's version history).
    type: str
attributes:
  check_mode:
    support: full
    description: Grafana is read but not written; the result lists what would be created, updated and deleted.
  diff_mode:
    support: full
    description: The normalised JSON before and after of every created, updated or deleted dashboard.
notes:
  - Grafana needs unique dashboard titles within a folder; two sources with the same title are an error.
  - Dashboards provisioned from files in Grafana (C(provisioning/dashboards)) cannot be changed through the
    API; the module fails before writing when one of them would have to change.
seealso:
  - name: Grafana dashboard HTTP API
    description: The endpoints the module uses to read, save and delete dashboards.
    link: https://grafana.com/docs/grafana/latest/developers/http_api/dashboard/
  - module: grafana_datasource
"""

EXAMPLES = r"""
- name: Provision every dashboard of the repository into the Observability folder
  grafana_dashboards:
    url: "{{ grafana_url }}"
    token: "{{ grafana_service_account_token }}"
    path: "{{ playbook_dir }}/../files/dashboards"
    folder: Observability
    folder_uid: observability
    prune: true
    message: "Provisioned by Ansible from {{ lookup('env', 'CI_COMMIT_SHORT_SHA') | default('a workstation', true) }}"
  delegate_to: localhost
  run_once: true

- name: Show what would change, dashboard by dashboard
  grafana_dashboards:
    url: https://grafana.example.internal
    url_username: admin
    url_password: "{{ grafana_admin_password }}"
    path: files/dashboards
    folder: Observability
  check_mode: true
  diff: true
  delegate_to: localhost
  register: _dashboards_plan

- name: One dashboard, given inline
  grafana_dashboards:
    url: https://grafana.example.internal
    token: "{{ grafana_service_account_token }}"
    dashboards:
      - "{{ lookup('ansible.builtin.file', 'files/dashboards/node-exporter.json') | from_json }}"
    ca_path: /etc/ssl/certs/internal-ca.pem
  delegate_to: localhost

- name: Remove dashboards (a uid is enough)
  grafana_dashboards:
    url: https://grafana.example.internal
    token: "{{ grafana_service_account_token }}"
    dashboards:
      - uid: old-node-overview
      - uid: old-api-latency
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
created:
  description: Uids of the dashboards created (in check mode, that would be created).
  returned: always
  type: list
  elements: str
  sample: [node-exporter]
updated:
  description: Uids of the dashboards whose model or folder changed (in check mode, that would change).
  returned: always
  type: list
  elements: str
  sample: [api-latency]
deleted:
  description: Uids of the dashboards deleted by O(state=absent) or O(prune) (in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: []
unchanged:
  description: Uids of the dashboards Grafana already had as given.
  returned: always
  type: list
  elements: str
  sample: [alertmanager, prometheus]
writes:
  description: Number of write requests (POST, PUT, DELETE) the module sent to Grafana; 0 in check mode.
  returned: always
  type: int
  sample: 2
folder:
  description: The managed folder.
  returned: always
  type: dict
  contains:
    uid:
      description: Uid of the folder (empty for General; null when it would be created without O(folder_uid)).
      type: str
    title:
      description: Title of the folder.
      type: str
    action:
      description: V(created), V(renamed) or V(unchanged) (in check mode, what would happen).
      type: str
  sample: {uid: observability, title: Observability, action: unchanged}
diff:
  description:
    - One entry per created, updated or deleted dashboard with C(before), C(after) (normalised JSON of
      C({"folderUid", "dashboard"}), empty when absent) and their headers.
  returned: in diff mode
  type: list
  elements: dict
msg:
  description: Summary of the run.
  returned: always
  type: str
  sample: "1 created, 1 updated, 0 deleted, 198 unchanged in folder 'Observability' (2 write requests)"
"""

import json  # noqa: E402 - Ansible modules keep their imports below the documentation
import os  # noqa: E402
import re  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.grafana_client import GrafanaClient, GrafanaError, canonical, same  # noqa: E402

# Keys Grafana sets on every save (or the frontend bumps); never compared.
VOLATILE_KEYS = ("id", "version", "iteration")
UID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,40}$")
GENERAL = {"uid": "", "title": "General"}

ARGUMENT_SPEC = dict(
    url=dict(type="str", required=True),
    url_username=dict(type="str"),
    url_password=dict(type="str", no_log=True),
    token=dict(type="str", no_log=True),
    org_id=dict(type="int"),
    validate_certs=dict(type="bool", default=True),
    ca_path=dict(type="path"),
    timeout=dict(type="int", default=10),
    path=dict(type="path"),
    dashboards=dict(type="list", elements="dict"),
    folder=dict(type="str"),
    folder_uid=dict(type="str"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    prune=dict(type="bool", default=False),
    overwrite=dict(type="bool", default=True),
    message=dict(type="str"),
)


# --------------------------------------------------------------------------- sources
class SourceError(Exception):
    pass


class Source:
    """One dashboard to provision: where it came from and its model."""

    def __init__(self, origin, model):
        self.origin = origin
        self.model = model
        self.uid = model.get("uid")
        self.title = model.get("title")


def normalize(model):
    """The dashboard model as compared: volatile keys dropped, numbers canonical (as Grafana stores them)."""
    return canonical({k: v for k, v in model.items() if k not in VOLATILE_KEYS})


def pretty(value):
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def unwrap(data, origin):
    """The dashboard model of a bare model or of the export wrapper {"dashboard": {...}}."""
    if not isinstance(data, dict):
        raise SourceError(
            f'{origin}: expected a JSON object (a dashboard model, or {{"dashboard": {{...}}}}),'
            f" found a JSON {type(data).__name__ if data is not None else 'null'}"
        )
    if "dashboard" in data and "title" not in data and "panels" not in data:
        model = data["dashboard"]
        if not isinstance(model, dict):
            raise SourceError(f'{origin}: "dashboard" must be a JSON object (the dashboard model)')
        return model
    return data


def read_json_file(path):
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def source_files(path):
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.endswith(".json"))
        files = [os.path.join(path, n) for n in names if os.path.isfile(os.path.join(path, n))]
        if not files:
            raise SourceError(f"{path}: the directory holds no *.json file")
        return files
    if os.path.exists(path):
        return [path]
    raise SourceError(f"{path}: no such file or directory")


def check_model(source, need_title):
    problems = []
    uid = source.uid
    if uid is None or uid == "":
        problems.append(f'{source.origin}: missing uid (the module identifies dashboards by their "uid")')
    elif not isinstance(uid, str) or not UID_RE.match(uid):
        problems.append(f"{source.origin}: invalid uid {uid!r} (at most 40 characters of letters, digits, '-' and '_')")
    if need_title and (not isinstance(source.title, str) or not source.title.strip()):
        problems.append(f'{source.origin}: missing title (Grafana needs a non-empty "title")')
    return problems


def _parse(origin, data):
    """Source of one file (data None) or inline model."""
    return Source(origin, unwrap(read_json_file(origin) if data is None else data, origin))


def _duplicates(sources, need_title):
    problems = []
    by_uid = {}
    by_title = {}
    for source in sources:
        by_uid.setdefault(source.uid, []).append(source)
        if need_title:
            by_title.setdefault(source.title.strip().lower(), []).append(source)
    for uid, same_uid in by_uid.items():
        if len(same_uid) > 1:
            problems.append(f"duplicate uid {uid!r} in {', '.join(s.origin for s in same_uid)}")
    for same_title in by_title.values():
        if len(same_title) > 1 and len({s.uid for s in same_title}) > 1:
            problems.append(
                f"title {same_title[0].title!r} is used by "
                + ", ".join(f"{s.origin} (uid {s.uid})" for s in same_title)
                + "; Grafana needs unique titles within a folder"
            )
    return problems


def load_sources(path, dashboards, need_title):
    """Every source, parsed and validated; raises SourceError listing all problems."""
    problems = []
    sources = []
    if path is not None:
        items = [(file, None) for file in source_files(path)]
    else:
        items = [(f"dashboards[{index}]", model) for index, model in enumerate(dashboards or [])]
        if not items:
            raise SourceError("dashboards is empty: give at least one dashboard")
    for origin, data in items:
        try:
            source = _parse(origin, data)
        except SourceError as exc:
            problems.append(str(exc))
            continue
        found = check_model(source, need_title)
        problems += found
        if not found:
            sources.append(source)
    problems += _duplicates(sources, need_title)
    if problems:
        count = len(problems)
        raise SourceError(
            f"{count} problem{'s' if count > 1 else ''} in the dashboard sources, nothing was written:\n- "
            + "\n- ".join(problems)
        )
    return sources


# --------------------------------------------------------------------------- sync
class Plan:
    def __init__(self):
        self.created = []  # Source
        self.updated = []  # (Source, existing)
        self.unchanged = []  # Source
        self.deleted = []  # (uid, title, existing or None)
        self.delete_first = set()  # uids deleted before saving (their title is reused)


class DashboardSync:
    def __init__(self, module):
        self.module = module
        params = module.params
        self.params = params
        self.client = GrafanaClient(
            params["url"],
            username=params["url_username"],
            password=params["url_password"],
            token=params["token"],
            timeout=params["timeout"],
            validate_certs=params["validate_certs"],
            ca_path=params["ca_path"],
            org_id=params["org_id"],
        )
        self.folder = dict(GENERAL, action="unchanged")
        self.folder_exists = True
        self._found_folder = None
        self.plan = Plan()
        self.done = {"created": [], "updated": [], "deleted": []}

    # ------------------------------------------------------------------ helpers
    def fail(self, msg, **extra):
        """Fail before any write."""
        self.module.fail_json(msg=msg, changed=False, writes=self.client.writes, **extra)

    def _lists(self):
        return {
            "created": [s.uid for s in self.plan.created],
            "updated": [s.uid for s, _existing in self.plan.updated],
            "deleted": [uid for uid, _title, _existing in self.plan.deleted],
            "unchanged": [s.uid for s in self.plan.unchanged],
        }

    def _target_folder_uid(self):
        return self.folder["uid"] if self.folder_exists else None

    def _diff_doc(self, folder_uid, model):
        label = folder_uid
        if folder_uid is None:
            label = f"(new folder {self.folder['title']!r})"
        return {"folderUid": label, "dashboard": normalize(model)}

    def _diff(self):
        def entry(before_header, after_header, before, after):
            return {"before_header": before_header, "after_header": after_header, "before": before, "after": after}

        def in_grafana(existing):
            return pretty(self._diff_doc((existing.get("meta") or {}).get("folderUid") or "", existing["dashboard"]))

        target = self.folder["uid"]
        diffs = [
            entry(f"grafana: dashboard {s.uid} (absent)", s.origin, "", pretty(self._diff_doc(target, s.model)))
            for s in self.plan.created
        ]
        for source, existing in self.plan.updated:
            version = (existing.get("meta") or {}).get("version", "?")
            header = f"grafana: dashboard {source.uid} (version {version})"
            diffs.append(
                entry(header, source.origin, in_grafana(existing), pretty(self._diff_doc(target, source.model)))
            )
        for uid, title, existing in self.plan.deleted:
            before = in_grafana(existing) if existing is not None else pretty({"uid": uid, "title": title})
            diffs.append(entry(f"grafana: dashboard {uid}", f"grafana: dashboard {uid} (deleted)", before, ""))
        return diffs

    # ------------------------------------------------------------------ reading
    def resolve_folder(self):
        title, uid = self.params["folder"], self.params["folder_uid"]
        if not title and not uid:
            return
        found = self.client.find_folder(title=title, uid=uid)
        if found is None:
            if not title:
                self.fail(
                    f"folder {uid} does not exist in Grafana at {self.client.base_url}: set folder (its title) to"
                    " create it"
                )
            self.folder = {"uid": uid or None, "title": title, "action": "created"}
            self.folder_exists = False
            return
        self.folder = {"uid": found.get("uid"), "title": found.get("title"), "action": "unchanged"}
        self._found_folder = found
        if title and found.get("title") != title:
            self.folder.update(title=title, action="renamed")

    def folder_hits(self):
        """Search hits of the dashboards directly in the managed folder (existing folders only)."""
        if not self.folder_exists:
            return []
        target = self.folder["uid"]
        if target:
            return self.client.search_dashboards(folder_uid=target)
        return [h for h in self.client.search_dashboards() if not h.get("folderUid")]

    def make_plan(self, sources):
        problems = self._classify(sources)
        plan = self.plan
        hits = self.folder_hits() if (self.params["prune"] or plan.created or plan.updated) else []
        wanted = {source.uid for source in sources}
        if self.params["prune"]:
            plan.deleted = [(h["uid"], h.get("title"), None) for h in hits if h.get("uid") and h["uid"] not in wanted]
        problems += self._title_conflicts(hits, wanted)
        if problems:
            self.fail(
                f"{len(problems)} problem(s) found before writing, nothing was written:\n- " + "\n- ".join(problems)
            )

    def _classify(self, sources):
        """Read every source's dashboard from Grafana: created, updated or unchanged."""
        plan = self.plan
        target = self._target_folder_uid()
        problems = []
        for source in sources:
            existing = self.client.get_dashboard(source.uid)
            if existing is None:
                plan.created.append(source)
                continue
            meta = existing.get("meta") or {}
            in_place = target is not None and (meta.get("folderUid") or "") == target
            if in_place and same(normalize(existing["dashboard"]), normalize(source.model)):
                plan.unchanged.append(source)
                continue
            if meta.get("provisioned"):
                problems.append(
                    f"{source.origin}: dashboard {source.uid} is provisioned from a file in Grafana"
                    f" ({meta.get('provisionedExternalId') or 'provisioning/dashboards'}) and cannot be changed"
                    " through the API; remove it from Grafana's provisioning first"
                )
            plan.updated.append((source, existing))
        return problems

    def _title_conflicts(self, hits, wanted):
        """Grafana keeps one title per folder; with overwrite it would even replace the other dashboard."""
        plan = self.plan
        pruned = {uid for uid, _title, _existing in plan.deleted}
        others = {}
        for hit in hits:
            if hit.get("uid") and hit["uid"] not in wanted and isinstance(hit.get("title"), str):
                others.setdefault(hit["title"].strip().lower(), []).append(hit)
        problems = []
        for source in plan.created + [s for s, _existing in plan.updated]:
            for hit in others.get(source.title.strip().lower(), []):
                if hit["uid"] in pruned:
                    plan.delete_first.add(hit["uid"])
                    continue
                problems.append(
                    f"{source.origin}: the title {source.title!r} of dashboard {source.uid} is already used by"
                    f" dashboard {hit['uid']} in folder {self.folder['title']!r}; Grafana needs unique titles"
                    " within a folder: rename one of them, or delete the other (prune: true deletes the dashboards"
                    " of the folder that are not in the sources)"
                )
        return problems

    # ------------------------------------------------------------------ writing
    def apply_folder(self):
        if self.folder["action"] == "created":
            created = self.client.create_folder(self.folder["title"], self.folder["uid"])
            self.folder["uid"] = created.get("uid")
            self.folder_exists = True
        elif self.folder["action"] == "renamed":
            self.client.rename_folder(self._found_folder, self.folder["title"])

    def delete(self, uid):
        self.client.delete_dashboard(uid)
        self.done["deleted"].append(uid)

    def save(self, source, version, done):
        """Save one source; a refusal names its file (or dashboards[i]) in front of Grafana's answer."""
        params = self.params
        target = self.folder["uid"]
        try:
            self.client.save_dashboard(
                source.model, target, overwrite=params["overwrite"], message=params["message"], version=version
            )
        except GrafanaError as exc:
            raise GrafanaError(f"{source.origin}: {exc.msg}", url=exc.url, status=exc.status, data=exc.data) from None
        self.done[done].append(source.uid)

    def apply(self):
        plan = self.plan
        self.apply_folder()
        for uid in sorted(plan.delete_first):
            self.delete(uid)
        for source in plan.created:
            self.save(source, None, "created")
        for source, existing in plan.updated:
            version = existing["dashboard"].get("version")
            if not isinstance(version, int) or isinstance(version, bool):
                version = (existing.get("meta") or {}).get("version")
            self.save(source, version, "updated")
        for uid, _title, _existing in plan.deleted:
            if uid not in plan.delete_first:
                self.delete(uid)

    # ------------------------------------------------------------------ run
    def summary(self, check_mode):
        plan = self.plan
        would = "would be " if check_mode else ""
        where = f" in folder {self.folder['title']!r}" if self.params["state"] == "present" else ""
        text = (
            f"{len(plan.created)} {would}created, {len(plan.updated)} {would}updated,"
            f" {len(plan.deleted)} {would}deleted, {len(plan.unchanged)} unchanged{where}"
            f" ({self.client.writes} write request{'s' if self.client.writes != 1 else ''})"
        )
        if self.folder["action"] != "unchanged" and self.params["state"] == "present":
            text += f"; folder {would}{self.folder['action']}"
        return text

    def run(self):
        params = self.params
        module = self.module
        state = params["state"]
        if params["prune"] and state == "absent":
            module.fail_json(msg="prune: true only applies to state: present", changed=False, writes=0)
        try:
            sources = load_sources(params["path"], params["dashboards"], need_title=state == "present")
        except SourceError as exc:
            module.fail_json(msg=str(exc), changed=False, writes=0)
        try:
            if state == "present":
                self.resolve_folder()
                self.make_plan(sources)
            else:
                self.plan_absent(sources)
        except GrafanaError as exc:
            self.fail(exc.msg, status=exc.status)
        result = dict(self._lists(), folder=self.folder)
        if module._diff:
            result["diff"] = self._diff()
        changed = bool(
            self.plan.created or self.plan.updated or self.plan.deleted or self.folder["action"] != "unchanged"
        )
        if not module.check_mode and changed:
            try:
                self.apply()
            except GrafanaError as exc:
                done = ", ".join(f"{k}: {v}" for k, v in self.done.items() if v) or "no dashboard"
                self.module.fail_json(
                    msg=f"{exc.msg}\nWritten before the failure ({self.client.writes} write request(s)): {done}",
                    changed=self.client.writes > 0,
                    writes=self.client.writes,
                    status=exc.status,
                    done=self.done,
                    folder=self.folder,
                )
        result["folder"] = self.folder
        module.exit_json(changed=changed, writes=self.client.writes, msg=self.summary(module.check_mode), **result)

    def plan_absent(self, sources):
        params = self.params
        self.folder = {"uid": params["folder_uid"] or "", "title": params["folder"] or "", "action": "unchanged"}
        for source in sources:
            existing = self.client.get_dashboard(source.uid)
            if existing is None:
                self.plan.unchanged.append(source)
            else:
                self.plan.deleted.append((source.uid, existing["dashboard"].get("title"), existing))


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        required_one_of=[("path", "dashboards")],
        mutually_exclusive=[("path", "dashboards"), ("token", "url_username"), ("token", "url_password")],
        required_together=[("url_username", "url_password")],
        required_if=[("prune", True, ("folder", "folder_uid"), True)],
    )
    DashboardSync(module).run()


if __name__ == "__main__":
    main()
