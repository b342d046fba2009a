"""JSON over HTTP with clear errors: the transport every client of the project's modules builds on.

The Alertmanager, notification sink and Grafana clients (alertmanager_client.py,
grafana_client.py) subclass HttpClient. Only the Python 3 standard library and
ansible.module_utils.urls are needed, so it runs on any managed host (Python >= 3.8,
the ansible-core 2.19 minimum).

Every failure is raised as the client's ``error`` class (a subclass of HttpError)
with a message an operator can act on: which server, which request, which
credential was refused and what the server said.

Also here: the connection options every module has (``connection_argument_spec``,
documented by the doc fragment ``obs_http``).
"""

from __future__ import annotations

import json
import socket
import ssl
from http.client import HTTPException
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import Request, make_context

MAX_BODY_IN_MESSAGE = 500
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# socket.timeout is only an alias of TimeoutError from Python 3.10 on.
_TIMEOUTS = (socket.timeout, TimeoutError)


# Pass to AnsibleModule(mutually_exclusive=...) with connection_argument_spec.
CONNECTION_MUTUALLY_EXCLUSIVE = [("ca_path", "ca_cert")]


def connection_argument_spec(**options):
    """The connection options of every module (doc fragment obs_http), followed by ``options``."""
    spec = dict(
        url_username=dict(type="str"),
        url_password=dict(type="str", no_log=True),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
        ca_cert=dict(type="str"),
        timeout=dict(type="int", default=10),
    )
    spec.update(options)
    return spec


def connection_options(params, credentials=True):
    """HttpClient keyword arguments from the parameters of connection_argument_spec.

    ``credentials=False`` leaves the basic auth user and password out (for a server
    that must not get them).
    """
    options = dict(
        timeout=params["timeout"],
        validate_certs=params["validate_certs"],
        ca_path=params["ca_path"],
        ca_cert=params["ca_cert"],
    )
    if credentials:
        options.update(username=params["url_username"], password=params["url_password"])
    return options


def decode(raw):
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    return str(raw or "")


def server_message(raw, limit=MAX_BODY_IN_MESSAGE):
    """The human part of an error body, on one line and at most ``limit`` characters.

    Alertmanager and Grafana answer with a JSON string or {"message": "..."},
    proxies in front of them with text or HTML.
    """
    text = decode(raw).strip()
    if not text:
        return "(empty response body)"
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, str):
        text = data
    elif isinstance(data, dict):
        for key in ("message", "error", "msg"):
            if isinstance(data.get(key), str) and data[key]:
                text = data[key]
                break
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit] + "..."
    return text


class _NotFound:
    """Returned by HttpClient.request_text and request_json for a 404 when the caller allows it."""

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


class HttpError(Exception):
    """A request failed.

    ``status`` is the HTTP status (None when the server was not reached), ``body``
    the raw error body and ``data`` the decoded JSON error body when there was one.
    """

    def __init__(self, msg, url=None, status=None, body=None, data=None):
        super().__init__(msg)
        self.msg = msg
        self.url = url
        self.status = status
        self.body = body
        self.data = data

    def __str__(self):
        return self.msg

    def retold(self, msg):
        """The same error (status, URL, body) with another message."""
        return type(self)(msg, url=self.url, status=self.status, body=self.body, data=self.data)


