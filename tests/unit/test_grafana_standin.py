"""Tests of the Grafana STAND-IN (tests/standins/grafana; not Grafana).

The stand-in replaces Grafana in tests because real Grafana cannot be
obtained on the test machines. These tests build its release archive with
package.sh, run ``bin/grafana`` out of the extracted archive (the layout the
project's installer unpacks) and check the documented Grafana behaviour the
project relies on. The last test runs the bundled community.grafana modules
against it through ansible-playbook (fidelity check).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tarfile
import tempfile
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
import requests
from conftest import dpkg_arch as arch
from conftest import free_port, load_module_from_path

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDIN_DIR = REPO_ROOT / "tests" / "standins" / "grafana"
PACKAGE_SH = STANDIN_DIR / "package.sh"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
ANSIBLE_PLAYBOOK = REPO_ROOT / ".venv" / "bin" / "ansible-playbook"
VERSION = "11.3.0"
ADMIN_PASSWORD = "s3cr#t;pw"  # '#' and ';' need Grafana's triple quotes in the ini


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> dict:
    """Build the stand-in release archive and extract it like the installer does."""
    out = tmp_path_factory.mktemp("standin-dist")
    proc = subprocess.run([str(PACKAGE_SH), VERSION, str(out)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    archive = out / f"grafana-{VERSION}.linux-{arch()}.tar.gz"
    install = tmp_path_factory.mktemp("standin-install")
    with tarfile.open(archive) as tar:
        tar.extractall(install, filter="tar")
    return {
        "archive": archive,
        "sha256": Path(str(archive) + ".sha256"),
        "plugins": out / "plugins",
        "homepath": install / f"grafana-v{VERSION}",
    }


class Standin:
    """One stand-in server with its own ini, data and provisioning directories."""

    def __init__(self, homepath: Path, base: Path, extra_ini: str = "", tls: dict | None = None) -> None:
        self.homepath = homepath
        self.base = base
        self.port = free_port()
        # tls: pki.write_pki() paths; the stand-in then serves https and clients verify its CA.
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.verify = tls["ca"] if tls else True
        # Extra command-line arguments (cfg:<section>.<key>=<value> overrides).
        self.args: list[str] = []
        self.data = base / "data"
        self.prov = base / "provisioning"
        self.dashboards = base / "dashboards"
        for path in (self.prov / "datasources", self.prov / "dashboards", self.dashboards):
            path.mkdir(parents=True, exist_ok=True)
        self.ini = base / "grafana.ini"
        self.write_ini(extra_ini)
        self.proc: subprocess.Popen | None = None
        self.log = base / "server.log"

    def write_ini(self, extra: str = "", password: str = ADMIN_PASSWORD) -> None:
        self.ini.write_text(
            f"""
