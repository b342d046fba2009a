"""A small client for the Grafana HTTP API (dashboards, folders, search, data sources).

Used by the grafana_dashboards and grafana_datasource modules. Only the Python 3
standard library and ansible.module_utils.urls are needed, so it runs on any
managed host (Python >= 3.8, the ansible-core 2.19 minimum).

Every failure is raised as GrafanaError with a message an operator can act on:
which Grafana, which request, which credential was refused and what the server
said. The client counts the write requests (POST, PUT, PATCH, DELETE) it sent in
``writes``, so modules can report how many writes a run made.
"""

from __future__ import annotations

import json
import socket
from http.client import HTTPException
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode

from ansible.module_utils.http_messages import server_message
from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import Request, make_context

USER_AGENT = "ansible-grafana-client"

# Grafana's maximum page size for /api/search and /api/folders.
SEARCH_PAGE_SIZE = 5000
FOLDER_PAGE_SIZE = 1000

# socket.timeout is only an alias of TimeoutError from Python 3.10 on.
_TIMEOUTS = (socket.timeout, TimeoutError)
_WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class _NotFound:
    """Returned by GrafanaClient.request for a 404 when the caller allows it."""

    def __repr__(self):
        return "NOT_FOUND"


NOT_FOUND = _NotFound()


def open_url(url, method=None, context=None, **kwargs):
    """ansible.module_utils.urls.open_url with a reusable SSL context.

    open_url builds a new SSL context for every request, reading every system CA
    certificate (some 15 ms each time); a run over hundreds of dashboards spent most
    of its time there. The client builds the context once and passes it here.
    """
    return Request().open(method or ("POST" if kwargs.get("data") else "GET"), url, context=context, **kwargs)


class GrafanaError(Exception):
    """A request to Grafana failed.

    ``status`` is the HTTP status (None when Grafana was not reached), ``data``
    the decoded JSON error body when there was one (Grafana answers
    ``{"message": ..., "status": ...}``).
    """

    def __init__(self, msg, url=None, status=None, data=None):
        super().__init__(msg)
        self.msg = msg
        self.url = url
        self.status = status
        self.data = data

    def __str__(self):
        return self.msg

    @property
    def server_status(self):
        """Grafana's machine-readable error status (``version-mismatch``, ``name-exists``...) or ''."""
        if isinstance(self.data, dict) and isinstance(self.data.get("status"), str):
            return self.data["status"]
        return ""


def _decode(raw):
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    return str(raw or "")


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
    return GrafanaError(f"{what}: {exc.msg}", url=exc.url, status=exc.status, data=exc.data)