class HttpClient:
    """JSON over HTTP against one server, with optional basic auth.

    Subclasses name the server (``service``, ``unreachable_message``), raise their own
    ``error`` class, add headers (``headers``) and explain refusals (``explain``).
    ``requests`` and ``writes`` (POST, PUT, PATCH, DELETE) count what was sent.
    """

    service = "HTTP server"
    error = HttpError
    user_agent = "ansible-obs-http-client"
    follow_redirects = "urllib2"

    def __init__(
        self, base_url, *, username=None, password=None, timeout=10, validate_certs=True, ca_path=None, ca_cert=None
    ):
        self.base_url = str(base_url).rstrip("/")
        self.username = username or None
        self.password = password
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.ca_cert = ca_cert or None
        self.requests = 0
        self.writes = 0
        self._context = None

    # ------------------------------------------------------------------ hooks
    def headers(self):
        """Extra request headers (authentication tokens and the like)."""
        return {}

    def unreachable_message(self, reason):
        return f"{self.service} {self.base_url} unreachable: {reason}"

    def not_json_hint(self):
        """Appended to the message about a body that is not JSON."""
        return ""

    def explain(self, status, answer):
        """The error message of an HTTP error; ``answer`` is '<method> <url> returned <status>: <message>'."""
        if status not in (401, 403):
            return answer
        if self.username is None:
            return f"{answer}; the {self.service} requires credentials: set url_username and url_password"
        return (
            f"{answer}; the {self.service} rejected the credentials of user {self.username!r}:"
            " check url_username and url_password"
        )

    # ------------------------------------------------------------------ requests
    def request_text(self, method, path, params=None, body=None, allow_404=False):
        """Send one request; return the decoded response body (NOT_FOUND for an allowed 404)."""
        url = self.base_url + path
        if params:
            url += "?" + urlencode(params)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        headers.update(self.headers())
        self.requests += 1
        if method in WRITE_METHODS:
            self.writes += 1
        raw = self._send(method, url, data, headers, allow_404)
        return raw if raw is NOT_FOUND else decode(raw)

    def request_json(self, method, path, params=None, body=None, allow_404=False):
        """Send one request; return the decoded JSON body (None for an empty body, NOT_FOUND for an allowed 404)."""
        text = self.request_text(method, path, params=params, body=body, allow_404=allow_404)
        if text is NOT_FOUND:
            return NOT_FOUND
        text = text.strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            url = self.base_url + path + ("?" + urlencode(params) if params else "")
            raise self.error(
                f"{method} {url} returned a body that is not JSON: {server_message(text)}{self.not_json_hint()}",
                url=url,
            ) from None

    # ------------------------------------------------------------------ transport
    def _ssl_context(self):
        """One SSL context for every request of this client (see open_url)."""
        if self._context is None:
            if self.ca_cert:
                self._context = self._ca_cert_context()
                return self._context
            try:
                self._context = make_context(cafile=self.ca_path, validate_certs=self.validate_certs)
            except OSError as exc:  # ssl.SSLError included
                raise self.error(f"cannot use ca_path {self.ca_path}: {exc}") from None
        return self._context

    def _ca_cert_context(self):
        """Trust exactly the CA given as PEM text (ca_cert, e.g. a vault value), as ca_path trusts its file."""
        if self.ca_path:
            raise self.error(f"ca_path ({self.ca_path}) and ca_cert are mutually exclusive: set one")
        if "-----BEGIN CERTIFICATE-----" not in self.ca_cert:
            raise self.error("cannot use ca_cert: it holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        try:
            context = ssl.create_default_context(cadata=self.ca_cert)
        except (ssl.SSLError, ValueError) as exc:
            raise self.error(f"cannot use ca_cert: {exc}") from None
        if not self.validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _send(self, method, url, data, headers, allow_404):
        """The raw response body (NOT_FOUND for an allowed 404); raises the client's error."""
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
                http_agent=self.user_agent,
                follow_redirects=self.follow_redirects,
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
        return self.error(f"{self.unreachable_message(reason)} ({method} {url})", url=url)

    def _http_error(self, method, url, exc):
        try:
            raw = exc.read() if exc.fp is not None else b""
        except (OSError, HTTPException):
            raw = b""
        try:
            data = json.loads(decode(raw)) if raw else None
        except ValueError:
            data = None
        message = server_message(raw) if raw else (exc.reason or "(empty response body)")
        answer = f"{method} {url} returned {exc.code}: {message}"
        return self.error(self.explain(exc.code, answer), url=url, status=exc.code, body=raw, data=data)