[server]
http_addr = 127.0.0.1
http_port = {self.port}
root_url = {self.url}/
{self._tls_lines()}
[paths]
data = {self.data}
logs = {self.base}/log
plugins = {self.base}/plugins
provisioning = {self.prov}
[security]
admin_user = admin
admin_password = \"\"\"{password}\"\"\"
{extra}
"""
        )

    def _tls_lines(self) -> str:
        if not self.tls:
            return ""
        return f"protocol = https\ncert_file = {self.tls['cert']}\ncert_key = {self.tls['key']}"

    def command(self, *extra: str) -> list[str]:
        return [
            str(self.homepath / "bin" / "grafana"),
            "server",
            f"--config={self.ini}",
            f"--homepath={self.homepath}",
            *self.args,
            *extra,
        ]

    def start(self) -> Standin:
        self.proc = subprocess.Popen(self.command(), stdout=self.log.open("a"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"stand-in exited: {self.log.read_text()}"
            try:
                if requests.get(self.url + "/api/health", timeout=1, verify=self.verify).json()["database"] == "ok":
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise AssertionError(f"stand-in did not become healthy: {self.log.read_text()}")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=10)
        self.proc = None
        return rc

    def req(self, method: str, path: str, auth=("admin", ADMIN_PASSWORD), token: str | None = None, **kw):
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
            auth = None
        kw.setdefault("verify", self.verify)
        return requests.request(method, self.url + path, auth=auth, headers=headers, timeout=10, **kw)

    def token(self, role: str, name: str) -> str:
        sa = self.req("POST", "/api/serviceaccounts", json={"name": name, "role": role})
        assert sa.status_code == 201, sa.text
        tok = self.req("POST", f"/api/serviceaccounts/{sa.json()['id']}/tokens", json={"name": f"{name}-token"})
        assert tok.status_code == 200, tok.text
        assert set(tok.json()) == {"id", "name", "key"}
        return tok.json()["key"]


@pytest.fixture(scope="module")
def gs(package, tmp_path_factory):
    server = Standin(package["homepath"], tmp_path_factory.mktemp("gs")).start()
    yield server
    if server.proc is not None:
        assert server.stop() == 0


def dash(title: str, uid: str | None = None, **fields) -> dict:
    return {"dashboard": {"id": None, "uid": uid, "title": title, **fields}}


# --------------------------------------------------------------------------- package and CLI basics


def test_package_layout_and_sha256_file(package):
    archive, sha_file = package["archive"], package["sha256"]
    # dl.grafana.com format: the hex digest and a newline, no file name.
    assert sha_file.read_text() == hashlib.sha256(archive.read_bytes()).hexdigest() + "\n"
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
    top = f"grafana-v{VERSION}"
    assert {name.split("/")[0] for name in members} == {top}
    for name in ("bin/grafana", "bin/grafana-server", "bin/grafana-cli"):
        assert members[f"{top}/{name}"].mode == 0o755, name
    for name in ("conf/defaults.ini", "conf/sample.ini", "LICENSE", "VERSION", "README.md", "public/standin.txt"):
        assert members[f"{top}/{name}"].isfile(), name
    home = package["homepath"]
    assert (home / "bin" / "grafana").read_text().startswith("#!/usr/bin/env python3\n")
    assert (home / "VERSION").read_text().strip() == VERSION
    assert "not Grafana" in (home / "README.md").read_text()
    # Reproducible: a second build gives the same checksum.
    again = package["archive"].parent / "again"
    subprocess.run([str(PACKAGE_SH), VERSION, str(again)], capture_output=True, check=True, timeout=60)
    assert (again / archive.name).read_bytes() == archive.read_bytes()


def test_version_output(package):
    expected = f"Grafana stand-in {VERSION} (tests/standins/grafana; not Grafana)\n"
    for args in (["--version"], ["-v"], ["server", "-v"]):
        grafana = str(package["homepath"] / "bin" / "grafana")
        out = subprocess.run([grafana, *args], capture_output=True, text=True, check=False)
        assert out.returncode == 0 and out.stdout == expected, (args, out)


# --------------------------------------------------------------------------- health and authentication


def test_health_and_authentication(gs):
    health = requests.get(gs.url + "/api/health", timeout=5)
    assert health.status_code == 200
    assert health.json() == {"commit": "standin", "database": "ok", "version": VERSION}
    assert "not Grafana" in health.headers["X-Grafana-Standin"]

    missing = gs.req("GET", "/api/search", auth=None)
    assert missing.status_code == 401 and missing.json()["message"] == "Unauthorized"
    bad_password = gs.req("GET", "/api/search", auth=("admin", "wrong"))
    assert bad_password.status_code == 401
    assert bad_password.json()["message"] == "Invalid username or password"
    bad_token = gs.req("GET", "/api/search", token="glsa_notatoken_00000000")
    assert bad_token.status_code == 401 and bad_token.json()["message"] == "Invalid API key"
    assert gs.req("GET", "/api/search").status_code == 200

    # The versions the community modules read.
    assert gs.req("GET", "/api/frontend/settings").json()["buildInfo"]["version"] == VERSION
    assert gs.req("GET", "/api/user").json()["login"] == "admin"
    assert gs.req("GET", "/api/org").json() == {
        "id": 1,
        "name": "Main Org.",
        "address": {"address1": "", "address2": "", "city": "", "zipCode": "", "state": "", "country": ""},
    }
    assert gs.req("POST", "/api/user/using/1").json() == {"message": "Active organization changed"}
    assert gs.req("GET", "/api/nope").status_code == 404


# --------------------------------------------------------------------------- dashboards


def test_dashboard_versions_and_conflicts(gs):
    created = gs.req("POST", "/api/dashboards/db", json=dash("Version Test", "ver-test", tags=["a"]))
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["status"] == "success" and body["uid"] == "ver-test" and body["version"] == 1
    assert body["url"] == "/d/ver-test/version-test" and body["slug"] == "version-test"
    dash_id = body["id"]

    got = gs.req("GET", "/api/dashboards/uid/ver-test").json()
    assert got["dashboard"] == {"id": dash_id, "uid": "ver-test", "title": "Version Test", "tags": ["a"], "version": 1}
    assert got["meta"]["folderUid"] == "" and got["meta"]["folderTitle"] == "General"
    assert got["meta"]["version"] == 1 and got["meta"]["provisioned"] is False

    # Update with the current version: version increments, id is stable.
    update = dash("Version Test", "ver-test", tags=["b"], version=1)
    second = gs.req("POST", "/api/dashboards/db", json=update)
    assert second.status_code == 200 and second.json()["version"] == 2 and second.json()["id"] == dash_id

    # The same stale version again is a version mismatch (412) unless overwrite.
    stale = gs.req("POST", "/api/dashboards/db", json=update)
    assert stale.status_code == 412
    assert stale.json() == {"message": "The dashboard has been changed by someone else", "status": "version-mismatch"}
    no_version = gs.req("POST", "/api/dashboards/db", json=dash("Version Test", "ver-test"))
    assert no_version.status_code == 412 and no_version.json()["status"] == "version-mismatch"
    forced = gs.req("POST", "/api/dashboards/db", json={**update, "overwrite": True, "message": "forced"})
    assert forced.status_code == 200 and forced.json()["version"] == 3 and forced.json()["id"] == dash_id
    versions = gs.req("GET", "/api/dashboards/uid/ver-test/versions").json()
    assert [v["version"] for v in versions] == [3, 2, 1] and versions[0]["message"] == "forced"

    # Same title in the same folder with another uid: name-exists (412).
    clash = gs.req("POST", "/api/dashboards/db", json=dash("Version Test", "other-uid"))
    assert clash.status_code == 412 and clash.json()["status"] == "name-exists"

    # Bad input.
    assert gs.req("POST", "/api/dashboards/db", json={"folderUid": ""}).status_code == 400
    empty = gs.req("POST", "/api/dashboards/db", json=dash("  ", "empty-title"))
    assert empty.status_code == 400 and empty.json()["message"] == "Dashboard title cannot be empty"
    assert (
        gs.req("POST", "/api/dashboards/db", data="{not json", headers={"Content-Type": "application/json"}).status_code
        == 400
    )
    unknown_folder = gs.req("POST", "/api/dashboards/db", json={**dash("X", "x-1"), "folderUid": "nope"})
    assert unknown_folder.status_code == 400 and unknown_folder.json() == {"message": "folder not found"}
    assert gs.req("POST", "/api/dashboards/db", json=dash("Bad uid", "bad uid!")).status_code == 400
    generated = gs.req("POST", "/api/dashboards/db", json=dash("Generated uid")).json()
    assert len(generated["uid"]) == 14

    # 404 and delete.
    missing = gs.req("GET", "/api/dashboards/uid/does-not-exist")
    assert missing.status_code == 404 and missing.json() == {"message": "Dashboard not found"}
    deleted = gs.req("DELETE", "/api/dashboards/uid/ver-test")
    assert deleted.status_code == 200
    assert deleted.json()["title"] == "Version Test" and deleted.json()["id"] == dash_id
    assert "deleted" in deleted.json()["message"]
    assert gs.req("GET", "/api/dashboards/uid/ver-test").status_code == 404
    assert gs.req("DELETE", "/api/dashboards/uid/ver-test").status_code == 404


def test_folders_and_search(gs):
    created = gs.req("POST", "/api/folders", json={"uid": "team-a", "title": "Team A"})
    assert created.status_code == 200, created.text
    folder = created.json()
    assert folder["uid"] == "team-a" and folder["title"] == "Team A" and folder["version"] == 1
    assert folder["url"] == "/dashboards/f/team-a/team-a"
    assert gs.req("POST", "/api/folders", json={"uid": "team-a2", "title": "Team A"}).status_code == 409
    assert gs.req("POST", "/api/folders", json={"uid": "team-a", "title": "Other"}).status_code == 409
    assert gs.req("POST", "/api/folders", json={"title": ""}).status_code == 400
    assert {"id": folder["id"], "uid": "team-a", "title": "Team A"} in gs.req("GET", "/api/folders?limit=10").json()
    assert gs.req("GET", "/api/folders/team-a").json()["id"] == folder["id"]
    assert gs.req("GET", "/api/folders/nope").status_code == 404

    stale = gs.req("PUT", "/api/folders/team-a", json={"title": "Team A2", "version": 0})
    assert stale.status_code == 412 and stale.json()["status"] == "version-mismatch"
    renamed = gs.req("PUT", "/api/folders/team-a", json={"title": "Team A2", "version": 1})
    assert renamed.status_code == 200 and renamed.json()["version"] == 2

    for title, tags in (("Alpha board", ["x", "y"]), ("Beta board", ["y"])):
        body = {**dash(title, slugify(title), tags=tags), "folderUid": "team-a"}
        assert gs.req("POST", "/api/dashboards/db", json=body).status_code == 200
    # Same title in another folder is fine.
    assert gs.req("POST", "/api/dashboards/db", json=dash("Alpha board", "alpha-root")).status_code == 200

    hits = gs.req("GET", "/api/search", params={"folderUIDs": "team-a", "type": "dash-db"}).json()
    assert [h["title"] for h in hits] == ["Alpha board", "Beta board"]
    assert hits[0]["folderUid"] == "team-a" and hits[0]["folderTitle"] == "Team A2" and hits[0]["type"] == "dash-db"
    assert set(hits[0]) >= {"id", "uid", "title", "url", "tags", "folderUid", "folderTitle", "type"}
    assert [h["uid"] for h in gs.req("GET", "/api/search", params={"tag": ["x", "y"]}).json()] == ["alpha-board"]
    assert [h["uid"] for h in gs.req("GET", "/api/search", params={"query": "alpha"}).json()] == [
        "alpha-board",
        "alpha-root",
    ]
    assert len(gs.req("GET", "/api/search", params={"query": "board", "limit": 1}).json()) == 1
    folders = gs.req("GET", "/api/search", params={"type": "dash-folder"}).json()
    assert {"team-a"} <= {h["uid"] for h in folders} and all(h["type"] == "dash-folder" for h in folders)
    root = gs.req("GET", "/api/search", params={"folderIds": "0", "query": "alpha", "type": "dash-db"}).json()
    assert [h["uid"] for h in root] == ["alpha-root"]

    deleted = gs.req("DELETE", "/api/folders/team-a")
    assert deleted.status_code == 200 and deleted.json()["message"] == "Folder deleted"
    assert gs.req("GET", "/api/dashboards/uid/alpha-board").status_code == 404  # deleted with its folder
    assert gs.req("GET", "/api/dashboards/uid/alpha-root").status_code == 200


def slugify(title: str) -> str:
    return title.lower().replace(" ", "-")


# --------------------------------------------------------------------------- data sources


def test_datasources_secure_json_and_conflicts(gs):
    body = {
        "name": "prom-a",
        "uid": "prom-a",
        "type": "prometheus",
        "access": "proxy",
        "url": "http://127.0.0.1:9090",
        "jsonData": {"httpMethod": "POST"},
        "secureJsonData": {"basicAuthPassword": "hunter2"},
        "basicAuth": True,
        "basicAuthUser": "scraper",
        "isDefault": True,
    }
    created = gs.req("POST", "/api/datasources", json=body)
    assert created.status_code == 200, created.text
    assert created.json()["message"] == "Datasource added" and created.json()["name"] == "prom-a"
    ds_id = created.json()["id"]
    for path in ("/api/datasources/uid/prom-a", "/api/datasources/name/prom-a", f"/api/datasources/{ds_id}"):
        got = gs.req("GET", path)
        assert got.status_code == 200, path
        assert "hunter2" not in got.text and "secureJsonData" not in got.json()
        assert got.json()["secureJsonFields"] == {"basicAuthPassword": True}
        assert got.json()["jsonData"] == {"httpMethod": "POST"} and got.json()["basicAuthUser"] == "scraper"
    assert "hunter2" not in gs.req("GET", "/api/datasources").text
    hashes = gs.req("GET", "/api/standin/datasources/prom-a/secure-json-hashes").json()
    assert hashes == {"basicAuthPassword": "sha256:" + hashlib.sha256(b"hunter2").hexdigest()}
    assert gs.req("GET", "/api/datasources/id/prom-a").json() == {"id": ds_id}

    dup = gs.req("POST", "/api/datasources", json={**body, "uid": "prom-b"})
    assert dup.status_code == 409 and dup.json()["message"] == "data source with the same name already exists"
    assert gs.req("POST", "/api/datasources", json={**body, "name": "prom-b"}).status_code == 409

    # Update: secure fields that are not sent are kept; only one default.
    second = gs.req("POST", "/api/datasources", json={**body, "name": "prom-b", "uid": "prom-b", "secureJsonData": {}})
    assert second.status_code == 200
    assert gs.req("GET", "/api/datasources/uid/prom-a").json()["isDefault"] is False
    update = {**body, "url": "http://127.0.0.1:9091", "secureJsonData": {"httpHeaderValue1": "x"}}
    updated = gs.req("PUT", "/api/datasources/uid/prom-a", json=update)
    assert updated.status_code == 200 and updated.json()["message"] == "Datasource updated"
    got = gs.req("GET", f"/api/datasources/{ds_id}").json()
    assert got["url"] == "http://127.0.0.1:9091" and got["version"] == 2
    assert got["secureJsonFields"] == {"basicAuthPassword": True, "httpHeaderValue1": True}
    assert gs.req("PUT", f"/api/datasources/{ds_id}", json={**update, "name": "prom-b"}).status_code == 409

    assert gs.req("GET", "/api/datasources/uid/nope").json() == {"message": "Data source not found"}
    assert gs.req("DELETE", "/api/datasources/name/prom-b").json()["message"] == "Data source deleted"
    assert gs.req("DELETE", "/api/datasources/uid/prom-a").status_code == 200
    assert gs.req("GET", "/api/datasources/name/prom-a").status_code == 404


# --------------------------------------------------------------------------- service accounts and writes


def test_service_account_tokens_and_roles(gs):
    editor = gs.token("Editor", "ci-editor")
    viewer = gs.token("Viewer", "ci-viewer")
    assert editor.startswith("glsa_")
    found = gs.req("GET", "/api/serviceaccounts/search", params={"query": "ci-"}).json()
    assert found["totalCount"] == 2 and {a["name"] for a in found["serviceAccounts"]} == {"ci-editor", "ci-viewer"}
    assert all(a["tokens"] == 1 for a in found["serviceAccounts"])

    made = gs.req("POST", "/api/dashboards/db", token=editor, json=dash("Token board", "token-board"))
    assert made.status_code == 200
    assert gs.req("GET", "/api/dashboards/uid/token-board", token=viewer).status_code == 200
    denied = gs.req("POST", "/api/dashboards/db", token=viewer, json=dash("Viewer board", "viewer-board"))
    assert denied.status_code == 403 and denied.json()["title"] == "Access denied"
    # Data sources and provisioning reloads need more than Editor.
    assert gs.req("GET", "/api/datasources", token=editor).status_code == 403
    assert gs.req("POST", "/api/admin/provisioning/datasources/reload", token=editor).status_code == 403
    # Basic auth with user api_key and the token as password also works.
    assert gs.req("GET", "/api/search", auth=("api_key", editor)).status_code == 200


def test_write_counter(gs):
    assert gs.req("DELETE", "/api/standin/stats").status_code == 200
    gs.req("GET", "/api/search")
    gs.req("GET", "/api/dashboards/uid/nope")
    stats = gs.req("GET", "/api/standin/stats").json()
    assert stats["writes"] == 0 and stats["mutations"] == 0 and stats["requests"] == 2
    assert stats["by_endpoint"] == {"GET /api/search": 1, "GET /api/dashboards/uid/:uid": 1}

    gs.req("POST", "/api/dashboards/db", json=dash("Counter board", "counter-board"))
    gs.req("POST", "/api/dashboards/db", json=dash("Counter board", "counter-board"))  # 412: a write, no mutation
    stats = gs.req("GET", "/api/standin/stats").json()
    assert stats["writes"] == 2 and stats["mutations"] == 1
    assert stats["by_endpoint"]["POST /api/dashboards/db"] == 2
    assert stats["recent_writes"] == ["POST /api/dashboards/db 200", "POST /api/dashboards/db 412"]


# --------------------------------------------------------------------------- provisioning


def write_json_yaml(path: Path, doc: dict) -> None:
    path.write_text("# Managed by a test (JSON-compatible YAML)\n" + json.dumps(doc, indent=2) + "\n")


def test_provisioning_reload(gs, tmp_path):
    secret = tmp_path / "loki-secret"
    secret.write_text("from-a-file\n")
    write_json_yaml(
        gs.prov / "datasources" / "loki.yaml",
        {
            "apiVersion": 1,
            "datasources": [
                {
                    "name": "loki",
                    "uid": "loki",
                    "type": "loki",
                    "access": "proxy",
                    "url": "http://127.0.0.1:3100",
                    "jsonData": {"maxLines": 1000},
                    "secureJsonData": {"httpHeaderValue1": f"$__file{{{secret}}}"},
                }
            ],
        },
    )
    (gs.dashboards / "team").mkdir(exist_ok=True)
    (gs.dashboards / "team" / "prov-board.json").write_text(json.dumps({"uid": "prov-board", "title": "Provisioned"}))
    write_json_yaml(
        gs.prov / "dashboards" / "project.yml",
        {
            "apiVersion": 1,
            "providers": [{"name": "project", "folder": "Provisioned", "options": {"path": str(gs.dashboards)}}],
        },
    )
    # The server started before the files existed: nothing yet (no polling of datasources).
    assert gs.req("GET", "/api/datasources/uid/loki").status_code == 404

    reloaded = gs.req("POST", "/api/admin/provisioning/datasources/reload")
    assert reloaded.status_code == 200 and reloaded.json() == {"message": "Datasources config reloaded"}
    loki = gs.req("GET", "/api/datasources/uid/loki").json()
    assert loki["readOnly"] is True and loki["secureJsonFields"] == {"httpHeaderValue1": True}
    secret_hash = gs.req("GET", "/api/standin/datasources/loki/secure-json-hashes").json()["httpHeaderValue1"]
    assert secret_hash == "sha256:" + hashlib.sha256(b"from-a-file").hexdigest()
    readonly = gs.req("PUT", "/api/datasources/uid/loki", json={"name": "loki", "type": "loki"})
    assert readonly.status_code == 403 and readonly.json()["message"] == "Cannot update read-only data source"

    assert gs.req("POST", "/api/admin/provisioning/dashboards/reload").json() == {
        "message": "Dashboards config reloaded"
    }
    board = gs.req("GET", "/api/dashboards/uid/prov-board").json()
    assert board["meta"]["provisioned"] is True and board["meta"]["folderTitle"] == "Provisioned"
    assert board["dashboard"]["version"] == 1
    denied = gs.req(
        "POST", "/api/dashboards/db", json={**dash("Provisioned", "prov-board", version=1), "overwrite": True}
    )
    assert denied.status_code == 400 and denied.json()["message"] == "Cannot save provisioned dashboard"
    # Reloading unchanged files does not bump the version; deleting the file removes the dashboard.
    gs.req("POST", "/api/admin/provisioning/dashboards/reload")
    assert gs.req("GET", "/api/dashboards/uid/prov-board").json()["dashboard"]["version"] == 1
    (gs.dashboards / "team" / "prov-board.json").unlink()
    gs.req("POST", "/api/admin/provisioning/dashboards/reload")
    assert gs.req("GET", "/api/dashboards/uid/prov-board").status_code == 404

    # deleteDatasources, and the JSON-as-YAML contract for anything else.
    write_json_yaml(
        gs.prov / "datasources" / "loki.yaml", {"apiVersion": 1, "deleteDatasources": [{"name": "loki", "orgId": 1}]}
    )
    gs.req("POST", "/api/admin/provisioning/datasources/reload")
    assert gs.req("GET", "/api/datasources/uid/loki").status_code == 404
    (gs.prov / "datasources" / "loki.yaml").write_text("apiVersion: 1\ndatasources:\n  - name: x\n")
    broken = gs.req("POST", "/api/admin/provisioning/datasources/reload")
    assert broken.status_code == 500 and "JSON-compatible YAML" in broken.json()["message"]
    (gs.prov / "datasources" / "loki.yaml").unlink()
    (gs.prov / "dashboards" / "project.yml").unlink()


# --------------------------------------------------------------------------- restarts and configuration


def test_persistence_restart_and_startup_provisioning(package, tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_PROM_HOST", "prom.example")
    server = Standin(package["homepath"], tmp_path)
    prom = {
        "name": "prom",
        "uid": "prom",
        "type": "prometheus",
        "url": "http://${STANDIN_PROM_HOST}:9090",
        "editable": True,
    }
    write_json_yaml(server.prov / "datasources" / "prom.yaml", {"apiVersion": 1, "datasources": [prom]})
    server.start()
    try:
        provisioned = gs_ok(server.req("GET", "/api/datasources/uid/prom"))
        assert provisioned["readOnly"] is False and provisioned["url"] == "http://prom.example:9090"
        made = server.req("POST", "/api/dashboards/db", json=dash("Persisted", "persisted")).json()
        token = server.token("Admin", "persist-sa")
        # As in Grafana, admin_password in the ini only counts when the admin user is created.
        server.write_ini(password="changed-later")
        assert server.stop() == 0
        server.start()
        got = server.req("GET", "/api/dashboards/uid/persisted").json()
        assert got["dashboard"]["id"] == made["id"] and got["dashboard"]["version"] == 1
        assert server.req("GET", "/api/search", token=token).status_code == 200
        assert server.req("GET", "/api/search", auth=("admin", "changed-later")).status_code == 401

        # grafana cli admin reset-admin-password works while the server runs.
        home = package["homepath"]
        reset = ["admin", "reset-admin-password", "new-password"]
        cmd = [str(home / "bin" / "grafana"), "cli", "--homepath", str(home), "--config", str(server.ini), *reset]
        cli = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        assert cli.returncode == 0 and "Admin password changed successfully" in cli.stdout, cli.stderr
        assert server.req("GET", "/api/search", auth=("admin", "new-password")).status_code == 200
        assert server.req("GET", "/api/search").status_code == 401
    finally:
        if server.proc is not None:
            assert server.stop() == 0
    assert "Shutdown completed" in server.log.read_text()


def gs_ok(resp: requests.Response) -> dict:
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_anonymous_file_secret_and_overrides(package, tmp_path):
    secret = tmp_path / "admin_password"
    secret.write_text("from-a-file\n")
    server = Standin(package["homepath"], tmp_path, extra_ini="[auth.anonymous]\nenabled = true\n")
    server.ini.write_text(server.ini.read_text().replace(f'"""{ADMIN_PASSWORD}"""', f"$__file{{{secret}}}"))
    # The grafana-server compatibility wrapper with Go-style single-dash flags; cfg:default.* values
    # are defaults that the ini overrides (as in Grafana).
    home = package["homepath"]
    proc = subprocess.Popen(
        [
            str(home / "bin" / "grafana-server"),
            "-config",
            str(server.ini),
            "-homepath",
            str(home),
            "--packaging=deb",
            "cfg:default.paths.data=/nonexistent-default-is-overridden-by-ini",
        ],
        stdout=server.log.open("a"),
        stderr=subprocess.STDOUT,
    )
    server.proc = proc
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if requests.get(server.url + "/api/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.05)
        anonymous = requests.get(server.url + "/api/search", timeout=5)
        assert anonymous.status_code == 200  # anonymous Viewer
        assert requests.post(server.url + "/api/folders", json={"title": "x"}, timeout=5).status_code == 403
        assert server.req("GET", "/api/search", auth=("admin", "wrong")).status_code == 401
        assert server.req("POST", "/api/folders", auth=("admin", "from-a-file"), json={"title": "x"}).status_code == 200
        assert (server.data / "grafana.db").is_file()  # [database] path, relative to the data path
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("extra_ini", "message"),
    [
        ("[server]\nhttp_port = notaport\n", "unknown port"),
        ("[database]\ntype = oracle\n", "unknown database type"),
        ("[security]\nadmin_password = $__file{/nonexistent/secret}\n", "__file"),
        ("[server\n", "unclosed section"),
    ],
)
def test_bad_config_exits_nonzero(package, tmp_path, extra_ini, message):
    server = Standin(package["homepath"], tmp_path, extra_ini=extra_ini)
    proc = subprocess.run(server.command(), capture_output=True, text=True, timeout=20, check=False)
    assert proc.returncode == 1
    assert message in proc.stderr


def test_startup_failures(package, tmp_path):
    server = Standin(package["homepath"], tmp_path)
    # Port in use.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", server.port))
        sock.listen()
        proc = subprocess.run(server.command(), capture_output=True, text=True, timeout=20, check=False)
    assert proc.returncode == 1 and "failed to open listener" in proc.stderr
    # Wrong homepath (no conf/defaults.ini), and invalid provisioning at startup.
    no_home = [
        str(package["homepath"] / "bin" / "grafana"),
        "server",
        f"--config={server.ini}",
        f"--homepath={tmp_path}",
    ]
    proc = subprocess.run(no_home, capture_output=True, text=True, timeout=20, check=False)
    assert proc.returncode == 1 and "Could not find config defaults" in proc.stderr
    write_json_yaml(
        server.prov / "datasources" / "two-defaults.yaml",
        {"apiVersion": 1, "datasources": [{"name": n, "type": "prometheus", "isDefault": True} for n in ("a", "b")]},
    )
    proc = subprocess.run(server.command(), capture_output=True, text=True, timeout=20, check=False)
    assert proc.returncode == 1 and "Only one datasource per organization can be marked as default" in proc.stderr
    proc = subprocess.run(
        [*server.command(), "--no-such-flag"], capture_output=True, text=True, timeout=20, check=False
    )
    assert proc.returncode == 2 and "flag provided but not defined" in proc.stderr
    missing_ini = [str(package["homepath"] / "bin" / "grafana"), "server", f"--config={tmp_path}/nope.ini"]
    proc = subprocess.run(missing_ini, capture_output=True, text=True, timeout=20, check=False, cwd=package["homepath"])
    assert proc.returncode == 1 and "nope.ini" in proc.stderr


def test_dashboard_files_are_polled(package, tmp_path):
    server = Standin(package["homepath"], tmp_path)
    provider = {"name": "poll", "updateIntervalSeconds": 1, "options": {"path": str(server.dashboards)}}
    write_json_yaml(server.prov / "dashboards" / "poll.yaml", {"apiVersion": 1, "providers": [provider]})
    server.start()
    try:
        (server.dashboards / "late.json").write_text(json.dumps({"uid": "late", "title": "Late"}))
        deadline = time.monotonic() + 8
        while server.req("GET", "/api/dashboards/uid/late").status_code != 200:
            assert time.monotonic() < deadline, "the changed dashboard file was not picked up"
            time.sleep(0.2)
        assert server.req("GET", "/api/dashboards/uid/late").json()["meta"]["provisioned"] is True
    finally:
        assert server.stop() == 0


# --------------------------------------------------------------------------- grafana cli plugins


@pytest.fixture
def zip_server(package):
    """Serve the plugin zips over HTTP on 127.0.0.1 (no outside network)."""
    directory = str(package["plugins"])

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=directory, **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_cli_plugins(package, tmp_path, zip_server):
    grafana = str(package["homepath"] / "bin" / "grafana")
    plugins_dir = tmp_path / "plugins"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [grafana, "cli", "--homepath", str(package["homepath"]), "--pluginsDir", str(plugins_dir), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    offline = cli("plugins", "install", "grafana-clock-panel")
    assert offline.returncode == 1 and "no network access" in offline.stderr

    zip_100 = package["plugins"] / "mdl-test-panel-1.0.0.zip"
    first = cli("--pluginUrl", str(zip_100), "plugins", "install", "mdl-test-panel", "1.0.0")
    assert first.returncode == 0, first.stderr
    assert "Downloaded and extracted mdl-test-panel v1.0.0 zip successfully" in first.stdout
    assert json.loads((plugins_dir / "mdl-test-panel" / "plugin.json").read_text())["info"]["version"] == "1.0.0"
    assert cli("plugins", "ls").stdout == "installed plugins:\nmdl-test-panel @ 1.0.0\n"
    again = cli("--pluginUrl", str(zip_100), "plugins", "install", "mdl-test-panel", "1.0.0")
    assert again.returncode == 0 and "already installed" in again.stdout

    update = cli("--pluginUrl", f"{zip_server}/mdl-test-panel-1.1.0.zip", "plugins", "install", "mdl-test-panel")
    assert update.returncode == 0, update.stderr
    assert cli("plugins", "ls").stdout == "installed plugins:\nmdl-test-panel @ 1.1.0\n"
    wrong_id = cli("--pluginUrl", str(zip_100), "plugins", "install", "other-plugin")
    assert wrong_id.returncode == 1

    # The compatibility wrapper runs the same CLI (and warns, like Grafana's).
    wrapper_cmd = [str(package["homepath"] / "bin" / "grafana-cli"), "--pluginsDir", str(plugins_dir)]
    wrapper_cmd += ["plugins", "remove", "mdl-test-panel"]
    wrapper = subprocess.run(wrapper_cmd, capture_output=True, text=True, timeout=30, check=False)
    assert wrapper.returncode == 0 and "Deprecation warning" in wrapper.stderr
    assert not (plugins_dir / "mdl-test-panel").exists()
    assert cli("plugins", "ls").stdout == "no installed plugins found\n"


def test_server_loads_installed_plugins(package, tmp_path):
    server = Standin(
        package["homepath"], tmp_path, extra_ini="[plugins]\nallow_loading_unsigned_plugins = mdl-test-panel\n"
    )
    plugins = tmp_path / "plugins"
    zip_100 = str(package["plugins"] / "mdl-test-panel-1.0.0.zip")
    install = ["--pluginsDir", str(plugins), "--pluginUrl", zip_100, "plugins", "install", "mdl-test-panel"]
    subprocess.run(
        [str(package["homepath"] / "bin" / "grafana"), "cli", *install], capture_output=True, check=True, timeout=30
    )
    server.start()
    try:
        settings = gs_ok(server.req("GET", "/api/plugins/mdl-test-panel/settings"))
        assert settings["info"]["version"] == "1.0.0" and settings["signature"] == "unsigned"
        assert server.req("GET", "/api/plugins/nope/settings").status_code == 404
    finally:
        assert server.stop() == 0


# --------------------------------------------------------------------------- numbers as Grafana's Go code writes them


def standin_module():
    return load_module_from_path("grafana_standin_under_test", STANDIN_DIR / "grafana_standin.py")


@pytest.mark.parametrize(
    ("number", "go"),
    [
        # strconv.FormatFloat(x, 'f', -1, 64) for 1e-6 <= |x| < 1e21 ...
        (1.0, "1"),
        (1e2, "100"),
        (0.50, "0.5"),
        (-2.5, "-2.5"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e-6, "0.000001"),
        (0.000015, "0.000015"),  # Python writes 1.5e-05
        (1e16, "10000000000000000"),  # Python writes 1e+16
        (1e20, "100000000000000000000"),
        (float(2**53 + 1), "9007199254740992"),  # beyond 2**53: the nearest float64
        (float(12345678901234567890), "12345678901234567000"),  # shortest digits, then zeros
        (9.999999999999999e20, "999999999999999900000"),
        # ... else 'e', with encoding/json's cleanup of e-07 to e-7.
        (1e21, "1e+21"),
        (1.5e300, "1.5e+300"),
        (1e-7, "1e-7"),
        (-1.5e-7, "-1.5e-7"),
        (1.23e-18, "1.23e-18"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (-0.0, "-0"),
        (0.0, "0"),
    ],
)
def test_go_float64_format(number, go):
    assert standin_module().go_float(number) == go


def raw_post(server, path: str, text: str) -> requests.Response:
    return server.req("POST", path, data=text.encode(), headers={"Content-Type": "application/json"})


def test_dashboard_numbers_and_keys_come_back_as_grafana_writes_them(gs):
    sent = (
        '{"dashboard": {"uid": "go-numbers", "title": "Go numbers", "schemaVersion": 39.0, "zeta": 1,'
        ' "one": 1.0, "hundred": 1e2, "half": 0.50, "big": 9007199254740993, "huge": 1e21, "tiny": 1e-7,'
        ' "small": 0.000015, "nested": {"b": [2.50, true, null, "x<y"], "a": 12345678901234567890}}}'
    )
    assert raw_post(gs, "/api/dashboards/db", sent).status_code == 200
    got = gs.req("GET", "/api/dashboards/uid/go-numbers")
    text = got.text
    for go in (
        '"one":1,',
        '"hundred":100,',
        '"half":0.5,',
        '"big":9007199254740992,',
        '"huge":1e+21,',
        '"tiny":1e-7,',
        '"small":0.000015,',
        '"schemaVersion":39,',
        '"nested":{"a":12345678901234567000,"b":[2.5,true,null,"x\\u003cy"]}',
    ):
        assert go in text, (go, text)
    # A Go map: the keys of the model come back sorted, at every level.
    pairs = json.loads(text, object_pairs_hook=lambda kv: [k for k, _ in kv] if kv[0][0] != "dashboard" else kv)
    model_keys = dict(pairs)["dashboard"]
    assert model_keys == sorted(model_keys)
    # Python reads back what Go wrote: not what was sent, where float64 cannot hold it.
    model = got.json()["dashboard"]
    assert (model["one"], model["hundred"], model["big"]) == (1, 100, 2**53)
    # The version history holds the same normalised model.
    assert gs.req("GET", "/api/dashboards/uid/go-numbers/versions").status_code == 200

    # jsonData of data sources is a Go map as well.
    ds = (
        '{"name": "go-numbers-ds", "uid": "go-numbers-ds", "type": "loki",'
        ' "jsonData": {"timeout": 30.0, "maxLines": 1e3}}'
    )
    assert raw_post(gs, "/api/datasources", ds).status_code == 200
    assert '"jsonData":{"maxLines":1000,"timeout":30}' in gs.req("GET", "/api/datasources/uid/go-numbers-ds").text
    assert gs.req("DELETE", "/api/datasources/uid/go-numbers-ds").status_code == 200
    assert gs.req("DELETE", "/api/dashboards/uid/go-numbers").status_code == 200


@pytest.mark.parametrize("bad", ["NaN", "-Infinity", "Infinity", "1e400", "-1e999", "9" * 400])
def test_numbers_go_cannot_hold_are_bad_request_data(gs, bad):
    sent = '{"dashboard": {"uid": "not-a-float64", "title": "Not a float64", "threshold": ' + bad + "}}"
    refused = raw_post(gs, "/api/dashboards/db", sent)
    assert refused.status_code == 400 and refused.json() == {"message": "bad request data"}
    assert gs.req("GET", "/api/dashboards/uid/not-a-float64").status_code == 404


# --------------------------------------------------------------------------- refusals with Grafana's codes and messages


def test_dashboard_refusals_use_grafanas_status_and_message(gs):
    """pkg/services/dashboards/errors.go, BuildSaveDashboardCommand and apierrors.ToDashboardErrorResponse."""
    assert gs.req("POST", "/api/folders", json={"uid": "refusals-folder", "title": "Refusals"}).status_code == 200
    empty = {"message": "Dashboard title cannot be empty", "status": "empty-name"}
    cases = [
        ({"dashboard": {"uid": "no-title"}}, 400, empty),
        ({"dashboard": {"uid": "blank-title", "title": "   "}}, 400, empty),
        ({"dashboard": {"uid": "number-title", "title": 42}}, 400, empty),
        (
            {"dashboard": {"uid": "long-title", "title": "t" * 5001}},
            400,
            {"message": "Dashboard title cannot contain more than 5 000 characters", "status": "title-too-long"},
        ),
        (dash("Bad uid", "bad uid!"), 400, {"message": "uid contains illegal characters"}),
        (dash("Dotted uid", "bad.uid"), 400, {"message": "uid contains illegal characters"}),
        (dash("Long uid", "u" * 41), 400, {"message": "uid too long, max 40 characters"}),
        (dash("Long bad uid", "!" * 41), 400, {"message": "uid contains illegal characters"}),  # checked first
        (
            {**dash("Long message", "long-message"), "message": "m" * 501},
            400,
            {"message": "message too long, max 500 characters"},
        ),
        ({**dash("No folder", "no-folder"), "folderUid": "no-such-folder"}, 400, {"message": "folder not found"}),
        ({**dash("No folder id", "no-folder-id"), "folderId": 987654}, 400, {"message": "folder not found"}),
        (
            {**dash("A folder", "a-folder"), "isFolder": True},
            400,
            {"message": "Use folders endpoint for saving folders."},
        ),
        (dash("Folder uid", "refusals-folder"), 400, {"message": "Dashboard cannot be changed to a folder"}),
        (
            {"dashboard": {"id": 987654, "uid": "", "title": "Unknown id"}},
            404,
            {"message": "Dashboard not found", "status": "not-found"},
        ),
        ({"dashboard": "not an object"}, 400, {"message": "bad request data"}),
    ]
    assert gs.req("DELETE", "/api/standin/stats").status_code == 200
    for body, status, answer in cases:
        refused = gs.req("POST", "/api/dashboards/db", json=body)
        assert (refused.status_code, refused.json()) == (status, answer), body
    stats = gs.req("GET", "/api/standin/stats").json()
    assert stats["writes"] == len(cases) and stats["mutations"] == 0
    for uid in ("no-title", "blank-title", "bad.uid", "u" * 41, "long-message", "no-folder", "a-folder"):
        assert gs.req("GET", f"/api/dashboards/uid/{uid}").status_code == 404, uid
    assert gs.req("DELETE", "/api/folders/refusals-folder").status_code == 200


def test_dashboard_title_and_uid_are_trimmed_and_short_refresh_raised(gs):
    """Grafana trims title and uid, and saves a refresh below min_refresh_interval (5s) as 5s."""
    saved = gs.req("POST", "/api/dashboards/db", json=dash("  Spaced title  ", " spaced-uid ", refresh="1s"))
    assert saved.status_code == 200 and saved.json()["uid"] == "spaced-uid"
    model = gs.req("GET", "/api/dashboards/uid/spaced-uid").json()["dashboard"]
    assert (model["title"], model["uid"], model["refresh"]) == ("Spaced title", "spaced-uid", "5s")
    for refresh, stored in (("10s", "10s"), ("auto", "auto"), ("", ""), ("not-a-duration", "5s"), ("1h", "1h")):
        body = {**dash("Spaced title", "spaced-uid", refresh=refresh), "overwrite": True}
        assert gs.req("POST", "/api/dashboards/db", json=body).status_code == 200
        assert gs.req("GET", "/api/dashboards/uid/spaced-uid").json()["dashboard"]["refresh"] == stored, refresh
    assert gs.req("DELETE", "/api/dashboards/uid/spaced-uid").status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "answer"),
    [
        # apps/folder validateOnCreate and apierrors.ToFolderErrorResponse.
        ({"uid": "general", "title": "X"}, 400, {"message": "invalid uid for folder provided"}),
        ({"uid": "sharedwithme", "title": "X"}, 400, {"message": "invalid uid for folder provided"}),
        ({"uid": "bad uid!", "title": "X"}, 400, {"message": "uid contains illegal characters"}),
        ({"uid": "f" * 41, "title": "X"}, 400, {"message": "uid too long, max 40 characters"}),
        ({"uid": "no-title"}, 400, {"message": "folder title cannot be empty"}),
        ({"uid": "blank-title", "title": "  "}, 400, {"message": "folder title cannot be empty"}),
        # BuildSaveDashboardCommand: a folder cannot be called General (ErrDashboardFolderNameExists).
        ({"uid": "general-title", "title": "general"}, 400, {"message": "A folder with that name already exists"}),
        (
            {"title": "Orphan", "parentUid": "no-such-parent"},
            404,
            {"message": "folder not found", "status": "not-found"},
        ),
    ],
)
def test_folder_refusals_use_grafanas_status_and_message(gs, body, status, answer):
    refused = gs.req("POST", "/api/folders", json=body)
    assert (refused.status_code, refused.json()) == (status, answer)
    assert all(f["title"] != body.get("title") for f in gs.req("GET", "/api/folders").json() if body.get("title"))


def test_datasource_refusals_use_grafanas_status_and_message(gs):
    """pkg/api/datasources.go AddDataSource/updateDataSourceByID, pkg/services/datasources/service/store.go."""
    base = {"name": "refusal-ds", "uid": "refusal-ds", "type": "prometheus", "url": "http://127.0.0.1:9090"}
    assert gs.req("POST", "/api/datasources", json=base).status_code == 200
    other = {**base, "name": "refusal-other", "uid": "refusal-other"}
    assert gs.req("POST", "/api/datasources", json=other).status_code == 200
    invalid_uid = {"message": "Invalid datasource UID.", "messageId": "datasource.uidInvalid", "statusCode": 400}
    cases = [
        ("POST", "/api/datasources", {**base, "uid": "new-uid"}, 409,
         {"message": "data source with the same name already exists"}),
        ("POST", "/api/datasources", {**base, "name": "new-name"}, 409,
         {"message": "data source with the same uid already exists"}),
        ("POST", "/api/datasources", {**base, "name": "bad", "uid": "bad uid!"}, 400, invalid_uid),
        ("POST", "/api/datasources", {**base, "name": "long", "uid": "d" * 41}, 400, invalid_uid),
        ("POST", "/api/datasources", {"type": "prometheus"}, 400, {"message": "bad request data"}),
        ("PUT", "/api/datasources/uid/refusal-ds", {**base, "name": "refusal-other"}, 409,
         {"message": "Failed to update datasource: data source with the same name already exists"}),
        ("PUT", "/api/datasources/uid/refusal-ds", {**base, "uid": "refusal-other"}, 500,
         {"message": "Failed to update datasource"}),
        ("PUT", "/api/datasources/uid/refusal-ds", {**base, "uid": "bad uid!"}, 400, invalid_uid),
    ]  # fmt: skip
    for method, path, body, status, answer in cases:
        refused = gs.req(method, path, json=body)
        assert (refused.status_code, refused.json()) == (status, answer), body
    assert gs.req("GET", "/api/datasources/uid/refusal-ds").json()["version"] == 1  # not changed by the refusals
    for uid in ("new-uid", "bad uid!", "d" * 41):
        assert gs.req("GET", f"/api/datasources/uid/{uid}").status_code == 404
    for uid in ("refusal-ds", "refusal-other"):
        assert gs.req("DELETE", f"/api/datasources/uid/{uid}").status_code == 200


# --------------------------------------------------------------------------- /api/health and the database


def test_health_opens_queries_and_writes_the_sqlite_database(package, tmp_path):
    server = Standin(package["homepath"], tmp_path).start()
    db_path = server.data / "grafana.db"  # [database] path = grafana.db, relative to the data path
    try:
        health = requests.get(server.url + "/api/health", timeout=5)
        assert health.status_code == 200  # Grafana's EncodePretty body
        assert health.text == f'{{\n  "commit": "standin",\n  "database": "ok",\n  "version": "{VERSION}"\n}}'
        assert server.req("POST", "/api/folders", json={"uid": "in-sqlite", "title": "In sqlite"}).status_code == 200
        with closing(sqlite3.connect(db_path)) as conn:
            revision, text = conn.execute("SELECT revision, data FROM standin_state WHERE id = 1").fetchone()
            (checked,) = conn.execute("SELECT checked FROM standin_health WHERE id = 1").fetchone()
        assert "in-sqlite" in json.loads(text)["folders"] and revision >= 2 and checked  # health wrote its row

        # The file is not a database any more: health 503 "failing", the API 500.
        saved = db_path.with_name("grafana.db.saved")
        db_path.rename(saved)
        db_path.write_bytes(b"not an sqlite database " * 200)
        failing = requests.get(server.url + "/api/health", timeout=5)
        assert failing.status_code == 503
        assert failing.json() == {"commit": "standin", "database": "failing", "version": VERSION}
        broken = server.req("GET", "/api/folders/in-sqlite")
        assert broken.status_code == 500 and "file is not a database" in broken.json()["message"]
        # No file at all: failing, and no empty database is created behind Grafana's back.
        db_path.unlink()
        assert requests.get(server.url + "/api/health", timeout=5).status_code == 503
        assert not db_path.exists()
        saved.rename(db_path)
        assert requests.get(server.url + "/api/health", timeout=5).json()["database"] == "ok"
        assert server.req("GET", "/api/folders/in-sqlite").status_code == 200
    finally:
        assert server.stop() == 0
    assert "database is failing" in server.log.read_text()


def test_database_path_and_import_of_an_older_state_file(package, tmp_path):
    server = Standin(package["homepath"], tmp_path, extra_ini="[database]\ntype = sqlite3\npath = state/custom.db\n")
    state = standin_module().Store.empty()
    state["folders"]["from-json"] = {
        "id": 7, "uid": "from-json", "title": "From JSON", "parentUid": None, "version": 1,
        "created": "2024-01-01T00:00:00Z", "updated": "2024-01-01T00:00:00Z", "createdBy": "a", "updatedBy": "a",
    }  # fmt: skip
    state["next_id"]["dashboard"] = 8
    server.data.mkdir(parents=True)
    (server.data / "grafana-standin-state.json").write_text(json.dumps(state))
    server.start()
    try:
        assert server.req("GET", "/api/folders/from-json").json()["title"] == "From JSON"
        assert (server.data / "state" / "custom.db").is_file() and not (server.data / "grafana.db").exists()
        assert (server.data / "grafana-standin-state.json.imported").is_file()
    finally:
        assert server.stop() == 0


class FakeDatabaseServer:
    """A loopback TCP server that answers like PostgreSQL (SSLRequest: S or N), MySQL (greeting) or not at all."""

    def __init__(self, kind: str, port: int = 0, unix: Path | None = None) -> None:
        self.kind = kind
        self.unix = unix
        if unix is None:
            self.sock = socket.socket()
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(("127.0.0.1", port))
            self.port = self.sock.getsockname()[1]
        else:  # libpq's layout: <directory>/.s.PGSQL.<port>
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.bind(str(unix / f".s.PGSQL.{port or 5432}"))
            self.port = port or 5432
        self.sock.listen()
        self.sock.settimeout(0.1)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    if self.kind == "mysql":
                        conn.sendall(b"\x4a\x00\x00\x00\x0a8.0.36\x00")
                    elif self.kind.startswith("postgres"):
                        conn.recv(8)
                        conn.sendall(b"S" if self.kind == "postgres-ssl" else b"N")
                except OSError:
                    pass

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.sock.close()
        if self.unix is not None:
            (self.unix / f".s.PGSQL.{self.port}").unlink(missing_ok=True)

    @property
    def host(self) -> str:
        return str(self.unix) if self.unix is not None else f"127.0.0.1:{self.port}"

    def dial_error(self) -> str:
        """What the stand-in reports once this server is gone (Go's dial wording)."""
        if self.unix is not None:
            return f"dial unix {self.unix}/.s.PGSQL.{self.port}: connect: no such file or directory"
        return f"dial tcp 127.0.0.1:{self.port}: connect: connection refused"


def database_ini(kind: str, host: str, ssl_mode: str) -> str:
    # As roles/grafana/templates/grafana.ini.j2 renders [database] for postgres.
    return (
        f"[database]\ntype = {kind}\nhost = {host}\nname = grafana\nuser = grafana\n"
        f'password = """db#pw"""\nssl_mode = {ssl_mode}\n'
    )


DATABASE_SERVERS = {  # kind, what answers, ssl_mode, on a unix socket
    "postgres-ssl": ("postgres", "postgres-ssl", "require", False),
    "postgres-without-ssl": ("postgres", "postgres-nossl", "disable", False),
    "postgres-unix-socket": ("postgres", "postgres-ssl", "verify-full", True),
    "mysql": ("mysql", "mysql", "disable", False),
}


@pytest.mark.parametrize("case", sorted(DATABASE_SERVERS))
def test_health_connects_to_the_postgres_or_mysql_server(package, tmp_path, case):
    kind, server_kind, ssl_mode, unix = DATABASE_SERVERS[case]
    socket_dir = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp")) if unix else None  # AF_UNIX paths are short
    db = FakeDatabaseServer(server_kind, unix=socket_dir)
    server = Standin(package["homepath"], tmp_path, extra_ini=database_ini(kind, db.host, ssl_mode))
    try:
        server.start()
        assert requests.get(server.url + "/api/health", timeout=5).json()["database"] == "ok"
        assert server.req("POST", "/api/folders", json={"title": "Kept"}).status_code == 200
        assert (server.data / "grafana-standin.db").is_file() and not (server.data / "grafana.db").exists()
        db.close()
        failing = requests.get(server.url + "/api/health", timeout=5)
        assert failing.status_code == 503
        assert failing.json() == {"commit": "standin", "database": "failing", "version": VERSION}
        assert db.dial_error() in server.log.read_text()
        db = FakeDatabaseServer(server_kind, port=db.port, unix=socket_dir)
        assert requests.get(server.url + "/api/health", timeout=5).status_code == 200
    finally:
        db.close()
        if socket_dir:
            shutil.rmtree(socket_dir, ignore_errors=True)
        if server.proc is not None:
            assert server.stop() == 0


STARTUP_DATABASE_FAILURES = {
    "postgres-unreachable": ("postgres", None, "disable", "dial tcp 127.0.0.1:{port}: connect: connection refused"),
    "postgres-without-ssl": ("postgres", "postgres-nossl", "require", "pq: SSL is not enabled on the server"),
    "postgres-silent": ("postgres", "silent", "disable", "did not answer an SSLRequest like a PostgreSQL server"),
    "mysql-unreachable": ("mysql", None, "disable", "dial tcp 127.0.0.1:{port}: connect: connection refused"),
    "mysql-silent": ("mysql", "silent", "disable", "did not greet like a MySQL server"),
}


@pytest.mark.parametrize("case", sorted(STARTUP_DATABASE_FAILURES))
def test_startup_fails_when_the_database_server_does_not_answer(package, tmp_path, case):
    kind, server_kind, ssl_mode, message = STARTUP_DATABASE_FAILURES[case]
    db = FakeDatabaseServer(server_kind) if server_kind else None
    port = db.port if db else free_port()
    server = Standin(package["homepath"], tmp_path, extra_ini=database_ini(kind, f"127.0.0.1:{port}", ssl_mode))
    try:
        proc = subprocess.run(server.command(), capture_output=True, text=True, timeout=30, check=False)
    finally:
        if db:
            db.close()
    assert proc.returncode == 1
    assert "Service init failed: migration failed (id = create migration_log table): " in proc.stderr
    assert message.format(port=port) in proc.stderr


# --------------------------------------------------------------------------- fidelity: community.grafana modules


def write_fidelity_dashboards(tmp_path: Path) -> dict[str, str]:
    """The dashboard files of the fidelity playbook: {extra var: path}."""
    dash_v1 = FIXTURES / "grafana_standin_dashboard.json"
    dash_v2 = tmp_path / "dashboard-v2.json"
    dash_v2.write_text(json.dumps({**json.loads(dash_v1.read_text()), "refresh": "5m"}))
    # Numbers Grafana's Go code normalises, written as literals (json.dumps would write 1.0 and 100).
    dash_numbers = tmp_path / "dashboard-numbers.json"
    dash_numbers.write_text(
        '{"uid": "standin-numbers", "title": "Stand-in numbers", "schemaVersion": 39.0, "panels": [{"id": 1.0,'
        ' "type": "stat", "gridPos": {"h": 8.0, "w": 1.2e1, "x": 0, "y": 0}, "fieldConfig": {"defaults":'
        ' {"thresholds": {"steps": [{"color": "green", "value": null}, {"color": "red", "value": 0.50}]},'
        ' "max": 1e2}}}]}'
    )
    refused = {
        "dash_blank_title": {"uid": "standin-blank-title", "title": "   "},
        "dash_bad_uid": {"uid": "bad.uid", "title": "Stand-in bad uid"},
        "dash_long_uid": {"uid": "d" * 41, "title": "Stand-in long uid"},
    }
    for name, model in refused.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(model))
    files = {"dash_file": dash_v1, "dash_file_v2": dash_v2, "dash_numbers": dash_numbers}
    return {name: str(path) for name, path in files.items()} | {
        name: str(tmp_path / f"{name}.json") for name in refused
    }


