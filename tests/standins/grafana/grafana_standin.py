#!/usr/bin/env python3
# ruff: noqa: PLR0911, PLR0912, PLR0915
"""Grafana STAND-IN for tests (tests/standins/grafana; not Grafana).

Real Grafana cannot be obtained on the machines this project is tested on.
This single-file program (Python 3 standard library only, so it runs on the
system python3 of Debian 12/13) implements the small part of Grafana's
command line and HTTP API that the project uses, following Grafana's
documented behaviour (status codes and response bodies), so that the
project's install path (official release archive layout, systemd unit,
``grafana server --config=... --homepath=...``) and its API clients run
against it. It is not Grafana and never claims to be: ``grafana --version``
prints ``Grafana stand-in <version> (tests/standins/grafana; not Grafana)``.

Command line
============

``grafana server [--config=PATH] [--homepath=PATH] [--pidfile=PATH] [cfg:...]``
    Reads ``<homepath>/conf/defaults.ini`` (required, as with Grafana), then
    ``cfg:default.<section>.<key>=<value>`` arguments, then the ``--config``
    file, then ``GF_<SECTION>_<KEY>`` environment variables, then
    ``cfg:<section>.<key>=<value>`` arguments. Values support ``%(key)s``
    interpolation, ``$__env{NAME}``, ``$__file{/path}`` (file content,
    whitespace trimmed) and ``${NAME}``. As in Grafana's ini parser an
    unquoted ``#`` or ``;`` starts a comment: quote such values with
    triple quotes (``\"\"\"p#ss\"\"\"``). Keys read: [paths] data, logs, plugins,
    provisioning; [server] protocol (http|https), http_addr, http_port,
    domain, root_url, serve_from_sub_path, cert_file, cert_key,
    min_tls_version (TLS1.2|TLS1.3); [database]
    type (sqlite3|mysql|postgres), path, host, ssl_mode; [security]
    admin_user, admin_password, admin_email; [users] allow_sign_up;
    [auth.anonymous] enabled, org_role; [dashboards] versions_to_keep,
    min_refresh_interval; [metrics] enabled, basic_auth_*; [plugins]
    allow_loading_unsigned_plugins. Bad configuration (unparsable file,
    invalid port, unknown database type, missing ``$__file`` target, port
    in use, invalid provisioning file, a database server that does not
    answer) exits with status 1 and a message on stderr. SIGTERM/SIGINT stop
    the server cleanly with status 0. Logs go to stdout in Grafana's logfmt
    style.

    State (folders, dashboards with their version history, data sources,
    users, service accounts and token hashes) is one JSON document in a
    sqlite database and survives restarts: with ``[database] type = sqlite3``
    (the default) the database is Grafana's own ``path`` (``grafana.db``,
    relative to the data path), read on every request and written on every
    change, so a broken database fails the API (500) and ``/api/health``
    (503, ``"database": "failing"``). With postgres or mysql the stand-in
    keeps its state in ``<paths.data>/grafana-standin.db`` but really
    connects to ``host`` (host:port) at startup (exit 1, as Grafana's first
    migration would) and on every ``/api/health``: a PostgreSQL server must
    answer an SSLRequest (and do SSL when ``ssl_mode`` is require or
    verify-*), a MySQL server must send its greeting. The JSON state file of
    earlier stand-ins (``grafana-standin-state.json``) is imported once. As in
    Grafana, ``admin_user``/``admin_password`` are used only when the admin
    user is first created (empty state); later changes of the ini do not
    change the password (use ``grafana cli admin reset-admin-password``).
    Secret values (secureJsonData, passwords, tokens) are stored only as
    salted or plain SHA-256 hashes.

``grafana cli [--homepath DIR] [--config FILE] [--pluginsDir DIR] [--pluginUrl URL|PATH] plugins install ID [VERSION]``
    Installs the plugin zip given with --pluginUrl (http(s)://, file:// or a
    local path) into ``<pluginsDir>/<ID>``: the zip's top directory holds
    ``plugin.json`` with ``id`` and ``info.version``. Without --pluginUrl it
    fails: the real CLI would download from grafana.com, and the stand-in has
    no network access. ``plugins ls`` lists ``<id> @ <version>``;
    ``plugins remove ID`` deletes ``<pluginsDir>/<ID>``.
    ``admin reset-admin-password [--password-from-stdin] PASSWORD`` changes
    the stored admin password (also while the server runs).

``grafana --version`` / ``grafana -v``
    ``Grafana stand-in <version> (tests/standins/grafana; not Grafana)``. The
    version is read from ``../VERSION`` next to ``bin/`` (the release layout
    built by package.sh), else ``$GRAFANA_STANDIN_VERSION``, else 11.3.0.

Provisioning files: the JSON-as-YAML contract
=============================================

The standard library has no YAML parser. The stand-in therefore reads
provisioning files as **JSON-compatible YAML**: every
``<provisioning>/datasources/*.yaml|*.yml`` and
``<provisioning>/dashboards/*.yaml|*.yml`` must be one JSON document (which
is valid YAML, so real Grafana reads the same file). Whole-line ``#``
comments and a leading ``---`` line are allowed and skipped; a file that is
only comments is ignored. Any other content is rejected: at startup the
server exits 1, on ``POST /api/admin/provisioning/*/reload`` it answers 500,
and the message names this contract. Supported keys (Grafana's schema,
apiVersion 1):

* datasources files: ``deleteDatasources`` [{name, orgId}], ``datasources``
  [{name, type, uid, url, access, user, database, basicAuth, basicAuthUser,
  withCredentials, isDefault, jsonData, secureJsonData, editable, orgId,
  version}]. Existing data sources are matched by name and updated;
  ``editable: false`` (the default) makes them read-only for the API. Only
  one ``isDefault`` per organisation is accepted (as in Grafana).
* dashboards files: ``providers`` [{name, type: file, folder, folderUid,
  disableDeletion, allowUiUpdates, updateIntervalSeconds, options: {path,
  foldersFromFilesStructure}}]. ``*.json`` dashboards below ``options.path``
  are loaded into the folder named ``folder`` (created when missing; empty:
  General). Changed files are picked up every ``updateIntervalSeconds``
  (default 10) and on reload; dashboards whose file disappeared are deleted
  unless ``disableDeletion``.

String values in provisioning files expand ``$__env{X}``, ``$__file{X}``,
``${X}`` and ``$X``; ``$$`` is a literal ``$`` (as in Grafana). Dashboard
JSON files are not expanded.

HTTP API (JSON, Grafana's documented shapes and codes)
======================================================

JSON is read and written as Grafana's Go code does (see "Go JSON" below):
dashboard models and data source jsonData are held as Go maps, so numbers
come back as float64 (``1.0`` -> ``1``, ``1e2`` -> ``100``, ``0.50`` ->
``0.5``, ``1e21`` -> ``1e+21``, integers beyond 2**53 rounded) and keys
sorted; NaN, Infinity and numbers beyond float64 are "bad request data".

Refused as Grafana refuses, with its status codes and messages: dashboards
(pkg/services/dashboards/errors.go, BuildSaveDashboardCommand): empty or
blank title 400 ``Dashboard title cannot be empty``, title over 5000
characters, message over 500, uid not ``^[a-zA-Z0-9_-]*$`` 400 ``uid
contains illegal characters`` (checked before) uid over 40 characters 400
``uid too long, max 40 characters``, unknown folderUid or folderId 400
``folder not found`` (apierrors.ToDashboardErrorResponse), ``isFolder`` 400,
the uid of a folder 400 ``Dashboard cannot be changed to a folder``, unknown
id 404, version mismatch and same title in the folder 412, provisioned 400;
title and uid are trimmed, a refresh below ``min_refresh_interval`` (5s) is
saved as that minimum. Folders (apps/folder validateOnCreate,
ToFolderErrorResponse): uid general/sharedwithme 400 ``invalid uid for
folder provided``, the dashboard uid rules, empty title 400, title General
400, unknown parent 404, same uid 409. Data sources (pkg/api/datasources.go):
taken name 409 ``data source with the same name already exists`` (on update
prefixed ``Failed to update datasource: ``), taken uid 409 on create (500 on
update), invalid uid 400 ``Invalid datasource UID.`` (failWrongDSUID, the
default since Grafana 12), read-only 403.

Authentication: ``Authorization: Basic`` with the admin user (or user
``api_key`` and a token as password), or ``Authorization: Bearer <service
account token>``. Failures are 401 with Grafana's bodies (``Invalid username
or password``, ``Invalid API key``, ``Unauthorized``). Without credentials
requests are anonymous only when [auth.anonymous] enabled. Roles: Viewer
reads dashboards/folders/search; Editor also writes them; Admin is needed for
data sources and service accounts; the provisioning reload endpoints need the
Grafana server admin (the basic-auth admin user).

Endpoints: see ``ROUTES`` below (health, frontend settings, search,
dashboards, folders, data sources, admin provisioning reload, service
accounts and tokens, org, user, plugins, /metrics) plus the stand-in's own
``GET /api/standin/stats`` -> {"writes", "requests", "mutations",
"by_endpoint", "recent_writes"} and ``DELETE /api/standin/stats`` (reset);
``writes`` counts every POST/PUT/PATCH/DELETE on /api/ (the stand-in's own
endpoints excluded), ``mutations`` those that changed state, so tests can
prove that a run made zero writes. ``GET
/api/standin/datasources/<uid>/secure-json-hashes`` returns the SHA-256 of
each stored secureJsonData value, so tests can check secrets without the API
ever returning them.
"""

from __future__ import annotations

import base64
import copy
import decimal
import hashlib
import hmac
import io
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import ssl
import string
import struct
import sys
import threading
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from contextlib import closing
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STANDIN_NAME = "Grafana stand-in"
STANDIN_TAG = "tests/standins/grafana; not Grafana"
DEFAULT_VERSION = "11.3.0"
STANDIN_COMMIT = "standin"
# State lives in the sqlite database of [database] (type sqlite3), else in this file of the data path.
STATE_DB = "grafana-standin.db"
LEGACY_STATE_FILE = "grafana-standin-state.json"  # earlier stand-ins kept their state here; imported once
STATE_FORMAT = 1
ORG_ID = 1
ORG_NAME = "Main Org."
ROLE_RANK = {"None": 0, "Viewer": 1, "Editor": 2, "Admin": 3}
# [server] min_tls_version: the versions Grafana accepts (its default is TLS1.2).
TLS_VERSIONS = {"TLS1.2": ssl.TLSVersion.TLSv1_2, "TLS1.3": ssl.TLSVersion.TLSv1_3}
UID_RE = re.compile(r"^[a-zA-Z0-9\-_]*$")
RESTART_NOTICE = (
    "Please restart Grafana after installing or removing plugins. "
    "Refer to Grafana documentation for instructions if necessary."
)
JSON_AS_YAML = (
    "the Grafana stand-in reads provisioning files as JSON-compatible YAML "
    "(one JSON document; whole-line # comments allowed), see tests/standins/grafana/grafana_standin.py"
)


# --------------------------------------------------------------------------- helpers


def standin_version() -> str:
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "VERSION", here / "VERSION"):
        try:
            text = candidate.read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if text:
            return text.lstrip("v")
    return os.environ.get("GRAFANA_STANDIN_VERSION", DEFAULT_VERSION).lstrip("v")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def slugify(title: str) -> str:
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def new_uid() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return secrets.choice(string.ascii_lowercase) + "".join(secrets.choice(alphabet) for _ in range(13))


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def hash_password(password: str, salt: str) -> str:
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt.encode("utf-8"), 10000).hex()


