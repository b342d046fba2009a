"""Unit tests of the grafana_dashboards and obs_grafana_datasource modules and their Grafana client.

Most tests need no network: ansible.module_utils.urls.open_url, as used by the
client, is replaced by FakeGrafana, an in-memory Grafana that follows the
documented HTTP API (status codes and bodies of /api/folders, /api/search,
/api/dashboards and /api/datasources). The last tests run the modules against
the Grafana STAND-IN (tests/standins/grafana; not Grafana) on a free loopback
port, in-process and through ansible-playbook; they are skipped when the
stand-in is not there.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from conftest import (
    FIXTURES,
    FakeResponse,
    compare_options,
    load_ansible_module,
    load_module_utils,
    module_docs,
)
from conftest import REPO_ROOT as REPO

STANDIN = REPO / "tests" / "standins" / "grafana" / "grafana_standin.py"
ANSIBLE_PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"
PLAYBOOK = FIXTURES / "grafana_mod_playbook.yml"

http_mod = load_module_utils("http_client")
client_mod = load_module_utils("grafana_client")
dash_mod = load_ansible_module("grafana_dashboards")
ds_mod = load_ansible_module("obs_grafana_datasource")

GRAFANA = "http://grafana:3000"
PASSWORD = "pw-of-admin"
TOKEN = "glsa_good_token"
# The first request of a run with a folder title: the top-level folders.
FOLDERS = f"{GRAFANA}/api/folders?limit=1000&page=1"


# ----------------------------------------------------------------- fake Grafana
def go_json(value):
    """What Grafana (Go, float64 numbers) gives back for a JSON value: 1.0 comes back as 1."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: go_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [go_json(v) for v in value]
    return value


class ApiError(Exception):
    def __init__(self, code, message, **extra):
        super().__init__(message)
        self.code = code
        self.body = {"message": message, **extra}


class FakeGrafana:
    """Grafana's legacy HTTP API in memory: folders, dashboards (with versions), search, data sources."""

    def __init__(self):
        self.folders = {}  # uid -> {"id", "uid", "title", "version"}
        self.dashboards = {}  # uid -> {"id", "data", "folderUid", "version", "provisioned"}
        self.datasources = {}  # uid -> DTO fields + "secure": {key: value}
        self.requests = []  # (method, path, body)
        self.down = False
        self.users = {"admin": PASSWORD}
        self.tokens = {TOKEN}
        self.anonymous = False
        self.next_id = 100
        self.after_get = None  # hook(uid) run after GET /api/dashboards/uid/:uid
        self.fail_save_after = None  # answer 500 to saves after this many succeeded
        self.saves = 0

    # -- helpers for the tests
    @property
    def writes(self):
        return [(m, p, b) for m, p, b in self.requests if m != "GET"]

    def _id(self):
        self.next_id += 1
        return self.next_id

    def add_folder(self, uid, title):
        self.folders[uid] = {"id": self._id(), "uid": uid, "title": title, "version": 1}
        return self.folders[uid]

    def put_dashboard(self, model, folder_uid="", provisioned=False):
        """Store a dashboard as if saved by someone else (a hand edit bumps the version)."""
        uid = model["uid"]
        old = self.dashboards.get(uid)
        version = old["version"] + 1 if old else 1
        data = go_json(copy.deepcopy(model))
        data.update(id=old["id"] if old else self._id(), uid=uid, version=version)
        self.dashboards[uid] = {
            "id": data["id"],
            "data": data,
            "folderUid": folder_uid,
            "version": version,
            "provisioned": provisioned,
        }

    def model(self, uid):
        return self.dashboards[uid]["data"]

    # -- transport
    def open_url(self, url, data=None, headers=None, method=None, **kwargs):
        assert kwargs.get("timeout") is not None, "every request needs a timeout"
        method = method or ("POST" if data else "GET")
        parts = urlsplit(url)
        body = json.loads(data) if data else None
        self.requests.append((method, parts.path, body))
        if self.down:
            raise URLError(ConnectionRefusedError(111, "Connection refused"))
        if f"{parts.scheme}://{parts.netloc}" != GRAFANA:
            raise URLError(OSError(-2, "Name or service not known"))
        try:
            self._authenticate(headers or {}, kwargs)
            status, answer = self.route(method, parts.path, parse_qs(parts.query), body)
        except ApiError as exc:
            raise HTTPError(url, exc.code, "error", {}, io.BytesIO(json.dumps(exc.body).encode())) from None
        return FakeResponse(json.dumps(answer).encode(), status)

    def _authenticate(self, headers, kwargs):
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            if auth[len("Bearer ") :] not in self.tokens:
                raise ApiError(401, "Invalid API key", messageId="api-key.invalid", statusCode=401)
            return
        if kwargs.get("url_username") and kwargs.get("force_basic_auth"):
            if self.users.get(kwargs["url_username"]) != kwargs.get("url_password"):
                raise ApiError(401, "Invalid username or password", messageId="password-auth.failed")
            return
        if not self.anonymous:
            raise ApiError(401, "Unauthorized", messageId="auth.unauthorized")

    def route(self, method, path, query, body):
        parts = [unquote(p) for p in path.strip("/").split("/")]
        handler = {
            ("GET", "folders"): self.folder_list,
            ("POST", "folders"): self.folder_create,
            ("GET", "search"): self.search,
            ("POST", "dashboards"): self.dashboard_save,
            ("GET", "datasources"): self.ds_get,
            ("POST", "datasources"): self.ds_create,
            ("PUT", "datasources"): self.ds_update,
            ("DELETE", "datasources"): self.ds_delete,
        }
        if parts[:2] == ["api", "folders"] and len(parts) == 3:
            return self.folder_one(method, parts[2], body)
        if parts[:3] == ["api", "dashboards", "uid"] and len(parts) == 4:
            return self.dashboard_one(method, parts[3])
        key = (method, parts[1] if len(parts) > 1 else "")
        if parts[0] != "api" or key not in handler:
            raise ApiError(404, "Not found")
        return handler[key](query=query, body=body, rest=parts[2:])

    # -- folders
    def folder_list(self, query, body, rest):
        return 200, [{"id": f["id"], "uid": f["uid"], "title": f["title"]} for f in self.folders.values()]

    def folder_dto(self, folder):
        return dict(folder, url=f"/dashboards/f/{folder['uid']}/", canSave=True)

    def folder_create(self, query, body, rest):
        uid = body.get("uid") or f"auto{self._id()}"
        if uid in self.folders:
            raise ApiError(409, "a folder/dashboard with the same uid already exists")
        if any(f["title"] == body["title"] for f in self.folders.values()):
            raise ApiError(409, "a folder with the same name already exists in the current location")
        return 200, self.folder_dto(self.add_folder(uid, body["title"]))

    def folder_one(self, method, uid, body):
        folder = self.folders.get(uid)
        if folder is None:
            raise ApiError(404, "folder not found", status="not-found")
        if method == "PUT":
            if not body.get("overwrite") and body.get("version") != folder["version"]:
                raise ApiError(412, "the folder has been changed by someone else", status="version-mismatch")
            folder.update(title=body["title"], version=folder["version"] + 1)
        elif method != "GET":
            raise ApiError(405, "Method Not Allowed")
        return 200, self.folder_dto(folder)

    # -- dashboards
    def search(self, query, body, rest):
        assert query.get("type") == ["dash-db"]
        folder_uids = query.get("folderUIDs")
        hits = []
        for dash in self.dashboards.values():
            if folder_uids and dash["folderUid"] not in [("" if f == "general" else f) for f in folder_uids]:
                continue
            hit = {"id": dash["id"], "uid": dash["data"]["uid"], "title": dash["data"]["title"], "type": "dash-db"}
            if dash["folderUid"]:
                hit.update(folderUid=dash["folderUid"], folderTitle=self.folders[dash["folderUid"]]["title"])
            hits.append(hit)
        limit = int(query.get("limit", ["1000"])[0])
        page = int(query.get("page", ["1"])[0])
        return 200, hits[(page - 1) * limit : page * limit]

    def dashboard_one(self, method, uid):
        dash = self.dashboards.get(uid)
        if dash is None:
            raise ApiError(404, "Dashboard not found")
        if method == "DELETE":
            if dash["provisioned"]:
                raise ApiError(400, "provisioned dashboard cannot be deleted")
            del self.dashboards[uid]
            return 200, {"title": dash["data"]["title"], "message": "Dashboard deleted", "id": dash["id"]}
        assert method == "GET"
        folder = self.folders.get(dash["folderUid"])
        meta = {
            "type": "db",
            "canSave": True,
            "slug": uid,
            "url": f"/d/{uid}/",
            "version": dash["version"],
            "folderUid": dash["folderUid"],
            "folderTitle": folder["title"] if folder else "General",
            "provisioned": dash["provisioned"],
            "provisionedExternalId": "dash.json" if dash["provisioned"] else "",
        }
        answer = {"dashboard": copy.deepcopy(dash["data"]), "meta": meta}
        if self.after_get is not None:
            self.after_get(uid)
        return 200, answer

    def dashboard_save(self, query, body, rest):
        if self.fail_save_after is not None and self.saves >= self.fail_save_after:
            raise ApiError(500, "database is locked")
        model = body["dashboard"]
        folder_uid = body.get("folderUid") or ""
        if folder_uid and folder_uid not in self.folders:
            raise ApiError(400, "folder not found")
        uid = model.get("uid")
        existing = self.dashboards.get(uid)
        if existing and model.get("version") != existing["version"] and not body.get("overwrite"):
            raise ApiError(412, "The dashboard has been changed by someone else", status="version-mismatch")
        for other in self.dashboards.values():
            same_title = other["data"]["title"].lower() == model["title"].lower()
            if other["data"]["uid"] != uid and other["folderUid"] == folder_uid and same_title:
                raise ApiError(412, "A dashboard with the same name in the folder already exists", status="name-exists")
        self.put_dashboard(model, folder_uid)
        self.saves += 1
        dash = self.dashboards[uid]
        return 200, {"id": dash["id"], "uid": uid, "url": f"/d/{uid}/", "status": "success", "version": dash["version"]}

    # -- data sources
    def ds_dto(self, ds):
        dto = {k: v for k, v in ds.items() if k != "secure"}
        dto.update(password="", basicAuthPassword="", secureJsonFields={k: True for k in sorted(ds["secure"])})
        return dto

    def _ds_find(self, rest):
        if rest[0] == "uid":
            ds = self.datasources.get(rest[1])
        else:
            ds = next((d for d in self.datasources.values() if d["name"] == rest[1]), None)
        if ds is None:
            raise ApiError(404, "Data source not found")
        return ds

    def ds_get(self, query, body, rest):
        return 200, self.ds_dto(self._ds_find(rest))

    def _ds_fields(self, body, old):
        fields = {
            "name": body["name"],
            "type": body["type"],
            "url": body.get("url", ""),
            "access": body.get("access", "proxy"),
            "user": body.get("user", ""),
            "database": body.get("database", ""),
            "basicAuth": bool(body.get("basicAuth")),
            "basicAuthUser": body.get("basicAuthUser", ""),
            "withCredentials": bool(body.get("withCredentials")),
            "isDefault": bool(body.get("isDefault")),
            "jsonData": go_json(body.get("jsonData") or {}),
        }
        secure = dict(old["secure"]) if old else {}
        secure.update(body.get("secureJsonData") or {})
        fields["secure"] = secure
        return fields

    def ds_create(self, query, body, rest):
        if any(d["name"] == body["name"] for d in self.datasources.values()):
            raise ApiError(409, "data source with the same name already exists")
        ds = dict(self._ds_fields(body, None), id=self._id(), uid=body["uid"], orgId=1, version=1, readOnly=False)
        self.datasources[ds["uid"]] = ds
        return 200, {"datasource": self.ds_dto(ds), "id": ds["id"], "message": "Datasource added", "name": ds["name"]}

    def ds_update(self, query, body, rest):
        ds = self._ds_find(rest)
        if ds["readOnly"]:
            raise ApiError(403, "Cannot update read-only data source")
        if body.get("version") and body["version"] < ds["version"]:
            raise ApiError(409, "Datasource has already been updated by someone else")
        ds.update(self._ds_fields(body, ds), version=ds["version"] + 1)
        return 200, {"datasource": self.ds_dto(ds), "id": ds["id"], "message": "Datasource updated", "name": ds["name"]}

    def ds_delete(self, query, body, rest):
        ds = self._ds_find(rest)
        del self.datasources[ds["uid"]]
        return 200, {"message": "Data source deleted", "id": ds["id"]}


