"""A small client for the Grafana HTTP API (dashboards, folders, search, data sources).

Used by the grafana_dashboards and obs_grafana_datasource modules, on the transport
of http_client.py. Only the Python 3 standard library and ansible.module_utils.urls
are needed, so it runs on any managed host (Python >= 3.8, the ansible-core 2.19
minimum).

Every failure is raised as GrafanaError with a message an operator can act on:
which Grafana, which request, which credential was refused and what the server
said. The client counts the write requests (POST, PUT, PATCH, DELETE) it sent in
``writes``, so modules can report how many writes a run made.

Also here: the connection options of the Grafana modules (``grafana_argument_spec``,
documented by the doc fragments ``obs_http`` and ``obs_grafana``).
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

from ansible.module_utils.http_client import (
    CONNECTION_MUTUALLY_EXCLUSIVE,
    NOT_FOUND,
    HttpClient,
    HttpError,
    connection_argument_spec,
    connection_options,
    server_message,
)

USER_AGENT = "ansible-grafana-client"

# Grafana's maximum page size for /api/search and /api/folders.
SEARCH_PAGE_SIZE = 5000
FOLDER_PAGE_SIZE = 1000
# What Grafana accepts as the uid of a dashboard, folder or data source.
UID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,40}$")

# The argument constraints of grafana_argument_spec, for AnsibleModule().
GRAFANA_MUTUALLY_EXCLUSIVE = [("token", "url_username"), ("token", "url_password"), *CONNECTION_MUTUALLY_EXCLUSIVE]
GRAFANA_REQUIRED_TOGETHER = [("url_username", "url_password")]


def grafana_argument_spec(**options):
    """The connection options of the Grafana modules (doc fragments obs_http, obs_grafana), then ``options``."""
    return connection_argument_spec(
        url=dict(type="str", required=True),
        token=dict(type="str", no_log=True),
        org_id=dict(type="int"),
        **options,
    )


class GrafanaError(HttpError):
    """A request to Grafana failed.

    ``status`` is the HTTP status (None when Grafana was not reached), ``data``
    the decoded JSON error body when there was one (Grafana answers
    ``{"message": ..., "status": ...}``).
    """

    @property
    def server_status(self):
        """Grafana's machine-readable error status (``version-mismatch``, ``name-exists``...) or ''."""
        if isinstance(self.data, dict) and isinstance(self.data.get("status"), str):
            return self.data["status"]
        return ""


def _segment(value):
    """One URL path segment (uids are [a-zA-Z0-9_-], data source names can be anything)."""
    return quote(str(value), safe="")