def truthy(value: str | None) -> bool:
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def go_int(value: object) -> int:
    """simplejson's MustInt64 of a JSON value: integral numbers (int or float64), else 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0
    return int(value)


# --------------------------------------------------------------------------- Go JSON
#
# Grafana is a Go program. Routing dashboards through its Kubernetes-style API
# (feature toggle kubernetesClientDashboardsFolders, "default on by G12" says
# Grafana's pkg/tests/apis/openapi_test.go) decodes the dashboard model with encoding/json into map[string]any
# (pkg/apimachinery/apis/common/v0alpha1/unstructured.go): every number becomes a
# float64 and every object a Go map, and encoding/json writes it back with
# sorted keys and Go's float64 format. So a dashboard saved with 1.0, 1e2 or
# 0.50 reads back as 1, 100 and 0.5, integers beyond 2**53 lose precision, and
# NaN, Infinity or numbers beyond float64 are refused. The older path
# (simplejson with UseNumber) keeps number literals as written; the stand-in
# follows the stricter, normalising one for dashboards and data source jsonData.


class GoJSONError(ValueError):
    pass


def go_float(value: float) -> str:
    """A float64 as Go's encoding/json writes it.

    strconv.FormatFloat(x, 'f', -1, 64) for 1e-6 <= |x| < 1e21, else 'e' with the
    exponent cleaned up as encoding/json does (1e-07 -> 1e-7); shortest digits
    that read back as the same float64 (Python's repr has the same digits).
    """
    if math.isnan(value) or math.isinf(value):
        raise GoJSONError(f"json: unsupported value: {value}")
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digit_tuple, exponent = decimal.Decimal(repr(value)).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    if 1e-6 <= abs(value) < 1e21:
        if exponent >= 0:
            text = digits + "0" * exponent
        elif -exponent < len(digits):
            text = digits[:exponent] + "." + digits[exponent:]
        else:
            text = "0." + "0" * (-exponent - len(digits)) + digits
    else:
        power = exponent + len(digits) - 1
        text = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        text += f"e-{-power}" if power < 0 else f"e+{power:02d}"
    return ("-" if sign else "") + text


_GO_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_string(text: str) -> str:
    """A string as encoding/json writes it: UTF-8, <, > and & escaped, invalid UTF-16 as U+FFFD."""
    if not text.isascii():
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    out = json.dumps(text, ensure_ascii=False)
    if any(c in out for c in _GO_HTML_ESCAPES):
        out = "".join(_GO_HTML_ESCAPES.get(c, c) for c in out)
    return out


def go_dumps(value: object) -> str:
    """Compact JSON as encoding/json writes it (dicts keep their order: structs, or maps sorted by go_model)."""
    kind = type(value)
    if kind is str:
        return go_string(value)  # type: ignore[arg-type]
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        return go_float(value)  # type: ignore[arg-type]
    if kind is dict:
        items = value.items()  # type: ignore[union-attr]
        return "{" + ",".join(go_string(str(k)) + ":" + go_dumps(v) for k, v in items) + "}"
    if kind in (list, tuple):
        return "[" + ",".join(go_dumps(v) for v in value) + "]"  # type: ignore[union-attr]
    raise TypeError(f"cannot encode {kind.__name__} as JSON")


def _go_constant(name: str) -> object:
    raise GoJSONError(f"invalid character {name[0]!r} looking for beginning of value")


def _go_number(text: str) -> object:
    """An int (exact, for the stand-in's own fields) or float, refused when it does not fit a float64."""
    value = int(text) if text.lstrip("-").isdigit() else float(text)
    try:
        if math.isinf(float(value)):
            raise OverflowError
    except OverflowError:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise GoJSONError(f"json: cannot unmarshal number {shown} into Go value of type float64") from None
    return value


def go_loads(raw: str | bytes) -> object:
    """JSON as Go's encoding/json reads it: NaN, Infinity and numbers beyond float64 are errors."""
    return json.loads(raw, parse_constant=_go_constant, parse_float=_go_number, parse_int=_go_number)


def go_model(value: object) -> object:
    """A JSON value as Grafana holds it in a map[string]any: numbers float64, object keys sorted."""
    kind = type(value)
    if kind is dict:
        return {str(k): go_model(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}  # type: ignore[union-attr]
    if kind in (list, tuple):
        return [go_model(v) for v in value]  # type: ignore[union-attr]
    if kind is int:
        return float(value)  # type: ignore[arg-type]
    return value


_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GRAFANA_DURATION_UNITS = {"d": 86400, "w": 7 * 86400, "M": 30 * 86400, "y": 365 * 86400}
_GO_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def grafana_duration(text: str) -> float | None:
    """Seconds of a Grafana duration (gtime.ParseDuration: 5s, 1h30m, 2d, 1w, 1M, 1y), None when invalid."""
    match = re.fullmatch(r"(\d+)([dwMy])", text)
    if match:
        return int(match.group(1)) * _GRAFANA_DURATION_UNITS[match.group(2)]
    body = text.lstrip("+-")
    if body == "0":
        return 0.0
    if not body or _GO_DURATION_PART.sub("", body):
        return None
    total = sum(float(n) * _GO_DURATION_UNITS[u] for n, u in _GO_DURATION_PART.findall(body))
    return -total if text.startswith("-") else total


class Logger:
    """logfmt lines on stdout, like Grafana's console logger."""

    def __init__(self, level: str = "info") -> None:
        self.levels = {"debug": 0, "info": 1, "warn": 2, "error": 3}
        self.level = self.levels.get(level, 1)
        self.lock = threading.Lock()

    @staticmethod
    def _fmt(value: object) -> str:
        text = str(value)
        if text == "" or any(c in text for c in ' ="\t\n'):
            return json.dumps(text)
        return text

    def log(self, level: str, logger: str, msg: str, **fields: object) -> None:
        if self.levels.get(level, 1) < self.level:
            return
        t = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        parts = [f"logger={logger}", f"t={t}", f"level={level}", f"msg={self._fmt(msg)}"]
        parts += [f"{k}={self._fmt(v)}" for k, v in fields.items()]
        with self.lock:
            print(" ".join(parts), flush=True)

    def info(self, logger: str, msg: str, **fields: object) -> None:
        self.log("info", logger, msg, **fields)

    def warn(self, logger: str, msg: str, **fields: object) -> None:
        self.log("warn", logger, msg, **fields)

    def error(self, logger: str, msg: str, **fields: object) -> None:
        self.log("error", logger, msg, **fields)


# --------------------------------------------------------------------------- configuration


class ConfigError(Exception):
    pass


def parse_ini(text: str, filename: str) -> dict[str, dict[str, str]]:
    """Parse an ini file the way Grafana's go-ini settings do (defaults options).

    Root keys go to section "". ';'/'#' start comments, also inline in an
    unquoted value; '=' or ':' separates key and value; values may be quoted
    with "...", `...` or triple quotes (which may span lines).
    """
    sections: dict[str, dict[str, str]] = {"": {}}
    current = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            end = line.find("]")
            if end == -1:
                raise ConfigError(f"{filename}:{i}: unclosed section: {line}")
            current = line[1:end].strip()
            sections.setdefault(current, {})
            continue
        positions = [p for p in (line.find("="), line.find(":")) if p != -1]
        if not positions:
            raise ConfigError(f"{filename}:{i}: key-value delimiter not found: {line}")
        pos = min(positions)
        key = line[:pos].strip()
        value = line[pos + 1 :].strip()
        if value.startswith('"""'):
            rest = value[3:]
            if '"""' in rest:
                value = rest[: rest.index('"""')]
            else:
                buf = [rest]
                while True:
                    if i >= len(lines):
                        raise ConfigError(f"{filename}: unclosed triple quote for key {key}")
                    nxt = lines[i]
                    i += 1
                    if '"""' in nxt:
                        buf.append(nxt[: nxt.index('"""')])
                        break
                    buf.append(nxt)
                value = "\n".join(buf)
        elif value[:1] in ('"', "`") and value.find(value[0], 1) != -1:
            value = value[1 : value.find(value[0], 1)]
        else:
            cut = [p for p in (value.find("#"), value.find(";")) if p != -1]
            if cut:
                value = value[: min(cut)].rstrip()
        sections[current][key] = value
    return sections


_EXPANDER_RE = re.compile(r"\$__(\w+)\{(.*?)\}")
_ENV_RE = re.compile(r"\$\{(\w+)\}")
_INTERP_RE = re.compile(r"%\(([^)]+)\)s")


def expand_value(value: str) -> str:
    """Grafana's $__env{}, $__file{} and ${} expansion of a config value."""

    def expander(match: re.Match) -> str:
        kind, arg = match.group(1), match.group(2)
        if kind == "env":
            return os.environ.get(arg, "")
        if kind == "file":
            try:
                return Path(arg).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"could not expand $__file{{{arg}}}: {exc.strerror or exc}") from exc
        raise ConfigError(f"unsupported variable expander $__{kind}{{...}} (the stand-in knows env and file)")

    value = _EXPANDER_RE.sub(expander, value)
    return _ENV_RE.sub(lambda m: os.environ.get(m.group(1), ""), value)


class Config:
    def __init__(self, homepath: Path, config_file: Path | None, overrides: list[str]) -> None:
        self.homepath = homepath
        self.config_file = config_file
        defaults = homepath / "conf" / "defaults.ini"
        if not defaults.is_file():
            raise ConfigError(
                f"Could not find config defaults ({defaults}), make sure homepath command line "
                "parameter is set or working directory is homepath"
            )
        self.raw = parse_ini(self._read(defaults), str(defaults))
        default_overrides = [o[len("cfg:default.") :] for o in overrides if o.startswith("cfg:default.")]
        plain_overrides = [
            o[len("cfg:") :] for o in overrides if o.startswith("cfg:") and not o.startswith("cfg:default.")
        ]
        self._apply_overrides(default_overrides)
        if config_file is None:
            custom = homepath / "conf" / "custom.ini"
            config_file = custom if custom.is_file() else None
            self.config_file = config_file
        if config_file is not None:
            for section, values in parse_ini(self._read(config_file), str(config_file)).items():
                self.raw.setdefault(section, {}).update(values)
        for section, values in self.raw.items():
            for key in values:
                env = "_".join(p for p in ("GF", section, key) if p)
                env = re.sub(r"[.\-]", "_", env).upper()
                if env in os.environ:
                    values[key] = os.environ[env]
        self._apply_overrides(plain_overrides)
        # Expand every value now, so a missing $__file target fails at startup as in Grafana.
        self.values: dict[str, dict[str, str]] = {}
        for section, values in self.raw.items():
            self.values[section] = {k: expand_value(self._interpolate(section, v)) for k, v in values.items()}

    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"failed to parse {str(path)!r}: {exc.strerror or exc}") from exc

    def _apply_overrides(self, overrides: list[str]) -> None:
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep or "." not in key:
                raise ConfigError(f"invalid config override {item!r}: expected [default.]<section>.<key>=<value>")
            section, _, name = key.rpartition(".")
            self.raw.setdefault(section, {})[name] = value

    def _interpolate(self, section: str, value: str, depth: int = 0) -> str:
        if depth > 99 or "%(" not in value:
            return value

        def repl(match: re.Match) -> str:
            name = match.group(1)
            found = self.raw.get(section, {}).get(name)
            if found is None:
                found = self.raw.get("", {}).get(name)
            return match.group(0) if found is None else self._interpolate(section, found, depth + 1)

        return _INTERP_RE.sub(repl, value)

    def get(self, section: str, key: str, default: str = "") -> str:
        return self.values.get(section, {}).get(key, default)

    def path(self, section: str, key: str, default: str) -> Path:
        value = self.get(section, key, default) or default
        path = Path(value)
        return path if path.is_absolute() else self.homepath / path


# --------------------------------------------------------------------------- state


class DatabaseError(Exception):
    pass


_STATE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS standin_state ("
    "id INTEGER PRIMARY KEY CHECK (id = 1), revision INTEGER NOT NULL, data TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS standin_health (id INTEGER PRIMARY KEY CHECK (id = 1), checked TEXT NOT NULL)",
)


class Store:
    """The stand-in's state: one JSON document in a sqlite database (table standin_state).

    Every request reads the revision (and the document when another process,
    ``grafana cli``, changed it) and every change writes the document back, so a
    database that cannot be read or written fails the API as it would in Grafana.
    The journal mode stays DELETE: ``grafana cli`` run as root must not leave
    root-owned -wal/-shm files the server's user cannot open.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.data: dict = {}
        self.revision: int | None = None

    @staticmethod
    def empty() -> dict:
        return {
            "format": STATE_FORMAT,
            "note": f"state of the {STANDIN_NAME} ({STANDIN_TAG})",
            "next_id": {"dashboard": 1, "datasource": 1, "user": 1, "token": 1},
            "users": {},
            "folders": {},
            "dashboards": {},
            "datasources": {},
            "tokens": {},
        }

    def connect(self, create: bool = False) -> sqlite3.Connection:
        """A new connection; without ``create`` a missing database file is an error, not a new empty one."""
        uri = "file:" + urllib.parse.quote(str(self.path)) + ("?mode=rwc" if create else "?mode=rw")
        try:
            return sqlite3.connect(uri, uri=True, timeout=10)
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open the database {self.path}: {exc}") from exc

    def _use(self, row: tuple[int, str] | None) -> None:
        if row is None:
            raise DatabaseError(f"the database {self.path} holds no stand-in state (table standin_state is empty)")
        revision, text = row
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise DatabaseError(f"the stand-in state in {self.path} is not JSON: {exc}") from exc
        if data.get("format") != STATE_FORMAT:
            raise DatabaseError(f"the stand-in state in {self.path} has unknown format {data.get('format')!r}")
        self.data, self.revision = data, revision

    def load(self, create: bool = True, legacy: Path | None = None) -> bool:
        """Open the database (created with ``create``) and read the state; False when it had none yet.

        ``legacy`` is the JSON state file of earlier stand-ins, imported when the database is new.
        """
        with self.lock:
            try:
                if create:  # as Grafana's sqlstore, which creates the directory of [database] path
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                with closing(self.connect(create)) as conn, conn:
                    for statement in _STATE_SCHEMA:
                        conn.execute(statement)
                    row = conn.execute("SELECT revision, data FROM standin_state WHERE id = 1").fetchone()
            except (OSError, sqlite3.Error) as exc:
                raise DatabaseError(f"cannot use the database {self.path}: {exc}") from exc
            if row is not None:
                self._use(row)
                return True
            self.data, self.revision = self.empty(), None
            if legacy is not None and legacy.is_file():
                try:
                    self._use((0, legacy.read_text(encoding="utf-8")))
                except (OSError, DatabaseError) as exc:
                    raise DatabaseError(f"cannot import the stand-in state {legacy}: {exc}") from exc
                self.revision = None
                self.save()
                try:
                    legacy.rename(legacy.with_name(legacy.name + ".imported"))
                except OSError as exc:
                    raise DatabaseError(f"imported {legacy} but cannot rename it: {exc.strerror or exc}") from exc
                return True
            return False

    def refresh(self) -> None:
        """Read the state again when another process (grafana cli) changed it."""
        with self.lock:
            try:
                with closing(self.connect()) as conn:
                    row = conn.execute("SELECT revision FROM standin_state WHERE id = 1").fetchone()
                    if row is None or row[0] != self.revision:
                        self._use(conn.execute("SELECT revision, data FROM standin_state WHERE id = 1").fetchone())
            except sqlite3.Error as exc:
                raise DatabaseError(f"cannot read the database {self.path}: {exc}") from exc

    def save(self) -> None:
        with self.lock:
            text = json.dumps(self.data, sort_keys=True, separators=(",", ":"))
            try:
                with closing(self.connect(create=self.revision is None)) as conn, conn:
                    conn.execute(
                        "INSERT INTO standin_state (id, revision, data) VALUES (1, 1, ?) "
                        "ON CONFLICT (id) DO UPDATE SET revision = revision + 1, data = excluded.data",
                        (text,),
                    )
                    self.revision = conn.execute("SELECT revision FROM standin_state WHERE id = 1").fetchone()[0]
            except sqlite3.Error as exc:
                raise DatabaseError(f"cannot write the database {self.path}: {exc}") from exc

    def check(self) -> str | None:
        """Why the database is not usable (it must answer SELECT 1, hold the state and take a write), or None."""
        try:
            with closing(self.connect()) as conn, conn:
                conn.execute("SELECT 1").fetchone()
                if conn.execute("SELECT revision FROM standin_state WHERE id = 1").fetchone() is None:
                    return f"the database {self.path} holds no stand-in state"
                conn.execute(
                    "INSERT INTO standin_health (id, checked) VALUES (1, ?) "
                    "ON CONFLICT (id) DO UPDATE SET checked = excluded.checked",
                    (now_iso(),),
                )
        except (sqlite3.Error, DatabaseError) as exc:
            return str(exc)
        return None

    def next_id(self, kind: str) -> int:
        value = self.data["next_id"][kind]
        self.data["next_id"][kind] = value + 1
        return value


class Database:
    """[database] of grafana.ini: where the state is kept and what /api/health probes.

    sqlite3: the state is kept in ``path`` (relative to the data path), which
    /api/health opens and queries. postgres and mysql: the stand-in does not
    speak their protocols, it keeps its state in ``<data>/grafana-standin.db``,
    and /api/health (and startup) really connects to ``host`` (host:port) and
    checks that a PostgreSQL server answers an SSLRequest (refused with
    ``ssl_mode`` require/verify-* when it does not do SSL), or that a MySQL
    server sends its protocol-10 greeting.
    """

    def __init__(self, cfg: Config, data_dir: Path) -> None:
        self.type = cfg.get("database", "type", "sqlite3") or "sqlite3"
        if self.type not in ("sqlite3", "mysql", "postgres"):
            raise ConfigError(f"unknown database type: {self.type!r} (Grafana supports sqlite3, mysql and postgres)")
        self.host, self.port = "", 0
        self.ssl_mode = cfg.get("database", "ssl_mode", "disable") or "disable"
        if self.type == "sqlite3":
            path = Path(cfg.get("database", "path", "grafana.db") or "grafana.db")
            self.path = path if path.is_absolute() else data_dir / path
            return
        self.path = data_dir / STATE_DB
        host = cfg.get("database", "host", "127.0.0.1:3306") or "127.0.0.1"
        name, sep, port = host.rpartition(":")
        if not sep or "]" in port or (":" in name and not name.startswith("[")):
            name, port = host, ""
        if port and not port.isdigit():
            raise ConfigError(f"[database] host {host!r}: invalid port {port!r}")
        if host.startswith("/"):
            name, port = host, ""
        self.host = name.strip("[]") or "127.0.0.1"
        self.port = int(port) if port else {"postgres": 5432, "mysql": 3306}[self.type]

    def describe(self) -> str:
        return str(self.path) if self.type == "sqlite3" else f"{self.type} at {self.host}:{self.port}"

    def probe(self, timeout: float = 2.0) -> str | None:
        """Why the postgres/mysql server is not usable, or None (connection errors in Go's dial wording)."""
        address = f"{self.host}:{self.port}"
        try:
            if self.host.startswith("/"):  # a unix socket: libpq's directory, or MySQL's socket file
                address = f"{self.host}/.s.PGSQL.{self.port}" if self.type == "postgres" else self.host
                sock = socket.socket(socket.AF_UNIX)
                sock.settimeout(timeout)
                try:
                    sock.connect(address)
                except OSError:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as exc:
            reason = "i/o timeout" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc)).lower()
            return f"dial {'unix' if self.host.startswith('/') else 'tcp'} {address}: connect: {reason}"
        with sock:
            try:
                if self.type == "postgres":
                    sock.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest
                    answer = sock.recv(1)
                else:
                    answer = sock.recv(5)  # the server speaks first: packet header, protocol version 10
            except OSError as exc:
                answer = f"no answer: {exc.strerror or exc}".encode()
        if self.type == "mysql":
            if len(answer) < 5 or answer[4] != 10:
                return f"{address} did not greet like a MySQL server (protocol 10): {answer!r}"
        elif answer not in (b"S", b"N"):
            return f"{address} did not answer an SSLRequest like a PostgreSQL server: {answer!r}"
        elif answer == b"N" and self.ssl_mode in ("require", "verify-ca", "verify-full"):
            return "pq: SSL is not enabled on the server"
        return None

    def check(self, store: Store) -> str | None:
        return store.check() if self.type == "sqlite3" else self.probe()