@pytest.fixture
def fake(monkeypatch):
    grafana = FakeGrafana()
    monkeypatch.setattr(http_mod, "open_url", grafana.open_url)
    return grafana


@pytest.fixture
def run(run_module):
    """run(module, check_mode=False, diff=False, **args) -> result dict (failed=True when it failed)."""

    def _run(module, check_mode=False, diff=False, **overrides):
        args = {"url": GRAFANA, "url_username": "admin", "url_password": PASSWORD, **overrides}
        args = {k: v for k, v in args.items() if v is not None}
        if check_mode:
            args["_ansible_check_mode"] = True
        if diff:
            args["_ansible_diff"] = True
        return run_module(module.main, args)

    return _run


def dashboard(uid, title=None, **fields):
    return {
        "uid": uid,
        "title": title or f"Dashboard {uid}",
        "schemaVersion": 39,
        "panels": [{"id": 1, "type": "timeseries", "title": "Requests", "gridPos": {"h": 8, "w": 12, "x": 0, "y": 0}}],
        "tags": ["ansible"],
        **fields,
    }


def write_dashboards(directory: Path, models) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for model in models:
        (directory / f"{model['uid']}.json").write_text(json.dumps(model, indent=2))
    return directory


@pytest.fixture
def dash_dir(tmp_path):
    return write_dashboards(tmp_path / "dashboards", [dashboard("api"), dashboard("db"), dashboard("queue")])


# ======================================================================= dashboards
def test_create_a_directory_into_a_new_folder(fake, run, dash_dir):
    result = run(dash_mod, path=str(dash_dir), folder="Ops", folder_uid="ops")
    assert "failed" not in result, result["msg"]
    assert result["changed"] is True
    assert result["created"] == ["api", "db", "queue"]
    assert result["updated"] == result["deleted"] == result["unchanged"] == []
    assert result["folder"] == {"uid": "ops", "title": "Ops", "action": "created"}
    assert result["writes"] == 4 == len(fake.writes)
    assert fake.folders["ops"]["title"] == "Ops"
    assert {uid: d["folderUid"] for uid, d in fake.dashboards.items()} == {"api": "ops", "db": "ops", "queue": "ops"}
    saved = [b for m, p, b in fake.writes if p == "/api/dashboards/db"]
    assert all(b["folderUid"] == "ops" and b["overwrite"] is True and b["dashboard"]["id"] is None for b in saved)
    assert all("version" not in b["dashboard"] for b in saved)
    assert (
        result["msg"]
        == "3 created, 0 updated, 0 deleted, 0 unchanged in folder 'Ops' (4 write requests); folder created"
    )


def test_second_run_is_unchanged_with_zero_writes(fake, run, dash_dir):
    run(dash_mod, path=str(dash_dir), folder="Ops")
    before = len(fake.writes)
    result = run(dash_mod, path=str(dash_dir), folder="Ops")
    assert result["changed"] is False
    assert result["unchanged"] == ["api", "db", "queue"]
    assert result["created"] == result["updated"] == result["deleted"] == []
    assert result["writes"] == 0
    assert len(fake.writes) == before
    assert result["folder"]["action"] == "unchanged"
    # Nothing changed: no search either, only the folder and one GET per dashboard.
    assert [p for m, p, b in fake.requests[-4:]] == [
        "/api/folders",
        "/api/dashboards/uid/api",
        "/api/dashboards/uid/db",
        "/api/dashboards/uid/queue",
    ]