def canonical(value):
    """A JSON value as Grafana gives it back, to compare with what was sent.

    Grafana is written in Go and holds dashboards (and data source jsonData) as
    map[string]any: every number is a float64 (1.0 and 1e2 come back as 1 and 100,
    integers beyond 2**53 rounded), so numbers are compared as float64 here, as
    integers when integral below 1e21. Keys become strings; true stays unlike 1.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # beyond float64: Grafana refuses it, leave it as it is
            return value
        return int(number) if number.is_integer() and abs(number) < 1e21 else number
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


def same(a, b):
    """Equal as Grafana would store them: canonical numbers, key order ignored."""
    return json.dumps(canonical(a), sort_keys=True) == json.dumps(canonical(b), sort_keys=True)


def _refused(what, exc):
    """A write Grafana refused (not a credential or connection problem), with what was written in front."""
    if exc.status is None or exc.status in (401, 403):
        return exc
    return exc.retold(f"{what}: {exc.msg}")


class GrafanaClient(HttpClient):
    """JSON over HTTP against one Grafana, with basic auth or a service-account token."""

    service = "Grafana"
    error = GrafanaError
    user_agent = USER_AGENT
    follow_redirects = "safe"

    def __init__(self, url, *, token=None, org_id=None, **options):
        if token and options.get("username"):
            raise ValueError("use either a token or a username and password, not both")
        super().__init__(url, **options)
        self.token = token or None
        self.org_id = org_id

    @classmethod
    def from_params(cls, params):
        """The client of a module with grafana_argument_spec."""
        return cls(params["url"], token=params["token"], org_id=params["org_id"], **connection_options(params))

    # ------------------------------------------------------------------ transport
    @property
    def credential(self):
        """The credential in words, for error messages."""
        if self.token:
            return "the service-account token"
        if self.username:
            return f"user {self.username}'s password"
        return "anonymous access"

    def headers(self):
        headers = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.org_id:
            headers["X-Grafana-Org-Id"] = str(self.org_id)
        return headers

    def unreachable_message(self, reason):
        return f"Grafana at {self.base_url} is unreachable: {reason}"

    def not_json_hint(self):
        return f" (is {self.base_url} the URL of Grafana?)"

    def explain(self, status, answer):
        if status == 401:
            if self.token:
                return f"Grafana at {self.base_url} rejected the service-account token ({answer}): check token"
            if self.username:
                return (
                    f"Grafana at {self.base_url} rejected user {self.username}'s password ({answer}):"
                    " check url_username and url_password"
                )
            return (
                f"Grafana at {self.base_url} requires authentication ({answer}):"
                " set token, or url_username and url_password"
            )
        if status == 403:
            return (
                f"Grafana at {self.base_url} denied {self.credential} the permission for this request ({answer});"
                " data sources need the Admin role, dashboards and folders the Editor role"
            )
        if status == 404:
            return f"{answer} (not found in Grafana at {self.base_url})"
        return answer

    def get(self, path, params=None, allow_404=False):
        return self.request_json("GET", path, params=params, allow_404=allow_404)

    def post(self, path, body):
        return self.request_json("POST", path, body=body)

    def put(self, path, body):
        return self.request_json("PUT", path, body=body)

    def delete(self, path, allow_404=False):
        return self.request_json("DELETE", path, allow_404=allow_404)

    def _expect(self, kind, path, data):
        if not isinstance(data, kind):
            raise GrafanaError(
                f"{self.base_url}{path} returned unexpected data (expected a JSON"
                f" {'object' if kind is dict else 'list'}): {server_message(json.dumps(data))}"
            )
        return data

    # ------------------------------------------------------------------ health
    def health(self):
        """GET /api/health: {"database": "ok", "version": ...} (no authentication needed)."""
        return self._expect(dict, "/api/health", self.get("/api/health"))

    # ------------------------------------------------------------------ folders
    def _get_object(self, path):
        """The JSON object at ``path``, or None when Grafana answers 404."""
        data = self.get(path, allow_404=True)
        return None if data is NOT_FOUND else self._expect(dict, path, data)

    def get_folder(self, uid):
        """The folder with this uid, or None."""
        return self._get_object(f"/api/folders/{_segment(uid)}")

    def list_folders(self):
        """Every top-level folder: [{"id", "uid", "title"}, ...] (all pages)."""
        folders = []
        page = 1
        while True:
            data = self._expect(
                list, "/api/folders", self.get("/api/folders", params={"limit": FOLDER_PAGE_SIZE, "page": page})
            )
            folders += [f for f in data if isinstance(f, dict)]
            if len(data) < FOLDER_PAGE_SIZE:
                return folders
            page += 1

    def find_folder(self, title=None, uid=None):
        """The folder with this uid, else the top-level folder with exactly this title, or None."""
        if uid:
            return self.get_folder(uid)
        if title is None:
            return None
        for folder in self.list_folders():
            if folder.get("title") == title:
                return folder
        return None

    def create_folder(self, title, uid=None):
        body = {"title": title}
        if uid:
            body["uid"] = uid
        try:
            return self._expect(dict, "/api/folders", self.post("/api/folders", body))
        except GrafanaError as exc:
            raise _refused(f"folder {title!r} (uid {uid!r})", exc) from None

    def rename_folder(self, folder, title):
        path = f"/api/folders/{_segment(folder['uid'])}"
        body = {"title": title, "version": folder.get("version"), "overwrite": False}
        return self._expect(dict, path, self.put(path, body))

    def ensure_folder(self, title, uid=None):
        """Find or create the folder; rename it when ``uid`` is given and its title differs.

        Returns (folder, action) with action None, "created" or "renamed". This always
        writes when something is missing: in check mode call find_folder instead.
        """
        folder = self.find_folder(title=title, uid=uid)
        if folder is None:
            if not title:
                raise GrafanaError(f"folder {uid} does not exist in Grafana at {self.base_url} and has no title")
            return self.create_folder(title, uid), "created"
        if title and folder.get("title") != title:
            return self.rename_folder(folder, title), "renamed"
        return folder, None

    # ------------------------------------------------------------------ dashboards
    def search_dashboards(self, folder_uid=None, query=None):
        """Dashboard hits of /api/search (type dash-db, every page).

        ``folder_uid`` limits to the dashboards directly in that folder ("" is the
        General folder); None searches everywhere.
        """
        hits = []
        page = 1
        params = {"type": "dash-db", "limit": SEARCH_PAGE_SIZE}
        if folder_uid is not None:
            params["folderUIDs"] = folder_uid or "general"
        if query:
            params["query"] = query
        while True:
            data = self._expect(list, "/api/search", self.get("/api/search", params=dict(params, page=page)))
            hits += [h for h in data if isinstance(h, dict) and h.get("type", "dash-db") == "dash-db"]
            if len(data) < SEARCH_PAGE_SIZE:
                return hits
            page += 1

    def get_dashboard(self, uid):
        """{"dashboard": {...}, "meta": {...}} of the dashboard with this uid, or None."""
        path = f"/api/dashboards/uid/{_segment(uid)}"
        data = self.get(path, allow_404=True)
        if data is NOT_FOUND:
            return None
        data = self._expect(dict, path, data)
        if not isinstance(data.get("dashboard"), dict):
            raise GrafanaError(f"GET {self.base_url}{path} returned no dashboard model")
        data.setdefault("meta", {})
        return data

    def save_dashboard(self, dashboard, folder_uid="", *, overwrite=False, message=None, version=None):
        """POST /api/dashboards/db. ``version`` is the version that was read (None: create).

        Without ``overwrite`` Grafana refuses (412) to save over a newer version or over
        another dashboard with the same title in the folder; both are reported clearly.
        """
        model = dict(dashboard)
        model["id"] = None
        if version is None:
            model.pop("version", None)
        else:
            model["version"] = version
        body = {"dashboard": model, "folderUid": folder_uid or "", "overwrite": bool(overwrite)}
        if message:
            body["message"] = message
        uid = model.get("uid")
        try:
            return self._expect(dict, "/api/dashboards/db", self.post("/api/dashboards/db", body))
        except GrafanaError as exc:
            if exc.status != 412:
                raise _refused(f"dashboard {uid!r} (title {model.get('title')!r})", exc) from None
            if exc.server_status == "version-mismatch" or (version is not None and exc.server_status == ""):
                read = f"version {version}" if version is not None else "it did not exist then"
                raise exc.retold(
                    f"dashboard {uid} was changed in Grafana since it was read ({read});"
                    f" re-run, or set overwrite: true to replace it ({exc.msg})"
                ) from None
            if exc.server_status == "name-exists":
                raise exc.retold(
                    f"dashboard {uid}: another dashboard titled {model.get('title')!r} already exists in the folder;"
                    f" Grafana needs unique titles per folder ({exc.msg})"
                ) from None
            raise _refused(f"dashboard {uid!r} (title {model.get('title')!r})", exc) from None

    def delete_dashboard(self, uid):
        """DELETE /api/dashboards/uid/:uid; False when it did not exist."""
        return self.delete(f"/api/dashboards/uid/{_segment(uid)}", allow_404=True) is not NOT_FOUND

    # ------------------------------------------------------------------ data sources
    def get_datasource(self, uid):
        return self._get_object(f"/api/datasources/uid/{_segment(uid)}")

    def get_datasource_by_name(self, name):
        return self._get_object(f"/api/datasources/name/{_segment(name)}")

    def create_datasource(self, body):
        return self._write_datasource("POST", "/api/datasources", body)

    def update_datasource(self, uid, body):
        return self._write_datasource("PUT", f"/api/datasources/uid/{_segment(uid)}", body)

    def _write_datasource(self, method, path, body):
        try:
            data = self._expect(dict, path, self.request_json(method, path, body=body))
        except GrafanaError as exc:
            raise _refused(f"data source {body.get('uid')!r} (name {body.get('name')!r})", exc) from None
        return data.get("datasource") if isinstance(data.get("datasource"), dict) else data

    def delete_datasource(self, uid):
        """DELETE /api/datasources/uid/:uid; False when it did not exist."""
        return self.delete(f"/api/datasources/uid/{_segment(uid)}", allow_404=True) is not NOT_FOUND