class ApiError(Exception):
    def __init__(self, status: int, body: dict) -> None:
        super().__init__(body.get("message", ""))
        self.status = status
        self.body = body


def err(http_status: int, message: str, /, **extra: object) -> ApiError:
    return ApiError(http_status, {"message": message, **extra})


class ProvisioningError(Exception):
    pass


# --------------------------------------------------------------------------- the application


class App:
    def __init__(self, cfg: Config, console: Logger) -> None:
        self.cfg = cfg
        self.console = console
        self.version = standin_version()
        self.data_dir = cfg.path("paths", "data", "data")
        self.logs_dir = cfg.path("paths", "logs", "data/log")
        self.plugins_dir = cfg.path("paths", "plugins", "data/plugins")
        self.provisioning_dir = cfg.path("paths", "provisioning", "conf/provisioning")
        self.database = Database(cfg, self.data_dir)
        self.store = Store(self.database.path)
        self.min_refresh = cfg.get("dashboards", "min_refresh_interval", "5s")
        root_url = cfg.get("server", "root_url") or "http://localhost:3000/"
        self.sub_path = urllib.parse.urlparse(root_url).path.rstrip("/")
        self.serve_from_sub_path = truthy(cfg.get("server", "serve_from_sub_path"))
        self.anonymous = truthy(cfg.get("auth.anonymous", "enabled"))
        self.anonymous_role = cfg.get("auth.anonymous", "org_role", "Viewer") or "Viewer"
        self.allow_sign_up = truthy(cfg.get("users", "allow_sign_up"))
        self.versions_to_keep = int(cfg.get("dashboards", "versions_to_keep", "20") or 20)
        self.unsigned_allowed = {
            p.strip() for p in cfg.get("plugins", "allow_loading_unsigned_plugins").split(",") if p.strip()
        }
        self.plugins: dict[str, dict] = {}
        self.providers: list[dict] = []
        self.stats_lock = threading.Lock()
        self.reset_stats()
        self.started = time.time()
        self._last_poll = 0.0
        self._applied_signature: dict[str, tuple[int, int]] = {}

    # ----------------------------------------------------------------- stats

    def reset_stats(self) -> None:
        with self.stats_lock:
            self.stats = {"writes": 0, "requests": 0, "mutations": 0, "by_endpoint": {}, "recent_writes": []}

    def count(self, method: str, route: str, path: str, status: int, mutated: bool) -> None:
        with self.stats_lock:
            self.stats["requests"] += 1
            key = f"{method} {route}"
            self.stats["by_endpoint"][key] = self.stats["by_endpoint"].get(key, 0) + 1
            if method in ("POST", "PUT", "PATCH", "DELETE"):
                self.stats["writes"] += 1
                self.stats["recent_writes"] = [*self.stats["recent_writes"], f"{method} {path} {status}"][-50:]
            if mutated:
                self.stats["mutations"] += 1

    # ----------------------------------------------------------------- startup

    def start(self) -> None:
        for directory in (self.data_dir, self.logs_dir, self.plugins_dir):
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"failed to create directory {directory}: {exc.strerror or exc}") from exc
        if not os.access(self.data_dir, os.W_OK):
            raise ConfigError(f"data directory {self.data_dir} is not writable")
        database = self.database
        self.console.info("sqlstore", "Connecting to DB", dbtype=database.type, database=database.describe())
        if database.type != "sqlite3":
            problem = database.probe()
            if problem:
                # What Grafana says when its first migration cannot reach the database.
                raise ConfigError(f"Service init failed: migration failed (id = create migration_log table): {problem}")
        try:
            existed = self.store.load(legacy=self.data_dir / LEGACY_STATE_FILE)
            if not existed or not self.store.data["users"]:
                self._create_admin()
            self.store.save()
        except DatabaseError as exc:
            raise ConfigError(f"Service init failed: {exc}") from exc
        if database.type != "sqlite3":
            self.console.info(
                "sqlstore", "stand-in state kept in a sqlite file", dbtype=database.type, path=str(self.store.path)
            )
        self._load_plugins()
        try:
            self.provision_datasources()
            self.provision_dashboards()
        except ProvisioningError as exc:
            raise ConfigError(str(exc)) from exc

    def _create_admin(self) -> None:
        login = self.cfg.get("security", "admin_user", "admin") or "admin"
        password = self.cfg.get("security", "admin_password", "admin")
        salt = secrets.token_hex(8)
        uid = self.store.next_id("user")
        self.store.data["users"][str(uid)] = {
            "id": uid,
            "login": login,
            "email": self.cfg.get("security", "admin_email", "admin@localhost") or "admin@localhost",
            "name": "",
            "salt": salt,
            "password": hash_password(password, salt),
            "isGrafanaAdmin": True,
            "isServiceAccount": False,
            "role": "Admin",
            "created": now_iso(),
            "updated": now_iso(),
        }
        self.console.info("sqlstore", "Created default admin", user=login)

    def _load_plugins(self) -> None:
        self.plugins = {}
        if not self.plugins_dir.is_dir():
            return
        for entry in sorted(self.plugins_dir.iterdir()):
            meta_path = entry / "plugin.json"
            if not meta_path.is_file():
                continue
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                self.console.error("plugins.loader", "Could not parse plugin.json", path=str(meta_path), error=str(exc))
                continue
            plugin_id = str(meta.get("id", entry.name))
            signed = (entry / "MANIFEST.txt").is_file()
            if not signed and plugin_id not in self.unsigned_allowed:
                self.console.warn(
                    "plugins.validator.signature",
                    "Skipping loading plugin due to problem with signature",
                    pluginId=plugin_id,
                    status="unsigned",
                )
                continue
            self.plugins[plugin_id] = {"meta": meta, "dir": str(entry), "signature": "valid" if signed else "unsigned"}
            self.console.info(
                "plugin.store", "Plugin registered", pluginId=plugin_id, version=meta.get("info", {}).get("version")
            )

    # ----------------------------------------------------------------- provisioning

    def _provisioning_files(self, kind: str) -> list[Path]:
        directory = self.provisioning_dir / kind
        if not directory.is_dir():
            return []
        return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))

    @staticmethod
    def read_json_yaml(path: Path) -> dict | None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProvisioningError(f"could not read {path}: {exc.strerror or exc}") from exc
        lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
        if lines and lines[0].strip() == "---":
            lines = lines[1:]
        body = "\n".join(lines).strip()
        if not body:
            return None
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise ProvisioningError(f"{path}: not a JSON document ({exc}); {JSON_AS_YAML}") from exc
        if not isinstance(doc, dict):
            raise ProvisioningError(f"{path}: the document must be a mapping; {JSON_AS_YAML}")
        return doc

    @staticmethod
    def expand_prov(value: object) -> object:
        """Expand $__env{}, $__file{}, ${X}, $X and $$ in string values (Grafana provisioning)."""
        if isinstance(value, dict):
            return {k: App.expand_prov(v) for k, v in value.items()}
        if isinstance(value, list):
            return [App.expand_prov(v) for v in value]
        if not isinstance(value, str) or "$" not in value:
            return value
        parts = value.split("$$")
        out = []
        for part in parts:
            expanded = expand_value(part)
            expanded = re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)", lambda m: os.environ.get(m.group(1), ""), expanded)
            out.append(expanded)
        return "$".join(out)

    def provision_datasources(self) -> None:
        docs = []
        for path in self._provisioning_files("datasources"):
            doc = self.read_json_yaml(path)
            if doc is not None:
                docs.append((path, self.expand_prov(doc)))
        to_delete: list[str] = []
        to_apply: list[dict] = []
        for path, doc in docs:
            for item in doc.get("deleteDatasources") or []:
                if not isinstance(item, dict) or not item.get("name"):
                    raise ProvisioningError(f"{path}: deleteDatasources entries need a name")
                to_delete.append(str(item["name"]))
            for item in doc.get("datasources") or []:
                if not isinstance(item, dict):
                    raise ProvisioningError(f"{path}: datasources entries must be mappings")
                if not item.get("name"):
                    raise ProvisioningError(f"Datasource provisioning error: {path}: datasource is missing a name")
                if not item.get("type"):
                    raise ProvisioningError(
                        f"Datasource provisioning error: {path}: datasource {item['name']} has no type"
                    )
                to_apply.append(item)
        if sum(1 for item in to_apply if item.get("isDefault")) > 1:
            raise ProvisioningError(
                "Datasource provisioning error: datasource.yaml config is invalid. "
                "Only one datasource per organization can be marked as default"
            )
        prepared = []
        for item in to_apply:
            try:
                prepared.append((item, self._ds_fields(item, None, provisioning=True)))
            except ApiError as exc:
                raise ProvisioningError(
                    f"Datasource provisioning error: datasource {item['name']}: {exc.body.get('message')}"
                ) from exc
        with self.store.lock:
            self.store.refresh()
            dss = self.store.data["datasources"]
            for name in to_delete:
                for uid, ds in list(dss.items()):
                    if ds["name"] == name:
                        del dss[uid]
                        self.console.info(
                            "provisioning.datasources", "deleted datasource based on configuration", name=name
                        )
            for item, fields in prepared:
                existing = next((ds for ds in dss.values() if ds["name"] == item["name"]), None)
                fields["readOnly"] = not bool(item.get("editable", False))
                fields["provisioned"] = True
                if existing is None:
                    self._ds_insert(fields)
                    self.console.info(
                        "provisioning.datasources", "inserting datasource from configuration", name=item["name"]
                    )
                else:
                    self._ds_update(existing, fields)
                    self.console.info(
                        "provisioning.datasources", "updating datasource from configuration", name=item["name"]
                    )
            self.store.save()

    def _dashboard_files(self, provider: dict) -> dict[str, Path]:
        root = Path(provider["path"])
        if not root.is_dir():
            return {}
        return {str(p): p for p in sorted(root.rglob("*.json")) if p.is_file()}

    def load_providers(self) -> list[dict]:
        providers = []
        for path in self._provisioning_files("dashboards"):
            doc = self.read_json_yaml(path)
            if doc is None:
                continue
            doc = self.expand_prov(doc)
            for item in doc.get("providers") or []:
                if not isinstance(item, dict) or not item.get("name"):
                    raise ProvisioningError(f"{path}: every dashboard provider needs a name")
                if item.get("type", "file") != "file":
                    raise ProvisioningError(f"{path}: provider {item['name']}: only type 'file' is supported")
                options = item.get("options") or {}
                if not options.get("path"):
                    raise ProvisioningError(f"{path}: provider {item['name']}: options.path is required")
                providers.append(
                    {
                        "name": str(item["name"]),
                        "folder": str(item.get("folder") or ""),
                        "folderUid": str(item.get("folderUid") or ""),
                        "disableDeletion": bool(item.get("disableDeletion", False)),
                        "allowUiUpdates": bool(item.get("allowUiUpdates", False)),
                        "interval": max(1, int(item.get("updateIntervalSeconds") or 10)),
                        "path": str(options["path"]),
                        "foldersFromFilesStructure": bool(options.get("foldersFromFilesStructure", False)),
                    }
                )
        return providers

    def provision_dashboards(self) -> None:
        providers = self.load_providers()
        with self.store.lock:
            self.store.refresh()
            self.providers = providers
            self._applied_signature = self._files_signature(providers)
            names = {p["name"] for p in providers}
            for provider in providers:
                self._apply_provider(provider)
            # Dashboards of providers that no longer exist keep living, unprovisioned (as in Grafana).
            for dash in self.store.data["dashboards"].values():
                prov = dash.get("provisioned")
                if prov and prov["provider"] not in names:
                    dash["provisioned"] = None
            self.store.save()

    def _provider_folder(self, provider: dict, title: str, uid: str = "") -> str:
        if not title and not uid:
            return ""
        folders = self.store.data["folders"]
        if uid and uid in folders:
            return uid
        for f in folders.values():
            if f["title"] == title and not f.get("parentUid"):
                return f["uid"]
        folder = self._folder_insert(title or uid, uid or new_uid(), None, "provisioning")
        self.console.info("provisioning.dashboard", "created folder for provisioned dashboards", folder=folder["title"])
        return folder["uid"]

    def _apply_provider(self, provider: dict) -> None:
        files = self._dashboard_files(provider)
        seen: set[str] = set()
        for file_path, path in files.items():
            try:
                raw = path.read_bytes()
                data = go_loads(raw.decode("utf-8"))
            except (OSError, ValueError) as exc:
                self.console.error(
                    "provisioning.dashboard", "failed to load dashboard from file", file=file_path, error=str(exc)
                )
                continue
            if not isinstance(data, dict) or not str(data.get("title") or "").strip():
                self.console.error(
                    "provisioning.dashboard",
                    "failed to save dashboard",
                    file=file_path,
                    error="Dashboard title cannot be empty",
                )
                continue
            checksum = hashlib.sha256(raw).hexdigest()
            existing = next(
                (
                    d
                    for d in self.store.data["dashboards"].values()
                    if d.get("provisioned")
                    and d["provisioned"]["provider"] == provider["name"]
                    and d["provisioned"]["path"] == file_path
                ),
                None,
            )
            if existing and existing["provisioned"].get("checksum") == checksum:
                seen.add(existing["uid"])
                existing["provisioned"]["allowUiUpdates"] = provider["allowUiUpdates"]
                continue
            if provider["foldersFromFilesStructure"]:
                rel = path.parent.relative_to(Path(provider["path"]))
                folder_uid = self._provider_folder(provider, rel.parts[0]) if rel.parts else ""
            else:
                folder_uid = self._provider_folder(provider, provider["folder"], provider["folderUid"])
            data = dict(data)
            data["id"] = existing["id"] if existing else None
            if existing and not data.get("uid"):
                data["uid"] = existing["uid"]
            prov = {
                "provider": provider["name"],
                "path": file_path,
                "checksum": checksum,
                "allowUiUpdates": provider["allowUiUpdates"],
            }
            try:
                dash = self.save_dashboard(
                    data, folder_uid, overwrite=True, user="provisioning", message="", provisioned=prov
                )
            except ApiError as exc:
                self.console.error(
                    "provisioning.dashboard", "failed to save dashboard", file=file_path, error=exc.body.get("message")
                )
                continue
            seen.add(dash["uid"])
        if not provider["disableDeletion"]:
            for uid, dash in list(self.store.data["dashboards"].items()):
                prov = dash.get("provisioned")
                if prov and prov["provider"] == provider["name"] and uid not in seen:
                    del self.store.data["dashboards"][uid]
                    self.console.info(
                        "provisioning.dashboard",
                        "deleting provisioned dashboard, missing file",
                        uid=uid,
                        file=prov["path"],
                    )

    def _files_signature(self, providers: list[dict]) -> dict[str, tuple[int, int]]:
        current = {}
        for provider in providers:
            for name, path in self._dashboard_files(provider).items():
                try:
                    st = path.stat()
                except OSError:
                    continue
                current[name] = (st.st_mtime_ns, st.st_size)
        return current

    def poll_providers(self, stop: threading.Event) -> None:
        """Re-apply the dashboard providers when their files change (Grafana's updateIntervalSeconds)."""
        while not stop.wait(0.5):
            providers = list(self.providers)
            if not providers:
                continue
            interval = min(p["interval"] for p in providers)
            if time.time() - self._last_poll < interval:
                continue
            self._last_poll = time.time()
            if self._files_signature(providers) == self._applied_signature:
                continue
            try:
                with self.store.lock:
                    self.store.refresh()
                    self._applied_signature = self._files_signature(providers)
                    for provider in providers:
                        self._apply_provider(provider)
                    self.store.save()
                self.console.info("provisioning.dashboard", "applied changed dashboard files")
            except Exception as exc:
                self.console.error("provisioning.dashboard", "failed to apply changed files", error=str(exc))

    # ----------------------------------------------------------------- folders

    def _folder_insert(self, title: str, uid: str, parent_uid: str | None, user: str) -> dict:
        folder = {
            "id": self.store.next_id("dashboard"),
            "uid": uid,
            "title": title,
            "parentUid": parent_uid or None,
            "version": 1,
            "created": now_iso(),
            "updated": now_iso(),
            "createdBy": user,
            "updatedBy": user,
        }
        self.store.data["folders"][uid] = folder
        return folder

    def folder_by_id(self, folder_id: int) -> dict | None:
        return next((f for f in self.store.data["folders"].values() if f["id"] == folder_id), None)

    def folder_url(self, folder: dict) -> str:
        return f"{self.sub_path}/dashboards/f/{folder['uid']}/{slugify(folder['title'])}"

    def folder_dto(self, folder: dict, ident: dict) -> dict:
        can_edit = ROLE_RANK.get(ident["role"], 0) >= ROLE_RANK["Editor"]
        dto = {
            "id": folder["id"],
            "uid": folder["uid"],
            "orgId": ORG_ID,
            "title": folder["title"],
            "url": self.folder_url(folder),
            "hasAcl": False,
            "canSave": can_edit,
            "canEdit": can_edit,
            "canAdmin": ident["role"] == "Admin",
            "canDelete": can_edit,
            "createdBy": folder["createdBy"],
            "created": folder["created"],
            "updatedBy": folder["updatedBy"],
            "updated": folder["updated"],
            "version": folder["version"],
        }
        if folder.get("parentUid"):
            dto["parentUid"] = folder["parentUid"]
            parents = []
            parent = self.store.data["folders"].get(folder["parentUid"])
            while parent is not None:
                parents.insert(
                    0,
                    {
                        "id": parent["id"],
                        "uid": parent["uid"],
                        "title": parent["title"],
                        "url": self.folder_url(parent),
                    },
                )
                parent = self.store.data["folders"].get(parent.get("parentUid") or "")
            dto["parents"] = parents
        return dto

    # ----------------------------------------------------------------- dashboards

    def dashboard_url(self, dash: dict) -> str:
        return f"{self.sub_path}/d/{dash['uid']}/{slugify(dash['title'])}"

    def save_dashboard(
        self,
        dashboard: dict,
        folder_uid: str,
        *,
        overwrite: bool,
        user: str,
        message: str,
        provisioned: dict | None = None,
    ) -> dict:
        """Create or update a dashboard with Grafana's validation and version rules.

        The checks and their order follow BuildSaveDashboardCommand and
        ValidateDashboardBeforeSave (pkg/services/dashboards/service/dashboard_service.go),
        the messages pkg/services/dashboards/errors.go, the status codes
        apierrors.ToDashboardErrorResponse (an unknown folder is 400 "folder not found").
        """
        data: dict = go_model(dashboard)  # type: ignore[assignment]
        title = data.get("title")
        title = title.strip() if isinstance(title, str) else ""
        if not title:
            raise err(400, "Dashboard title cannot be empty", status="empty-name")
        if len(title) > 5000:
            raise err(400, "Dashboard title cannot contain more than 5 000 characters", status="title-too-long")
        data["title"] = title
        uid = data.get("uid") or ""
        if not isinstance(uid, str):
            raise err(400, "bad request data")
        uid = uid.strip()
        if len(message or "") > 500:
            raise err(400, "message too long, max 500 characters")
        if not UID_RE.match(uid):
            raise err(400, "uid contains illegal characters")
        if len(uid) > 40:
            raise err(400, "uid too long, max 40 characters")
        self._min_refresh(data)
        dash_id = go_int(data.get("id"))
        version = go_int(data.get("version"))
        dashboards = self.store.data["dashboards"]
        if folder_uid and folder_uid not in self.store.data["folders"]:
            raise err(400, "folder not found")
        if uid and uid in self.store.data["folders"]:
            raise err(400, "Dashboard cannot be changed to a folder")

        existing = None
        if dash_id > 0:
            existing = next((d for d in dashboards.values() if d["id"] == dash_id), None)
            if existing is None:
                raise err(404, "Dashboard not found", status="not-found")
            if not uid:
                uid = existing["uid"]
        by_uid = dashboards.get(uid) if uid else None
        if existing is not None and by_uid is not None and existing["id"] != by_uid["id"]:
            raise err(400, "A dashboard with the same uid already exists")
        existing = existing or by_uid
        if existing is not None and version != existing["version"]:
            if not overwrite:
                raise err(412, "The dashboard has been changed by someone else", status="version-mismatch")
            version = existing["version"]
        slug = slugify(title)
        same_name = next(
            (
                d
                for d in dashboards.values()
                if d["folderUid"] == folder_uid
                and slugify(d["title"]) == slug
                and (existing is None or d["id"] != existing["id"])
            ),
            None,
        )
        if same_name is not None:
            if not overwrite:
                raise err(412, "A dashboard with the same name in the folder already exists", status="name-exists")
            existing = same_name
            uid = same_name["uid"]
        if existing is not None and provisioned is None:
            prov = existing.get("provisioned")
            if prov and not prov.get("allowUiUpdates"):
                raise err(400, "Cannot save provisioned dashboard")

        now = now_iso()
        if existing is None:
            uid = uid or new_uid()
            record = {
                "id": self.store.next_id("dashboard"),
                "uid": uid,
                "created": now,
                "createdBy": user,
                "version": 0,
                "versions": [],
            }
        else:
            record = existing
            if existing["uid"] != uid:
                del dashboards[existing["uid"]]
        record["version"] = record["version"] + 1
        data.update(id=record["id"], uid=uid, version=record["version"])
        data = dict(sorted(data.items()))  # a Go map: keys sorted
        record.update(
            {
                "uid": uid,
                "title": title,
                "folderUid": folder_uid,
                "updated": now,
                "updatedBy": user,
                "data": data,
                "provisioned": provisioned if provisioned is not None else record.get("provisioned"),
            }
        )
        record["versions"] = [
            *record["versions"],
            {"version": record["version"], "created": now, "createdBy": user, "message": message or "", "data": data},
        ][-self.versions_to_keep :]
        dashboards[uid] = record
        return record

    def _min_refresh(self, data: dict) -> None:
        """Grafana saves a refresh below [dashboards] min_refresh_interval (or unparsable) as that minimum."""
        minimum = grafana_duration(self.min_refresh) if self.min_refresh else None
        refresh = data.get("refresh")
        if minimum is None or not isinstance(refresh, str) or refresh in ("", "auto"):
            return
        seconds = grafana_duration(refresh)
        if seconds is None or seconds < minimum:
            self.console.warn(
                "dashboard-service",
                "Changing refresh interval for imported dashboard to minimum refresh interval",
                dashboardUid=data.get("uid") or "",
                minRefreshInterval=self.min_refresh,
            )
            data["refresh"] = self.min_refresh

    def dashboard_meta(self, dash: dict, ident: dict) -> dict:
        can_edit = ROLE_RANK.get(ident["role"], 0) >= ROLE_RANK["Editor"]
        folder = self.store.data["folders"].get(dash["folderUid"]) if dash["folderUid"] else None
        prov = dash.get("provisioned")
        return {
            "type": "db",
            "canSave": can_edit,
            "canEdit": can_edit,
            "canAdmin": ident["role"] == "Admin",
            "canStar": ident["kind"] == "user",
            "canDelete": can_edit,
            "slug": slugify(dash["title"]),
            "url": self.dashboard_url(dash),
            "expires": "0001-01-01T00:00:00Z",
            "created": dash["created"],
            "updated": dash["updated"],
            "updatedBy": dash["updatedBy"],
            "createdBy": dash["createdBy"],
            "version": dash["version"],
            "hasAcl": False,
            "isFolder": False,
            "folderId": folder["id"] if folder else 0,
            "folderUid": folder["uid"] if folder else "",
            "folderTitle": folder["title"] if folder else "General",
            "folderUrl": self.folder_url(folder) if folder else "",
            "provisioned": bool(prov),
            "provisionedExternalId": os.path.basename(prov["path"]) if prov else "",
        }

    # ----------------------------------------------------------------- data sources

    def _ds_fields(self, body: dict, existing: dict | None, provisioning: bool = False) -> dict:
        def text(key: str, default: str = "") -> str:
            value = body.get(key, default)
            if value is None:
                return default
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise err(400, "bad request data")
            return str(value)

        name = text("name").strip()
        dstype = text("type").strip()
        if not name or not dstype:
            raise err(400, "bad request data")
        json_data = body.get("jsonData")
        if json_data is None:
            json_data = {}
        secure = body.get("secureJsonData") or {}
        if not isinstance(json_data, dict) or not isinstance(secure, dict):
            raise err(400, "bad request data")
        json_data = go_model(json_data)  # simplejson map: numbers float64, keys sorted
        hashes = dict(existing["secureJsonData"]) if existing and not provisioning else {}
        for key, value in secure.items():
            if not isinstance(value, str):
                raise err(400, "bad request data")
            hashes[key] = sha256_hex(value)
        uid = text("uid")
        if len(uid) > 40 or not UID_RE.match(uid):
            # util.ValidateUID with feature toggle failWrongDSUID (on by default since Grafana 12):
            # datasources.ErrDataSourceUIDInvalid, an errutil.ValidationFailed error.
            raise ApiError(
                400,
                {"message": "Invalid datasource UID.", "messageId": "datasource.uidInvalid", "statusCode": 400},
            )
        return {
            "uid": uid,
            "name": name,
            "type": dstype,
            "access": text("access", "proxy") or "proxy",
            "url": text("url"),
            "user": text("user"),
            "database": text("database"),
            "basicAuth": bool(body.get("basicAuth", False)),
            "basicAuthUser": text("basicAuthUser"),
            "withCredentials": bool(body.get("withCredentials", False)),
            "isDefault": bool(body.get("isDefault", False)),
            "jsonData": json_data,
            "secureJsonData": hashes,
        }

    def _ds_unique(self, fields: dict, ignore: dict | None) -> None:
        """pkg/api/datasources.go: 409 for a taken name (on update prefixed "Failed to update datasource: ")
        or, on create, a taken uid; a taken uid on update is the database's unique index failing (500)."""
        for ds in self.store.data["datasources"].values():
            if ignore is not None and ds["id"] == ignore["id"]:
                continue
            if ds["name"] == fields["name"]:
                prefix = "" if ignore is None else "Failed to update datasource: "
                raise err(409, prefix + "data source with the same name already exists")
            if fields["uid"] and ds["uid"] == fields["uid"]:
                if ignore is not None:
                    raise err(500, "Failed to update datasource")
                raise err(409, "data source with the same uid already exists")

    def _ds_default(self, target: dict) -> None:
        if target["isDefault"]:
            for ds in self.store.data["datasources"].values():
                if ds["id"] != target["id"]:
                    ds["isDefault"] = False

    def _ds_insert(self, fields: dict) -> dict:
        self._ds_unique(fields, None)
        ds = {
            **fields,
            "id": self.store.next_id("datasource"),
            "uid": fields["uid"] or new_uid(),
            "orgId": ORG_ID,
            "version": 1,
            "readOnly": fields.get("readOnly", False),
            "provisioned": fields.get("provisioned", False),
            "created": now_iso(),
            "updated": now_iso(),
        }
        self.store.data["datasources"][ds["uid"]] = ds
        self._ds_default(ds)
        return ds

    def _ds_update(self, ds: dict, fields: dict) -> dict:
        self._ds_unique(fields, ds)
        old_uid = ds["uid"]
        new_uid_value = fields["uid"] or old_uid
        ds.update(fields)
        ds["uid"] = new_uid_value
        ds["version"] += 1
        ds["updated"] = now_iso()
        if new_uid_value != old_uid:
            del self.store.data["datasources"][old_uid]
            self.store.data["datasources"][new_uid_value] = ds
        self._ds_default(ds)
        return ds

    @staticmethod
    def ds_dto(ds: dict) -> dict:
        return {
            "id": ds["id"],
            "uid": ds["uid"],
            "orgId": ds["orgId"],
            "name": ds["name"],
            "type": ds["type"],
            "typeLogoUrl": "",
            "access": ds["access"],
            "url": ds["url"],
            "password": "",
            "user": ds["user"],
            "database": ds["database"],
            "basicAuth": ds["basicAuth"],
            "basicAuthUser": ds["basicAuthUser"],
            "basicAuthPassword": "",
            "withCredentials": ds["withCredentials"],
            "isDefault": ds["isDefault"],
            "jsonData": copy.deepcopy(ds["jsonData"]),
            "secureJsonFields": {key: True for key in sorted(ds["secureJsonData"])},
            "version": ds["version"],
            "readOnly": ds["readOnly"],
        }

    @staticmethod
    def ds_list_item(ds: dict) -> dict:
        return {
            "id": ds["id"],
            "uid": ds["uid"],
            "orgId": ds["orgId"],
            "name": ds["name"],
            "type": ds["type"],
            "typeLogoUrl": "",
            "access": ds["access"],
            "url": ds["url"],
            "password": "",
            "user": ds["user"],
            "database": ds["database"],
            "basicAuth": ds["basicAuth"],
            "isDefault": ds["isDefault"],
            "jsonData": copy.deepcopy(ds["jsonData"]),
            "readOnly": ds["readOnly"],
        }

    # ----------------------------------------------------------------- identities

    def users(self) -> dict:
        return self.store.data["users"]

    def user_by_login(self, login: str) -> dict | None:
        return next(
            (
                u
                for u in self.users().values()
                if not u.get("isServiceAccount") and (u["login"] == login or u.get("email") == login)
            ),
            None,
        )