def test_normalisation_ignores_id_version_iteration_key_order_and_float_form(fake, run, tmp_path):
    fake.add_folder("ops", "Ops")
    fake.put_dashboard(dashboard("api", refresh="30s", graphTooltip=1), "ops")
    stored = fake.model("api")
    source = dict(reversed(list(stored.items())))  # other key order
    source.update(id=12345, version=99, iteration=1732780000000, graphTooltip=1.0)
    write_dashboards(tmp_path / "d", [source])
    result = run(dash_mod, path=str(tmp_path / "d"), folder_uid="ops")
    assert (result["changed"], result["unchanged"], result["writes"]) == (False, ["api"], 0)


def test_changed_dashboard_is_updated_with_the_version_read(fake, run, dash_dir):
    run(dash_mod, path=str(dash_dir), folder="Ops")
    fake.put_dashboard(fake.model("db"), fake.dashboards["db"]["folderUid"])  # version 2, same content
    model = dashboard("db")
    model["panels"][0]["title"] = "Errors"
    write_dashboards(dash_dir, [model])
    result = run(dash_mod, path=str(dash_dir), folder="Ops", overwrite=False, message="ticket OBS-1")
    assert result["changed"] is True
    assert (result["updated"], result["unchanged"], result["writes"]) == (["db"], ["api", "queue"], 1)
    method, path, body = fake.writes[-1]
    assert (method, path) == ("POST", "/api/dashboards/db")
    assert body["dashboard"]["version"] == 2 and body["overwrite"] is False and body["message"] == "ticket OBS-1"
    assert fake.model("db")["panels"][0]["title"] == "Errors"


def test_check_mode_writes_nothing_and_reports_the_change(fake, run, dash_dir):
    result = run(dash_mod, check_mode=True, path=str(dash_dir), folder="Ops")
    assert result["changed"] is True
    assert result["created"] == ["api", "db", "queue"]
    assert result["folder"] == {"uid": None, "title": "Ops", "action": "created"}
    assert result["writes"] == 0 and fake.writes == []
    assert "would be created" in result["msg"]

    run(dash_mod, path=str(dash_dir), folder="Ops")
    writes = len(fake.writes)
    model = dashboard("queue", title="Queue depth")
    write_dashboards(dash_dir, [model])
    result = run(dash_mod, check_mode=True, path=str(dash_dir), folder="Ops")
    assert (result["changed"], result["updated"], result["writes"]) == (True, ["queue"], 0)
    assert len(fake.writes) == writes
    assert fake.model("queue")["title"] == "Dashboard queue"


def test_diff_shows_normalised_before_and_after_of_changed_dashboards_only(fake, run, dash_dir):
    run(dash_mod, path=str(dash_dir), folder="Ops", folder_uid="ops")
    model = dashboard("db", refresh="1m")
    write_dashboards(dash_dir, [model, dashboard("new")])
    result = run(dash_mod, check_mode=True, diff=True, path=str(dash_dir), folder="Ops", folder_uid="ops")
    assert (result["created"], result["updated"]) == (["new"], ["db"])
    diffs = {d["before_header"]: d for d in result["diff"]}
    assert set(diffs) == {"grafana: dashboard new (absent)", "grafana: dashboard db (version 1)"}
    update = diffs["grafana: dashboard db (version 1)"]
    assert update["after_header"] == str(dash_dir / "db.json")
    before, after = json.loads(update["before"]), json.loads(update["after"])
    assert before["folderUid"] == after["folderUid"] == "ops"
    assert "refresh" not in before["dashboard"] and after["dashboard"]["refresh"] == "1m"
    for doc in (before, after):
        assert not {"id", "version", "iteration"} & set(doc["dashboard"])
    assert update["before"].splitlines()[1] == '  "dashboard": {'  # sorted, indented JSON for line diffs
    create = diffs["grafana: dashboard new (absent)"]
    assert create["before"] == "" and json.loads(create["after"])["dashboard"]["uid"] == "new"
    # Without --diff there is no diff.
    assert "diff" not in run(dash_mod, check_mode=True, path=str(dash_dir), folder="Ops", folder_uid="ops")


def test_prune_deletes_dashboards_of_the_folder_that_are_not_in_the_source(fake, run, dash_dir):
    fake.add_folder("ops", "Ops")
    fake.add_folder("other", "Other")
    fake.put_dashboard(dashboard("stale"), "ops")
    fake.put_dashboard(dashboard("elsewhere"), "other")
    fake.put_dashboard(dashboard("root"), "")
    result = run(dash_mod, path=str(dash_dir), folder_uid="ops")
    assert result["deleted"] == [] and "stale" in fake.dashboards

    result = run(dash_mod, check_mode=True, diff=True, path=str(dash_dir), folder_uid="ops", prune=True)
    assert (result["deleted"], result["writes"]) == (["stale"], 0)
    assert [d["after_header"] for d in result["diff"]] == ["grafana: dashboard stale (deleted)"]
    assert "stale" in fake.dashboards

    result = run(dash_mod, path=str(dash_dir), folder_uid="ops", prune=True)
    assert (result["changed"], result["deleted"], result["unchanged"]) == (True, ["stale"], ["api", "db", "queue"])
    assert result["writes"] == 1
    assert set(fake.dashboards) == {"api", "db", "queue", "elsewhere", "root"}


def test_prune_needs_a_folder_and_state_present(fake, run, dash_dir):
    result = run(dash_mod, path=str(dash_dir), prune=True)
    assert result["failed"] and "prune" in result["msg"] and "folder" in result["msg"]
    result = run(dash_mod, path=str(dash_dir), folder="Ops", prune=True, state="absent")
    assert result["failed"] and result["msg"] == "prune: true only applies to state: present"
    assert fake.requests == []


def test_state_absent_deletes_by_uid_in_any_folder(fake, run, dash_dir):
    fake.add_folder("ops", "Ops")
    fake.put_dashboard(dashboard("api"), "ops")
    fake.put_dashboard(dashboard("db"), "")
    gone = [{"uid": "api"}, {"uid": "db"}, {"uid": "never-there"}]
    result = run(dash_mod, check_mode=True, diff=True, dashboards=gone, state="absent")
    assert (result["changed"], result["deleted"], result["unchanged"]) == (True, ["api", "db"], ["never-there"])
    assert result["writes"] == 0 and set(fake.dashboards) == {"api", "db"}
    assert json.loads(result["diff"][0]["before"])["dashboard"]["uid"] == "api" and result["diff"][0]["after"] == ""

    result = run(dash_mod, dashboards=gone, state="absent")
    assert (result["changed"], result["deleted"], result["writes"]) == (True, ["api", "db"], 2)
    assert fake.dashboards == {}
    result = run(dash_mod, path=str(dash_dir), state="absent")
    assert (result["changed"], result["deleted"], result["writes"]) == (False, [], 0)


def test_folder_is_found_by_title_created_or_renamed(fake, run, dash_dir):
    fake.add_folder("abc", "Ops")
    result = run(dash_mod, path=str(dash_dir), folder="Ops")
    assert result["folder"] == {"uid": "abc", "title": "Ops", "action": "unchanged"}
    assert {d["folderUid"] for d in fake.dashboards.values()} == {"abc"}
    assert not any(p == "/api/folders" and m == "POST" for m, p, b in fake.writes)

    result = run(dash_mod, path=str(dash_dir), folder="Operations", folder_uid="abc")
    assert result["folder"] == {"uid": "abc", "title": "Operations", "action": "renamed"}
    assert (result["changed"], result["writes"], result["unchanged"]) == (True, 1, ["api", "db", "queue"])
    assert fake.folders["abc"]["title"] == "Operations"

    result = run(dash_mod, path=str(dash_dir), folder_uid="missing")
    assert result["failed"] and "folder missing does not exist" in result["msg"] and "set folder" in result["msg"]


def test_dashboards_move_into_the_managed_folder(fake, run, dash_dir):
    for uid in ("api", "db", "queue"):
        fake.put_dashboard(dashboard(uid), "")
    result = run(dash_mod, check_mode=True, diff=True, path=str(dash_dir), folder="Ops")
    assert result["updated"] == ["api", "db", "queue"]
    assert json.loads(result["diff"][0]["before"])["folderUid"] == ""
    assert json.loads(result["diff"][0]["after"])["folderUid"] == "(new folder 'Ops')"
    result = run(dash_mod, path=str(dash_dir), folder="Ops")
    folder_uid = result["folder"]["uid"]
    assert folder_uid and {d["folderUid"] for d in fake.dashboards.values()} == {folder_uid}
    assert all(d["version"] == 2 for d in fake.dashboards.values())