def check_refusals_and_numbers(r: dict) -> None:
    """What the community modules report for what Grafana refuses or normalises."""
    # Refusals with Grafana's status codes: the modules fail as they do against Grafana, nothing is created.
    for name in ("folder_uid_general", "folder_uid_illegal", "folder_uid_long", "folder_title_general"):
        assert r[name]["failed"] is True and r[name]["msg"] == "Grafana folders API answered with HTTP 400", name
    assert r["ds_uid_taken"]["failed"] is True
    assert r["ds_uid_taken"]["msg"].startswith("Grafana API answered with HTTP 409 for url /api/datasources")
    assert r["ds_uid_illegal"]["failed"] is True
    assert r["ds_uid_illegal"]["msg"].startswith("Grafana API answered with HTTP 400 for url /api/datasources")
    assert not {"standin-prom-second", "standin-bad-uid"} & {ds["name"] for ds in r["ds_list_after_refusals"]}
    for name, answer in (
        ("dash_blank_title", '"message":"Dashboard title cannot be empty","status":"empty-name"'),
        ("dash_bad_uid", '"message":"uid contains illegal characters"'),
        ("dash_long_uid", '"message":"uid too long, max 40 characters"'),
    ):
        assert r[name]["failed"] is True and "Unable to create the new dashboard" in r[name]["msg"], name
        assert "'status': 400" in r[name]["msg"] and answer in r[name]["msg"], r[name]["msg"]
    titles = {hit["title"] for hit in r["dash_search_after_refusals"]}
    assert "Stand-in numbers" in titles and not {"Stand-in bad uid", "Stand-in long uid"} & titles
    assert not {hit["uid"] for hit in r["dash_search_after_refusals"]} & {"standin-blank-title", "bad.uid", "d" * 41}
    # 1.0, 1e2 and 0.50 come back as 1, 100 and 0.5; the module compares with ==, so a re-run is unchanged.
    assert r["dash_numbers_create"]["changed"] is True and r["dash_numbers_again"]["changed"] is False
    assert r["stats_dash_numbers_again"]["mutations"] == 0
    assert r["dash_numbers_absent"]["changed"] is True