# --------------------------------------------------------------------------- HTTP handlers


def _route(pattern: str) -> re.Pattern:
    regex = re.sub(r":(\w+)#", r"(?P<\1>[0-9]+)", pattern)
    regex = re.sub(r":(\w+)", r"(?P<\1>[^/]+)", regex)
    return re.compile("^" + regex + "$")


ROUTES: list[tuple[str, str, str]] = [
    # method, route (":x" any segment, ":x#" digits), handler name
    ("GET", "/api/health", "health"),
    ("GET", "/api/frontend/settings", "frontend_settings"),
    ("GET", "/api/search", "search"),
    ("POST", "/api/dashboards/db", "dashboard_save"),
    ("GET", "/api/dashboards/tags", "dashboard_tags"),
    ("GET", "/api/dashboards/uid/:uid", "dashboard_get"),
    ("DELETE", "/api/dashboards/uid/:uid", "dashboard_delete"),
    ("GET", "/api/dashboards/uid/:uid/versions", "dashboard_versions"),
    ("GET", "/api/folders", "folder_list"),
    ("POST", "/api/folders", "folder_create"),
    ("GET", "/api/folders/id/:id#", "folder_get_by_id"),
    ("GET", "/api/folders/:uid", "folder_get"),
    ("PUT", "/api/folders/:uid", "folder_update"),
    ("DELETE", "/api/folders/:uid", "folder_delete"),
    ("GET", "/api/datasources", "ds_list"),
    ("POST", "/api/datasources", "ds_create"),
    ("GET", "/api/datasources/uid/:uid", "ds_get_uid"),
    ("PUT", "/api/datasources/uid/:uid", "ds_update_uid"),
    ("DELETE", "/api/datasources/uid/:uid", "ds_delete_uid"),
    ("GET", "/api/datasources/name/:name", "ds_get_name"),
    ("DELETE", "/api/datasources/name/:name", "ds_delete_name"),
    ("GET", "/api/datasources/id/:name", "ds_id_by_name"),
    ("GET", "/api/datasources/:id#", "ds_get_id"),
    ("PUT", "/api/datasources/:id#", "ds_update_id"),
    ("DELETE", "/api/datasources/:id#", "ds_delete_id"),
    ("POST", "/api/admin/provisioning/datasources/reload", "reload_datasources"),
    ("POST", "/api/admin/provisioning/dashboards/reload", "reload_dashboards"),
    ("GET", "/api/serviceaccounts/search", "sa_search"),
    ("POST", "/api/serviceaccounts", "sa_create"),
    ("GET", "/api/serviceaccounts/:id#", "sa_get"),
    ("PATCH", "/api/serviceaccounts/:id#", "sa_update"),
    ("DELETE", "/api/serviceaccounts/:id#", "sa_delete"),
    ("GET", "/api/serviceaccounts/:id#/tokens", "sa_tokens"),
    ("POST", "/api/serviceaccounts/:id#/tokens", "sa_token_create"),
    ("DELETE", "/api/serviceaccounts/:id#/tokens/:token#", "sa_token_delete"),
    ("GET", "/api/org", "org"),
    ("GET", "/api/user", "user"),
    ("GET", "/api/user/orgs", "user_orgs"),
    ("POST", "/api/user/using/:org#", "user_using"),
    ("POST", "/api/user/signup", "user_signup"),
    ("GET", "/api/plugins", "plugin_list"),
    ("GET", "/api/plugins/:id/settings", "plugin_settings"),
    ("GET", "/api/standin/stats", "standin_stats"),
    ("DELETE", "/api/standin/stats", "standin_stats_reset"),
    ("GET", "/api/standin/datasources/:uid/secure-json-hashes", "standin_secure_hashes"),
]
COMPILED_ROUTES = [(method, route, _route(route), name) for method, route, name in ROUTES]