def test_export_wrapper_and_inline_dashboards_are_accepted(fake, run):
    exported = json.loads((FIXTURES / "grafana_mod_export.json").read_text())
    result = run(dash_mod, path=str(FIXTURES / "grafana_mod_export.json"), folder="Ops")
    assert result["created"] == ["node-overview-export"]
    stored = fake.model("node-overview-export")
    assert stored["title"] == "Node overview (export)" and "meta" not in stored
    # The same model inline (wrapped, and bare) is unchanged.
    result = run(dash_mod, dashboards=[exported], folder="Ops")
    assert (result["changed"], result["unchanged"]) == (False, ["node-overview-export"])
    result = run(dash_mod, dashboards=[exported["dashboard"]], folder="Ops")
    assert (result["changed"], result["writes"]) == (False, 0)


def test_malformed_json_fails_naming_file_line_and_column_before_any_request(fake, run, dash_dir):
    (dash_dir / "broken.json").write_text('{\n  "uid": "broken",\n  "title": "Broken"\n  "panels": []\n}\n')
    result = run(dash_mod, path=str(dash_dir), folder="Ops")
    assert result["failed"] and result["changed"] is False and result["writes"] == 0
    assert f"{dash_dir / 'broken.json'}: invalid JSON at line 4, column 3: Expecting ',' delimiter" in result["msg"]
    assert "nothing was written" in result["msg"]
    assert fake.requests == []  # not even a read


def test_every_problem_of_every_source_is_reported(fake, run, tmp_path):
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / "a.json").write_text(json.dumps({"title": "No uid"}))
    (directory / "b.json").write_text(json.dumps({"uid": "b"}))
    (directory / "c.json").write_text(json.dumps(["not", "a", "dashboard"]))
    (directory / "d.json").write_text(json.dumps({"uid": "bad uid!", "title": "D"}))
    (directory / "e.json").write_text(json.dumps({"dashboard": {"uid": "e", "title": "E"}, "meta": {}}))
    (directory / "notes.txt").write_text("ignored")
    result = run(dash_mod, path=str(directory))
    assert result["failed"] and result["msg"].startswith("4 problems in the dashboard sources, nothing was written")
    assert f"{directory / 'a.json'}: missing uid" in result["msg"]
    assert f"{directory / 'b.json'}: missing title" in result["msg"]
    assert f"{directory / 'c.json'}: expected a JSON object" in result["msg"]
    assert f"{directory / 'd.json'}: invalid uid 'bad uid!'" in result["msg"]
    assert "e.json" not in result["msg"]
    assert fake.requests == []


def test_duplicate_uid_or_title_across_files_fails_before_any_request(fake, run, tmp_path):
    write_dashboards(tmp_path / "d", [dashboard("one"), dashboard("two", title="Same"), dashboard("three")])
    (tmp_path / "d" / "copy.json").write_text(json.dumps(dashboard("one", title="Other title")))
    (tmp_path / "d" / "four.json").write_text(json.dumps(dashboard("four", title="same")))
    result = run(dash_mod, path=str(tmp_path / "d"), folder="Ops")
    assert result["failed"]
    assert f"duplicate uid 'one' in {tmp_path / 'd' / 'copy.json'}, {tmp_path / 'd' / 'one.json'}" in result["msg"]
    assert "title 'same' is used by" in result["msg"] and "Grafana needs unique titles" in result["msg"]
    assert fake.requests == []


def test_empty_or_missing_sources_fail(fake, run, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run(dash_mod, path=str(tmp_path / "empty"), folder="Ops", prune=True)
    assert result["failed"] and "holds no *.json file" in result["msg"]
    result = run(dash_mod, path=str(tmp_path / "nope"))
    assert result["failed"] and "no such file or directory" in result["msg"]
    result = run(dash_mod, dashboards=[])
    assert result["failed"] and "dashboards is empty" in result["msg"]
    assert fake.requests == []


def test_title_used_by_another_dashboard_of_the_folder_fails_before_writing(fake, run, dash_dir):
    fake.add_folder("ops", "Ops")
    fake.put_dashboard(dashboard("hand-made", title="Dashboard api"), "ops")
    result = run(dash_mod, path=str(dash_dir), folder_uid="ops")
    assert result["failed"] and result["writes"] == 0 and fake.writes == []
    assert "the title 'Dashboard api' of dashboard api is already used by dashboard hand-made" in result["msg"]
    # With prune the other one is deleted first, then the title is free.
    result = run(dash_mod, path=str(dash_dir), folder_uid="ops", prune=True)
    assert (result["created"], result["deleted"]) == (["api", "db", "queue"], ["hand-made"])
    assert fake.writes[0][:2] == ("DELETE", "/api/dashboards/uid/hand-made")


def test_provisioned_dashboard_that_must_change_fails_before_writing(fake, run, dash_dir):
    fake.put_dashboard(dashboard("db", title="Old"), "", provisioned=True)
    result = run(dash_mod, path=str(dash_dir))
    assert result["failed"] and fake.writes == []
    assert "dashboard db is provisioned from a file in Grafana (dash.json)" in result["msg"]


def test_412_version_conflict_is_explained(fake, run, dash_dir):
    run(dash_mod, path=str(dash_dir), folder="Ops")
    write_dashboards(dash_dir, [dashboard("db", refresh="5m")])

    def hand_edit(uid):
        if uid == "db":
            fake.after_get = None
            fake.put_dashboard(dict(fake.model("db"), description="edited by hand"), fake.dashboards["db"]["folderUid"])

    fake.after_get = hand_edit
    result = run(dash_mod, path=str(dash_dir), folder="Ops", overwrite=False)
    assert result["failed"] and result["status"] == 412
    assert result["msg"].startswith(
        f"{dash_dir / 'db.json'}: dashboard db was changed in Grafana since it was read (version 1); re-run, or set"
        " overwrite: true to replace it"
    )
    assert fake.model("db")["description"] == "edited by hand"


def test_a_failing_write_reports_what_was_written_before(fake, run, dash_dir):
    fake.fail_save_after = 1
    result = run(dash_mod, path=str(dash_dir), folder="Ops", folder_uid="ops")
    assert result["failed"] and result["changed"] is True and result["status"] == 500
    assert result["msg"].startswith(
        f"{dash_dir / 'db.json'}: dashboard 'db' (title 'Dashboard db'): POST {GRAFANA}/api/dashboards/db returned 500:"
        " database is locked"
    )
    assert "Written before the failure (3 write request(s)): created: ['api']" in result["msg"]
    assert result["done"] == {"created": ["api"], "updated": [], "deleted": []}


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        (
            {"url_username": "admin", "url_password": "wrong"},
            f"Grafana at {GRAFANA} rejected user admin's password (GET {FOLDERS} returned 401:"
            " Invalid username or password): check url_username and url_password",
        ),
        (
            {"url_username": None, "url_password": None, "token": "glsa_revoked"},
            f"Grafana at {GRAFANA} rejected the service-account token (GET {FOLDERS} returned 401:"
            " Invalid API key): check token",
        ),
        (
            {"url_username": None, "url_password": None},
            f"Grafana at {GRAFANA} requires authentication (GET {FOLDERS} returned 401:"
            " Unauthorized): set token, or url_username and url_password",
        ),
    ],
)
def test_401_names_the_credential_that_failed(fake, run, dash_dir, credentials, message):
    result = run(dash_mod, path=str(dash_dir), folder="Ops", **credentials)
    assert result["failed"] and result["msg"] == message and result["status"] == 401
    result = run(ds_mod, uid="prom", name="Prometheus", type="prometheus", **credentials)
    assert result["failed"] and result["msg"].startswith(message.split(" (")[0])


def test_token_is_sent_as_bearer(fake, run, dash_dir):
    result = run(dash_mod, path=str(dash_dir), url_username=None, url_password=None, token=TOKEN)
    assert result["created"] == ["api", "db", "queue"]