class GrafanaClient:
    """JSON over HTTP against one Grafana, with basic auth or a service-account token."""

    def __init__(
        self,
        url,
        *,
        username=None,
        password=None,
        token=None,
        timeout=10,
        validate_certs=True,
        ca_path=None,
        org_id=None,
    ):
        if token and username:
            raise ValueError("use either a token or a username and password, not both")
        self.base_url = str(url).rstrip("/")
        self.username = username or None
        self.password = password
        self.token = token or None
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.org_id = org_id
        self.writes = 0
        self.requests = 0
        self._context = None

    def _ssl_context(self):
        """One SSL context for every request of this client (see open_url)."""
        if self._context is None:
            try:
                self._context = make_context(cafile=self.ca_path, validate_certs=self.validate_certs)
            except OSError as exc:  # ssl.SSLError included
                raise GrafanaError(f"cannot use ca_path {self.ca_path}: {exc}") from None
        return self._context

    # ------------------------------------------------------------------ transport
    @property
    def credential(self):
        """The credential in words, for error messages."""
        if self.token:
            return "the service-account token"
        if self.username:
            return f"user {self.username}'s password"
        return "anonymous access"

    def request(self, method, path, params=None, body=None, allow_404=False):
        """Send one request; return the decoded JSON body (None for an empty body).

        With ``allow_404`` a 404 answer returns NOT_FOUND instead of raising.
        """
        url = self.base_url + path
        if params:
            url += "?" + urlencode(params)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.org_id:
            headers["X-Grafana-Org-Id"] = str(self.org_id)
        self.requests += 1
        if method in _WRITE_METHODS:
            self.writes += 1
        raw = self._send(method, url, data, headers, allow_404)
        if raw is NOT_FOUND:
            return NOT_FOUND
        text = _decode(raw).strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise GrafanaError(
                f"{method} {url} returned a body that is not JSON: {server_message(text)}"
                f" (is {self.base_url} the URL of Grafana?)",
                url=url,
            ) from None

    def _send(self, method, url, data, headers, allow_404):
        """The raw response body (NOT_FOUND for an allowed 404); raises GrafanaError."""
        context = self._ssl_context()
        try:
            response = open_url(
                url,
                data=data,
                headers=headers,
                method=method,
                timeout=self.timeout,
                validate_certs=self.validate_certs,
                ca_path=self.ca_path,
                url_username=self.username,
                url_password=self.password if self.username else None,
                force_basic_auth=self.username is not None,
                http_agent=USER_AGENT,
                follow_redirects="safe",
                context=context,
            )
            return response.read()
        except HTTPError as exc:
            if exc.code == 404 and allow_404:
                return NOT_FOUND
            raise self._http_error(method, url, exc) from None
        except URLError as exc:
            reason = exc.reason
            if isinstance(reason, _TIMEOUTS):
                reason = f"timed out after {self.timeout} s"
            raise self._unreachable(method, url, reason) from None
        except _TIMEOUTS:
            raise self._unreachable(method, url, f"timed out after {self.timeout} s") from None
        except (UrlsConnectionError, HTTPException, OSError) as exc:
            raise self._unreachable(method, url, str(exc) or type(exc).__name__) from None

    def _unreachable(self, method, url, reason):
        return GrafanaError(f"Grafana at {self.base_url} is unreachable: {reason} ({method} {url})", url=url)

    def _http_error(self, method, url, exc):
        try:
            raw = exc.read() if exc.fp is not None else b""
        except (OSError, HTTPException):
            raw = b""
        try:
            data = json.loads(_decode(raw)) if raw else None
        except ValueError:
            data = None
        message = server_message(raw) if raw else (exc.reason or "(empty response body)")
        answer = f"{method} {url} returned {exc.code}: {message}"
        if exc.code == 401:
            if self.token:
                text = f"Grafana at {self.base_url} rejected the service-account token ({answer}): check token"
            elif self.username:
                text = (
                    f"Grafana at {self.base_url} rejected user {self.username}'s password ({answer}):"
                    " check url_username and url_password"
                )
            else:
                text = (
                    f"Grafana at {self.base_url} requires authentication ({answer}):"
                    " set token, or url_username and url_password"
                )
        elif exc.code == 403:
            text = (
                f"Grafana at {self.base_url} denied {self.credential} the permission for this request ({answer});"
                " data sources need the Admin role, dashboards and folders the Editor role"
            )
        elif exc.code == 404:
            text = f"{answer} (not found in Grafana at {self.base_url})"
        else:
            text = answer
        return GrafanaError(text, url=url, status=exc.code, data=data)

    def get(self, path, params=None, allow_404=False):
        return self.request("GET", path, params=params, allow_404=allow_404)

    def post(self, path, body):
        return self.request("POST", path, body=body)

    def put(self, path, body):
        return self.request("PUT", path, body=body)

    def delete(self, path, allow_404=False):
        return self.request("DELETE", path, allow_404=allow_404)

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
    def get_folder(self, uid):
        """The folder with this uid, or None."""
        path = f"/api/folders/{_segment(uid)}"
        data = self.get(path, allow_404=True)
        return None if data is NOT_FOUND else self._expect(dict, path, data)

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
                raise GrafanaError(
                    f"dashboard {uid} was changed in Grafana since it was read ({read});"
                    f" re-run, or set overwrite: true to replace it ({exc.msg})",
                    url=exc.url,
                    status=412,
                    data=exc.data,
                ) from None
            if exc.server_status == "name-exists":
                raise GrafanaError(
                    f"dashboard {uid}: another dashboard titled {model.get('title')!r} already exists in the folder;"
                    f" Grafana needs unique titles per folder ({exc.msg})",
                    url=exc.url,
                    status=412,
                    data=exc.data,
                ) from None
            raise _refused(f"dashboard {uid!r} (title {model.get('title')!r})", exc) from None

    def delete_dashboard(self, uid):
        """DELETE /api/dashboards/uid/:uid; False when it did not exist."""
        return self.delete(f"/api/dashboards/uid/{_segment(uid)}", allow_404=True) is not NOT_FOUND

    # ------------------------------------------------------------------ data sources
    def get_datasource(self, uid):
        path = f"/api/datasources/uid/{_segment(uid)}"
        data = self.get(path, allow_404=True)
        return None if data is NOT_FOUND else self._expect(dict, path, data)

    def get_datasource_by_name(self, name):
        path = f"/api/datasources/name/{_segment(name)}"
        data = self.get(path, allow_404=True)
        return None if data is NOT_FOUND else self._expect(dict, path, data)

    def create_datasource(self, body):
        return self._write_datasource("POST", "/api/datasources", body)

    def update_datasource(self, uid, body):
        return self._write_datasource("PUT", f"/api/datasources/uid/{_segment(uid)}", body)

    def _write_datasource(self, method, path, body):
        try:
            data = self._expect(dict, path, self.request(method, path, body=body))
        except GrafanaError as exc:
            raise _refused(f"data source {body.get('uid')!r} (name {body.get('name')!r})", exc) from None
        return data.get("datasource") if isinstance(data.get("datasource"), dict) else data

    def delete_datasource(self, uid):
        """DELETE /api/datasources/uid/:uid; False when it did not exist."""
        return self.delete(f"/api/datasources/uid/{_segment(uid)}", allow_404=True) is not NOT_FOUND