class Handler(BaseHTTPRequestHandler):
    server_version = "GrafanaStandin"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    @property
    def app(self) -> App:
        return self.server.app  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:
        return

    # ----------------------------------------------------------------- plumbing

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_HEAD(self) -> None:
        self.dispatch("GET", head=True)

    def do_POST(self) -> None:
        self.dispatch("POST")

    def do_PUT(self) -> None:
        self.dispatch("PUT")

    def do_PATCH(self) -> None:
        self.dispatch("PATCH")

    def do_DELETE(self) -> None:
        self.dispatch("DELETE")

    def send(self, status: int, body: object, content_type: str = "application/json", head: bool = False) -> None:
        if isinstance(body, (bytes, bytearray)):
            payload = bytes(body)
        elif isinstance(body, str):
            payload = body.encode("utf-8")
        else:
            payload = go_dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Grafana-Standin", STANDIN_TAG)
        self.end_headers()
        if not head:
            self.wfile.write(payload)

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def json_body(self) -> dict:
        raw = self.body
        if not raw.strip():
            return {}
        try:
            data = go_loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:  # GoJSONError included: Go's decoder refuses it too
            raise err(400, "bad request data") from exc
        if not isinstance(data, dict):
            raise err(400, "bad request data")
        return data

    def dispatch(self, method: str, head: bool = False) -> None:
        self.body = self.read_body()
        parsed = urllib.parse.urlsplit(self.path)
        path = parsed.path
        app = self.app
        if app.sub_path and app.serve_from_sub_path and (path == app.sub_path or path.startswith(app.sub_path + "/")):
            path = path[len(app.sub_path) :] or "/"
        if len(path) > 1:
            path = path.rstrip("/")
        self.query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        if not path.startswith("/api/"):
            self.non_api(path, head)
            return
        route_name, route, params = None, None, {}
        known_path = False
        for r_method, r_route, regex, name in COMPILED_ROUTES:
            match = regex.match(path)
            if match:
                known_path = True
                if r_method == method:
                    route_name, route = name, r_route
                    params = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
                    break
        self.mutated = False
        try:
            if route_name is None:
                raise err(405 if known_path else 404, "Method Not Allowed" if known_path else "Not found")
            if route_name == "health":  # probes the database itself, without the state
                status, body = self.h_health()
            else:
                with app.store.lock:
                    app.store.refresh()
                    status, body = getattr(self, "h_" + route_name)(**params)
                    if self.mutated:
                        app.store.save()
        except ApiError as exc:
            status, body = exc.status, exc.body
        except DatabaseError as exc:
            app.console.error("sqlstore", "Database error", path=path, error=str(exc))
            status, body = 500, {"message": f"database error (stand-in): {exc}"}
        except Exception as exc:
            app.console.error("context", "Request error", path=path, error=repr(exc))
            status, body = 500, {"message": "Internal server error (stand-in)"}
        if not path.startswith("/api/standin/"):
            app.count(method, route or path, path, status, self.mutated)
            if method != "GET":
                app.console.info("context", "Request Completed", method=method, path=path, status=status)
        self.send(status, body, head=head)

    def non_api(self, path: str, head: bool) -> None:
        app = self.app
        if path == "/healthz":
            self.send(200, "Ok", "text/plain; charset=utf-8", head)
            return
        if path == "/metrics":
            self.metrics(head)
            return
        if path.startswith("/public/"):
            base = (app.cfg.homepath / "public").resolve()
            target = (base / path[len("/public/") :]).resolve()
            if base in target.parents and target.is_file():
                self.send(200, target.read_bytes(), "application/octet-stream", head)
            else:
                self.send(404, "404 page not found", "text/plain; charset=utf-8", head)
            return
        page = (
            f"<!doctype html><title>{STANDIN_NAME}</title>"
            f"<p>{STANDIN_NAME} {app.version} ({STANDIN_TAG}). This is a test double, not Grafana.</p>"
        )
        self.send(200, page, "text/html; charset=utf-8", head)

    def metrics(self, head: bool) -> None:
        app = self.app
        if not truthy(app.cfg.get("metrics", "enabled", "true")):
            self.send(404, "404 page not found", "text/plain; charset=utf-8", head)
            return
        user = app.cfg.get("metrics", "basic_auth_username")
        if user:
            expected = (
                "Basic " + base64.b64encode(f"{user}:{app.cfg.get('metrics', 'basic_auth_password')}".encode()).decode()
            )
            if not hmac.compare_digest(self.headers.get("Authorization", ""), expected):
                self.send(401, "Unauthorized", "text/plain; charset=utf-8", head)
                return
        with app.store.lock:
            data = app.store.data
            lines = [
                "# HELP grafana_build_info A metric with a constant '1' value labeled by version (Grafana stand-in).",
                "# TYPE grafana_build_info gauge",
                f'grafana_build_info{{branch="standin",edition="oss",goversion="none",revision="{STANDIN_COMMIT}",'
                f'standin="true",version="{app.version}"}} 1',
                "# TYPE grafana_stat_totals_dashboard gauge",
                f"grafana_stat_totals_dashboard {len(data['dashboards'])}",
                "# TYPE grafana_stat_totals_folder gauge",
                f"grafana_stat_totals_folder {len(data['folders'])}",
                "# TYPE grafana_stat_totals_datasource gauge",
                f"grafana_stat_totals_datasource {len(data['datasources'])}",
                "# TYPE process_start_time_seconds gauge",
                f"process_start_time_seconds {app.started:.3f}",
            ]
        self.send(200, "\n".join(lines) + "\n", "text/plain; version=0.0.4; charset=utf-8", head)

    # ----------------------------------------------------------------- auth

    def identity(self) -> dict:
        app = self.app
        header = self.headers.get("Authorization", "").strip()
        if header:
            scheme, _, cred = header.partition(" ")
            cred = cred.strip()
            if scheme.lower() == "bearer":
                return self.token_identity(cred)
            if scheme.lower() == "basic":
                try:
                    login, sep, password = base64.b64decode(cred, validate=True).decode("utf-8").partition(":")
                except (ValueError, UnicodeDecodeError) as exc:
                    raise self.unauthorized("Invalid Basic Auth Header", "auth.unauthorized") from exc
                if not sep:
                    raise self.unauthorized("Invalid Basic Auth Header", "auth.unauthorized")
                if login == "api_key":
                    return self.token_identity(password)
                user = app.user_by_login(login)
                if user is None or not hmac.compare_digest(hash_password(password, user["salt"]), user["password"]):
                    raise self.unauthorized("Invalid username or password", "password-auth.failed")
                return {
                    "kind": "user",
                    "id": user["id"],
                    "login": user["login"],
                    "role": "Admin",
                    "serverAdmin": bool(user.get("isGrafanaAdmin")),
                }
            raise self.unauthorized("Unauthorized", "auth.unauthorized")
        if app.anonymous:
            return {"kind": "anonymous", "id": 0, "login": "", "role": app.anonymous_role, "serverAdmin": False}
        raise self.unauthorized("Unauthorized", "auth.unauthorized")

    def token_identity(self, key: str) -> dict:
        app = self.app
        digest = sha256_hex(key)
        token = next((t for t in app.store.data["tokens"].values() if hmac.compare_digest(t["hash"], digest)), None)
        if token is None:
            raise self.unauthorized("Invalid API key", "api-key.invalid")
        if token.get("expiration") and token["expiration"] < now_iso():
            raise self.unauthorized("Expired API key", "api-key.expired")
        sa = app.users().get(str(token["serviceAccountId"]))
        if sa is None or sa.get("isDisabled"):
            raise self.unauthorized("Invalid API key", "api-key.invalid")
        return {
            "kind": "serviceaccount",
            "id": sa["id"],
            "login": sa["login"],
            "role": sa["role"],
            "serverAdmin": False,
        }

    @staticmethod
    def unauthorized(message: str, message_id: str) -> ApiError:
        return ApiError(401, {"message": message, "messageId": message_id, "statusCode": 401, "traceID": ""})

    def require(self, role: str, action: str, server_admin: bool = False) -> dict:
        ident = self.identity()
        allowed = ident["serverAdmin"] if server_admin else ROLE_RANK.get(ident["role"], 0) >= ROLE_RANK[role]
        if not allowed:
            raise ApiError(
                403,
                {
                    "accessErrorId": "ACE" + "".join(secrets.choice(string.digits) for _ in range(10)),
                    "message": "You'll need additional permissions to perform this action. "
                    f"Permissions needed: {action}",
                    "title": "Access denied",
                },
            )
        return ident

    def q(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[0] if values else default

    def qlist(self, name: str) -> list[str]:
        out: list[str] = []
        for value in self.query.get(name, []):
            out += [v for v in value.split(",") if v != ""] if name != "tag" else [value]
        return out

    def qint(self, name: str, default: int) -> int:
        try:
            return int(self.q(name, str(default)))
        except ValueError as exc:
            raise err(400, f"invalid {name} parameter") from exc

    def touch(self) -> None:
        self.mutated = True

    # ----------------------------------------------------------------- misc endpoints

    def h_health(self) -> tuple[int, str]:
        """Grafana's /api/health (pkg/api/health.go): 503 and database "failing" when the database query fails.

        Grafana caches the answer for 5 s; the stand-in checks on every request.
        """
        app = self.app
        problem = app.database.check(app.store)
        if problem:
            app.console.warn("health", "database is failing", dbtype=app.database.type, error=problem)
        body = {"commit": STANDIN_COMMIT, "database": "failing" if problem else "ok", "version": app.version}
        return (503 if problem else 200), json.dumps(body, indent=2, sort_keys=True)  # Grafana's EncodePretty

    def h_frontend_settings(self) -> tuple[int, dict]:
        ident = self.identity()
        app = self.app
        dss = {}
        default_name = ""
        if ROLE_RANK.get(ident["role"], 0) >= ROLE_RANK["Viewer"]:
            for ds in app.store.data["datasources"].values():
                dss[ds["name"]] = {
                    "id": ds["id"],
                    "uid": ds["uid"],
                    "type": ds["type"],
                    "name": ds["name"],
                    "isDefault": ds["isDefault"],
                }
                if ds["isDefault"]:
                    default_name = ds["name"]
        return 200, {
            "appSubUrl": app.sub_path,
            "appUrl": app.cfg.get("server", "root_url"),
            "allowOrgCreate": truthy(app.cfg.get("users", "allow_org_create")),
            "anonymousEnabled": app.anonymous,
            "authProxyEnabled": False,
            "buildInfo": {
                "buildstamp": int(app.started),
                "commit": STANDIN_COMMIT,
                "edition": "Open Source",
                "env": app.cfg.get("", "app_mode", "production") or "production",
                "hasUpdate": False,
                "hideVersion": False,
                "latestVersion": "",
                "version": app.version,
            },
            "datasources": dss,
            "defaultDatasource": default_name,
            "standin": STANDIN_TAG,
        }

    def h_org(self) -> tuple[int, dict]:
        self.require("Viewer", "orgs:read")
        address = {"address1": "", "address2": "", "city": "", "zipCode": "", "state": "", "country": ""}
        return 200, {"id": ORG_ID, "name": ORG_NAME, "address": address}

    def h_user(self) -> tuple[int, dict]:
        ident = self.identity()
        if ident["kind"] == "anonymous":
            raise err(404, "user not found")
        user = self.app.users()[str(ident["id"])]
        return 200, {
            "id": user["id"],
            "uid": f"u{user['id']:013d}",
            "email": user.get("email", ""),
            "name": user.get("name", ""),
            "login": user["login"],
            "theme": "",
            "orgId": ORG_ID,
            "isGrafanaAdmin": bool(user.get("isGrafanaAdmin")),
            "isDisabled": bool(user.get("isDisabled")),
            "isExternal": False,
            "isExternallySynced": False,
            "isGrafanaAdminExternallySynced": False,
            "authLabels": [],
            "updatedAt": user["updated"],
            "createdAt": user["created"],
            "avatarUrl": "",
        }

    def h_user_orgs(self) -> tuple[int, list]:
        ident = self.identity()
        return 200, [{"orgId": ORG_ID, "name": ORG_NAME, "role": ident["role"]}]

    def h_user_using(self, org: str) -> tuple[int, dict]:
        ident = self.identity()
        if ident["kind"] != "user":
            raise err(401, "Not a valid organization")
        if int(org) != ORG_ID:
            raise err(401, "Not a valid organization")
        return 200, {"message": "Active organization changed"}

    def h_user_signup(self) -> tuple[int, dict]:
        if not self.app.allow_sign_up:
            raise err(401, "User signup is disabled")
        body = self.json_body()
        if not body.get("email"):
            raise err(400, "bad request data")
        return 200, {"message": "Sign up started (stand-in: no e-mail is sent)", "status": "SignUpCreated"}

    def h_plugin_list(self) -> tuple[int, list]:
        self.require("Viewer", "plugins:read")
        out = []
        for plugin_id, plugin in sorted(self.app.plugins.items()):
            meta = plugin["meta"]
            out.append(
                {
                    "name": meta.get("name", plugin_id),
                    "type": meta.get("type", ""),
                    "id": plugin_id,
                    "enabled": True,
                    "pinned": False,
                    "info": meta.get("info", {}),
                    "signature": plugin["signature"],
                    "dependencies": meta.get("dependencies", {}),
                }
            )
        return 200, out

    def h_plugin_settings(self, id: str) -> tuple[int, dict]:
        self.require("Viewer", "plugins:read")
        plugin = self.app.plugins.get(id)
        if plugin is None:
            raise err(404, "Plugin not found, no installed plugin with that id")
        meta = plugin["meta"]
        return 200, {
            "name": meta.get("name", id),
            "type": meta.get("type", ""),
            "id": id,
            "enabled": True,
            "pinned": False,
            "info": meta.get("info", {}),
            "dependencies": meta.get("dependencies", {}),
            "signature": plugin["signature"],
            "baseUrl": f"public/plugins/{id}",
            "module": f"public/plugins/{id}/module.js",
        }

    def h_standin_stats(self) -> tuple[int, dict]:
        with self.app.stats_lock:
            return 200, copy.deepcopy(self.app.stats)

    def h_standin_stats_reset(self) -> tuple[int, dict]:
        self.app.reset_stats()
        return 200, {"message": "stand-in request counters reset"}

    def h_standin_secure_hashes(self, uid: str) -> tuple[int, dict]:
        ds = self.app.store.data["datasources"].get(uid)
        if ds is None:
            raise err(404, "Data source not found")
        return 200, {key: "sha256:" + value for key, value in sorted(ds["secureJsonData"].items())}

    # ----------------------------------------------------------------- search

    def h_search(self) -> tuple[int, list]:
        self.require("Viewer", "dashboards:read")
        app = self.app
        data = app.store.data
        query = self.q("query").lower()
        hit_type = self.q("type")
        tags = self.qlist("tag")
        folder_uids = self.qlist("folderUIDs") + self.qlist("folderUid")
        folder_ids = self.qlist("folderIds")
        dash_uids = set(self.qlist("dashboardUIDs") + self.qlist("dashboardUID"))
        dash_ids = set(self.qlist("dashboardIds"))
        limit = min(max(self.qint("limit", 1000), 1), 5000)
        page = max(self.qint("page", 1), 1)
        wanted_folders: set[str] | None = None
        if folder_uids or folder_ids:
            wanted_folders = set()
            for fuid in folder_uids:
                wanted_folders.add("" if fuid in ("general", "") else fuid)
            for fid in folder_ids:
                if fid == "0":
                    wanted_folders.add("")
                else:
                    folder = app.folder_by_id(int(fid)) if fid.isdigit() else None
                    if folder:
                        wanted_folders.add(folder["uid"])
        hits: list[dict] = []
        if hit_type in ("", "dash-folder") and not tags and not dash_uids and not dash_ids:
            for folder in data["folders"].values():
                if query and query not in folder["title"].lower():
                    continue
                if wanted_folders is not None and (folder.get("parentUid") or "") not in wanted_folders:
                    continue
                hits.append(
                    {
                        "id": folder["id"],
                        "uid": folder["uid"],
                        "orgId": ORG_ID,
                        "title": folder["title"],
                        "uri": "db/" + slugify(folder["title"]),
                        "url": app.folder_url(folder),
                        "slug": "",
                        "type": "dash-folder",
                        "tags": [],
                        "isStarred": False,
                        "sortMeta": 0,
                    }
                )
        if hit_type in ("", "dash-db"):
            for dash in data["dashboards"].values():
                dash_tags = dash["data"].get("tags") or []
                if query and query not in dash["title"].lower():
                    continue
                if any(tag not in dash_tags for tag in tags):
                    continue
                if wanted_folders is not None and dash["folderUid"] not in wanted_folders:
                    continue
                if dash_uids and dash["uid"] not in dash_uids:
                    continue
                if dash_ids and str(dash["id"]) not in dash_ids:
                    continue
                hit = {
                    "id": dash["id"],
                    "uid": dash["uid"],
                    "orgId": ORG_ID,
                    "title": dash["title"],
                    "uri": "db/" + slugify(dash["title"]),
                    "url": app.dashboard_url(dash),
                    "slug": "",
                    "type": "dash-db",
                    "tags": list(dash_tags),
                    "isStarred": False,
                    "sortMeta": 0,
                }
                folder = data["folders"].get(dash["folderUid"]) if dash["folderUid"] else None
                if folder:
                    hit.update(
                        {
                            "folderId": folder["id"],
                            "folderUid": folder["uid"],
                            "folderTitle": folder["title"],
                            "folderUrl": app.folder_url(folder),
                        }
                    )
                hits.append(hit)
        hits.sort(key=lambda h: (h["type"] != "dash-folder", h["title"].lower()))
        start = (page - 1) * limit
        return 200, hits[start : start + limit]

    # ----------------------------------------------------------------- dashboards

    def h_dashboard_get(self, uid: str) -> tuple[int, dict]:
        ident = self.require("Viewer", "dashboards:read")
        dash = self.app.store.data["dashboards"].get(uid)
        if dash is None:
            raise err(404, "Dashboard not found")
        return 200, {"dashboard": copy.deepcopy(dash["data"]), "meta": self.app.dashboard_meta(dash, ident)}

    def h_dashboard_versions(self, uid: str) -> tuple[int, list]:
        self.require("Viewer", "dashboards:read")
        dash = self.app.store.data["dashboards"].get(uid)
        if dash is None:
            raise err(404, "Dashboard not found")
        out = []
        for item in reversed(dash["versions"]):
            out.append(
                {
                    "id": dash["id"] * 1000 + item["version"],
                    "dashboardId": dash["id"],
                    "uid": dash["uid"],
                    "parentVersion": max(item["version"] - 1, 0),
                    "restoredFrom": 0,
                    "version": item["version"],
                    "created": item["created"],
                    "createdBy": item["createdBy"],
                    "message": item["message"],
                }
            )
        return 200, out

    def h_dashboard_tags(self) -> tuple[int, list]:
        self.require("Viewer", "dashboards:read")
        counts: dict[str, int] = {}
        for dash in self.app.store.data["dashboards"].values():
            for tag in dash["data"].get("tags") or []:
                counts[tag] = counts.get(tag, 0) + 1
        return 200, [{"term": tag, "count": n} for tag, n in sorted(counts.items())]

    def h_dashboard_save(self) -> tuple[int, dict]:
        ident = self.require("Editor", "dashboards:write")
        app = self.app
        body = self.json_body()
        dashboard = body.get("dashboard")
        if not isinstance(dashboard, dict):
            raise err(400, "bad request data")
        if body.get("isFolder"):
            raise err(400, "Use folders endpoint for saving folders.")
        folder_uid = body.get("folderUid")
        if folder_uid in (None, ""):
            folder_id = body.get("folderId")
            folder_uid = ""
            if isinstance(folder_id, int) and not isinstance(folder_id, bool) and folder_id > 0:
                folder = app.folder_by_id(folder_id)
                if folder is None:
                    raise err(400, "folder not found")
                folder_uid = folder["uid"]
        elif not isinstance(folder_uid, str):
            raise err(400, "bad request data")
        message = body.get("message") or ""
        dash = app.save_dashboard(
            dashboard,
            folder_uid,
            overwrite=bool(body.get("overwrite")),
            user=ident["login"] or "anonymous",
            message=str(message),
        )
        self.touch()
        result = {
            "id": dash["id"],
            "uid": dash["uid"],
            "url": app.dashboard_url(dash),
            "status": "success",
            "version": dash["version"],
            "slug": slugify(dash["title"]),
        }
        if folder_uid:
            result["folderUid"] = folder_uid
        return 200, result

    def h_dashboard_delete(self, uid: str) -> tuple[int, dict]:
        self.require("Editor", "dashboards:delete")
        dashboards = self.app.store.data["dashboards"]
        dash = dashboards.get(uid)
        if dash is None:
            raise err(404, "Dashboard not found")
        if dash.get("provisioned") and not dash["provisioned"].get("allowUiUpdates"):
            raise err(400, "provisioned dashboard cannot be deleted")
        del dashboards[uid]
        self.touch()
        return 200, {
            "title": dash["title"],
            "message": f"Dashboard {dash['title']} deleted",
            "id": dash["id"],
            "uid": uid,
        }

    # ----------------------------------------------------------------- folders

    def h_folder_list(self) -> tuple[int, list]:
        self.require("Viewer", "folders:read")
        parent = self.q("parentUid")
        limit = min(max(self.qint("limit", 1000), 1), 5000)
        page = max(self.qint("page", 1), 1)
        folders = [f for f in self.app.store.data["folders"].values() if (f.get("parentUid") or "") == parent]
        folders.sort(key=lambda f: f["title"].lower())
        start = (page - 1) * limit
        out = []
        for f in folders[start : start + limit]:
            item = {"id": f["id"], "uid": f["uid"], "title": f["title"]}
            if f.get("parentUid"):
                item["parentUid"] = f["parentUid"]
            out.append(item)
        return 200, out

    def _folder_or_404(self, uid: str) -> dict:
        folder = self.app.store.data["folders"].get(uid)
        if folder is None:
            raise err(404, "folder not found", status="not-found")
        return folder

    def h_folder_get(self, uid: str) -> tuple[int, dict]:
        ident = self.require("Viewer", "folders:read")
        return 200, self.app.folder_dto(self._folder_or_404(uid), ident)

    def h_folder_get_by_id(self, id: str) -> tuple[int, dict]:
        ident = self.require("Viewer", "folders:read")
        folder = self.app.folder_by_id(int(id))
        if folder is None:
            raise err(404, "folder not found", status="not-found")
        return 200, self.app.folder_dto(folder, ident)

    def _title_taken(self, title: str, parent_uid: str, ignore_uid: str = "") -> bool:
        return any(
            f["title"].lower() == title.lower() and (f.get("parentUid") or "") == parent_uid and f["uid"] != ignore_uid
            for f in self.app.store.data["folders"].values()
        )

    def h_folder_create(self) -> tuple[int, dict]:
        ident = self.require("Editor", "folders:create")
        app = self.app
        body = self.json_body()
        title = body.get("title")
        uid = body.get("uid") or ""
        parent_uid = body.get("parentUid") or ""
        if not isinstance(uid, str) or not isinstance(parent_uid, str) or not isinstance(title, (str, type(None))):
            raise err(400, "bad request data")
        # Grafana's folder validateOnCreate (apps/folder) and the folder service: reserved uids, then the
        # dashboard uid rules, then the title; ToFolderErrorResponse answers 400 for each.
        uid = uid.strip()
        if uid in ("general", "sharedwithme"):
            raise err(400, "invalid uid for folder provided")
        if not UID_RE.match(uid):
            raise err(400, "uid contains illegal characters")
        if len(uid) > 40:
            raise err(400, "uid too long, max 40 characters")
        title = (title or "").strip()
        if not title:
            raise err(400, "folder title cannot be empty")
        if title.lower() == "general":
            raise err(400, "A folder with that name already exists")
        if parent_uid and parent_uid not in app.store.data["folders"]:
            raise err(404, "folder not found", status="not-found")
        if uid and (uid in app.store.data["folders"] or uid in app.store.data["dashboards"]):
            raise err(409, "a folder/dashboard with the same uid already exists")
        if self._title_taken(title, parent_uid):
            raise err(409, "a folder with the same name already exists in the current location")
        folder = app._folder_insert(title, uid or new_uid(), parent_uid or None, ident["login"] or "anonymous")
        self.touch()
        return 200, app.folder_dto(folder, ident)

    def h_folder_update(self, uid: str) -> tuple[int, dict]:
        ident = self.require("Editor", "folders:write")
        app = self.app
        folder = self._folder_or_404(uid)
        body = self.json_body()
        title = body.get("title", folder["title"])
        if not isinstance(title, str) or not title.strip():
            raise err(400, "folder title cannot be empty")
        title = title.strip()
        if title.lower() == "general":
            raise err(400, "A folder with that name already exists")
        version = body.get("version")
        if not body.get("overwrite") and version != folder["version"]:
            raise err(412, "the folder has been changed by someone else", status="version-mismatch")
        if self._title_taken(title, folder.get("parentUid") or "", ignore_uid=uid):
            raise err(409, "a folder with the same name already exists in the current location")
        folder.update(
            {"title": title, "version": folder["version"] + 1, "updated": now_iso(), "updatedBy": ident["login"]}
        )
        self.touch()
        return 200, app.folder_dto(folder, ident)

    def h_folder_delete(self, uid: str) -> tuple[int, dict]:
        self.require("Editor", "folders:delete")
        data = self.app.store.data
        folder = self._folder_or_404(uid)
        doomed = {uid}
        changed = True
        while changed:
            changed = False
            for f in data["folders"].values():
                if f.get("parentUid") in doomed and f["uid"] not in doomed:
                    doomed.add(f["uid"])
                    changed = True
        for duid, dash in list(data["dashboards"].items()):
            if dash["folderUid"] in doomed:
                del data["dashboards"][duid]
        for fuid in doomed:
            del data["folders"][fuid]
        self.touch()
        return 200, {"message": "Folder deleted", "id": folder["id"], "title": folder["title"]}

    # ----------------------------------------------------------------- data sources

    def _ds_find(self, *, uid: str | None = None, name: str | None = None, ds_id: int | None = None) -> dict:
        for ds in self.app.store.data["datasources"].values():
            if (
                (uid is not None and ds["uid"] == uid)
                or (name is not None and ds["name"] == name)
                or (ds_id is not None and ds["id"] == ds_id)
            ):
                return ds
        raise err(404, "Data source not found")

    def h_ds_list(self) -> tuple[int, list]:
        self.require("Admin", "datasources:read")
        items = sorted(self.app.store.data["datasources"].values(), key=lambda d: d["name"].lower())
        return 200, [self.app.ds_list_item(ds) for ds in items]

    def h_ds_get_uid(self, uid: str) -> tuple[int, dict]:
        self.require("Admin", "datasources:read")
        return 200, self.app.ds_dto(self._ds_find(uid=uid))

    def h_ds_get_name(self, name: str) -> tuple[int, dict]:
        self.require("Admin", "datasources:read")
        return 200, self.app.ds_dto(self._ds_find(name=name))

    def h_ds_get_id(self, id: str) -> tuple[int, dict]:
        self.require("Admin", "datasources:read")
        return 200, self.app.ds_dto(self._ds_find(ds_id=int(id)))

    def h_ds_id_by_name(self, name: str) -> tuple[int, dict]:
        self.require("Admin", "datasources.id:read")
        return 200, {"id": self._ds_find(name=name)["id"]}

    def h_ds_create(self) -> tuple[int, dict]:
        self.require("Admin", "datasources:create")
        app = self.app
        fields = app._ds_fields(self.json_body(), None)
        ds = app._ds_insert(fields)
        self.touch()
        return 200, {"datasource": app.ds_dto(ds), "id": ds["id"], "message": "Datasource added", "name": ds["name"]}

    def _ds_update(self, ds: dict) -> tuple[int, dict]:
        app = self.app
        if ds["readOnly"]:
            raise err(403, "Cannot update read-only data source")
        body = self.json_body()
        version = body.get("version")
        if isinstance(version, int) and not isinstance(version, bool) and 0 < version < ds["version"]:
            raise err(409, "Datasource has already been updated by someone else. Please reload and try again")
        fields = app._ds_fields(body, ds)
        app._ds_update(ds, fields)
        self.touch()
        return 200, {"datasource": app.ds_dto(ds), "id": ds["id"], "message": "Datasource updated", "name": ds["name"]}

    def h_ds_update_uid(self, uid: str) -> tuple[int, dict]:
        self.require("Admin", "datasources:write")
        return self._ds_update(self._ds_find(uid=uid))

    def h_ds_update_id(self, id: str) -> tuple[int, dict]:
        self.require("Admin", "datasources:write")
        return self._ds_update(self._ds_find(ds_id=int(id)))

    def _ds_delete(self, ds: dict, with_id: bool) -> tuple[int, dict]:
        if ds["readOnly"]:
            raise err(403, "Cannot delete read-only data source")
        del self.app.store.data["datasources"][ds["uid"]]
        self.touch()
        return 200, (
            {"message": "Data source deleted", "id": ds["id"]} if with_id else {"message": "Data source deleted"}
        )

    def h_ds_delete_uid(self, uid: str) -> tuple[int, dict]:
        self.require("Admin", "datasources:delete")
        return self._ds_delete(self._ds_find(uid=uid), True)

    def h_ds_delete_name(self, name: str) -> tuple[int, dict]:
        self.require("Admin", "datasources:delete")
        return self._ds_delete(self._ds_find(name=name), True)

    def h_ds_delete_id(self, id: str) -> tuple[int, dict]:
        self.require("Admin", "datasources:delete")
        return self._ds_delete(self._ds_find(ds_id=int(id)), False)

    # ----------------------------------------------------------------- provisioning reload

    def h_reload_datasources(self) -> tuple[int, dict]:
        self.require("Admin", "provisioning:reload", server_admin=True)
        try:
            self.app.provision_datasources()
        except ProvisioningError as exc:
            self.app.console.error("provisioning", "Failed to provision data sources", error=str(exc))
            raise err(500, f"Failed to reload data sources config: {exc}") from exc
        self.touch()
        return 200, {"message": "Datasources config reloaded"}

    def h_reload_dashboards(self) -> tuple[int, dict]:
        self.require("Admin", "provisioning:reload", server_admin=True)
        try:
            self.app.provision_dashboards()
        except ProvisioningError as exc:
            self.app.console.error("provisioning", "Failed to provision dashboards", error=str(exc))
            raise err(500, f"Failed to reload dashboards config: {exc}") from exc
        self.touch()
        return 200, {"message": "Dashboards config reloaded"}

    # ----------------------------------------------------------------- service accounts

    def _sa_or_404(self, sa_id: str) -> dict:
        sa = self.app.users().get(sa_id)
        if sa is None or not sa.get("isServiceAccount"):
            raise err(404, "service account not found", messageId="serviceaccounts.ErrNotFound")
        return sa

    def _sa_tokens(self, sa: dict) -> list[dict]:
        return [t for t in self.app.store.data["tokens"].values() if t["serviceAccountId"] == sa["id"]]

    def _sa_dto(self, sa: dict) -> dict:
        return {
            "id": sa["id"],
            "uid": sa["uid"],
            "name": sa["name"],
            "login": sa["login"],
            "orgId": ORG_ID,
            "isDisabled": bool(sa.get("isDisabled")),
            "createdAt": sa["created"],
            "updatedAt": sa["updated"],
            "avatarUrl": "",
            "role": sa["role"],
            "teams": [],
            "tokens": len(self._sa_tokens(sa)),
        }

    def h_sa_search(self) -> tuple[int, dict]:
        self.require("Admin", "serviceaccounts:read")
        query = self.q("query").lower()
        perpage = max(self.qint("perpage", 1000), 1)
        page = max(self.qint("page", 1), 1)
        items = [
            u
            for u in self.app.users().values()
            if u.get("isServiceAccount") and (not query or query in u["name"].lower())
        ]
        items.sort(key=lambda u: u["name"].lower())
        start = (page - 1) * perpage
        return 200, {
            "totalCount": len(items),
            "serviceAccounts": [self._sa_dto(u) for u in items[start : start + perpage]],
            "page": page,
            "perPage": perpage,
        }

    def h_sa_create(self) -> tuple[int, dict]:
        self.require("Admin", "serviceaccounts:create")
        app = self.app
        body = self.json_body()
        name = body.get("name")
        role = body.get("role") or "Viewer"
        if not isinstance(name, str) or not name.strip():
            raise err(400, "Required service account name", messageId="serviceaccounts.ErrMissingName")
        if role not in ROLE_RANK:
            raise err(400, "invalid role specified", messageId="serviceaccounts.ErrInvalidRole")
        login = "sa-" + (slugify(name) or new_uid())
        if any(u["login"] == login or (u.get("isServiceAccount") and u["name"] == name) for u in app.users().values()):
            raise err(400, "service account already exists", messageId="serviceaccounts.ErrAlreadyExists")
        sa_id = app.store.next_id("user")
        sa = {
            "id": sa_id,
            "uid": new_uid(),
            "name": name,
            "login": login,
            "role": role,
            "isDisabled": bool(body.get("isDisabled", False)),
            "isServiceAccount": True,
            "created": now_iso(),
            "updated": now_iso(),
        }
        app.users()[str(sa_id)] = sa
        self.touch()
        return 201, self._sa_dto(sa)

    def h_sa_get(self, id: str) -> tuple[int, dict]:
        self.require("Admin", "serviceaccounts:read")
        return 200, self._sa_dto(self._sa_or_404(id))

    def h_sa_update(self, id: str) -> tuple[int, dict]:
        self.require("Admin", "serviceaccounts:write")
        sa = self._sa_or_404(id)
        body = self.json_body()
        if "role" in body:
            if body["role"] not in ROLE_RANK:
                raise err(400, "invalid role specified", messageId="serviceaccounts.ErrInvalidRole")
            sa["role"] = body["role"]
        if isinstance(body.get("name"), str) and body["name"].strip():
            sa["name"] = body["name"]
        if "isDisabled" in body:
            sa["isDisabled"] = bool(body["isDisabled"])
        sa["updated"] = now_iso()
        self.touch()
        dto = self._sa_dto(sa)
        return 200, {"id": sa["id"], "name": sa["name"], "message": "Service account updated", "serviceaccount": dto}

    def h_sa_delete(self, id: str) -> tuple[int, dict]:
        self.require("Admin", "serviceaccounts:delete")
        sa = self._sa_or_404(id)
        for token in self._sa_tokens(sa):
            del self.app.store.data["tokens"][str(token["id"])]
        del self.app.users()[id]
        self.touch()
        return 200, {"message": "Service account deleted"}

    def h_sa_tokens(self, id: str) -> tuple[int, list]:
        self.require("Admin", "serviceaccounts:read")
        sa = self._sa_or_404(id)
        now = now_iso()
        out = []
        for t in sorted(self._sa_tokens(sa), key=lambda t: t["id"]):
            expired = bool(t.get("expiration") and t["expiration"] < now)
            out.append(
                {
                    "id": t["id"],
                    "name": t["name"],
                    "created": t["created"],
                    "expiration": t.get("expiration"),
                    "secondsUntilExpiration": 0,
                    "hasExpired": expired,
                    "isRevoked": False,
                    "lastUsedAt": None,
                }
            )
        return 200, out

    def h_sa_token_create(self, id: str) -> tuple[int, dict]:
        self.require("Admin", "serviceaccounts:write")
        app = self.app
        sa = self._sa_or_404(id)
        body = self.json_body()
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise err(400, "bad request data")
        if any(t["name"] == name for t in self._sa_tokens(sa)):
            raise err(409, "service account token with given name already exists in the organization")
        ttl = body.get("secondsToLive") or 0
        if not isinstance(ttl, int) or ttl < 0:
            raise err(400, "bad request data")
        secret = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
        key = f"glsa_{secret}_{zlib.crc32(('glsa_' + secret).encode()) & 0xFFFFFFFF:08x}"
        token_id = app.store.next_id("token")
        expiration = None
        if ttl:
            expiration = (datetime.now(UTC) + timedelta(seconds=ttl)).strftime("%Y-%m-%dT%H:%M:%SZ")
        app.store.data["tokens"][str(token_id)] = {
            "id": token_id,
            "serviceAccountId": sa["id"],
            "name": name,
            "hash": sha256_hex(key),
            "created": now_iso(),
            "expiration": expiration,
        }
        self.touch()
        return 200, {"id": token_id, "name": name, "key": key}

    def h_sa_token_delete(self, id: str, token: str) -> tuple[int, dict]:
        self.require("Admin", "serviceaccounts:write")
        sa = self._sa_or_404(id)
        record = self.app.store.data["tokens"].get(token)
        if record is None or record["serviceAccountId"] != sa["id"]:
            raise err(404, "service account token not found")
        del self.app.store.data["tokens"][token]
        self.touch()
        return 200, {"message": "API key deleted"}


# --------------------------------------------------------------------------- grafana server


def parse_flags(args: list[str], known: dict[str, bool]) -> tuple[dict[str, str | bool], list[str]]:
    """Go-flag style parsing: -name value, -name=value, --name value, --name=value."""
    flags: dict[str, str | bool] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            rest += args[i:]
            break
        if not arg.startswith("-") or arg == "-":
            rest.append(arg)
            continue
        name, sep, value = arg.lstrip("-").partition("=")
        if name not in known:
            raise ConfigError(f"flag provided but not defined: -{name}")
        if known[name]:  # boolean
            flags[name] = (value.lower() not in ("false", "0")) if sep else True
            continue
        if not sep:
            if i >= len(args):
                raise ConfigError(f"flag needs an argument: -{name}")
            value = args[i]
            i += 1
        flags[name] = value
    return flags, rest


def version_line() -> str:
    return f"{STANDIN_NAME} {standin_version()} ({STANDIN_TAG})"


def cmd_server(args: list[str]) -> int:
    known = {
        "config": False,
        "homepath": False,
        "pidfile": False,
        "packaging": False,
        "configOverrides": False,
        "v": True,
        "version": True,
        "vv": True,
        "profile": True,
        "tracing": True,
    }
    try:
        flags, rest = parse_flags(args, known)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    if flags.get("v") or flags.get("version") or flags.get("vv"):
        print(version_line())
        return 0
    overrides = [a for a in rest if a.startswith("cfg:")]
    overrides += [a for a in str(flags.get("configOverrides") or "").split() if a.startswith("cfg:")]
    homepath = Path(str(flags.get("homepath") or os.getcwd())).resolve()
    config_file = Path(str(flags["config"])) if flags.get("config") else None
    console = Logger()
    try:
        cfg = Config(homepath, config_file, overrides)
        console = Logger(cfg.get("log", "level", "info") or "info")
        console.info(
            "settings",
            f"Starting {STANDIN_NAME} ({STANDIN_TAG})",
            version=standin_version(),
            commit=STANDIN_COMMIT,
            homepath=str(homepath),
            config=str(cfg.config_file or ""),
        )
        app = App(cfg, console)
        port_text = cfg.get("server", "http_port", "3000")
        addr = cfg.get("server", "http_addr", "")
        protocol = cfg.get("server", "protocol", "http") or "http"
        if protocol not in ("http", "https"):
            raise ConfigError(f"invalid protocol {protocol!r}: the stand-in serves http and https only")
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ConfigError(
                f"failed to open listener on address {addr or '0.0.0.0'}:{port_text}: "
                f"listen tcp: lookup tcp/{port_text}: unknown port (http_port must be 0-65535)"
            )
        app.start()
        server_class = ThreadingHTTPServer
        if ":" in addr:

            class V6Server(ThreadingHTTPServer):
                address_family = socket.AF_INET6

            server_class = V6Server
        try:
            httpd = server_class((addr or "0.0.0.0", int(port_text)), Handler)
        except OSError as exc:
            raise ConfigError(
                f"failed to open listener on address {addr or '0.0.0.0'}:{port_text}: listen tcp: {exc.strerror or exc}"
            ) from exc
        if protocol == "https":
            cert, key = cfg.get("server", "cert_file"), cfg.get("server", "cert_key")
            if not cert or not key:
                httpd.server_close()
                raise ConfigError("cert_file and cert_key are required when protocol is https")
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            min_tls = (cfg.get("server", "min_tls_version", "TLS1.2") or "TLS1.2").strip('"')
            if min_tls not in TLS_VERSIONS:
                httpd.server_close()
                raise ConfigError(f"unknown min_tls_version {min_tls!r}: TLS1.2 or TLS1.3")
            context.minimum_version = TLS_VERSIONS[min_tls]
            try:
                context.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as exc:
                httpd.server_close()
                raise ConfigError(f"could not load TLS certificate: {exc}") from exc
            # The handshake runs in each connection's thread (as Grafana's does per
            # connection), not in the accept loop, where a silent client would stall it.
            httpd.socket = context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
    except ConfigError as exc:
        console.error("server", "Failed to start grafana", error=str(exc))
        print(f"Failed to start {STANDIN_NAME} ({STANDIN_TAG}). error: {exc}", file=sys.stderr)
        return 1
    httpd.daemon_threads = True
    httpd.app = app  # type: ignore[attr-defined]
    stop = threading.Event()
    reason = {"signal": ""}

    def on_signal(signum: int, _frame: object) -> None:
        reason["signal"] = signal.Signals(signum).name
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: console.info("server", "SIGHUP received; nothing to reload (stand-in)"))
    if flags.get("pidfile"):
        try:
            Path(str(flags["pidfile"])).write_text(f"{os.getpid()}\n", encoding="utf-8")
        except OSError as exc:
            console.error("server", "Failed to write pidfile", error=str(exc))
            httpd.server_close()
            return 1
    serve = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    serve.start()
    poller = threading.Thread(target=app.poll_providers, args=(stop,), daemon=True)
    poller.start()
    bound = httpd.server_address
    console.info(
        "http.server",
        "HTTP Server Listen",
        address=f"{bound[0]}:{bound[1]}",
        protocol=protocol,
        subUrl=app.sub_path,
        socket="",
    )
    stop.wait()
    console.info("server", "Shutdown started", reason=f"System signal: {reason['signal'] or 'unknown'}")
    httpd.shutdown()
    httpd.server_close()
    with app.store.lock:
        try:
            app.store.refresh()
            app.store.save()
        except DatabaseError as exc:
            console.error("sqlstore", "Could not save the state at shutdown", error=str(exc))
    if flags.get("pidfile"):
        Path(str(flags["pidfile"])).unlink(missing_ok=True)
    console.info("server", "Shutdown completed")
    return 0