def test_unreachable_grafana(fake, run, dash_dir):
    fake.down = True
    result = run(dash_mod, path=str(dash_dir), folder="Ops", timeout=3)
    assert result["failed"] and result["writes"] == 0
    assert result["msg"].startswith(f"Grafana at {GRAFANA} is unreachable: [Errno 111] Connection refused")
    assert f"(GET {FOLDERS})" in result["msg"]
    fake.down = False
    result = run(dash_mod, path=str(dash_dir), url="http://nowhere:3000/")
    assert result["msg"].startswith(
        "Grafana at http://nowhere:3000 is unreachable: [Errno -2] Name or service not known"
    )


def test_documented_argument_combinations(fake, run, dash_dir):
    result = run(dash_mod, path=str(dash_dir), dashboards=[dashboard("x")])
    assert result["failed"] and "mutually exclusive" in result["msg"]
    result = run(dash_mod, path=str(dash_dir), token=TOKEN)
    assert result["failed"] and "mutually exclusive" in result["msg"]
    result = run(dash_mod, folder="Ops")
    assert result["failed"] and "one of the following is required: path, dashboards" in result["msg"]


# ======================================================================= client
def test_client_errors(monkeypatch):
    client = client_mod.GrafanaClient(GRAFANA, token=TOKEN, timeout=3)

    def answer(code, body):
        def fake_open_url(url, **kwargs):
            raise HTTPError(url, code, "x", {}, io.BytesIO(body))

        monkeypatch.setattr(http_mod, "open_url", fake_open_url)

    answer(403, json.dumps({"message": "You'll need additional permissions", "title": "Access denied"}).encode())
    with pytest.raises(client_mod.GrafanaError) as info:
        client.create_folder("Ops")
    assert info.value.msg.startswith(
        f"Grafana at {GRAFANA} denied the service-account token the permission for this request (POST"
        f" {GRAFANA}/api/folders returned 403: You'll need additional permissions)"
    )
    answer(404, b"404 page not found\n")
    with pytest.raises(client_mod.GrafanaError, match=r"returned 404: 404 page not found \(not found in Grafana at"):
        client.list_folders()
    assert client.get_dashboard("gone") is None
    answer(500, b"")
    with pytest.raises(client_mod.GrafanaError, match=r"^DELETE http://grafana:3000/api/dashboards/uid/x returned 500"):
        client.delete_dashboard("x")
    assert client.writes == 2

    def timing_out(url, **kwargs):
        raise URLError(TimeoutError("timed out"))

    monkeypatch.setattr(http_mod, "open_url", timing_out)
    with pytest.raises(
        client_mod.GrafanaError, match=r"^Grafana at http://grafana:3000 is unreachable: timed out after 3 s"
    ):
        client.health()

    monkeypatch.setattr(http_mod, "open_url", lambda url, **kwargs: FakeResponse(b"<html>login</html>"))
    with pytest.raises(client_mod.GrafanaError, match=r"not JSON: <html>login</html> \(is http://grafana:3000 the URL"):
        client.health()


def test_client_ensure_folder_and_ca_path(fake):
    client = client_mod.GrafanaClient(GRAFANA, token=TOKEN)
    folder, action = client.ensure_folder("Ops", uid="ops")
    assert (folder["uid"], folder["title"], action) == ("ops", "Ops", "created")
    assert client.ensure_folder("Ops", uid="ops")[1] is None
    assert client.ensure_folder("Ops")[0]["uid"] == "ops"  # found by title
    folder, action = client.ensure_folder("Operations", uid="ops")
    assert (folder["title"], action, fake.folders["ops"]["version"]) == ("Operations", "renamed", 2)
    assert client.writes == 2
    with pytest.raises(client_mod.GrafanaError, match=r"folder nope does not exist in Grafana at .* and has no title"):
        client.ensure_folder(None, uid="nope")
    broken = client_mod.GrafanaClient(GRAFANA, token=TOKEN, ca_path="/nonexistent/ca.pem")
    with pytest.raises(client_mod.GrafanaError, match=r"^cannot use ca_path /nonexistent/ca.pem: \[Errno 2\]"):
        broken.health()


def test_client_sends_org_header_and_pages_through_search(monkeypatch):
    seen = []

    def fake_open_url(url, headers=None, **kwargs):
        seen.append((url, headers))
        page = parse_qs(urlsplit(url).query)["page"][0]
        hits = [{"uid": f"d{i}", "type": "dash-db"} for i in range(5000 if page == "1" else 3)]
        return FakeResponse(json.dumps(hits).encode())

    monkeypatch.setattr(http_mod, "open_url", fake_open_url)
    client = client_mod.GrafanaClient(GRAFANA + "/grafana/", username="admin", password="x", org_id=2)
    assert len(client.search_dashboards(folder_uid="ops")) == 5003
    assert [parse_qs(urlsplit(u).query)["page"] for u, h in seen] == [["1"], ["2"]]
    assert seen[0][0].startswith(GRAFANA + "/grafana/api/search?type=dash-db&limit=5000&folderUIDs=ops")
    assert seen[0][1]["X-Grafana-Org-Id"] == "2" and "Authorization" not in seen[0][1]
    with pytest.raises(ValueError, match="either a token or a username"):
        client_mod.GrafanaClient(GRAFANA, username="a", password="b", token="c")


# ======================================================================= data sources
LOKI = {
    "uid": "loki",
    "name": "Loki",
    "type": "loki",
    "ds_url": "http://loki:3100",
    "json_data": {"httpHeaderName1": "X-Scope-OrgID", "maxLines": 1000.0},
    "secure_json_data": {"httpHeaderValue1": "tenant-secret-1"},
    "basic_auth": True,
    "basic_auth_user": "grafana",
    "basic_auth_password": "basic-secret-1",
}
SECRETS = ("tenant-secret-1", "basic-secret-1", "tenant-secret-2", "basic-secret-2")


