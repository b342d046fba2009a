"""The WSGI application: routing, the handlers and the per-request middleware.

Per request (``App.__call__``): the correlation id (``X-Correlation-ID`` from the
request, else a new uuid4) and a request id go into the log context; the route
gives the ``path`` label (the plan's normalizePath of a matched route, else
"unmatched", so random paths cannot grow the label set); /api requests may get
an injected delay or 500 (faults); the answer carries ``X-Correlation-ID`` and
``X-Trace-Id`` (the server span's trace id, when tracing is on; /health and /metrics are
not traced, tracing.UNTRACED_PATHS); then the HTTP
metrics and one "request completed" log line (error for 5xx, warn for 4xx).
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import psycopg

from . import logs
from .cache import TOKEN_TTL_SECONDS, Cache, CacheUnavailable
from .faults import FaultError
from .metrics import CONTENT_TYPE, UNMATCHED_PATH, normalize_path
from .store import Conflict, Database, DatabaseUnavailable, DomainStore, MetricStore, ObjectiveStore, UserStore
from .validation import DOMAIN_FIELDS, METRIC_FIELDS, OBJECTIVE_FIELDS, ValidationError, parse_fields

MAX_BODY_BYTES = 1 << 20
MAX_INT_ID = 2**31 - 1
_CORRELATION_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_CLIENT_ERRORS = {
    400: "validation",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
}

log = logging.getLogger(logs.LOGGER_NAME)


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _fail(status: int, message: str, _req: Any = None) -> Response:
    raise HttpError(status, message)


class Request:
    def __init__(self, environ: dict, ctx: dict):
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        self.path = environ.get("PATH_INFO", "/") or "/"
        self.query = parse_qs(environ.get("QUERY_STRING", ""))
        self.ctx = ctx
        try:
            self.length = max(0, int(environ.get("CONTENT_LENGTH") or 0))
        except ValueError:
            self.length = 0
        self._body: bytes | None = None

    def header(self, name: str) -> str:
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"), "")

    def json(self) -> Any:
        if self.length > MAX_BODY_BYTES:
            raise HttpError(413, f"body: larger than {MAX_BODY_BYTES} bytes")
        if self._body is None:
            self._body = self.environ["wsgi.input"].read(self.length) if self.length else b""
        try:
            return json.loads(self._body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, f"body: not valid JSON ({exc})") from exc

    def int_param(self, name: str, default: int, lo: int, hi: int) -> int:
        raw = self.query.get(name, [str(default)])[-1]
        if not raw.isdigit() or not lo <= int(raw) <= hi:
            raise HttpError(400, f"{name}: expected an integer between {lo} and {hi}")
        return int(raw)


Response = tuple[int, Any]  # (status, JSON-able body or bytes or None)


class App:
    def __init__(self, cfg: dict, *, metrics: Any, tracing: Any, faults: Any, db: Database, cache: Cache):
        self.cfg = cfg
        self.metrics = metrics
        self.tracing = tracing
        self.faults = faults
        self.db = db
        self.cache = cache
        self.users = UserStore(db)
        stores = {
            "metrics": (MetricStore(db, cache, tracing, metrics), METRIC_FIELDS, r"(METRIC-[A-Z0-9-]+)"),
            "domains": (DomainStore(db, cache, tracing, metrics), DOMAIN_FIELDS, r"(\d{1,10})"),
            "objectives": (ObjectiveStore(db, cache, tracing, metrics), OBJECTIVE_FIELDS, r"(\d{1,10})"),
        }
        self.routes: list[tuple[re.Pattern, dict[str, Callable]]] = [
            (re.compile(r"/health"), {"GET": self.health}),
            (re.compile(r"/api/v1/auth/login"), {"POST": self.login}),
        ]
        if metrics.enabled:
            self.routes.append((re.compile(r"/metrics"), {"GET": self.exposition}))
        if faults.enabled:
            self.routes.append((re.compile(r"/admin/faults"), {"GET": self.faults_get, "PUT": self.faults_put}))
        for name, (store, spec, id_re) in stores.items():
            self.routes.append(
                (
                    re.compile(f"/api/v1/{name}"),
                    {
                        "GET": lambda req, s=store: self.list_items(req, s),
                        "POST": lambda req, s=store, f=spec: self.create_item(req, s, f),
                    },
                )
            )
            self.routes.append(
                (
                    re.compile(f"/api/v1/{name}/{id_re}"),
                    {
                        "GET": lambda req, i, s=store: self.get_item(req, s, i),
                        "PUT": lambda req, i, s=store, f=spec: self.update_item(req, s, f, i),
                        "DELETE": lambda req, i, s=store: self.delete_item(req, s, i),
                    },
                )
            )

    # -- middleware ---------------------------------------------------------
    def __call__(self, environ: dict, start_response: Callable) -> list[bytes]:
        start = time.perf_counter()
        incoming = environ.get("HTTP_X_CORRELATION_ID", "")
        correlation_id = incoming if _CORRELATION_RE.match(incoming) else str(uuid.uuid4())
        ctx = {"reqId": str(uuid.uuid4()), "correlationId": correlation_id, "userId": None}
        token = logs.request_fields.set(ctx)
        try:
            req = Request(environ, ctx)
            handler, params, route = self._route(req)
            span = self.tracing.server_span()
            if span is not None and span.is_recording():
                span.update_name(f"{req.method} {route}" if route != UNMATCHED_PATH else req.method)
                span.set_attribute("http.route", route)
                span.set_attribute("mdl.correlation_id", correlation_id)
            status, body, content_type = self._dispatch(req, handler, params)
            payload = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
            headers = [
                ("Content-Type", content_type),
                ("Content-Length", str(len(payload))),
                ("X-Correlation-ID", correlation_id),
            ]
            ids = self.tracing.current_ids()
            if ids:
                headers.append(("X-Trace-Id", ids[0]))
            if span is not None and ctx["userId"] and span.is_recording():
                span.set_attribute("enduser.id", ctx["userId"])
            start_response(f"{status} {HTTPStatus(status).phrase}", headers)
            elapsed = time.perf_counter() - start
            self.metrics.observe_request(
                req.method, route, status, seconds=elapsed, request_bytes=req.length, response_bytes=len(payload)
            )
            level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
            log.log(
                level,
                "request completed",
                extra={
                    "fields": {
                        "method": req.method,
                        "path": req.path,
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                    }
                },
            )
            return [payload]
        finally:
            logs.request_fields.reset(token)

    def _route(self, req: Request) -> tuple[Callable, tuple, str]:
        for pattern, methods in self.routes:
            m = pattern.fullmatch(req.path)
            if m:
                route = normalize_path(req.path)
                handler = methods.get(req.method)
                if handler is None:
                    allowed = ", ".join(sorted(methods))
                    return (
                        functools.partial(_fail, 405, f"method {req.method} not allowed (allowed: {allowed})"),
                        (),
                        route,
                    )
                return handler, m.groups(), route
        return functools.partial(_fail, 404, f"no route for {req.path}"), (), UNMATCHED_PATH

    def _dispatch(self, req: Request, handler: Callable, params: tuple) -> tuple[int, Any, str]:
        try:
            if req.path.startswith("/api/"):
                delay = self.faults.added_latency()
                if delay:
                    time.sleep(delay)
                if self.faults.inject_error():
                    self.metrics.error("injected", 500)
                    raise HttpError(500, "injected fault")
            status, body = handler(req, *params)
        except Exception as exc:
            status, body = self._error(exc)
        return status, body, CONTENT_TYPE if isinstance(body, bytes) else "application/json"

    def _error(self, exc: Exception) -> Response:
        """The answer to a failed request (and its errors_total count, if not counted where it happened)."""
        if isinstance(exc, ValidationError):
            exc = HttpError(400, str(exc))
        if isinstance(exc, HttpError):
            if exc.status < 500:
                self.metrics.error(_CLIENT_ERRORS.get(exc.status, "http"), exc.status)
            return exc.status, {"error": exc.message}
        if isinstance(exc, DatabaseUnavailable):
            log.error("database unavailable: %s", exc)
            return 503, {"error": "database unavailable"}
        if isinstance(exc, CacheUnavailable):
            self.metrics.error("cache", "unavailable")
            log.error("cache unavailable: %s", exc)
            return 503, {"error": "cache unavailable"}
        if isinstance(exc, psycopg.errors.QueryCanceled):
            log.error("database statement timed out", exc_info=exc)
            return 503, {"error": "database statement timeout"}
        if isinstance(exc, psycopg.Error):
            log.error("database error", exc_info=exc)
            return 500, {"error": "database error"}
        self.metrics.error("internal", 500)
        log.error("unhandled error", exc_info=exc)
        return 500, {"error": "internal error"}

    # -- auth ---------------------------------------------------------------
    def _require_user(self, req: Request) -> str:
        scheme, _, token = req.header("Authorization").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self.metrics.auth_failure("missing_token")
            raise HttpError(401, "authorization: a Bearer token is required")
        user = self.cache.token_user(token.strip())
        if user is None:
            self.metrics.auth_failure("invalid_token")
            raise HttpError(401, "authorization: invalid or expired token")
        req.ctx["userId"] = user
        self.cache.touch_user(user)
        return user

    def login(self, req: Request) -> Response:
        body = req.json()
        log.info("login attempt", extra={"fields": {"body": body}})
        if not isinstance(body, dict) or not all(
            isinstance(body.get(k), str) and body.get(k) for k in ("username", "password")
        ):
            raise HttpError(400, 'body: expected {"username": string, "password": string}')
        username = body["username"]
        reason = "injected" if self.faults.fail_logins else self.users.verify(username, body["password"])
        if reason:
            self.metrics.auth_failure(reason)
            log.warning("login failed", extra={"fields": {"reason": reason, "username": username}})
            raise HttpError(401, "invalid username or password")
        token = self.cache.issue_token(username)
        req.ctx["userId"] = username
        self.cache.touch_user(username, force=True)
        return 200, {"token": token, "token_type": "Bearer", "expires_in": TOKEN_TTL_SECONDS}

    # -- operational endpoints ----------------------------------------------
    def health(self, _req: Request) -> Response:
        checks, details = {}, {}
        for name, probe in (("database", self._db_ready), ("cache", self.cache.ping)):
            try:
                probe()
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = "error"
                details[name] = str(exc) or type(exc).__name__
        ok = all(v == "ok" for v in checks.values())
        body: dict[str, Any] = {"status": "ok" if ok else "error", "checks": checks}
        if details:
            body["details"] = details
        return (200 if ok else 503), body

    def _db_ready(self) -> None:
        self.db.ping()
        if not self.db.schema_ready:
            raise RuntimeError("schema not created yet")

    def exposition(self, _req: Request) -> Response:
        return 200, self.metrics.exposition()

    def _fault_auth(self, req: Request) -> None:
        if not hmac.compare_digest(req.header("X-Fault-Token").encode(), self.faults.token.encode()):
            raise HttpError(403, "X-Fault-Token: wrong or missing fault token")

    def faults_get(self, req: Request) -> Response:
        self._fault_auth(req)
        return 200, self.faults.state()

    def faults_put(self, req: Request) -> Response:
        self._fault_auth(req)
        try:
            faults = self.faults.parse(req.json())
        except FaultError as exc:
            raise HttpError(400, str(exc)) from exc
        log.warning("faults replaced", extra={"fields": {"faults": faults}})
        state = self.faults.replace(faults)
        return (202 if faults.get("stop") else 200), state

    # -- CRUD ---------------------------------------------------------------
    @staticmethod
    def _id(store: Any, raw: str) -> Any:
        if isinstance(store, MetricStore):
            return raw
        if int(raw) > MAX_INT_ID:
            raise HttpError(404, f"{store.attr} {raw} not found")
        return int(raw)

    def list_items(self, req: Request, store: Any) -> Response:
        limit = req.int_param("limit", 100, 1, 1000)
        offset = req.int_param("offset", 0, 0, 10**9)
        items = store.find_all(limit, offset)
        return 200, {"items": items, "count": len(items), "limit": limit, "offset": offset}

    def get_item(self, _req: Request, store: Any, raw_id: str) -> Response:
        item = store.find_by_id(self._id(store, raw_id))
        if item is None:
            raise HttpError(404, f"{store.prefix} {raw_id} not found")
        return 200, item

    def create_item(self, req: Request, store: Any, spec: dict) -> Response:
        self._require_user(req)
        data = parse_fields(req.json(), spec, partial=False)
        try:
            return 201, store.create(data)
        except Conflict as exc:
            raise HttpError(409, str(exc)) from exc

    def update_item(self, req: Request, store: Any, spec: dict, raw_id: str) -> Response:
        self._require_user(req)
        changes = parse_fields(req.json(), spec, partial=True)
        if changes.get("metric_id", raw_id) != raw_id:
            raise HttpError(400, "metric_id: cannot be changed (must match the URL)")
        try:
            item = store.update(self._id(store, raw_id), changes)
        except Conflict as exc:
            raise HttpError(409, str(exc)) from exc
        if item is None:
            raise HttpError(404, f"{store.prefix} {raw_id} not found")
        return 200, item

    def delete_item(self, req: Request, store: Any, raw_id: str) -> Response:
        self._require_user(req)
        if not store.delete(self._id(store, raw_id)):
            raise HttpError(404, f"{store.prefix} {raw_id} not found")
        return 204, None