# --------------------------------------------------------------------------- grafana cli


class CliError(Exception):
    pass


def _read_archive(source: str) -> bytes:
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=60) as resp:
                return resp.read()
        except (urllib.error.URLError, OSError) as exc:
            raise CliError(f"Failed to download plugin archive from {source}: {exc}") from exc
    path = urllib.parse.urlparse(source).path if source.startswith("file://") else source
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"Failed to read plugin archive {path}: {exc.strerror or exc}") from exc


def _extract_plugin(archive: bytes, plugins_dir: Path, plugin_id: str) -> str:
    try:
        zf = zipfile.ZipFile(io.BytesIO(archive))
    except zipfile.BadZipFile as exc:
        raise CliError(f"failed to extract plugin archive: not a zip file ({exc})") from exc
    candidates = sorted((n for n in zf.namelist() if n.rsplit("/", 1)[-1] == "plugin.json"), key=lambda n: n.count("/"))
    if not candidates:
        raise CliError("failed to extract plugin archive: plugin.json not found")
    prefix = candidates[0][: -len("plugin.json")]
    try:
        meta = json.loads(zf.read(candidates[0]).decode("utf-8"))
    except ValueError as exc:
        raise CliError(f"failed to convert to plugin DTO: plugin.json is not valid JSON ({exc})") from exc
    if meta.get("id") != plugin_id:
        raise CliError(f"plugin archive holds plugin {meta.get('id')!r}, not {plugin_id!r}")
    version = str((meta.get("info") or {}).get("version", ""))
    plugins_dir.mkdir(parents=True, exist_ok=True)
    target = plugins_dir / plugin_id
    staging = plugins_dir / f".{plugin_id}.standin-install"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    root = staging.resolve()
    for info in zf.infolist():
        if not info.filename.startswith(prefix) or info.filename == prefix:
            continue
        rel = info.filename[len(prefix) :]
        dest = (staging / rel).resolve()
        if root not in dest.parents and dest != root:
            shutil.rmtree(staging, ignore_errors=True)
            raise CliError(f"illegal file path in plugin archive: {info.filename}")
        if info.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(zf.read(info))
        mode = (info.external_attr >> 16) & 0o777
        dest.chmod(0o755 if mode & 0o111 else 0o644)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return version