def expected_hash(uid, secure):
    text = uid + "\n" + json.dumps(secure, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def assert_no_secret(result):
    text = json.dumps(result)
    for secret in SECRETS:
        assert secret not in text, f"secret {secret} leaked into the result"


def test_datasource_create_then_unchanged_with_zero_writes(fake, run):
    result = run(ds_mod, **LOKI)
    assert "failed" not in result, result["msg"]
    assert (result["changed"], result["writes"]) == (True, 1)
    assert result["secure_fields_sent"] == ["basicAuthPassword", "httpHeaderValue1"]
    stored = fake.datasources["loki"]
    assert stored["secure"] == {"httpHeaderValue1": "tenant-secret-1", "basicAuthPassword": "basic-secret-1"}
    secure = {"basicAuthPassword": "basic-secret-1", "httpHeaderValue1": "tenant-secret-1"}
    assert stored["jsonData"] == {
        "httpHeaderName1": "X-Scope-OrgID",
        "maxLines": 1000,
        "ansibleSecureHash": expected_hash("loki", secure),
    }
    ds = result["datasource"]
    assert ds["secureJsonFields"] == {"basicAuthPassword": True, "httpHeaderValue1": True}
    assert "password" not in ds and "basicAuthPassword" not in ds and "secureJsonData" not in ds
    assert_no_secret(result)

    writes = len(fake.writes)
    result = run(ds_mod, diff=True, **LOKI)
    assert (result["changed"], result["writes"], result["secure_fields_sent"]) == (False, 0, [])
    assert len(fake.writes) == writes
    assert result["diff"]["before"] == result["diff"]["after"]
    assert_no_secret(result)


def test_datasource_secret_change_is_a_change_and_is_sent(fake, run):
    run(ds_mod, **LOKI)
    changed = dict(LOKI, secure_json_data={"httpHeaderValue1": "tenant-secret-2"})
    result = run(ds_mod, diff=True, **changed)
    assert (result["changed"], result["writes"]) == (True, 1)
    assert result["secure_fields_sent"] == ["basicAuthPassword", "httpHeaderValue1"]
    assert fake.datasources["loki"]["secure"]["httpHeaderValue1"] == "tenant-secret-2"
    before, after = json.loads(result["diff"]["before"]), json.loads(result["diff"]["after"])
    assert before["secureJsonData"] == {"basicAuthPassword": "(hidden)", "httpHeaderValue1": "(hidden)"}
    assert after["secureJsonData"] == {
        "basicAuthPassword": "(hidden, replaced)",
        "httpHeaderValue1": "(hidden, replaced)",
    }
    assert before["jsonData"]["ansibleSecureHash"] != after["jsonData"]["ansibleSecureHash"]
    assert_no_secret(result)
    assert run(ds_mod, **changed)["changed"] is False


def test_datasource_plain_change_does_not_resend_secrets(fake, run):
    run(ds_mod, **LOKI)
    fake.datasources["loki"].update(user="kept-user", database="kept-db")
    result = run(ds_mod, **dict(LOKI, ds_url="http://loki-2:3100", is_default=True))
    assert (result["changed"], result["secure_fields_sent"]) == (True, [])
    method, path, body = fake.writes[-1]
    assert (method, path) == ("PUT", "/api/datasources/uid/loki")
    assert "secureJsonData" not in body and body["version"] == 1
    assert (body["user"], body["database"]) == ("kept-user", "kept-db")
    stored = fake.datasources["loki"]
    assert (stored["url"], stored["isDefault"], stored["user"]) == ("http://loki-2:3100", True, "kept-user")
    assert stored["secure"]["httpHeaderValue1"] == "tenant-secret-1"


def test_datasource_secret_missing_in_grafana_is_sent_again(fake, run):
    run(ds_mod, **LOKI)
    del fake.datasources["loki"]["secure"]["httpHeaderValue1"]  # reset in the UI
    result = run(ds_mod, **LOKI)
    assert (result["changed"], result["secure_fields_sent"]) == (True, ["basicAuthPassword", "httpHeaderValue1"])
    assert fake.datasources["loki"]["secure"]["httpHeaderValue1"] == "tenant-secret-1"


def test_datasource_hand_edit_of_plain_field_is_set_back(fake, run):
    run(ds_mod, **LOKI)
    fake.datasources["loki"]["jsonData"]["timeout"] = 30
    result = run(ds_mod, check_mode=True, diff=True, **LOKI)
    assert (result["changed"], result["writes"], result["secure_fields_sent"]) == (True, 0, [])
    assert json.loads(result["diff"]["before"])["jsonData"]["timeout"] == 30
    assert "timeout" not in json.loads(result["diff"]["after"])["jsonData"]
    assert fake.datasources["loki"]["jsonData"]["timeout"] == 30


def test_datasource_check_mode_creates_nothing(fake, run):
    result = run(ds_mod, check_mode=True, diff=True, **LOKI)
    assert (result["changed"], result["writes"]) == (True, 0)
    assert fake.writes == [] and fake.datasources == {}
    assert result["datasource"]["secureJsonFields"] == {"basicAuthPassword": True, "httpHeaderValue1": True}
    assert result["diff"]["before"] == "" and result["diff"]["before_header"].endswith("(absent)")
    assert json.loads(result["diff"]["after"])["url"] == "http://loki:3100"
    assert result["msg"] == "data source loki would be created"
    assert_no_secret(result)


def test_datasource_absent(fake, run):
    run(ds_mod, **LOKI)
    result = run(ds_mod, check_mode=True, uid="loki", state="absent")
    assert (result["changed"], result["writes"]) == (True, 0) and "loki" in fake.datasources
    result = run(ds_mod, diff=True, uid="loki", state="absent")
    assert (result["changed"], result["writes"], result["datasource"]) == (True, 1, None)
    assert result["diff"]["after"] == "" and fake.datasources == {}
    assert_no_secret(result)
    result = run(ds_mod, uid="loki", state="absent")
    assert (result["changed"], result["writes"]) == (False, 0)


def test_datasource_without_secrets_has_no_hash(fake, run):
    result = run(ds_mod, uid="prom", name="Prometheus", type="prometheus", ds_url="http://prom:9090")
    assert result["changed"] and fake.datasources["prom"]["jsonData"] == {}
    assert result["secure_fields_sent"] == []
    assert run(ds_mod, uid="prom", name="Prometheus", type="prometheus", ds_url="http://prom:9090")["changed"] is False


def test_datasource_refusals(fake, run):
    run(ds_mod, uid="prom", name="Prometheus", type="prometheus")
    result = run(ds_mod, uid="other", name="Prometheus", type="prometheus")
    assert result["failed"] and fake.writes[1:] == []
    assert "already has a data source named 'Prometheus' with uid 'prom'" in result["msg"]
    result = run(ds_mod, uid="prom", name="Prometheus", type="prometheus", json_data={"ansibleSecureHash": "x"})
    assert result["failed"] and "json_data.ansibleSecureHash is reserved" in result["msg"]
    result = run(ds_mod, uid="prom", name="Prometheus", type="prometheus", basic_auth_password="a",
                 secure_json_data={"basicAuthPassword": "b"})  # fmt: skip
    assert result["failed"] and "either as basic_auth_password or in secure_json_data" in result["msg"]
    fake.datasources["prom"]["readOnly"] = True
    result = run(ds_mod, uid="prom", name="Prometheus", type="prometheus", ds_url="http://x")
    assert result["failed"] and "data source prom is read-only in Grafana" in result["msg"]
    assert run(ds_mod, uid="prom", name="Prometheus", type="prometheus")["changed"] is False
    result = run(ds_mod, uid="bad uid", name="X", type="loki")
    assert result["failed"] and "invalid uid 'bad uid'" in result["msg"]
    result = run(ds_mod, uid="x", state="present")
    assert result["failed"] and "state is present but all of the following are missing: name, type" in result["msg"]


# ======================================================================= documentation
@pytest.mark.parametrize(
    ("module", "name", "no_log"),
    [
        (dash_mod, "grafana_dashboards", {"url_password", "token"}),
        (ds_mod, "obs_grafana_datasource", {"url_password", "token", "secure_json_data", "basic_auth_password"}),
    ],
)
def test_documentation_matches_the_argument_spec(module, name, no_log):
    doc, examples, returned = module_docs(name)
    assert doc["module"] == name
    compare_options(doc["options"], module.ARGUMENT_SPEC)
    assert {k for k, spec in module.ARGUMENT_SPEC.items() if spec.get("no_log")} == no_log
    assert isinstance(examples, list) and all("hosts" not in task for task in examples), "EXAMPLES must be tasks"
    used = [task[name] for task in examples if name in task]
    assert len(used) >= 3
    for args in used:
        assert set(args) <= set(module.ARGUMENT_SPEC), set(args) - set(module.ARGUMENT_SPEC)
    assert {"writes", "msg"} <= set(returned)


# ======================================================================= the stand-in
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Standin:
    """The Grafana stand-in on a free loopback port, with its own state directory."""

    password = "standin-admin-pw"

    def __init__(self, base: Path):
        self.base = base
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ini = base / "grafana.ini"
        for sub in ("data", "provisioning", "plugins", "log"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        self.ini.write_text(
            f"[server]\nhttp_addr = 127.0.0.1\nhttp_port = {self.port}\n"
            f"[security]\nadmin_user = admin\nadmin_password = {self.password}\n"
            f"[paths]\ndata = {base / 'data'}\nprovisioning = {base / 'provisioning'}\n"
            f"plugins = {base / 'plugins'}\nlogs = {base / 'log'}\n"
        )
        self.proc = None

    def start(self):
        log = (self.base / "server.log").open("a")
        cmd = [sys.executable, str(STANDIN), "server", f"--config={self.ini}", f"--homepath={STANDIN.parent}"]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"stand-in exited: {(self.base / 'server.log').read_text()}")
            try:
                if self.api("GET", "/api/health", auth=False)["database"] == "ok":
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("stand-in did not become healthy")

    def stop(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)
            self.proc = None

    def api(self, method, path, body=None, auth=True):
        import base64  # noqa: PLC0415
        import urllib.request  # noqa: PLC0415

        request = urllib.request.Request(self.url + path, method=method)
        if body is not None:
            request.data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
        if auth:
            creds = base64.b64encode(f"admin:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {creds}")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def stats(self):
        return self.api("GET", "/api/standin/stats")

    def reset_stats(self):
        self.api("DELETE", "/api/standin/stats")


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    if not STANDIN.is_file():
        pytest.skip(f"the Grafana stand-in {STANDIN.relative_to(REPO)} is not there (written separately)")
    server = Standin(tmp_path_factory.mktemp("grafana-standin")).start()
    yield server
    server.stop()


def generated_dashboards(count, prefix="gen"):
    return [
        dashboard(
            f"{prefix}-{i:03d}",
            title=f"Generated {i:03d}",
            panels=[
                {"id": p, "type": "stat", "title": f"Panel {p}", "gridPos": {"h": 4, "w": 6, "x": 6 * (p % 4), "y": p}}
                for p in range(1, 4)
            ],
            refresh="1m",
        )
        for i in range(count)
    ]


def test_standin_200_dashboards_then_zero_writes_then_one_hand_edit(standin, run, tmp_path):
    directory = write_dashboards(tmp_path / "many", generated_dashboards(200))
    args = {"url": standin.url, "url_password": standin.password, "path": str(directory), "folder": "Many"}
    standin.reset_stats()
    first = run(dash_mod, **args)
    assert "failed" not in first, first["msg"]
    assert len(first["created"]) == 200 and first["writes"] == 201  # the folder and 200 dashboards
    assert standin.stats()["writes"] == 201

    standin.reset_stats()
    second = run(dash_mod, **args)
    assert (second["changed"], len(second["unchanged"]), second["writes"]) == (False, 200, 0)
    assert standin.stats()["writes"] == 0

    # A hand edit through the API: check mode + diff report exactly that dashboard.
    current = standin.api("GET", "/api/dashboards/uid/gen-123")
    edited = dict(current["dashboard"], title="Edited by hand", refresh="5s")
    saved = standin.api("POST", "/api/dashboards/db", {"dashboard": edited, "folderUid": current["meta"]["folderUid"]})
    assert saved["version"] == 2
    standin.reset_stats()
    plan = run(dash_mod, check_mode=True, diff=True, **args)
    assert (plan["changed"], plan["updated"], plan["created"], plan["deleted"]) == (True, ["gen-123"], [], [])
    assert len(plan["unchanged"]) == 199 and plan["writes"] == 0 and standin.stats()["writes"] == 0
    [diff] = plan["diff"]
    before, after = json.loads(diff["before"])["dashboard"], json.loads(diff["after"])["dashboard"]
    assert (before["title"], before["refresh"]) == ("Edited by hand", "5s")
    assert (after["title"], after["refresh"]) == ("Generated 123", "1m")
    assert diff["before_header"] == "grafana: dashboard gen-123 (version 2)"

    fixed = run(dash_mod, **args)
    assert (fixed["updated"], fixed["writes"]) == (["gen-123"], 1)
    assert standin.api("GET", "/api/dashboards/uid/gen-123")["dashboard"]["title"] == "Generated 123"


def test_standin_prune_and_version_conflict(standin, run, tmp_path):
    directory = write_dashboards(tmp_path / "p", generated_dashboards(3, prefix="pr"))
    args = {"url": standin.url, "url_password": standin.password, "path": str(directory), "folder_uid": "prune-me"}
    assert run(dash_mod, folder="Prune", **args)["created"] == ["pr-000", "pr-001", "pr-002"]
    (directory / "pr-001.json").unlink()
    result = run(dash_mod, prune=True, **args)
    assert (result["deleted"], result["writes"]) == (["pr-001"], 1)
    hits = standin.api("GET", "/api/search?type=dash-db&folderUIDs=prune-me")
    assert sorted(h["uid"] for h in hits) == ["pr-000", "pr-002"]


def test_standin_datasource_with_token_and_secret_hash(standin, run):
    account = standin.api("POST", "/api/serviceaccounts", {"name": "ansible-modules", "role": "Admin"})
    token = standin.api("POST", f"/api/serviceaccounts/{account['id']}/tokens", {"name": "t"})["key"]
    args = dict(LOKI, url=standin.url, url_username=None, url_password=None, token=token, uid="standin-loki")
    standin.reset_stats()
    result = run(ds_mod, **args)
    assert "failed" not in result, result["msg"]
    assert (result["changed"], result["writes"], standin.stats()["writes"]) == (True, 1, 1)
    hashes = standin.api("GET", "/api/standin/datasources/standin-loki/secure-json-hashes")
    assert hashes == {
        "basicAuthPassword": "sha256:" + hashlib.sha256(b"basic-secret-1").hexdigest(),
        "httpHeaderValue1": "sha256:" + hashlib.sha256(b"tenant-secret-1").hexdigest(),
    }
    standin.reset_stats()
    again = run(ds_mod, **args)
    assert (again["changed"], again["writes"], standin.stats()["writes"]) == (False, 0, 0)
    assert_no_secret(again)
    rotated = run(ds_mod, **dict(args, basic_auth_password="basic-secret-2"))
    assert rotated["changed"] is True
    hashes = standin.api("GET", "/api/standin/datasources/standin-loki/secure-json-hashes")
    assert hashes["basicAuthPassword"] == "sha256:" + hashlib.sha256(b"basic-secret-2").hexdigest()
    bad = run(ds_mod, **dict(args, token="glsa_not_a_token"))
    assert bad["failed"] and bad["msg"].startswith(f"Grafana at {standin.url} rejected the service-account token")


def test_standin_through_ansible_playbook(standin, tmp_path):
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.skip(f"ansible-playbook not found at {ANSIBLE_PLAYBOOK}")
    directory = write_dashboards(tmp_path / "pb", generated_dashboards(5, prefix="pb"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
        ANSIBLE_NOCOLOR="1",
    )
    extra = json.dumps({"gs_url": standin.url, "gs_password": standin.password, "dash_dir": str(directory)})
    reports = []
    for extra_args in ([], [], ["--check", "--diff"]):
        proc = subprocess.run(
            [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", str(PLAYBOOK), "-e", extra, *extra_args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "playbook-tenant-secret" not in proc.stdout
        tasks = json.loads(proc.stdout)["plays"][0]["tasks"]
        reports.append(tasks[-1]["hosts"]["localhost"]["msg"])
    first, second, check = reports
    assert first["dashboards_created"] == ["pb-000", "pb-001", "pb-002", "pb-003", "pb-004"]
    assert (first["dashboards_writes"], first["datasource_changed"]) == (6, True)
    assert (
        second
        == check
        == {
            "dashboards_changed": False,
            "dashboards_created": [],
            "dashboards_writes": 0,
            "datasource_changed": False,
            "datasource_writes": 0,
        }
    )


# ----------------------------------------------------------------------- the stand-in: numbers and refusals
# Grafana keeps dashboards and jsonData as Go map[string]any, every number a float64 (the stand-in does the
# same): 1.0, 1e2 and 0.50 come back as 1, 100 and 0.5, and 9007199254740993 as 9007199254740992.
NUMBERS_DASHBOARD = (
    '{"uid": "numbers", "title": "Numbers", "schemaVersion": 39.0, "graphTooltip": 1.0, "refresh": "1m",'
    ' "panels": [{"id": 1.0, "type": "stat", "title": "Numbers", "gridPos": {"h": 8.0, "w": 1.2e1, "x": 0, "y": 0},'
    ' "fieldConfig": {"defaults": {"min": 0.50, "max": 1e2, "decimals": 2.0, "custom": {"big": 9007199254740993,'
    ' "huge": 1e21, "tiny": 1e-7, "small": 0.000015, "ten": 10.000}}}}]}'
)


def test_standin_dashboard_file_with_numbers_like_1_0_syncs_once_then_is_unchanged(standin, run, tmp_path):
    directory = tmp_path / "numbers"
    directory.mkdir()
    (directory / "numbers.json").write_text(NUMBERS_DASHBOARD)
    args = {"url": standin.url, "url_password": standin.password, "path": str(directory), "folder": "Numbers"}
    standin.reset_stats()
    first = run(dash_mod, **args)
    assert (first["changed"], first["created"], first["writes"]) == (True, ["numbers"], 2), first["msg"]

    # What Grafana gives back is not what the file says: a plain comparison would see a change every run.
    stored = standin.api("GET", "/api/dashboards/uid/numbers")["dashboard"]
    sent = json.loads(NUMBERS_DASHBOARD)
    custom = stored["panels"][0]["fieldConfig"]["defaults"]["custom"]
    assert custom["big"] == 2**53 != sent["panels"][0]["fieldConfig"]["defaults"]["custom"]["big"]
    assert (type(stored["schemaVersion"]), type(sent["schemaVersion"])) == (int, float)

    standin.reset_stats()
    second = run(dash_mod, **args)
    assert (second["changed"], second["unchanged"], second["writes"]) == (False, ["numbers"], 0)
    assert standin.stats()["writes"] == 0
    plan = run(dash_mod, check_mode=True, diff=True, **args)
    assert (plan["changed"], plan["diff"]) == (False, [])


def test_standin_datasource_json_data_numbers_are_compared_as_grafana_stores_them(standin, run):
    args = {
        "url": standin.url,
        "url_password": standin.password,
        "uid": "numbers-ds",
        "name": "Numbers DS",
        "type": "prometheus",
        "ds_url": "http://prom:9090",
        "json_data": {"timeout": 30.0, "big": 9007199254740993, "ratio": 0.50, "httpMethod": "POST"},
    }
    first = run(ds_mod, **args)
    assert first["changed"] is True, first["msg"]
    assert standin.api("GET", "/api/datasources/uid/numbers-ds")["jsonData"]["big"] == 2**53
    standin.reset_stats()
    second = run(ds_mod, **args)
    assert (second["changed"], second["writes"], standin.stats()["writes"]) == (False, 0, 0)


def test_standin_module_refuses_bad_dashboards_before_any_request(standin, run, tmp_path):
    directory = tmp_path / "bad"
    directory.mkdir()
    (directory / "no-title.json").write_text(json.dumps({"uid": "no-title", "panels": []}))
    (directory / "bad-uid.json").write_text(json.dumps({"uid": "bad uid!", "title": "Bad uid"}))
    (directory / "long-uid.json").write_text(json.dumps({"uid": "u" * 41, "title": "Long uid"}))
    standin.reset_stats()
    result = run(dash_mod, url=standin.url, url_password=standin.password, path=str(directory), folder="Refused")
    assert result["failed"] and result["writes"] == 0
    assert result["msg"].startswith("3 problems in the dashboard sources, nothing was written")
    assert f"{directory / 'no-title.json'}: missing title" in result["msg"]
    assert f"{directory / 'bad-uid.json'}: invalid uid 'bad uid!'" in result["msg"]
    assert f"{directory / 'long-uid.json'}: invalid uid '{'u' * 41}'" in result["msg"]
    assert standin.stats()["requests"] == 0  # refused before the first request, not only the first write

    good = write_dashboards(tmp_path / "good", [dashboard("orphan")])
    standin.reset_stats()
    result = run(dash_mod, url=standin.url, url_password=standin.password, path=str(good), folder_uid="no-such")
    assert result["failed"] and result["writes"] == 0 and standin.stats()["writes"] == 0
    assert result["msg"] == (
        f"folder no-such does not exist in Grafana at {standin.url}: set folder (its title) to create it"
    )


def test_standin_module_refuses_a_taken_datasource_name_before_writing(standin, run):
    auth = {"url": standin.url, "url_password": standin.password, "type": "loki", "ds_url": "http://loki:3100"}
    assert run(ds_mod, uid="taken-a", name="Taken", **auth)["changed"] is True
    standin.reset_stats()
    result = run(ds_mod, uid="taken-b", name="Taken", **auth)
    assert result["failed"] and result["writes"] == 0 and standin.stats()["writes"] == 0
    assert f"Grafana at {standin.url} already has a data source named 'Taken' with uid 'taken-a'" in result["msg"]


def test_standin_refusals_surface_through_the_client(standin):
    """With the modules' checks bypassed, what Grafana refuses fails naming what, the URL, status and answer."""
    client = client_mod.GrafanaClient(standin.url, username="admin", password=standin.password)
    post = f"POST {standin.url}/api/dashboards/db returned 400"
    for model, folder_uid, answer in (
        ({"uid": "client-no-title"}, "", "Dashboard title cannot be empty"),
        ({"uid": "bad uid!", "title": "Bad"}, "", "uid contains illegal characters"),
        ({"uid": "u" * 41, "title": "Long"}, "", "uid too long, max 40 characters"),
        ({"uid": "client-lost", "title": "Lost"}, "no-such-folder", "folder not found"),
    ):
        with pytest.raises(client_mod.GrafanaError) as refused:
            client.save_dashboard(model, folder_uid)
        what = f"dashboard {model['uid']!r} (title {model.get('title')!r})"
        assert (refused.value.status, str(refused.value)) == (400, f"{what}: {post}: {answer}")
    assert standin.api("GET", "/api/search?query=client-") == []

    with pytest.raises(client_mod.GrafanaError) as refused:
        client.create_folder("X", uid="general")
    assert str(refused.value) == (
        f"folder 'X' (uid 'general'): POST {standin.url}/api/folders returned 400: invalid uid for folder provided"
    )
    with pytest.raises(client_mod.GrafanaError) as refused:
        client.create_folder("General")
    assert str(refused.value).endswith("returned 400: A folder with that name already exists")

    client.create_datasource({"uid": "client-a", "name": "Client A", "type": "loki"})
    client.create_datasource({"uid": "client-b", "name": "Client B", "type": "loki"})
    for call, answer in (
        (lambda: client.create_datasource({"uid": "client-c", "name": "Client A", "type": "loki"}),
         f"data source 'client-c' (name 'Client A'): POST {standin.url}/api/datasources returned 409:"
         " data source with the same name already exists"),
        (lambda: client.update_datasource("client-b", {"uid": "client-b", "name": "Client A", "type": "loki"}),
         f"data source 'client-b' (name 'Client A'): PUT {standin.url}/api/datasources/uid/client-b returned 409:"
         " Failed to update datasource: data source with the same name already exists"),
        (lambda: client.create_datasource({"uid": "bad uid!", "name": "Client D", "type": "loki"}),
         f"data source 'bad uid!' (name 'Client D'): POST {standin.url}/api/datasources returned 400:"
         " Invalid datasource UID."),
    ):  # fmt: skip
        with pytest.raises(client_mod.GrafanaError) as refused:
            call()
        assert str(refused.value) == answer
    for uid in ("client-a", "client-b"):
        assert client.delete_datasource(uid) is True


def test_standin_refusal_while_writing_names_the_file_url_status_and_answer(standin, run, tmp_path, monkeypatch):
    """A refusal the module cannot see coming (the folder deleted between reading and writing)."""
    directory = write_dashboards(tmp_path / "race", [dashboard("race-a"), dashboard("race-b")])
    args = {"url": standin.url, "url_password": standin.password, "path": str(directory)}
    args.update(folder="Race", folder_uid="race-folder")
    assert run(dash_mod, **args)["created"] == ["race-a", "race-b"]
    write_dashboards(directory, [dashboard("race-a", title="Race A changed")])
    apply = dash_mod.DashboardSync.apply

    def folder_deleted_meanwhile(self):
        standin.api("DELETE", "/api/folders/race-folder")
        return apply(self)

    monkeypatch.setattr(dash_mod.DashboardSync, "apply", folder_deleted_meanwhile)
    result = run(dash_mod, **args)
    assert result["failed"] and result["status"] == 400
    assert result["msg"].startswith(
        f"{directory / 'race-a.json'}: dashboard 'race-a' (title 'Race A changed'):"
        f" POST {standin.url}/api/dashboards/db returned 400: folder not found\n"
    )

    check_name = ds_mod.DatasourceSync._check_name

    def name_taken_meanwhile(self, name):
        check_name(self, name)
        standin.api("POST", "/api/datasources", {"uid": "race-other", "name": name, "type": "loki"})

    monkeypatch.setattr(ds_mod.DatasourceSync, "_check_name", name_taken_meanwhile)
    result = run(ds_mod, url=standin.url, url_password=standin.password, uid="race-ds", name="Race DS", type="loki")
    assert result["failed"] and result["status"] == 409 and result["writes"] == 1
    assert result["msg"] == (
        f"data source 'race-ds' (name 'Race DS'): POST {standin.url}/api/datasources returned 409:"
        " data source with the same name already exists"
    )
    standin.api("DELETE", "/api/datasources/uid/race-other")
