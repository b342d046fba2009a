#!/usr/bin/python
"""Ansible module: provision a directory of Grafana dashboards (or one) in one task, idempotently."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: grafana_dashboards
short_description: Provision one Grafana dashboard or a whole directory of them in one task
extends_documentation_fragment:
  - obs_http
  - obs_grafana
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
  - Files are read on the host that runs the module; delegate the task to C(localhost) when the dashboards
    are in the playbook repository.
author:
  - Observability team
options:
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
  - module: obs_grafana_datasource
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

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - Ansible modules keep their imports below the documentation
from ansible.module_utils.grafana_client import (  # noqa: E402
    GRAFANA_MUTUALLY_EXCLUSIVE,
    GRAFANA_REQUIRED_TOGETHER,
    GrafanaClient,
    GrafanaError,
    grafana_argument_spec,
    same,
)
from ansible.module_utils.grafana_dashboard_sources import Plan, SourceError, load_sources, normalize  # noqa: E402

GENERAL = {"uid": "", "title": "General"}

ARGUMENT_SPEC = grafana_argument_spec(
    path=dict(type="path"),
    dashboards=dict(type="list", elements="dict"),
    folder=dict(type="str"),
    folder_uid=dict(type="str"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    prune=dict(type="bool", default=False),
    overwrite=dict(type="bool", default=True),
    message=dict(type="str"),
)


class DashboardSync:
    def __init__(self, module):
        self.module = module
        params = module.params
        self.params = params
        self.client = GrafanaClient.from_params(params)
        self.folder = dict(GENERAL, action="unchanged")
        self.folder_exists = True
        self._found_folder = None
        self.plan = Plan()
        self.done = {"created": [], "updated": [], "deleted": []}

    # ------------------------------------------------------------------ helpers
    def fail(self, msg, **extra):
        """Fail before any write."""
        self.module.fail_json(msg=msg, changed=False, writes=self.client.writes, **extra)

    def _target_folder_uid(self):
        return self.folder["uid"] if self.folder_exists else None

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
            raise exc.retold(f"{source.origin}: {exc.msg}") from None
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
        result = dict(self.plan.lists(), folder=self.folder)
        if module._diff:
            result["diff"] = self.plan.diff(self.folder)
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
        mutually_exclusive=[("path", "dashboards"), *GRAFANA_MUTUALLY_EXCLUSIVE],
        required_together=GRAFANA_REQUIRED_TOGETHER,
        required_if=[("prune", True, ("folder", "folder_uid"), True)],
    )
    DashboardSync(module).run()


if __name__ == "__main__":
    main()