def _local_plugins(plugins_dir: Path) -> list[tuple[str, str]]:
    out = []
    for entry in sorted(plugins_dir.iterdir()):
        meta_path = entry / "plugin.json"
        if entry.is_dir() and meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except ValueError:
                continue
            out.append((str(meta.get("id", entry.name)), str((meta.get("info") or {}).get("version", ""))))
    return out


def cmd_cli(args: list[str]) -> int:
    known = {
        "homepath": False,
        "config": False,
        "pluginsDir": False,
        "pluginUrl": False,
        "repo": False,
        "configOverrides": False,
        "insecure": True,
        "debug": True,
        "d": True,
        "force": True,
        "password-from-stdin": True,
        "user-id": False,
        "v": True,
        "version": True,
        "h": True,
        "help": True,
    }
    try:
        flags, rest = parse_flags(args, known)
        if flags.get("v") or flags.get("version"):
            print(version_line())
            return 0
        if flags.get("h") or flags.get("help") or not rest:
            print(
                f"{STANDIN_NAME} ({STANDIN_TAG}) cli\n"
                "  plugins install <id> [<version>]   (needs --pluginUrl: no network access)\n"
                "  plugins ls | plugins remove <id>\n"
                "  admin reset-admin-password <password>"
            )
            return 0 if flags.get("h") or flags.get("help") else 1
        plugins_dir = Path(
            str(flags.get("pluginsDir") or os.environ.get("GF_PLUGIN_DIR") or "/var/lib/grafana/plugins")
        )
        command = rest[:2]
        if command == ["plugins", "install"]:
            params = rest[2:]
            if not params:
                raise CliError("please specify plugin to install")
            if len(params) > 2:
                raise CliError("install only supports 2 arguments: plugin and version")
            plugin_id = params[0]
            version = params[1] if len(params) > 1 else ""
            url = str(flags.get("pluginUrl") or os.environ.get("GF_PLUGIN_URL") or "")
            if version and plugins_dir.is_dir() and (plugin_id, version) in _local_plugins(plugins_dir):
                print(f"✔ Plugin {plugin_id} v{version} already installed.")
                return 0
            if not url:
                raise CliError(
                    f"{STANDIN_NAME} has no network access: installing {plugin_id} without --pluginUrl "
                    "would download it from grafana.com. Pass --pluginUrl <zip URL or local path>."
                )
            installed = _extract_plugin(_read_archive(url), plugins_dir, plugin_id)
            print(f"✔ Downloaded and extracted {plugin_id} v{installed} zip successfully to {plugins_dir / plugin_id}")
            print()
            print(RESTART_NOTICE)
            return 0
        if command in (["plugins", "ls"], ["plugins", "list"]):
            if not plugins_dir.is_dir():
                raise CliError(f"error: stat {plugins_dir}: no such file or directory")
            plugins = _local_plugins(plugins_dir)
            print("installed plugins:" if plugins else "no installed plugins found")
            for plugin_id, version in plugins:
                print(f"{plugin_id} @ {version}")
            return 0
        if command in (["plugins", "remove"], ["plugins", "uninstall"]):
            if len(rest) < 3:
                raise CliError("missing plugin parameter")
            target = plugins_dir / rest[2]
            if target.is_dir() and (target / "plugin.json").is_file():
                print(f"Removing plugin: {rest[2]}")
                shutil.rmtree(target)
            print(RESTART_NOTICE)
            return 0
        if command == ["admin", "reset-admin-password"]:
            return _reset_admin_password(flags, rest[2:])
        raise CliError(
            f"unknown command: {' '.join(rest)} "
            "(the stand-in implements plugins install/ls/remove and admin reset-admin-password)"
        )
    except (CliError, ConfigError) as exc:
        print(f"Error: ✗ {exc}", file=sys.stderr)
        return 1