def test_community_grafana_modules_against_standin(gs, package, tmp_path):
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.skip(f"ansible-playbook not found at {ANSIBLE_PLAYBOOK}")
    token = gs.token("Editor", "fidelity-sa")
    dashboards = write_fidelity_dashboards(tmp_path)
    cli_bin = tmp_path / "cli-bin"
    cli_bin.mkdir()
    (cli_bin / "grafana-cli").symlink_to(package["homepath"] / "bin" / "grafana-cli")
    results_file = tmp_path / "results.json"
    extra = {
        "gs_url": gs.url,
        "gs_password": ADMIN_PASSWORD,
        "gs_token": token,
        "export_path": str(tmp_path / "export.json"),
        "result_file": str(results_file),
        "cli_bin_dir": str(cli_bin),
        "plugin_zip": str(package["plugins"] / "mdl-test-panel-1.0.0.zip"),
        "plugins_dir": str(tmp_path / "plugins"),
        **dashboards,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        {"ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(tmp_path)}
    )
    playbook = FIXTURES / "grafana_standin_community.yml"
    proc = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", str(playbook), "-e", json.dumps(extra)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(results_file.read_text())

    # grafana_folder: created, then unchanged; an API token works too.
    assert r["folder_create"]["changed"] is True and r["folder_create"]["folder"]["uid"] == "standin-folder"
    assert r["folder_again"]["changed"] is False
    assert r["folder_token"]["changed"] is True
    # The idempotent run still POSTs /api/user/using/1 (organisation switch): a write, no state change.
    assert r["stats_folder_again"]["mutations"] == 0
    assert r["stats_folder_again"]["recent_writes"] == ["POST /api/user/using/1 200"]

    # grafana_datasource: secure data is stored, never returned, and not compared unless enforce_secure_data.
    assert r["ds_create"]["changed"] is True
    assert r["ds_create"]["datasource"]["secureJsonFields"] == {"httpHeaderValue1": True}
    assert "not-a-real-token" not in json.dumps(r["ds_create"]["datasource"])
    assert r["ds_hashes"] == {"httpHeaderValue1": "sha256:" + hashlib.sha256(b"Bearer not-a-real-token").hexdigest()}
    assert r["ds_again"]["changed"] is False
    assert r["stats_ds_again"]["mutations"] == 0
    assert r["ds_enforce"]["changed"] is True
    assert r["ds_update"]["changed"] is True and r["ds_update"]["datasource"]["url"] == "http://127.0.0.1:19090"

    # grafana_dashboard: import into the folder, unchanged on re-run, 412 without overwrite, export, absent.
    assert r["dash_create"]["changed"] is True and r["dash_create"]["uid"] == "standin-fidelity"
    assert r["dash_again"]["changed"] is False
    assert r["stats_dash_again"]["mutations"] == 0
    assert r["dash_no_overwrite"]["failed"] is True
    assert "The dashboard has been changed by someone else (HTTP: 412)" in r["dash_no_overwrite"]["msg"]
    assert r["dash_overwrite"]["changed"] is True
    assert r["dash_state"]["dashboard"]["version"] == 2 and r["dash_state"]["dashboard"]["refresh"] == "5m"
    assert r["dash_state"]["meta"]["folderUid"] == "standin-folder"
    assert r["dash_export"]["changed"] is True
    exported = json.loads((tmp_path / "export.json").read_text())
    assert exported["dashboard"]["uid"] == "standin-fidelity" and exported["meta"]["folderTitle"] == "Standin Folder"
    assert r["dash_absent"]["changed"] is True and r["dash_absent_again"]["changed"] is False

    # grafana_plugin drives `grafana-cli plugins ...` (the stand-in's wrapper). Its "version" return is
    # parsed from an "<id> @ <version>" install line that only Grafana <= 7 printed; Grafana 10/11 (and
    # the stand-in) print "Downloaded and extracted <id> v<version> zip ...", so it is None.
    assert r["plugin_install"]["changed"] is True and r["plugin_install"]["version"] is None
    assert r["plugin_again"]["changed"] is False
    assert r["plugin_absent"]["changed"] is True

    check_refusals_and_numbers(r)

    # Cleanup through the modules.
    assert r["ds_absent"]["changed"] is True and r["ds_absent_again"]["changed"] is False
    assert r["folder_absent"]["changed"] is True and r["folder_absent_again"]["changed"] is False
    assert gs.req("GET", "/api/folders/standin-folder").status_code == 404
    assert gs.req("GET", "/api/datasources/name/standin-prom").status_code == 404
    shutil.rmtree(tmp_path / "plugins", ignore_errors=True)