def _reset_admin_password(flags: dict, params: list[str]) -> int:
    if flags.get("password-from-stdin"):
        password = sys.stdin.readline().rstrip("\n")
    elif params:
        password = params[0]
    else:
        raise CliError("missing arguments: new password is required")
    if len(password) < 4:
        raise CliError("new password is too short")
    homepath = Path(str(flags.get("homepath") or os.getcwd())).resolve()
    config_file = Path(str(flags["config"])) if flags.get("config") else None
    overrides = [a for a in str(flags.get("configOverrides") or "").split() if a.startswith("cfg:")]
    cfg = Config(homepath, config_file, overrides)
    store = Store(Database(cfg, cfg.path("paths", "data", "data")).path)
    with store.lock:
        try:
            found = store.path.is_file() and store.load(create=False)
        except DatabaseError as exc:
            raise CliError(str(exc)) from exc
        if not found:
            raise CliError(f"no stand-in state in {store.path}: start the server once first")
        user = store.data["users"].get(str(flags.get("user-id") or 1))
        if user is None or user.get("isServiceAccount"):
            raise CliError("failed to find user")
        user["salt"] = secrets.token_hex(8)
        user["password"] = hash_password(password, user["salt"])
        user["updated"] = now_iso()
        try:
            store.save()
        except DatabaseError as exc:
            raise CliError(str(exc)) from exc
    print()
    print("Admin password changed successfully ✔")
    print()
    return 0


# --------------------------------------------------------------------------- entry point


def main(argv: list[str]) -> int:
    prog = Path(argv[0]).name if argv else "grafana"
    args = argv[1:]
    if prog == "grafana-server":
        return cmd_server(args)
    if prog == "grafana-cli":
        return cmd_cli(args)
    if not args:
        print(f"{version_line()}\nusage: grafana server|cli ... (grafana --version)", file=sys.stderr)
        return 2
    if args[0] in ("-v", "--version", "-version", "version"):
        print(version_line())
        return 0
    if args[0] == "server":
        return cmd_server(args[1:])
    if args[0] == "cli":
        return cmd_cli(args[1:])
    print(f"Error: unknown command {args[0]!r}: the {STANDIN_NAME} implements 'server' and 'cli'", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
