#!/usr/bin/env python3
# ruff: noqa: PLR0911, PLR0912
"""Promtail STAND-IN for tests (tests/standins/promtail; not Promtail).

Real Promtail (part of Grafana Loki's AGPL-licensed Go module) may not be built
on the machines this project is tested on. This single-file program (Python 3
standard library only, so it runs on the system python3 of Debian 12/13)
implements the part of Promtail 3.6's command line, configuration and
behaviour that the project uses, following Promtail's documentation and code,
so the promtail role's install path, systemd unit and configuration can be
tested end to end. It is not Promtail and never claims to be: ``-version``
prints ``promtail, version <v> stand-in (tests/standins/promtail; not Promtail)``.

Command line (Go flag syntax: ``-f=v``, ``-f v``, ``--f=v``; bools ``-f`` or ``-f=false``)
==========================================================================================

``-config.file=PATH``  the configuration (JSON-compatible YAML, see below).
``-config.expand-env=true``  expand ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``$VAR`` (undefined: empty) and ``$$`` (a literal ``$``) before parsing.
``-check-syntax``  parse and validate, print ``Valid config file! No syntax issues
    found`` and exit 0, or ``Unable to parse config: <error>`` (stdout) and exit 1.
    Promtail's own -check-syntax only decodes the file; the stand-in also runs
    the checks Promtail does when it starts (clients, pipeline stages, ...), so
    a config it accepts also starts. Without -config.file: ``Invalid config file``, 1.
``-dry-run``  print entries to stdout (``<time>\\t{labels}\\t<line>``) instead of
    pushing; the positions file is read but never written (as Promtail).
``-version``, ``-log.level=debug|info|warn|error``, ``-log.format=logfmt``,
``-server.disable``, ``-server.http-listen-address``, ``-server.http-listen-port``,
``-server.grpc-listen-port`` (accepted, no gRPC server), ``-positions.file``,
``-target.sync-period``, ``-print-config-stderr`` (the parsed config as JSON).
    Flags override the file, as in Promtail. Unknown flags: ``flag provided but
    not defined: -x`` on stderr, exit 2.

Exit status: 0 after SIGTERM/SIGINT (graceful: targets stop, positions are
written, pending batches are sent with the usual retries); 1 for a config
Promtail refuses (``Unable to parse config: ...`` on stdout for decoding
errors; ``level=error ... msg="error creating promtail" error=...`` on stderr
for errors Promtail finds at start, e.g. no clients or a bad pipeline stage).
SIGHUP (Promtail: reload) is logged and ignored. Logs: logfmt on stderr.

Configuration: JSON-compatible YAML, decoded strictly
=====================================================

The standard library has no YAML parser, so the file must be ONE JSON document
(valid YAML, so real Promtail reads the same file; the role renders it with
to_nice_json). Whole-line ``#`` comments and ``---`` lines are ignored. As
Promtail's strict decoder (yaml.v3 KnownFields): unknown keys anywhere and
wrongly typed values are refused with yaml.v3's messages (``line N: field X
not found in type T``, ``cannot unmarshal !!str `x` into int``), duplicate keys
too; keys Promtail knows but the stand-in does not implement are refused as
such. Durations are Go durations (``500ms``, ``1m30s``; no ``d``). Keys:

* ``server``: http_listen_address (all), http_listen_port (80, Promtail's
  default), grpc_listen_address/grpc_listen_port (accepted; the stand-in
  serves no gRPC), log_level (info), log_format (logfmt), disable (false),
  register_instrumentation (true: /metrics), health_check_target (true),
  graceful_shutdown_timeout and http_server_*_timeout (accepted),
  http_tls_config {cert_file, key_file, client_auth_type, client_ca_file} and
  tls_min_version (HTTPS, as dskit serves it: tests/standins/dskit_tls.py).
* ``positions``: filename (/var/log/positions.yaml), sync_period (10s),
  ignore_invalid_yaml (false). The directory must exist (Promtail does not
  create it either; writes fail and are logged).
* ``clients`` (at least one): url (required, http/https), tenant_id (header
  X-Scope-OrgID), batchwait (1s), batchsize (1048576 bytes of log lines),
  timeout (10s), external_labels (added to every stream; entry labels win),
  headers, name, drop_rate_limited_batches, tls_config {ca_file, cert_file,
  key_file, insecure_skip_verify, min_version} (Prometheus' client TLS; no
  server_name), backoff_config {min_period 500ms,
  max_period 5m, max_retries 10} (dskit backoff: max_retries sends, jittered
  exponential waits between them; 0 = retry forever).
* ``scrape_configs`` [{job_name (required, unique), static_configs [{targets,
  labels}], journal {json, max_age (7h), path, labels, matches},
  relabel_configs, pipeline_stages}]. Each needs static_configs or journal.
* ``target_config`` {sync_period (10s), stdin (false only)}; ``limits_config``
  (only the defaults: rate limits, max_streams and max_line_size are not implemented).

File targets
============

Each static target (``targets`` default ``[localhost]`` as ``__address__``, plus
the group's labels) is relabeled; a target whose labels lack ``__path__`` is
refused at start (Promtail only logs "no path for target" and skips it), one
with ``__host__`` other than the hostname is skipped. ``__path__`` is a
doublestar glob (``**``, ``{a,b}``, dotfiles match), ``__path_exclude__`` too.
New matching files are picked up within 250ms (Promtail: fsnotify), vanished
files are dropped with their position at every target_config.sync_period.
Each file is read from its saved position, else from the beginning; one
entry per complete line (``\\n`` stripped; a last line without newline waits
for it, as Promtail), timestamp = read time, labels = target labels minus
``__*`` plus ``filename``. Truncation (size below the read offset) restarts at
0; rotation (the path names another inode) drains the old file, then reads
the new one from 0. Files are polled every 250ms.

Positions: ``positions.filename`` in Promtail's format, written atomically
(mode 0600) every positions.sync_period and at shutdown, read at start (a
corrupt file fails the start with ``invalid yaml positions file [F]: ...``
unless ignore_invalid_yaml)::

    positions:
      /var/log/app.log: "1234"
      cursor-journal: "s=...;i=...;b=...;m=...;t=...;x=..."

Journal targets
===============

Read with ``journalctl --output=json --all --follow --no-pager --no-tail`` (first
start: ``--since=@<now - max_age>``; later ``--after-cursor=<saved cursor>``;
``--directory=<journal.path>``; ``journal.matches`` as match arguments) instead
of sd-journal, so the reader needs only read access to the journal (root, or
membership of the ``systemd-journal`` (or ``adm``) group; without it journalctl
shows only the user's own entries and the stand-in logs journalctl's hint as
a warning). Entries older than max_age are skipped even when resuming; a cursor
journalctl refuses (it exits without output) is dropped for max_age. The
cursor is kept under ``cursor-<job_name>`` (Promtail 3.x's positions.CursorKey).
Line: MESSAGE (entries without one are dropped), or with ``json: true`` all
fields as a JSON object (sorted keys, no ``__`` fields). Timestamp:
__REALTIME_TIMESTAMP. Labels for relabeling: ``__journal_<field lowercased>``
(``__journal__systemd_unit``, ``__journal_priority``, ...), plus
``__journal_priority_keyword`` (emerg..debug) and journal.labels; after
relabeling ``__*`` labels are removed and an entry left without labels is
dropped (as Promtail). ``journalctl`` missing from PATH fails the start.

Relabeling (Prometheus semantics)
=================================

Actions replace (default), keep, drop, keepequal, dropequal, hashmod,
labelmap, labeldrop, labelkeep, lowercase, uppercase; separator ``;``, regex
``(.*)`` fully anchored (``^(?s:...)$``), replacement ``$1`` (Go expansion:
``$1``, ``${1}``, ``$name``, ``$$``), Prometheus's validation messages.
Regexes are Go RE2: ``(?P<n>...)``/``(?<n>...)`` work; look-arounds and
back-references are refused as Go refuses them.

Pipeline stages (each a one-key mapping, run in order)
======================================================

json {expressions, source, drop_malformed} (JMESPath subset: identifiers,
``"quoted"`` identifiers, ``a.b`` and ``[n]``; an empty expression uses the
name; numbers are float64 as in Go), regex {expression, source}, labels,
structured_metadata (also moves matching labels), static_labels, labeldrop,
labelallow, output {source}, timestamp {source, format, fallback_formats,
location, action_on_failure fudge|skip} (RFC3339, RFC3339Nano, Unix, UnixMs,
UnixUs, UnixNs, ANSIC, UnixDate, RubyDate, RFC822(Z), RFC850, RFC1123(Z) and
Go reference layouts), drop {source, value, expression, older_than,
longer_than, drop_counter_reason}, match {selector (label matchers and
``|= != |~ !~`` line filters), stages, action keep|drop, drop_counter_reason,
pipeline_name}, metrics {<name>: {type counter|gauge|histogram, description,
source, prefix (``promtail_custom_``), max_idle_duration (5m), config {value,
action, match_all, count_entry_bytes, buckets}}} (series labelled with the
entry's labels at that stage, served on /metrics, dropped after
max_idle_duration without updates). The extracted map starts with the
entry's labels (as Promtail). Other Promtail stages are refused as not implemented; unknown
keys inside a stage are refused (Promtail ignores them). Stage errors use
Promtail's messages (``invalid json stage config: ...``, ``Unknown stage type: x``).

Client (Loki push API)
======================

Entries are batched per tenant and sent to every client when batchsize would
be exceeded or the batch is batchwait old: ``POST <url>`` with ``Content-Type:
application/json``, body ``{"streams":[{"stream":{labels},"values":[["<unix
ns>","<line>"] or ["<ns>","<line>",{structured metadata}]]}]}``. Real Promtail
pushes protobuf+snappy; Loki accepts both. Labels with an empty value are not
sent. 429, 5xx and connection errors are retried with backoff, then the
batch is dropped (reason ``rate_limited`` if the last answer was 429, else
``ingester_error``); other non-2xx answers drop it at once. No proxy from the
environment is used (Promtail's default).

HTTP server (http_listen_address:http_listen_port)
==================================================

``GET /ready``: 200 ``Ready`` when at least one target is ready (a file being
tailed, or a journal target), else 500 ``Not ready: Unable to find any logs
to tail. Please verify permissions, volumes, scrape_config, etc.`` (always 200
with health_check_target false). ``GET /metrics``: Prometheus text format 0.0.4
(``text/plain; version=0.0.4; charset=utf-8``): promtail_build_info,
promtail_read_lines_total{path}, promtail_read_bytes_total{path},
promtail_file_bytes_total{path}, promtail_files_active_total,
promtail_targets_active_total, promtail_targets_failed_total{reason},
promtail_encoded_bytes_total{host}, promtail_sent_bytes_total{host},
promtail_sent_entries_total{host}, promtail_dropped_entries_total{host,tenant,reason},
promtail_dropped_bytes_total{host,tenant,reason},
promtail_batch_retries_total{host,tenant},
promtail_request_duration_seconds{host,status_code} (histogram; status -1 =
connection error), promtail_journal_target_lines_total,
promtail_journal_target_parsing_errors_total{error},
logentry_dropped_lines_total{reason}, and the metrics stage's
``promtail_custom_*``. ``host`` is the client URL's host:port.
``GET /`` redirects to /targets (not implemented: 404).
"""

from __future__ import annotations

import calendar
import decimal
import hashlib
import json
import math
import os
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from http.client import HTTPException
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from json.decoder import scanstring
from pathlib import Path

# >>> dskit_tls
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dskit_tls import TLSConfigError, client_context, serve_tls, server_context

# <<< dskit_tls

STANDIN_TAG = "tests/standins/promtail; not Promtail"
DEFAULT_VERSION = "3.6.0"
BAKED_VERSION = ""  # package.sh writes the release version here
JSON_AS_YAML = "the Promtail stand-in reads JSON-compatible YAML only (one JSON document; whole-line # comments)"
NOT_READY = "Not ready: Unable to find any logs to tail. Please verify permissions, volumes, scrape_config, etc."
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
DROP_REASONS = ("ingester_error", "rate_limited", "stream_limited", "line_too_long")
POLL = 0.25


def standin_version() -> str:
    if BAKED_VERSION:
        return BAKED_VERSION
    here = Path(__file__).resolve().parent
    for candidate in (here / "VERSION", here.parent / "VERSION"):
        try:
            if text := candidate.read_text(encoding="utf-8").strip():
                return text.lstrip("v")
        except OSError:
            continue
    return os.environ.get("PROMTAIL_STANDIN_VERSION", DEFAULT_VERSION).lstrip("v")


# --------------------------------------------------------------------------- logging

LEVELS = {"debug": 0, "info": 1, "warn": 2, "error": 3}
_log_state = {"level": 1}
_log_lock = threading.Lock()


def _logfmt(value: object) -> str:
    text = str(value)
    return text if text and re.fullmatch(r'[^\s"=\\]+', text) else json.dumps(text, ensure_ascii=False)


def log(level: str, msg: str, **fields: object) -> None:
    if LEVELS[level] < _log_state["level"]:
        return
    ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    parts = [f"level={level}", f"ts={ts}", f"caller=promtail_standin.py:{sys._getframe(1).f_lineno}"]
    parts += [f"msg={_logfmt(msg)}"] + [f"{k}={_logfmt(v)}" for k, v in fields.items()]
    with _log_lock:
        sys.stderr.write(" ".join(parts) + "\n")
        sys.stderr.flush()


class ParseError(Exception):
    """What Promtail's config decoding refuses (``Unable to parse config: ...``)."""


class StartupError(Exception):
    """What Promtail refuses when it starts (``error creating promtail``)."""


# --------------------------------------------------------------------------- Go values


_DUR_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_DUR_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def go_duration(text: str) -> float | None:
    """Seconds of a Go time.ParseDuration string, None when Go refuses it."""
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0.0
    if not body:
        return None
    total, pos = 0.0, 0
    while pos < len(body):
        m = _DUR_PART.match(body, pos)
        if not m or m.group(1) in ("", "."):
            return None
        total += float(m.group(1)) * _DUR_UNIT[m.group(2)]
        pos = m.end()
    return -total if text.startswith("-") else total


def go_float(x: float, json_style: bool = False) -> str:
    """float64 as strconv.FormatFloat(x, 'f', -1, 64), or as encoding/json writes it."""
    if math.isnan(x) or math.isinf(x):
        return "NaN" if math.isnan(x) else ("+Inf" if x > 0 else "-Inf")
    if x == 0:
        return "0"
    if json_style and not 1e-6 <= abs(x) < 1e21:
        mant, exp = repr(x).split("e") if "e" in repr(x) else (repr(x), "0")
        return f"{mant}e{'-' if int(exp) < 0 else '+'}{abs(int(exp)):0{1 if int(exp) < 0 else 2}d}"
    return format(decimal.Decimal(repr(x)).normalize(), "f")


def go_str(text: str) -> str:
    out = json.dumps(text, ensure_ascii=False)
    for char, esc in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        out = out.replace(char, esc)
    return out


def go_json(value: object) -> str:
    """Compact JSON as Go's encoding/json writes a map[string]interface{} (sorted keys, float64)."""
    if isinstance(value, dict):
        return "{" + ",".join(go_str(str(k)) + ":" + go_json(value[k]) for k in sorted(value)) + "}"
    if isinstance(value, list):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return go_float(float(value), json_style=True)
    return "null" if value is None else go_str(str(value))


def get_string(value: object) -> str | None:
    """Promtail's getString: str, float64, bool to string; anything else (nil) is an error (None)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return go_float(float(value))
    return value if isinstance(value, str) else None


def go_regex(expr: str) -> re.Pattern:
    """A Go RE2 regular expression as a Python pattern; Perl syntax RE2 lacks is refused like Go."""
    out, i = [], 0
    while i < len(expr):
        if expr[i] == "\\" and i + 1 < len(expr):
            nxt = expr[i + 1]
            if nxt in "123456789" or nxt in "ZG":
                raise ValueError(f"error parsing regexp: invalid escape sequence: `\\{nxt}`")
            out.append("\\Z" if nxt == "z" else expr[i : i + 2])
            i += 2
            continue
        for bad in ("(?=", "(?!", "(?<=", "(?<!", "(?P=", "(?#"):
            if expr.startswith(bad, i):
                raise ValueError(f"error parsing regexp: invalid or unsupported Perl syntax: `{bad}`")
        if expr.startswith("(?<", i):
            out.append("(?P<")
            i += 3
            continue
        out.append(expr[i])
        i += 1
    try:
        return re.compile("".join(out))
    except re.error as exc:
        raise ValueError(f"error parsing regexp: {exc}: `{expr}`") from None


_EXPAND = re.compile(r"\$(?:\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def go_expand(template: str, m: re.Match) -> str:
    """Go's Regexp.ExpandString: $1, ${1}, $name, ${name}, $$; unknown groups expand to ''."""

    def rep(x: re.Match) -> str:
        if x.group(0) == "$$":
            return "$"
        name = x.group(1) or x.group(2)
        try:
            return (m.group(int(name)) if name.isdigit() else m.group(name)) or ""
        except (IndexError, re.error):
            return ""

    return _EXPAND.sub(rep, template)


def valid_label(name: object) -> bool:
    return isinstance(name, str) and LABEL_NAME.fullmatch(name) is not None


def labels_string(labels: dict) -> str:
    return "{" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels.items())) + "}"


# --------------------------------------------------------------------------- JSON-as-YAML decoding


class LDict(dict):
    line = 0


class LList(list):
    line = 0


class Key(str):
    line = 0


class _Json:
    """A JSON parser keeping line numbers (for yaml.v3-style messages) and refusing duplicate keys."""

    NUM = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
    WS = re.compile(r"[ \t\r\n]*")

    def __init__(self, text: str) -> None:
        self.s = text

    def line(self, i: int) -> int:
        return self.s.count("\n", 0, i) + 1

    def fail(self, i: int, what: str) -> None:
        raise ParseError(f"yaml: line {self.line(i)}: {what} ({JSON_AS_YAML})")

    def parse(self) -> object:
        value, i = self.value(0)
        if self.WS.match(self.s, i).end() != len(self.s):
            self.fail(i, "more than one JSON document or trailing content")
        return value

    def value(self, i: int) -> tuple[object, int]:
        s = self.s
        i = self.WS.match(s, i).end()
        c = s[i : i + 1]
        if c in "{[":
            box = LDict() if c == "{" else LList()
            box.line, close = self.line(i), "}" if c == "{" else "]"
            i = self.WS.match(s, i + 1).end()
            if s[i : i + 1] == close:
                return box, i + 1
            while True:
                if c == "{":
                    if s[i : i + 1] != '"':
                        self.fail(i, "expected a double-quoted key")
                    text, i = self.string(i)
                    key = Key(text)
                    key.line = self.line(i)
                    old = next((k for k in box if k == key), None)
                    if old is not None:
                        where = f'line {key.line}: mapping key "{key}" already defined at line {old.line}'
                        raise ParseError(f"yaml: unmarshal errors:\n  {where}")
                    i = self.WS.match(s, i).end()
                    if s[i : i + 1] != ":":
                        self.fail(i, "expected ':'")
                    box[key], i = self.value(i + 1)
                else:
                    item, i = self.value(i)
                    box.append(item)
                i = self.WS.match(s, i).end()
                if s[i : i + 1] == ",":
                    i = self.WS.match(s, i + 1).end()
                    continue
                if s[i : i + 1] == close:
                    return box, i + 1
                self.fail(i, f"expected ',' or '{close}'")
        if c == '"':
            return self.string(i)
        for word, val in (("true", True), ("false", False), ("null", None)):
            if s.startswith(word, i):
                return val, i + len(word)
        m = self.NUM.match(s, i)
        if not m:
            self.fail(i, f"unexpected {s[i : i + 10]!r}")
        num = m.group(0)
        return (float(num) if m.group(1) or m.group(2) else int(num)), m.end()

    def string(self, i: int) -> tuple[str, int]:
        try:
            return scanstring(self.s, i + 1, True)
        except ValueError as exc:
            self.fail(i, f"invalid string: {exc}")
        raise AssertionError


def read_json_yaml(text: str) -> object:
    kept = ["" if (s := ln.strip()).startswith("#") or s == "---" else ln for ln in text.split("\n")]
    body = "\n".join(kept)
    if not body.strip():
        raise ParseError("EOF")
    return _Json(body).parse()


# Schema: a kind name, ("obj", Go type, fields) or ("list", item spec).
S, INT, F, B, D = "string", "int", "float64", "bool", "time.Duration"
SL, SM, LS, ANY = "[]string", "strmap", "lset", "any"


def obj(name: str, fields: dict) -> tuple:
    return ("obj", name, fields)


BACKOFF = obj("backoff.Config", {"min_period": D, "max_period": D, "max_retries": INT})
CLIENT = obj(
    "client.Config",
    {"name": S, "url": S, "batchwait": D, "batchsize": INT, "timeout": D, "tenant_id": S, "external_labels": LS,
     "backoff_config": BACKOFF, "headers": SM, "drop_rate_limited_batches": B,
     "tls_config": obj("config.TLSConfig", {"ca_file": S, "cert_file": S, "key_file": S, "server_name": S,
                                            "insecure_skip_verify": B, "min_version": S})},
)  # fmt: skip
SERVER = obj(
    "server.Config",
    {"http_listen_address": S, "http_listen_port": INT, "grpc_listen_address": S, "grpc_listen_port": INT,
     "log_level": S, "log_format": S, "disable": B, "register_instrumentation": B, "health_check_target": B,
     "graceful_shutdown_timeout": D, "http_server_read_timeout": D, "http_server_write_timeout": D,
     "http_server_idle_timeout": D, "tls_min_version": S, "tls_cipher_suites": S,
     "http_tls_config": obj("server.TLSConfig",
                            {"cert_file": S, "key_file": S, "client_auth_type": S, "client_ca_file": S})},
)  # fmt: skip
RELABEL = obj(
    "relabel.Config",
    {"source_labels": SL, "separator": S, "regex": S, "modulus": INT, "target_label": S, "replacement": S, "action": S},
)
SCRAPE = obj(
    "scrapeconfig.Config",
    {"job_name": S, "pipeline_stages": ("list", ANY), "relabel_configs": ("list", RELABEL),
     "static_configs": ("list", obj("targetgroup.Group", {"targets": SL, "labels": LS})),
     "journal": obj("scrapeconfig.JournalTargetConfig",
                    {"max_age": S, "json": B, "labels": LS, "path": S, "matches": S})},
)  # fmt: skip
CONFIG = obj(
    "config.Config",
    {"server": SERVER, "clients": ("list", CLIENT), "scrape_configs": ("list", SCRAPE),
     "positions": obj("positions.Config", {"filename": S, "sync_period": D, "ignore_invalid_yaml": B}),
     "target_config": obj("file.Config", {"sync_period": D, "stdin": B}),
     "limits_config": obj("limit.Config", {"readline_rate_enabled": B, "readline_rate": F, "readline_burst": INT,
                                           "readline_rate_drop": B, "max_streams": INT, "max_line_size": ANY,
                                           "max_line_size_truncate": B})},
)  # fmt: skip
NOT_IMPLEMENTED = {
    "config.Config": {"global", "client", "options", "tracing", "wal"},
    "server.Config": {"http_path_prefix", "external_url", "profiling_enabled", "enable_runtime_reload",
                      "grpc_tls_config", "grpc_server_max_recv_msg_size",
                      "grpc_server_max_send_msg_size", "log_request_headers", "log_source_ips_enabled"},
    "client.Config": {"basic_auth", "authorization", "oauth2", "bearer_token", "bearer_token_file",
                      "proxy_url", "no_proxy", "proxy_from_environment", "proxy_connect_header",
                      "follow_redirects", "enable_http2"},
    "scrapeconfig.Config": {"syslog", "gcplog", "loki_push_api", "windows_events", "kafka", "azure_event_hubs",
                            "gelf", "cloudflare", "heroku_drain", "docker_sd_configs", "file_sd_configs",
                            "kubernetes_sd_configs", "consul_sd_configs", "consulagent_sd_configs",
                            "dns_sd_configs", "ec2_sd_configs", "encoding", "decompression"},
}  # fmt: skip


def _tag(v: object) -> str:
    if v is None:
        return "!!null"
    if isinstance(v, bool):
        return f"!!bool `{'true' if v else 'false'}`"
    if isinstance(v, (int, float, str)):
        return f"!!{'int' if isinstance(v, int) else 'float' if isinstance(v, float) else 'str'} `{v}`"
    return "!!seq" if isinstance(v, list) else "!!map"


def conform(v: object, spec: object, line: int, errs: list) -> object:
    """Check a decoded value against the schema, collecting yaml.v3-style errors; returns the value."""
    if v is None or spec == ANY:
        return v
    kind = spec if isinstance(spec, str) else spec[0]
    line = getattr(v, "line", line)
    item = spec[1] if kind == "list" else None
    gotype = {"obj": spec[1], "list": "[]" + (item[1] if isinstance(item, tuple) else str(item)),
              LS: "model.LabelSet", SM: "map[string]string"}.get(kind, kind)  # fmt: skip

    def bad() -> None:
        errs.append((line, f"cannot unmarshal {_tag(v)} into {gotype}"))

    scalar = isinstance(v, (str, int, float, bool))
    if kind == S:  # yaml.v3 decodes any scalar into a string
        return ("true" if v else "false") if isinstance(v, bool) else str(v) if scalar else bad()
    if kind == INT:
        return v if isinstance(v, int) and not isinstance(v, bool) else bad()
    if kind == F:
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else bad()
    if kind == B:
        return v if isinstance(v, bool) else bad()
    if kind == D:
        seconds = go_duration(v) if isinstance(v, str) else None
        return bad() if seconds is None else seconds
    if kind == SL:
        if not isinstance(v, list):
            return bad()
        return [conform(x, S, line, errs) for x in v]
    if kind in (LS, SM):
        if not isinstance(v, dict):
            return bad()
        out = {}
        for k, x in v.items():
            if kind == LS and not valid_label(k):
                errs.append((k.line, f'"{k}" is not a valid label name'))
            out[str(k)] = conform(x, S, k.line, errs)
        return out
    if kind == "list":
        return [conform(x, spec[1], line, errs) for x in v] if isinstance(v, list) else bad()
    if not isinstance(v, dict):
        return bad()
    out = {}
    for k, x in v.items():
        if k in spec[2]:
            out[str(k)] = conform(x, spec[2][k], k.line, errs)
        elif k in NOT_IMPLEMENTED.get(spec[1], ()):
            errs.append((k.line, f"field {k} of {spec[1]} is valid for Promtail but not implemented by the stand-in"))
        else:
            errs.append((k.line, f"field {k} not found in type {spec[1]}"))
    return out


def expand_env(text: str) -> str:
    pattern = r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)"

    def rep(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        value = os.environ.get(m.group(1) or m.group(4))
        if (m.group(2) == ":-" and not value) or (m.group(2) == "-" and value is None):
            return m.group(3)
        return value or ""

    return re.sub(pattern, rep, text)


def load_config(path: str, expand: bool) -> dict:
    """Decode and check the file as Promtail's cfg.YAML (strict) plus its UnmarshalYAML checks."""
    if not os.path.exists(path):
        raise ParseError(f"{path} does not exist, set config.file for custom config path")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ParseError(f"open {path}: {exc.strerror}") from None
    hint = ". Use `-config.expand-env=true` flag if you want to expand environment variables in your config file"
    hint = "" if expand else hint
    try:
        raw = read_json_yaml(expand_env(text) if expand else text)
        errs: list = []
        if not isinstance(raw, dict):
            raise ParseError(f"yaml: unmarshal errors:\n  line 1: cannot unmarshal {_tag(raw)} into config.Config")
        cfg = conform(raw, CONFIG, 1, errs)
        if errs:
            raise ParseError("yaml: unmarshal errors:\n" + "\n".join(f"  line {n}: {m}" for n, m in errs))
        jobs = set()
        for sc in cfg.get("scrape_configs") or []:
            if not sc.get("job_name"):
                raise ParseError("job_name is empty")
            if sc["job_name"] in jobs:
                raise ParseError(f'found multiple scrape configs with job name "{sc["job_name"]}"')
            jobs.add(sc["job_name"])
            sc["relabel"] = [relabel_rule(r or {}) for r in sc.get("relabel_configs") or []]
        level = (cfg.get("server") or {}).get("log_level", "info")
        if level not in LEVELS:
            raise ParseError(f'unrecognized log level "{level}"')
    except ParseError as exc:
        raise ParseError(f"{path}: {exc}{hint}") from None
    return cfg


# --------------------------------------------------------------------------- relabeling


RELABEL_ACTIONS = {"replace", "keep", "drop", "keepequal", "dropequal", "hashmod", "labelmap", "labeldrop",
                   "labelkeep", "lowercase", "uppercase"}  # fmt: skip
TARGET_WITH_VARS = re.compile(r"^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$")


def relabel_rule(r: dict) -> dict:
    """A validated relabel config (Prometheus relabel.Config UnmarshalYAML + Validate)."""
    rule = {"source_labels": r.get("source_labels") or [], "separator": r.get("separator", ";"),
            "regex_text": r.get("regex", "(.*)"), "modulus": r.get("modulus", 0),
            "target_label": r.get("target_label", ""), "replacement": r.get("replacement", "$1"),
            "action": (r.get("action") or "replace").lower()}  # fmt: skip
    act, target = rule["action"], rule["target_label"]
    if act not in RELABEL_ACTIONS:
        raise ParseError(f'unknown relabel action "{r.get("action")}"')
    try:
        rule["regex"] = re.compile("(?:" + go_regex(rule["regex_text"]).pattern + ")", re.DOTALL)
    except ValueError as exc:
        raise ParseError(str(exc)) from None
    for name in rule["source_labels"]:
        if not valid_label(name):
            raise ParseError(f'"{name}" is not a valid label name')
    if act == "hashmod" and not rule["modulus"]:
        raise ParseError("relabel configuration for hashmod requires non-zero modulus")
    needs_target = {"replace", "hashmod", "lowercase", "uppercase", "keepequal", "dropequal"}
    if act in needs_target and not target:
        raise ParseError(f"relabel configuration for {act} action requires 'target_label' value")
    if (act == "replace" and not TARGET_WITH_VARS.match(target)) or (
        act in needs_target - {"replace"} and not valid_label(target)
    ):
        raise ParseError(f"\"{target}\" is invalid 'target_label' for {act} action")
    if act in ("lowercase", "uppercase", "keepequal", "dropequal") and rule["replacement"] != "$1":
        raise ParseError(f"'replacement' can not be set for {act} action")
    if act == "labelmap" and not TARGET_WITH_VARS.match(rule["replacement"]):
        raise ParseError(f"\"{rule['replacement']}\" is invalid 'replacement' for {act} action")
    if act in ("keepequal", "dropequal") and (
        rule["regex_text"] != "(.*)" or rule["modulus"] or rule["separator"] != ";"
    ):
        raise ParseError(f"{act} action requires only 'source_labels' and `target_label`, and no other fields")
    if act in ("labeldrop", "labelkeep") and (
        rule["source_labels"] or target or rule["modulus"] or rule["separator"] != ";" or rule["replacement"] != "$1"
    ):
        raise ParseError(f"{act} action requires only 'regex', and no other fields")
    return rule


def relabel(labels: dict, rules: list) -> dict | None:
    """Prometheus relabel.Process: the new label set, or None when the target is dropped."""
    lb = dict(labels)
    for r in rules:
        val = r["separator"].join(lb.get(n, "") for n in r["source_labels"])
        act, rx = r["action"], r["regex"]
        if (act == "drop" and rx.fullmatch(val)) or (act == "keep" and not rx.fullmatch(val)):
            return None
        if act == "dropequal" and lb.get(r["target_label"], "") == val:
            return None
        if act == "keepequal" and lb.get(r["target_label"], "") != val:
            return None
        if act == "replace" and (m := rx.fullmatch(val)):
            target, value = go_expand(r["target_label"], m), go_expand(r["replacement"], m)
            if valid_label(target):
                lb.pop(target, None) if value == "" else lb.__setitem__(target, value)
        elif act in ("lowercase", "uppercase"):
            lb[r["target_label"]] = val.lower() if act == "lowercase" else val.upper()
        elif act == "hashmod":
            digest = hashlib.md5(val.encode(), usedforsecurity=False).digest()
            lb[r["target_label"]] = str(int.from_bytes(digest[8:], "big") % r["modulus"])
        elif act == "labelmap":
            for name, value in list(lb.items()):
                if m := rx.fullmatch(name):
                    lb[go_expand(r["replacement"], m)] = value
        elif act in ("labeldrop", "labelkeep"):
            lb = {k: v for k, v in lb.items() if bool(rx.fullmatch(k)) == (act == "labelkeep")}
    return {k: v for k, v in lb.items() if v != ""}


# --------------------------------------------------------------------------- metrics


class Metrics:
    """A tiny Prometheus registry rendering text format 0.0.4 (series may expire, for the metrics stage)."""

    BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.meta: dict[str, tuple] = {}
        self.values: dict[str, dict] = {}
        self.touched: dict[tuple, float] = {}

    def define(self, name: str, kind: str, help_text: str, buckets: tuple = BUCKETS, idle: float = 0) -> None:
        self.meta[name] = (kind, help_text, tuple(buckets), idle)
        self.values.setdefault(name, {})

    def _key(self, name: str, labels: dict) -> tuple:
        key = tuple(sorted(labels.items()))
        if self.meta[name][3]:
            self.touched[(name, key)] = time.monotonic()
        return key

    def add(self, name: str, value: float = 1.0, **labels: str) -> None:
        with self.lock:
            key = self._key(name, labels)
            self.values[name][key] = self.values[name].get(key, 0.0) + value

    def set(self, name: str, value: float, **labels: str) -> None:
        with self.lock:
            self.values[name][self._key(name, labels)] = value

    def delete(self, name: str, **labels: str) -> None:
        with self.lock:
            self.values[name].pop(tuple(sorted(labels.items())), None)

    def get(self, name: str, **labels: str) -> float:
        return self.values[name].get(tuple(sorted(labels.items())), 0.0)

    def observe(self, name: str, value: float, **labels: str) -> None:
        buckets = self.meta[name][2]
        with self.lock:
            h = self.values[name].setdefault(self._key(name, labels), [[0] * len(buckets), 0.0, 0])
            for i, bound in enumerate(buckets):
                h[0][i] += value <= bound
            h[1] += value
            h[2] += 1

    @staticmethod
    def _series(name: str, key: tuple, value: float, extra: tuple = ()) -> str:
        pairs = key + extra
        text = "{" + ",".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in pairs) + "}" if pairs else ""
        value = float(value)
        return f"{name}{text} {go_float(value) if not math.isfinite(value) or value == int(value) else repr(value)}"

    def render(self) -> str:
        out = []
        with self.lock:
            now = time.monotonic()
            for (name, key), when in list(self.touched.items()):  # metrics stage: max_idle_duration
                if now - when >= self.meta[name][3]:
                    self.values[name].pop(key, None)
                    del self.touched[(name, key)]
            for name in sorted(self.meta):
                kind, help_text, buckets, _ = self.meta[name]
                series = self.values[name]
                if not series and kind != "gauge0":
                    continue
                out += [f"# HELP {name} {help_text}", f"# TYPE {name} {'gauge' if kind == 'gauge0' else kind}"]
                if kind == "gauge0" and not series:
                    out.append(f"{name} 0")
                for key, value in sorted(series.items()):
                    if kind != "histogram":
                        out.append(self._series(name, key, value))
                        continue
                    for bound, count in zip(buckets, value[0], strict=True):
                        out.append(self._series(name + "_bucket", key, count, (("le", go_float(bound)),)))
                    out.append(self._series(name + "_bucket", key, value[2], (("le", "+Inf"),)))
                    out += [self._series(name + "_sum", key, value[1]), self._series(name + "_count", key, value[2])]
        return "\n".join(out) + "\n"


def new_metrics() -> Metrics:
    m = Metrics()
    for name, kind, help_text in (
        ("promtail_build_info", "gauge", "Build information of the Promtail stand-in (not Promtail)."),
        ("promtail_read_lines_total", "counter", "Lines read per file."),
        ("promtail_read_bytes_total", "gauge", "Read offset per file."),
        ("promtail_file_bytes_total", "gauge", "Size per file."),
        ("promtail_files_active_total", "gauge0", "Files being tailed."),
        ("promtail_targets_active_total", "gauge0", "Active file targets."),
        ("promtail_targets_failed_total", "counter", "File targets not started, by reason."),
        ("promtail_encoded_bytes_total", "counter", "Bytes encoded for sending."),
        ("promtail_sent_bytes_total", "counter", "Bytes sent."),
        ("promtail_sent_entries_total", "counter", "Entries sent."),
        ("promtail_dropped_bytes_total", "counter", "Bytes dropped after failed sends."),
        ("promtail_dropped_entries_total", "counter", "Entries dropped after failed sends."),
        ("promtail_batch_retries_total", "counter", "Batch send retries."),
        ("promtail_request_duration_seconds", "histogram", "Duration of push requests."),
        ("promtail_journal_target_lines_total", "counter", "Journal entries read."),
        ("promtail_journal_target_parsing_errors_total", "counter", "Journal entries dropped, by error."),
        ("promtail_config_reload_success_total", "counter", "Config reloads that succeeded."),
        ("promtail_config_reload_fail_total", "counter", "Config reloads that failed."),
        ("logentry_dropped_lines_total", "counter", "Lines dropped by pipeline stages, by reason."),
        # Promtail's Go process collector; the stack's ServiceRestarted alert reads it.
        ("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds."),
    ):
        m.define(name, kind, help_text)
    m.set("process_start_time_seconds", round(time.time(), 2))
    m.set("promtail_build_info", 1, version=standin_version(), revision="standin", branch="standin",
          goversion="none (python stand-in)", goos=sys.platform, goarch=os.uname().machine, tags="standin")  # fmt: skip
    m.set("promtail_config_reload_success_total", 0)
    m.set("promtail_config_reload_fail_total", 0)
    m.set("promtail_journal_target_lines_total", 0)
    return m


# --------------------------------------------------------------------------- pipeline stages


class Entry:
    __slots__ = ("extracted", "labels", "line", "sm", "ts")

    def __init__(self, labels: dict, line: str, ts: int) -> None:
        self.labels, self.line, self.ts, self.sm = dict(labels), line, ts, []
        self.extracted: dict = dict(labels)


KNOWN_STAGES = {"docker", "cri", "logfmt", "replace", "template", "tenant", "sampling", "limit",
                "multiline", "pack", "decolorize", "eventlogmessage", "geoip", "pipeline"}  # fmt: skip
GO_LAYOUTS = {
    "ANSIC": "Mon Jan _2 15:04:05 2006", "UnixDate": "Mon Jan _2 15:04:05 MST 2006",
    "RubyDate": "Mon Jan 02 15:04:05 -0700 2006", "RFC822": "02 Jan 06 15:04 MST", "RFC822Z": "02 Jan 06 15:04 -0700",
    "RFC850": "Monday, 02-Jan-06 15:04:05 MST", "RFC1123": "Mon, 02 Jan 2006 15:04:05 MST",
    "RFC1123Z": "Mon, 02 Jan 2006 15:04:05 -0700", "RFC3339": "2006-01-02T15:04:05Z07:00",
    "RFC3339Nano": "2006-01-02T15:04:05.999999999Z07:00",
}  # fmt: skip
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]  # fmt: skip
_DAYS = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_LAYOUT_TOKENS = [
    ("January", "(?P<monthname>" + "|".join(_MONTHS) + ")"),
    ("Jan", "(?P<mon>" + "|".join(x[:3] for x in _MONTHS) + ")"),
    ("Monday", f"(?:{_DAYS})"), ("Mon", "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"), ("MST", r"(?P<tzname>[A-Z]{3,5}|[+-]\d\d)"),
    ("2006", r"(?P<year>\d{4})"), ("Z07:00", r"(?P<tz>Z|[+-]\d\d:\d\d)"), ("Z0700", r"(?P<tz>Z|[+-]\d{4})"),
    ("-07:00", r"(?P<tz>[+-]\d\d:\d\d)"), ("-0700", r"(?P<tz>[+-]\d{4})"), ("Z07", r"(?P<tz>Z|[+-]\d\d)"),
    ("-07", r"(?P<tz>[+-]\d\d)"), ("01", r"(?P<month>\d\d)"),
    ("02", r"(?P<day>\d\d)"), ("_2", r"(?P<day> ?\d{1,2})"), ("03", r"(?P<hour12>\d\d)"), ("04", r"(?P<minute>\d\d)"),
    ("05", r"(?P<second>\d\d)(?P<frac>[.,]\d+)?"), ("06", r"(?P<yy>\d\d)"), ("15", r"(?P<hour>\d\d?)"),
    ("1", r"(?P<month>\d\d?)"), ("2", r"(?P<day>\d\d?)"), ("3", r"(?P<hour12>\d\d?)"), ("4", r"(?P<minute>\d\d?)"),
    ("5", r"(?P<second>\d\d?)(?P<frac>[.,]\d+)?"), ("PM", "(?P<ampm>AM|PM)"), ("pm", "(?P<ampm>am|pm)"),
]  # fmt: skip


def layout_parser(layout: str, location: object):
    """A parser of Go reference layouts (time.Parse), returning unix nanoseconds or raising ValueError."""
    parts, i, seen = [], 0, set()
    while i < len(layout):
        if m := re.match(r"[.,](0+|9+)(?![0-9])", layout[i:]):
            if parts and parts[-1].endswith(r"(?P<frac>[.,]\d+)?"):
                parts[-1] = parts[-1][: -len(r"(?P<frac>[.,]\d+)?")]
            fixed = m.group(1)[0] == "0"
            parts.append(rf"(?P<frac>[.,]\d{{{len(m.group(1))}}})" if fixed else r"(?P<frac>[.,]\d+)?")
            i += m.end()
            continue
        for token, token_rx in _LAYOUT_TOKENS:
            if layout.startswith(token, i):
                names = re.findall(r"\?P<(\w+)>", token_rx)
                part = re.sub(r"\?P<\w+>", "?:", token_rx) if names and names[0] in seen else token_rx
                seen.update(names)  # Go allows a field twice; the first occurrence is captured
                parts.append(part)
                i += len(token)
                break
        else:
            parts.append(re.escape(layout[i]))
            i += 1
    try:
        rx = re.compile("".join(parts))
    except re.error:
        raise StartupError(f"invalid timestamp stage config: the stand-in cannot parse layout {layout!r}") from None

    def parse(text: str) -> int:
        m = rx.fullmatch(text)
        if not m:
            raise ValueError(f"cannot parse {text!r} as {layout!r}")
        g = {k: v for k, v in m.groupdict().items() if v is not None}
        year = (
            int(g["year"])
            if "year" in g
            else (int(g["yy"]) + (1900 if int(g["yy"]) >= 69 else 2000))
            if "yy" in g
            else None
        )
        month = int(g["month"]) if "month" in g else _MONTHS.index(g["monthname"]) + 1 if "monthname" in g else 1
        if "mon" in g:
            month = [x[:3] for x in _MONTHS].index(g["mon"]) + 1
        hour = int(g.get("hour", 0))
        if "hour12" in g:
            hour = int(g["hour12"]) % 12 + (12 if g.get("ampm", "").upper() == "PM" else 0)
        now = datetime.now(UTC)
        if year is None:  # Promtail's parseTimestampWithoutYear
            year = (
                now.year - 1
                if month == 12 and now.month == 1
                else now.year + 1
                if month == 1 and now.month == 12
                else now.year
            )
        fields = (year, month, int(g.get("day", 1)), hour, int(g.get("minute", 0)), int(g.get("second", 0)))
        stamp = datetime(*fields)  # validates ranges
        frac = g.get("frac", "")[1:]
        ns = int((frac + "000000000")[:9]) if frac else 0
        offset = 0
        if tz := g.get("tz"):
            if tz != "Z":
                digits = tz[1:].replace(":", "")
                offset = (int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60) * (1 if tz[0] == "+" else -1)
        elif location is not None and "tzname" not in g:
            offset = int(stamp.replace(tzinfo=location).utcoffset().total_seconds())
        return (calendar.timegm(stamp.timetuple()) - offset) * 1_000_000_000 + ns

    return parse


def time_parser(fmt: str, location: object):
    int_re = re.compile(r"[+-]?[0-9]+")

    def unix(text: str) -> int:
        if text.count(".") == 1:
            sec, frac = text.split(".")
            if not int_re.fullmatch(sec) or not int_re.fullmatch(frac):
                raise ValueError(text)
            return int(sec) * 1_000_000_000 + int(int(frac) * 10 ** (9 - len(frac)))
        if not int_re.fullmatch(text):
            raise ValueError(text)
        return int(text) * 1_000_000_000

    def scaled(mult: int):
        def parse(text: str) -> int:
            if not int_re.fullmatch(text):
                raise ValueError(text)
            return int(text) * mult

        return parse

    fixed = {"Unix": unix, "UnixMs": scaled(1_000_000), "UnixUs": scaled(1000), "UnixNs": scaled(1)}
    return fixed.get(fmt) or layout_parser(GO_LAYOUTS.get(fmt, fmt), location)


def _stage_cfg(name: str, cfg: object, allowed: dict) -> dict:
    if cfg is None:
        return {}
    if not isinstance(cfg, dict):
        raise StartupError(f"invalid {name} stage config: expected a map, got {_tag(cfg)}")
    for key, value in cfg.items():
        if key not in allowed:
            raise StartupError(f"invalid {name} stage config: unknown key {key!r} (Promtail would ignore it)")
        ok = {
            "str": isinstance(value, str), "bool": isinstance(value, bool), "list": isinstance(value, list),
            "map": isinstance(value, dict),
            "scalar": isinstance(value, (str, int, float)) and not isinstance(value, bool),
        }[allowed[key]]  # fmt: skip
        if not ok and value is not None:
            raise StartupError(
                f"invalid {name} stage config: '{key}' expected type '{allowed[key]}', got {_tag(value)}"
            )
    return cfg


def _labels_map(name: str, cfg: object, empty: str) -> dict:
    if cfg is None:
        raise StartupError(f"invalid {name} stage config: {empty}")
    if not isinstance(cfg, dict):
        raise StartupError(f"invalid {name} stage config: expected a map, got {_tag(cfg)}")
    for label, src in cfg.items():
        if not valid_label(label):
            raise StartupError(f"invalid {name} stage config: invalid label name: {label}")
        if src is not None and not isinstance(src, str):
            raise StartupError(f"invalid {name} stage config: value of {label} must be a string")
    return {str(k): v or k for k, v in cfg.items()}


def compile_jmes(expr: str) -> list:
    steps, pos, need = [], 0, True
    ident = re.compile(r'\s*(?:([A-Za-z_][A-Za-z0-9_]*)|("(?:[^"\\]|\\.)*"))')
    while pos < len(expr) or need:
        if need and (m := ident.match(expr, pos)):
            steps.append(m.group(1) or json.loads(m.group(2)))
            pos, need = m.end(), False
        elif not need and (m := re.compile(r"\s*\.").match(expr, pos)):
            pos, need = m.end(), True
        elif not need and (m := re.compile(r"\s*\[(-?\d+)\]").match(expr, pos)):
            steps.append(int(m.group(1)))
            pos = m.end()
        elif not need and not expr[pos:].strip():
            break
        else:
            raise StartupError(
                f"invalid json stage config: could not compile JMES expression: {expr!r} "
                '(the stand-in supports identifiers, "quoted" identifiers, a.b and [n])'
            )
    return steps


def jmes_search(steps: list, data: object) -> object:
    for step in steps:
        if isinstance(step, int):
            data = data[step] if isinstance(data, list) and -len(data) <= step < len(data) else None
        else:
            data = data.get(step) if isinstance(data, dict) else None
        if data is None:
            return None
    return data


def _go_json_loads(text: str) -> object:
    def refuse(name: str) -> None:
        raise ValueError(name)

    return json.loads(text, parse_int=float, parse_constant=refuse)


def stage_json(cfg: object, ctx: dict):
    cfg = _stage_cfg("json", cfg, {"expressions": "map", "source": "str", "drop_malformed": "bool"})
    if not cfg.get("expressions"):
        raise StartupError("invalid json stage config: JMES expression is required")
    if cfg.get("source") == "":
        raise StartupError("invalid json stage config: empty source")
    exprs = {str(n): compile_jmes(e or n) for n, e in cfg["expressions"].items()}
    source, drop_malformed = cfg.get("source"), cfg.get("drop_malformed", False)

    def run(e: Entry) -> bool:
        text = e.line
        if source is not None:
            if source not in e.extracted or (text := get_string(e.extracted[source])) is None:
                return True
        try:
            data = _go_json_loads(text)
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            return not drop_malformed
        for name, steps in exprs.items():
            r = jmes_search(steps, data)
            e.extracted[name] = go_json(r) if isinstance(r, (dict, list)) else r
        return True

    return run


def stage_regex(cfg: object, ctx: dict):
    cfg = _stage_cfg("regex", cfg, {"expression": "str", "source": "str"})
    if not cfg.get("expression"):
        raise StartupError("invalid regex stage config: expression is required")
    if cfg.get("source") == "":
        raise StartupError("invalid regex stage config: empty source")
    try:
        rx = go_regex(cfg["expression"])
    except ValueError as exc:
        raise StartupError(f"invalid regex stage config: could not compile regular expression: {exc}") from None
    source = cfg.get("source")

    def run(e: Entry) -> bool:
        text = e.line if source is None else get_string(e.extracted.get(source))
        if text is not None and (m := rx.search(text)):
            e.extracted.update({k: v or "" for k, v in m.groupdict().items()})
        return True

    return run


def stage_labels(cfg: object, ctx: dict, name: str = "labels"):
    srcs = _labels_map(name, cfg, "label stage config cannot be empty")

    def run(e: Entry) -> bool:
        for label, src in srcs.items():
            if src in e.extracted and (value := get_string(e.extracted[src])) is not None:
                e.labels[label] = value
        return True

    return run


def stage_structured_metadata(cfg: object, ctx: dict):
    srcs = _labels_map("structured_metadata", cfg, "label stage config cannot be empty")

    def run(e: Entry) -> bool:
        for label, src in srcs.items():
            if src in e.extracted and (value := get_string(e.extracted[src])) is not None:
                e.sm.append((label, value))
        for label, src in srcs.items():  # Promtail also moves matching labels into structured metadata
            if src in e.labels:
                e.sm.append((label, e.labels.pop(src)))
        return True

    return run


def stage_static_labels(cfg: object, ctx: dict):
    values = _labels_map("static_labels", cfg, "static_labels stage config cannot be empty")
    values = {k: v for k, v in (cfg or {}).items() if v}

    def run(e: Entry) -> bool:
        e.labels.update(values)
        return True

    return run


def stage_labeldrop(cfg: object, ctx: dict, name: str = "labeldrop"):
    if not cfg:
        raise StartupError(f"invalid {name} stage config: {name} stage config cannot be empty")
    if not isinstance(cfg, list) or not all(isinstance(x, str) for x in cfg):
        raise StartupError(f"invalid {name} stage config: expected a list of label names")
    names = set(cfg)

    def run(e: Entry) -> bool:
        e.labels = {k: v for k, v in e.labels.items() if (k in names) == (name == "labelallow")}
        return True

    return run


def stage_output(cfg: object, ctx: dict):
    cfg = _stage_cfg("output", cfg, {"source": "str"})
    if not cfg.get("source"):
        raise StartupError("invalid output stage config: output source value is required if output is specified")

    def run(e: Entry) -> bool:
        if cfg["source"] in e.extracted and (value := get_string(e.extracted[cfg["source"]])) is not None:
            e.line = value
        return True

    return run


def stage_timestamp(cfg: object, ctx: dict):
    cfg = _stage_cfg("timestamp", cfg, {"source": "str", "format": "str", "fallback_formats": "list",
                                        "location": "str", "action_on_failure": "str"})  # fmt: skip
    if not cfg.get("source"):
        raise StartupError(
            "invalid timestamp stage config: timestamp source value is required if timestamp is specified"
        )
    if not cfg.get("format"):
        raise StartupError("invalid timestamp stage config: timestamp format is required")
    location = None
    if cfg.get("location") is not None:
        try:
            from zoneinfo import ZoneInfo  # noqa: PLC0415 - only this option needs it

            location = ZoneInfo(cfg["location"])
        except Exception as exc:
            raise StartupError(f"invalid timestamp stage config: invalid location specified: {exc}") from None
    action = cfg.get("action_on_failure", "fudge")
    if action not in ("skip", "fudge"):
        raise StartupError(
            "invalid timestamp stage config: invalid action on failure (supported values are [skip fudge])"
        )
    parsers = [time_parser(f, location) for f in [cfg["format"], *(cfg.get("fallback_formats") or [])]]
    last_known: dict[str, int] = {}

    def run(e: Entry) -> bool:
        key = labels_string(e.labels)
        text = get_string(e.extracted[cfg["source"]]) if cfg["source"] in e.extracted else None
        for parse in parsers if text is not None else []:
            try:
                e.ts = parse(text)
            except (ValueError, OverflowError):
                continue
            last_known[key] = e.ts
            return True
        if action == "fudge" and key in last_known:
            e.ts = last_known[key] = last_known[key] + 1
        return True

    return run


def _byte_size(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGTPE]i?)?B?", text.strip())
    if not m:
        raise ValueError(text)
    return int(float(m.group(1)) * 1024 ** (" KMGTPE".index(m.group(2)[0]) if m.group(2) else 0))


def stage_drop(cfg: object, ctx: dict):
    keys = {"source": "str", "value": "scalar", "expression": "str", "older_than": "str", "longer_than": "scalar",
            "drop_counter_reason": "str"}  # fmt: skip
    cfg = _stage_cfg("drop", cfg, keys)
    if not any(cfg.get(k) is not None for k in ("source", "expression", "older_than", "longer_than")):
        raise StartupError(
            "invalid drop stage config: drop stage config must contain at least one of `source`, `expression`, "
            "`older_than` or `longer_than`"
        )
    reason = cfg.get("drop_counter_reason") or "drop_stage"
    older = go_duration(cfg["older_than"]) if cfg.get("older_than") is not None else None
    if cfg.get("older_than") is not None and older is None:
        raise StartupError(
            f"invalid drop stage config: drop stage invalid duration, {cfg['older_than']} "
            "cannot be converted to a duration"
        )
    if cfg.get("value") is not None and cfg.get("expression") is not None:
        raise StartupError(
            "invalid drop stage config: drop stage config error, `value` and `expression` cannot both be "
            "defined at the same time."
        )
    try:
        rx = go_regex(cfg["expression"]) if cfg.get("expression") is not None else None
        longer = _byte_size(str(cfg["longer_than"])) if cfg.get("longer_than") is not None else None
    except ValueError as exc:
        raise StartupError(f"invalid drop stage config: {exc}") from None
    source, value = cfg.get("source"), None if cfg.get("value") is None else str(cfg["value"])
    metrics = ctx["metrics"]

    def should_drop(e: Entry) -> bool:
        if longer is not None and len(e.line.encode()) <= longer:
            return False
        if older is not None and e.ts >= time.time_ns() - older * 1e9:
            return False
        if source is not None and rx is None:
            if source not in e.extracted or (value is not None and e.extracted[source] != value):
                return False
        if rx is not None:
            text = e.line if source is None else get_string(e.extracted.get(source))
            if text is None or not rx.search(text):
                return False
        return True

    def run(e: Entry) -> bool:
        if should_drop(e):
            metrics.add("logentry_dropped_lines_total", reason=reason)
            return False
        return True

    return run


def get_float(value: object) -> float | None:
    """Promtail's getFloat: numbers, bools, and strings holding a float or a Go duration (seconds)."""
    if isinstance(value, (bool, int, float)):
        return float(value)
    if isinstance(value, str):
        if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(?i:inf|infinity|nan)", value):
            return float(value)
        return go_duration(value)
    return None


METRIC_ACTIONS = {"counter": ("inc", "add"), "gauge": ("set", "inc", "dec", "add", "sub"), "histogram": ()}


def _metric_spec(name: str, raw: object, m: Metrics) -> tuple:
    """One metric of a metrics stage (Promtail's validateMetricsConfig and counter/gauge config checks)."""
    keys = {"type": "str", "description": "str", "source": "str", "prefix": "str", "max_idle_duration": "str",
            "config": "map"}  # fmt: skip
    mc = _stage_cfg("metrics", raw, keys)
    kind = (mc.get("type") or "").lower()
    if kind not in METRIC_ACTIONS:
        raise StartupError(
            f"invalid metrics stage config: invalid metric type '{kind}', metric type must be one of "
            "'counter', 'gauge', or 'histogram'"
        )
    idle = 300.0 if mc.get("max_idle_duration") is None else go_duration(mc["max_idle_duration"])
    if idle is None:
        raise StartupError(
            f"invalid metrics stage config: max_idle_duration could not be parsed: '{mc['max_idle_duration']}'"
        )
    if idle < 1:
        raise StartupError("invalid metrics stage config: max_idle_duration less than 1s not allowed")
    full = (mc.get("prefix") or "promtail_custom_") + str(name)
    if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", full):
        raise StartupError(f"invalid metrics stage config: invalid metric name {full!r}")
    allowed = {"value": "str", "action": "str", "match_all": "bool", "count_entry_bytes": "bool", "buckets": "list"}
    c = _stage_cfg("metrics", mc.get("config"), allowed)
    action, actions = (c.get("action") or "").lower(), METRIC_ACTIONS[kind]
    if kind != "histogram" and not action:
        raise StartupError(f"invalid metrics stage config: {kind} action must be defined as {' or '.join(actions)}")
    if kind != "histogram" and action not in actions:
        raise StartupError(f"invalid metrics stage config: action {action} is not valid for a {kind}")
    if c.get("match_all") and (kind != "counter" or c.get("value") is not None):
        raise StartupError("invalid metrics stage config: `match_all: true` cannot be combined with `value`, "
                           "please remove `match_all` or `value`")  # fmt: skip
    if c.get("count_entry_bytes") and (not c.get("match_all") or action != "add"):
        raise StartupError("invalid metrics stage config: `count_entry_bytes: true` can only be set with "
                           "`match_all: true` and `action: add`")  # fmt: skip
    buckets = tuple(sorted(float(b) for b in c.get("buckets") or Metrics.BUCKETS))
    if full not in m.meta:  # the same metric in several pipelines shares its series (labels differ)
        m.define(full, kind, mc.get("description") or "", buckets, idle)
    return full, kind, action, mc["source"] if "source" in mc else str(name), c


def stage_metrics(cfg: object, ctx: dict):
    if not cfg:
        raise StartupError("invalid metrics stage config: empty metric stage configuration")
    if not isinstance(cfg, dict):
        raise StartupError(f"invalid metrics stage config: expected a map, got {_tag(cfg)}")
    m = ctx["metrics"]
    recorders = [_metric_spec(name, raw, m) for name, raw in cfg.items()]

    def run(e: Entry) -> bool:
        labels = {k: v for k, v in e.labels.items() if not k.startswith("__")}
        for full, kind, action, source, c in recorders:
            if c.get("match_all"):
                m.add(full, len(e.line.encode()) if c.get("count_entry_bytes") else 1, **labels)
                continue
            if source not in e.extracted:
                continue
            value = e.extracted[source]
            if c.get("value") is not None and get_string(value) != c["value"]:
                continue
            number = 1.0 if action in ("inc", "dec") else get_float(value)
            if number is None or (kind == "counter" and number < 0):
                continue
            if kind == "histogram":
                m.observe(full, number, **labels)
            elif action == "set":
                m.set(full, number, **labels)
            else:
                m.add(full, -number if action in ("dec", "sub") else number, **labels)
        return True

    return run


_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|`[^`]*`)\s*(,|\})')
_FILTER = re.compile(r'\s*(\|=|!=|\|~|!~)\s*("(?:[^"\\]|\\.)*"|`[^`]*`)')


def parse_selector(selector: str) -> tuple[list, list]:
    def unquote(text: str) -> str:
        return text[1:-1] if text.startswith("`") else json.loads(text)

    s = selector.strip()
    matchers, filters, pos = [], [], 1
    if not s.startswith("{"):
        raise ValueError("selector must start with {")
    while (m := _MATCHER.match(s, pos)) is not None:
        value = unquote(m.group(3))
        matchers.append((m.group(1), m.group(2), go_regex(value) if "~" in m.group(2) else value))
        pos = m.end()
        if m.group(4) == "}":
            break
    else:
        raise ValueError('a selector needs at least one label matcher, e.g. {job="app"}')
    while (f := _FILTER.match(s, pos)) is not None:
        value = unquote(f.group(2))
        filters.append((f.group(1), go_regex(value) if "~" in f.group(1) else value))
        pos = f.end()
    if s[pos:].strip():
        raise ValueError(f"unsupported selector syntax near {s[pos:]!r}")
    return matchers, filters


def stage_match(cfg: object, ctx: dict):
    keys = {"selector": "str", "stages": "list", "action": "str", "drop_counter_reason": "str", "pipeline_name": "str"}
    cfg = _stage_cfg("match", cfg, keys)
    if not cfg.get("selector"):
        raise StartupError("invalid match stage config: selector statement required for match stage")
    action = cfg.get("action") or "keep"
    if action not in ("keep", "drop"):
        raise StartupError("invalid match stage config: match stage action should be 'keep' or 'drop'")
    if action == "keep" and not cfg.get("stages"):
        raise StartupError(
            "invalid match stage config: match stage requires at least one additional stage to be defined in '- stages'"
        )
    if action == "drop" and cfg.get("stages"):
        raise StartupError("invalid match stage config: match stage configured to drop entries cannot contains stages")
    try:
        matchers, filters = parse_selector(cfg["selector"])
    except ValueError as exc:
        raise StartupError(f"invalid match stage config: invalid selector syntax for match stage: {exc}") from None
    nested = build_pipeline(cfg.get("stages") or [], ctx)
    reason = cfg.get("drop_counter_reason") or "match_stage"

    def matches(e: Entry) -> bool:
        for name, op, want in matchers:
            have = e.labels.get(name, "")
            ok = have == want if op in ("=", "!=") else bool(want.fullmatch(have))
            if ok != (op in ("=", "=~")):
                return False
        for op, want in filters:
            found = want in e.line if op in ("|=", "!=") else bool(want.search(e.line))
            if found != (op in ("|=", "|~")):
                return False
        return True

    def run(e: Entry) -> bool:
        if not matches(e):
            return True
        if action == "drop":
            ctx["metrics"].add("logentry_dropped_lines_total", reason=reason)
            return False
        return nested(e)

    return run


STAGES = {
    "json": stage_json, "regex": stage_regex, "labels": stage_labels, "structured_metadata": stage_structured_metadata,
    "non_indexed_labels": stage_structured_metadata, "static_labels": stage_static_labels, "labeldrop": stage_labeldrop,
    "labelallow": lambda c, x: stage_labeldrop(c, x, "labelallow"), "output": stage_output,
    "timestamp": stage_timestamp, "drop": stage_drop, "match": stage_match, "metrics": stage_metrics,
}  # fmt: skip


def build_pipeline(stages: object, ctx: dict):
    """Promtail's stages.NewPipeline: a function running the stages in order, False when dropped."""
    if not isinstance(stages, list):
        raise StartupError(f"pipeline_stages must be a list, got {_tag(stages)}")
    run_list = []
    for stage in stages:
        if not isinstance(stage, dict):
            raise StartupError(
                "invalid YAML config, make sure each stage of your pipeline is a YAML object (must end with a `:`), "
                f"check stage `- {stage}`"
            )
        if len(stage) > 1:
            raise StartupError("pipeline stage must contain only one key")
        for name, cfg in stage.items():
            if name in KNOWN_STAGES:
                raise StartupError(f"invalid {name} stage config: the {name} stage is not implemented by the stand-in")
            if name not in STAGES:
                raise StartupError(f"invalid {name} stage config: Unknown stage type: {name}")
            run_list.append(STAGES[name](cfg, ctx))

    def run(e: Entry) -> bool:
        return all(stage(e) for stage in run_list)

    return run


# --------------------------------------------------------------------------- positions


def _yaml_scalar(text: str, where: str) -> str:
    text = text.strip()
    if text.startswith('"'):
        value, end = scanstring(text, 1, True)
        if text[end:].strip():
            raise ValueError(f"trailing content after {where}")
        return value
    if text.startswith("'"):
        if not text.endswith("'") or len(text) < 2:
            raise ValueError(f"unterminated quoted {where}")
        return text[1:-1].replace("''", "'")
    if not text or text[0] in "[{&*!|>%@`" or " #" in text:
        raise ValueError(f"unsupported YAML for {where}: {text!r}")
    return text


def parse_positions(text: str) -> dict:
    """The positions file as Promtail writes it (yaml.v2 of {positions: map[string]string}), or JSON."""
    if text.lstrip().startswith("{"):
        data = json.loads(text)
        pos = data.get("positions") if isinstance(data, dict) and set(data) <= {"positions"} else None
        if not isinstance(pos, dict) or not all(isinstance(v, str) for v in pos.values()):
            raise ValueError("expected {positions: {path: offset}}")
        return pos
    lines = [ln for ln in text.split("\n") if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return {}
    head = re.fullmatch(r"positions:\s*(\{\s*\}|null|~)?\s*", lines[0])
    if not head:
        raise ValueError(f"line 1: expected 'positions:', got {lines[0][:40]!r}")
    out = {}
    for n, ln in enumerate(lines[1:], 2):
        if head.group(1) or not ln.startswith(" "):
            raise ValueError(f"line {n}: unexpected content {ln[:40]!r}")
        body = ln.strip()
        if body.startswith('"'):
            key, end = scanstring(body, 1, True)
            rest = body[end:]
        else:
            key, sep, rest = body.partition(": ")
            if not sep and body.endswith(":"):
                key, rest = body[:-1], ""
            rest = ": " + rest
        if not rest.lstrip().startswith(":"):
            raise ValueError(f"line {n}: expected 'key: value'")
        out[_yaml_scalar(key, "key") if not body.startswith('"') else key] = _yaml_scalar(rest.lstrip()[1:], "value")
    return out


def _yaml_key(key: str) -> str:
    plain = re.fullmatch(r"[A-Za-z0-9_./][A-Za-z0-9_./+=;,@~ -]*", key) and not key.endswith(" ")
    return key if plain else json.dumps(key)


class Positions:
    def __init__(self, cfg: dict, read_only: bool) -> None:
        self.file = os.path.normpath(cfg.get("filename", "/var/log/positions.yaml"))
        self.period = cfg.get("sync_period", 10.0) or 10.0
        self.read_only, self.lock = read_only, threading.Lock()
        try:
            self.data = parse_positions(Path(self.file).read_text(encoding="utf-8"))
        except FileNotFoundError:
            self.data = {}
        except (ValueError, UnicodeDecodeError) as exc:
            if not cfg.get("ignore_invalid_yaml"):
                raise StartupError(f"invalid yaml positions file [{self.file}]: {exc}") from None
            log("debug", "ignoring invalid positions file", file=self.file, error=str(exc))
            self.data = {}
        except OSError as exc:
            raise StartupError(f"open {self.file}: {exc.strerror}") from None

    def get(self, key: str) -> str | None:
        with self.lock:
            return self.data.get(key)

    def put(self, key: str, value: object) -> None:
        with self.lock:
            self.data[key] = str(value)

    def remove(self, key: str) -> None:
        with self.lock:
            self.data.pop(key, None)

    def save(self) -> None:
        if self.read_only:
            return
        with self.lock:
            items = sorted(self.data.items())
        body = (
            "positions:\n" + "".join(f"  {_yaml_key(k)}: {json.dumps(v)}\n" for k, v in items)
            if items
            else "positions: {}\n"
        )
        tmp = f"{self.file}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.file)
        except OSError as exc:
            log("error", "error writing positions file", error=str(exc))

    def cleanup(self) -> None:
        with self.lock:
            for key in [k for k in self.data if not k.startswith(("cursor-", "journal-"))]:
                if not os.path.exists(key):
                    del self.data[key]

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.period):
            self.save()
            self.cleanup()


# --------------------------------------------------------------------------- clients


class Client:
    """One clients[] entry: batches per tenant, pushes JSON, retries like Promtail's client."""

    STOP = object()

    def __init__(self, cfg: dict, metrics: Metrics) -> None:
        self.url = cfg["url"]
        self.host = urllib.parse.urlsplit(self.url).netloc
        self.metrics = metrics
        self.batchwait, self.batchsize = cfg.get("batchwait", 1.0), cfg.get("batchsize", 1024 * 1024)
        self.timeout, self.tenant = cfg.get("timeout", 10.0) or 10.0, cfg.get("tenant_id") or ""
        self.external, self.headers = cfg.get("external_labels") or {}, cfg.get("headers") or {}
        bo = cfg.get("backoff_config") or {}
        self.min_b, self.max_b = bo.get("min_period", 0.5), bo.get("max_period", 300.0)
        self.retries, self.drop_429 = bo.get("max_retries", 10), cfg.get("drop_rate_limited_batches", False)
        self.queue: queue.Queue = queue.Queue()
        # tls_config as Prometheus' HTTP client reads it; checked at startup (App.check).
        tls = client_context(cfg.get("tls_config") or {}, "failed to create client manager")
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=tls)
        )
        for name in ("promtail_encoded_bytes_total", "promtail_sent_bytes_total", "promtail_sent_entries_total"):
            metrics.add(name, 0, host=self.host)
        self.thread = threading.Thread(target=self.run, name=f"client-{self.host}", daemon=True)

    def run(self) -> None:
        batches: dict[str, dict] = {}
        tick = max(0.01, self.batchwait / 10)
        while True:
            try:
                e = self.queue.get(timeout=tick)
            except queue.Empty:
                e = None
            if e is self.STOP:
                for tenant, batch in batches.items():
                    self.send(tenant, batch)
                return
            if e is not None:
                labels = {**self.external, **e.labels}
                tenant = labels.pop("__tenant_id__", None) or self.tenant
                batch = batches.get(tenant)
                size = len(e.line.encode()) + sum(len(k) + len(v) for k, v in e.sm)
                if batch is None:
                    for reason in DROP_REASONS:
                        self.metrics.add(
                            "promtail_dropped_entries_total", 0, host=self.host, tenant=tenant, reason=reason
                        )
                        self.metrics.add(
                            "promtail_dropped_bytes_total", 0, host=self.host, tenant=tenant, reason=reason
                        )
                    self.metrics.add("promtail_batch_retries_total", 0, host=self.host, tenant=tenant)
                elif batch["size"] + size > self.batchsize:
                    self.send(tenant, batch)
                    batch = None
                if batch is None:
                    batch = batches[tenant] = {"streams": {}, "size": 0, "count": 0, "created": time.monotonic()}
                key = tuple(sorted((k, v) for k, v in labels.items() if v != ""))
                value = [str(e.ts), e.line] + ([dict(e.sm)] if e.sm else [])
                batch["streams"].setdefault(key, []).append(value)
                batch["size"] += size
                batch["count"] += 1
            for tenant in [t for t, b in batches.items() if time.monotonic() - b["created"] >= self.batchwait]:
                self.send(tenant, batches.pop(tenant))

    def post(self, body: bytes, tenant: str) -> tuple[int, str | None]:
        headers = {"Content-Type": "application/json", "User-Agent": f"promtail/{standin_version()} (stand-in)"}
        if tenant:
            headers["X-Scope-OrgID"] = tenant
        for k, v in self.headers.items():
            headers.setdefault(k, v)
        req = urllib.request.Request(self.url, data=body, method="POST", headers=headers)
        try:
            with self.opener.open(req, timeout=self.timeout) as resp:
                resp.read()
                return resp.status, None
        except urllib.error.HTTPError as exc:
            first = exc.read(1024).decode("utf-8", "replace").split("\n")[0]
            return exc.code, f"server returned HTTP status {exc.code} {exc.reason} ({exc.code}): {first}"
        except (urllib.error.URLError, OSError, HTTPException) as exc:
            return -1, str(getattr(exc, "reason", exc))

    def send(self, tenant: str, batch: dict) -> None:
        streams = [{"stream": dict(k), "values": v} for k, v in batch["streams"].items()]
        body = json.dumps({"streams": streams}, ensure_ascii=False, separators=(",", ":")).encode()
        self.metrics.add("promtail_encoded_bytes_total", len(body), host=self.host)
        delay_min, delay_max, attempts = self.min_b, min(self.min_b * 2, self.max_b), 0
        while True:
            start = time.monotonic()
            status, err = self.post(body, tenant)
            self.metrics.observe("promtail_request_duration_seconds", time.monotonic() - start,
                                 host=self.host, status_code=str(status))  # fmt: skip
            if self.drop_429 and status == 429:
                log("warn", "dropping batch due to rate limiting applied at ingester", host=self.host)
                break
            if err is None:
                self.metrics.add("promtail_sent_bytes_total", len(body), host=self.host)
                self.metrics.add("promtail_sent_entries_total", batch["count"], host=self.host)
                return
            if status > 0 and status != 429 and status // 100 != 5:
                break
            log("warn", "error sending batch, will retry", component="client", host=self.host, status=status,
                tenant=tenant, error=err)  # fmt: skip
            self.metrics.add("promtail_batch_retries_total", host=self.host, tenant=tenant)
            attempts += 1  # dskit backoff: Wait() counts a retry and sleeps only while still ongoing
            sleep = delay_min if delay_min >= delay_max else delay_min + random.random() * (delay_max - delay_min)
            if delay_max < self.max_b:
                delay_min, delay_max = min(delay_min * 2, self.max_b), min(delay_max * 2, self.max_b)
            if self.retries and attempts >= self.retries:
                break
            time.sleep(sleep)
        log("error", "final error sending batch", component="client", host=self.host, status=status, tenant=tenant,
            error=err)  # fmt: skip
        reason = "rate_limited" if status == 429 else "ingester_error"
        self.metrics.add("promtail_dropped_bytes_total", len(body), host=self.host, tenant=tenant, reason=reason)
        self.metrics.add("promtail_dropped_entries_total", batch["count"], host=self.host, tenant=tenant, reason=reason)


class Printer:
    """-dry-run: entries to stdout as Promtail's logger client prints them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def handle(self, e: Entry) -> None:
        stamp = datetime.fromtimestamp(e.ts / 1e9).astimezone()
        text = (
            stamp.strftime("%Y-%m-%dT%H:%M:%S")
            + (f".{e.ts % 1_000_000_000:09d}".rstrip("0").rstrip("."))
            + stamp.strftime("%z")
        )
        with self.lock:
            sys.stdout.write(f"{text}\t{labels_string(e.labels)}\t{e.line}\n")
            sys.stdout.flush()


# --------------------------------------------------------------------------- file targets


def glob_regex(pattern: str) -> re.Pattern:
    """doublestar semantics: ** spans directories, * and ? stay within one, {a,b} alternatives, dotfiles match."""
    out, i, depth = [], 0, 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "[" and (end := pattern.find("]", i + 2)) > 0:
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body[:1] in "!^" else body) + "]")
            i = end + 1
            continue
        out.append(
            {"*": "[^/]*", "?": "[^/]", "{": "(?:", "}": ")" if depth else "\\}", ",": "|" if depth else ","}.get(
                c, re.escape(c)
            )
        )
        depth += {"{": 1, "}": -1 if depth else 0}.get(c, 0)
        i += 1
    return re.compile("".join(out))


def glob_files(pattern: str) -> list[str]:
    if not pattern:
        return []
    pattern = os.path.abspath(pattern)
    if os.path.isfile(pattern):
        return [pattern]
    parts = pattern.split("/")
    fixed = next((n for n, p in enumerate(parts) if any(ch in p for ch in "*?[{")), len(parts))
    base, rx = "/".join(parts[:fixed]) or "/", glob_regex(pattern)
    max_depth = None if "**" in pattern else len(parts) - fixed
    found = []
    for root, dirs, files in os.walk(base):
        depth = 0 if root == base else root[len(base) :].strip("/").count("/") + 1
        if max_depth is not None and depth + 1 >= max_depth:
            dirs[:] = []
        found += [p for f in files if rx.fullmatch(p := os.path.join(root, f)) and os.path.isfile(p)]
    return sorted(found)


class Tailer:
    def __init__(self, target: FileTarget, path: str) -> None:
        self.t, self.path, self.buf = target, path, b""
        app = target.app
        saved = app.positions.get(path)
        try:
            offset = int(saved) if saved is not None else 0
        except ValueError:
            raise OSError(f'strconv.ParseInt: parsing "{saved}": invalid syntax') from None
        size = os.stat(path).st_size
        if size < offset:
            app.positions.remove(path)
            offset = 0
        self.f = open(path, "rb", buffering=0)
        self.f.seek(offset)
        self.offset = offset
        self.labels = {**target.labels, "filename": path}
        app.metrics.add("promtail_files_active_total", 1)
        log("info", "tail routine: started", component="tailer", path=path)

    def drain(self) -> None:
        while chunk := self.f.read(65536):
            lines = (self.buf + chunk).split(b"\n")
            self.buf = lines.pop()
            for raw in lines:
                self.offset += len(raw) + 1
                self.t.app.metrics.add("promtail_read_lines_total", path=self.path)
                self.t.handle(self.labels, raw.decode("utf-8", "replace"), time.time_ns())

    def poll(self) -> None:
        self.drain()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self.mark()
        fst = os.fstat(self.f.fileno())
        if (st.st_ino, st.st_dev) != (fst.st_ino, fst.st_dev):
            log("info", "Re-opening moved/deleted file", component="tailer", path=self.path)
            self.f.close()
            self.f, self.offset, self.buf = open(self.path, "rb", buffering=0), 0, b""
            self.drain()
        elif fst.st_size < self.f.tell():
            log("info", "file truncated, seeking to beginning", component="tailer", path=self.path)
            self.f.seek(0)
            self.offset, self.buf = 0, b""
            self.drain()
        return self.mark()

    def mark(self) -> None:
        app = self.t.app
        try:
            app.metrics.set("promtail_file_bytes_total", os.fstat(self.f.fileno()).st_size, path=self.path)
        except OSError:
            return
        app.metrics.set("promtail_read_bytes_total", self.offset, path=self.path)
        app.positions.put(self.path, self.offset)

    def stop(self, remove: bool = False) -> None:
        app = self.t.app
        self.mark()
        self.f.close()
        if remove:
            app.positions.remove(self.path)
        app.metrics.add("promtail_files_active_total", -1)
        for name in ("promtail_read_lines_total", "promtail_read_bytes_total", "promtail_file_bytes_total"):
            app.metrics.delete(name, path=self.path)
        log("info", "stopped tailing file", component="tailer", path=self.path)


class FileTarget:
    def __init__(self, app: App, job: str, labels: dict, paths: tuple[str, str], pipeline) -> None:
        (self.path, self.exclude), self.app, self.job, self.labels = paths, app, job, labels
        self.pipeline, self.tailers, self.failed = pipeline, {}, set()
        self.exclude_rx = glob_regex(os.path.abspath(self.exclude)) if self.exclude else None
        self.thread = threading.Thread(target=self.run, name=f"file-{job}", daemon=True)

    def handle(self, labels: dict, line: str, ts: int) -> None:
        e = Entry(labels, line, ts)
        if self.pipeline(e):
            self.app.deliver(e)

    def sync(self, full: bool) -> None:
        matches = glob_files(self.path)
        excluded = set(glob_files(self.exclude)) if self.exclude else set()
        matches = [p for p in matches if p not in excluded and not (self.exclude_rx and self.exclude_rx.fullmatch(p))]
        for p in matches:
            if p in self.tailers:
                continue
            try:
                self.tailers[p] = Tailer(self, p)
                self.failed.discard(p)
            except OSError as exc:
                if p not in self.failed or full:
                    log("error", "failed to tail file", component="filetarget", filename=p, error=str(exc))
                self.failed.add(p)
        if full:
            for p in [p for p in self.tailers if p not in matches]:
                self.tailers.pop(p).stop(remove=True)

    def run(self) -> None:
        stop, period = self.app.stop_targets, self.app.sync_period
        self.sync(True)
        next_full = time.monotonic() + period
        while True:
            for tailer in list(self.tailers.values()):
                try:
                    tailer.poll()
                except OSError as exc:
                    log("error", "error reading file", component="tailer", path=tailer.path, error=str(exc))
            if stop.wait(POLL):
                break
            full = time.monotonic() >= next_full
            next_full = next_full + period if full else next_full
            self.sync(full)
        for tailer in self.tailers.values():
            try:
                tailer.drain()
                tailer.stop()
            except OSError as exc:
                log("error", "error stopping tailer", path=tailer.path, error=str(exc))

    def ready(self) -> bool:
        return bool(self.tailers)


# --------------------------------------------------------------------------- journal targets


def _die_with_parent() -> None:
    """In the journalctl child: get SIGTERM when the stand-in dies, even by SIGKILL (Linux prctl)."""
    try:
        import ctypes  # noqa: PLC0415 - only the child needs it

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


PRIORITY = {
    "0": "emerg",
    "1": "alert",
    "2": "crit",
    "3": "error",
    "4": "warning",
    "5": "notice",
    "6": "info",
    "7": "debug",
}


class JournalTarget:
    def __init__(self, app: App, job: str, cfg: dict, rules: list, pipeline) -> None:
        self.app, self.job, self.cfg, self.rules, self.pipeline = app, job, cfg, rules, pipeline
        self.key, self.proc, self.read = f"cursor-{job}", None, 0
        self.max_age = go_duration(cfg.get("max_age") or "7h")
        if self.max_age is None:
            raise StartupError(
                f"parsing journal reader 'max_age' config value: time: invalid duration \"{cfg['max_age']}\""
            )
        self.matches = (cfg.get("matches") or "").split()
        if any(len(m.split("=")) != 2 for m in self.matches):
            raise StartupError("Error parsing journal reader 'matches' config value")
        self.cursor = app.positions.get(self.key)
        self.thread = threading.Thread(target=self.run, name=f"journal-{job}", daemon=True)

    def command(self) -> list[str]:
        cmd = ["journalctl", "--output=json", "--all", "--follow", "--no-pager", "--no-tail"]
        if self.cfg.get("path"):
            cmd.append(f"--directory={self.cfg['path']}")
        if self.cursor:
            cmd.append(f"--after-cursor={self.cursor}")
        else:
            cmd.append(f"--since=@{int(time.time() - self.max_age)}")
        return cmd + self.matches

    def run(self) -> None:
        stop = self.app.stop_targets
        while not stop.is_set():
            resumed, self.read = self.cursor, 0
            try:
                self.proc = subprocess.Popen(
                    self.command(),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=_die_with_parent,  # noqa: PLW1509 - a prctl only, no locks
                )
            except OSError as exc:
                log("error", "unable to follow journal", job=self.job, err=str(exc))
                stop.wait(1)
                continue
            if stop.is_set():  # stopped while starting
                self.proc.terminate()
            threading.Thread(target=self.stderr, args=(self.proc.stderr,), daemon=True).start()
            for raw in self.proc.stdout:
                if not raw.startswith(b"{"):  # e.g. "-- No entries --"
                    log("debug", "journalctl: " + raw.decode("utf-8", "replace").rstrip(), job=self.job)
                    continue
                try:
                    self.handle(json.loads(raw))
                except ValueError as exc:
                    log("error", "could not parse journalctl output", job=self.job, err=str(exc))
            self.proc.wait()
            if resumed and not self.read and self.proc.returncode and not stop.is_set():
                log("error", "received error reading saved journal position", job=self.job, cursor=resumed)
                self.cursor = None  # as Promtail: fall back to max_age
            if not stop.is_set():
                log("warn", "journalctl exited, restarting", job=self.job, status=self.proc.returncode)
                stop.wait(0.5)

    def stderr(self, stream) -> None:
        for raw in stream:
            log("warn", "journalctl: " + raw.decode("utf-8", "replace").rstrip(), job=self.job)

    def handle(self, obj: dict) -> None:
        metrics, fields = self.app.metrics, {}
        for k, raw in obj.items():
            value = raw[-1] if isinstance(raw, list) and not all(isinstance(x, int) for x in raw) else raw
            if isinstance(value, list):  # binary data comes as an array of bytes
                value = bytes(value).decode("utf-8", "replace")
            if not k.startswith("__") and value is not None:
                fields[k] = str(value)
        ts = int(obj.get("__REALTIME_TIMESTAMP", "0")) * 1000
        cursor, self.read = obj.get("__CURSOR"), self.read + 1
        if ts < time.time_ns() - self.max_age * 1e9:
            self.cursor = cursor or self.cursor
            return
        if self.cfg.get("json"):
            line = go_json(fields)
        elif (line := fields.get("MESSAGE")) is None:
            metrics.add("promtail_journal_target_parsing_errors_total", error="no_message")
            return
        labels = {f"__journal_{k.lower()}": v for k, v in fields.items()}
        if "PRIORITY" in fields:
            labels["__journal_priority_keyword"] = PRIORITY.get(fields["PRIORITY"], fields["PRIORITY"])
        labels.update(self.cfg.get("labels") or {})
        labels = {k: v for k, v in (relabel(labels, self.rules) or {}).items() if not k.startswith("__")}
        if not labels:
            metrics.add("promtail_journal_target_parsing_errors_total", error="empty_labels")
            return
        metrics.add("promtail_journal_target_lines_total")
        if cursor:
            self.cursor = cursor
            self.app.positions.put(self.key, cursor)
        e = Entry(labels, line, ts)
        if self.pipeline(e):
            self.app.deliver(e)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def ready(self) -> bool:
        return True


# --------------------------------------------------------------------------- the program


class Handler(BaseHTTPRequestHandler):
    app: App
    server_version = "promtail-standin"
    sys_version = ""

    def log_message(self, fmt: str, *args: object) -> None:
        log("debug", "http request", request=fmt % args)

    def reply(self, status: int, body: str, ctype: str = "text/plain; charset=utf-8", **headers: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path, app = urllib.parse.urlsplit(self.path).path, self.app
        if path == "/ready":
            if app.ready():
                return self.reply(200, "Ready")
            return self.reply(500, NOT_READY + "\n", X_Content_Type_Options="nosniff")
        if path == "/metrics" and app.instrumentation:
            return self.reply(200, app.metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
        if path == "/":
            return self.reply(303, "", Location="/targets")
        return self.reply(404, "404 page not found\n")


class App:
    def __init__(self, cfg: dict, flags: dict) -> None:
        self.cfg, self.flags, self.dry_run = cfg, flags, flags.get("dry-run", False)
        server = cfg.get("server") or {}
        self.instrumentation = server.get("register_instrumentation", True)
        self.health_check = server.get("health_check_target", True)
        self.disable_server = flags.get("server.disable", server.get("disable", False))
        self.listen = (flags.get("server.http-listen-address", server.get("http_listen_address", "")),
                       flags.get("server.http-listen-port", server.get("http_listen_port", 80)))  # fmt: skip
        target_cfg = cfg.get("target_config") or {}
        self.sync_period = flags.get("target.sync-period", target_cfg.get("sync_period", 10.0)) or 10.0
        self.metrics = new_metrics()
        self.stop_targets, self.stop_positions = threading.Event(), threading.Event()
        self.targets: list = []
        self.clients: list = []
        self.httpd = None
        self.tls = None

    def check(self) -> None:
        """What Promtail checks when it creates its clients, pipelines and targets (plus the stand-in's limits)."""
        cfg = self.cfg
        if (cfg.get("server") or {}).get("log_format", "logfmt") != "logfmt":
            raise StartupError("server.log_format: the stand-in writes logfmt only")
        if (cfg.get("target_config") or {}).get("stdin"):
            raise StartupError("target_config.stdin: reading stdin is not implemented by the stand-in")
        limits = cfg.get("limits_config") or {}
        for key in ("readline_rate_enabled", "max_streams", "max_line_size"):
            if limits.get(key) not in (None, False, 0, "0", ""):
                raise StartupError(f"limits_config.{key}: not implemented by the stand-in (only the default)")
        clients = cfg.get("clients") or []
        if not clients:
            raise StartupError("failed to create client manager: at least one client config must be provided")
        seen = set()
        for c in clients:
            if not c.get("url"):
                raise StartupError("failed to create client manager: client needs target URL")
            parts = urllib.parse.urlsplit(c["url"])
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise StartupError(f'failed to create client manager: unsupported client url "{c["url"]}"')
            name = c.get("name") or json.dumps(c, sort_keys=True, default=str)
            if name in seen:
                raise StartupError(
                    "failed to create client manager: duplicate client configs are not allowed, "
                    f"found duplicate for name: {c.get('name', '')}"
                )
            seen.add(name)
            try:  # the settings here; the files when the clients are built
                client_context(c.get("tls_config") or {}, "failed to create client manager", files=False)
            except TLSConfigError as exc:
                raise StartupError(str(exc)) from None
        try:
            server_context(cfg.get("server") or {}, files=False)
        except TLSConfigError as exc:
            raise StartupError(f"error creating loki server: {exc}") from None
        ctx = {"metrics": self.metrics}
        for sc in cfg.get("scrape_configs") or []:
            job = sc["job_name"]
            sc["pipeline"] = build_pipeline(sc.get("pipeline_stages") or [], ctx)
            groups, journal = sc.get("static_configs") or [], sc.get("journal")
            if not groups and journal is None:
                raise StartupError(
                    f'scrape config "{job}": the stand-in implements static_configs and journal targets only'
                )
            if groups and journal is not None:
                raise StartupError(
                    f'scrape config "{job}": static_configs and journal in one scrape config are not '
                    "supported by the stand-in"
                )
            rules_set_path = any(r["target_label"] == "__path__" for r in sc["relabel"])
            for n, group in enumerate(groups):
                if group is None or ("__path__" not in (group.get("labels") or {}) and not rules_set_path):
                    raise StartupError(
                        f'scrape config "{job}": static_configs[{n}] has no __path__ label (Promtail would skip the '
                        'target with "no path for target"; the stand-in refuses it)'
                    )

    def build(self) -> None:
        read_only = self.dry_run
        pcfg = dict(self.cfg.get("positions") or {})
        if "positions.file" in self.flags:
            pcfg["filename"] = self.flags["positions.file"]
        self.positions = Positions(pcfg, read_only)
        try:
            self.tls = server_context(self.cfg.get("server") or {})
        except TLSConfigError as exc:
            raise StartupError(f"error creating loki server: {exc}") from None
        try:  # the client's messages already say "failed to create client manager"
            self.clients = [Printer()] if self.dry_run else [Client(c, self.metrics) for c in self.cfg["clients"]]
        except TLSConfigError as exc:
            raise StartupError(str(exc)) from None
        hostname = os.environ.get("HOSTNAME") or socket.gethostname()
        for sc in self.cfg.get("scrape_configs") or []:
            job, rules = sc["job_name"], sc["relabel"]
            if sc.get("journal") is not None:
                if not any(
                    os.access(os.path.join(d, "journalctl"), os.X_OK) for d in os.environ.get("PATH", "").split(":")
                ):
                    raise StartupError(f'failed to create journal target "{job}": journalctl not found in PATH')
                self.targets.append(JournalTarget(self, job, sc["journal"], rules, sc["pipeline"]))
                continue
            keys = set()
            for group in sc.get("static_configs") or []:
                for address in group.get("targets") or ["localhost"]:
                    labels = relabel({"__address__": address, **(group.get("labels") or {})}, rules)
                    host_ok = labels is None or labels.get("__host__", hostname) == hostname
                    reason = "dropped" if labels is None else "" if host_ok else "wrong_host"
                    reason = reason or ("" if "__path__" in labels else "no_path")
                    if reason:
                        log("info", "dropped target", job=job, reason=reason)
                        self.metrics.add("promtail_targets_failed_total", reason=reason)
                        continue
                    path, exclude = labels["__path__"], labels.get("__path_exclude__", "")
                    labels = {k: v for k, v in labels.items() if not k.startswith("__")}
                    key = (path, exclude, tuple(sorted(labels.items())))
                    if key in keys:
                        self.metrics.add("promtail_targets_failed_total", reason="exists")
                        continue
                    keys.add(key)
                    log("info", "Adding target", key=f"{path}:{labels_string(labels)}")
                    self.targets.append(FileTarget(self, job, labels, (path, exclude), sc["pipeline"]))
                    self.metrics.add("promtail_targets_active_total", 1)
        if not self.disable_server:
            Handler.app = self
            try:
                self.httpd = ThreadingHTTPServer(self.listen, Handler)
            except OSError as exc:
                where = f"{self.listen[0]}:{self.listen[1]}"
                raise StartupError(f"error creating loki server: listen tcp {where}: bind: {exc.strerror}") from None
            self.httpd.daemon_threads = True
            if self.tls is not None:
                serve_tls(self.httpd, self.tls, lambda text: log("warn", text))

    def deliver(self, e: Entry) -> None:
        for c in self.clients:
            if isinstance(c, Printer):
                c.handle(e)
            else:
                copy = Entry(e.labels, e.line, e.ts)
                copy.sm = list(e.sm)
                c.queue.put(copy)

    def ready(self) -> bool:
        return not self.health_check or any(t.ready() for t in self.targets)

    def run(self) -> int:
        done = threading.Event()

        def on_signal(signum: int, _frame: object) -> None:
            if signum == signal.SIGHUP:
                log("warn", "SIGHUP: configuration reload is not implemented by the stand-in; restart it instead")
                return
            log("info", "received shutdown signal", sig=signal.Signals(signum).name)
            done.set()

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, on_signal)
        for c in self.clients:
            if isinstance(c, Client):
                c.thread.start()
        for t in self.targets:
            t.thread.start()
        positions_thread = threading.Thread(target=self.positions.run, args=(self.stop_positions,), daemon=True)
        positions_thread.start()
        if self.httpd:
            threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
            log(
                "info",
                "server listening on addresses",
                http=f"{self.listen[0] or '[::]'}:{self.httpd.server_address[1]}",
                tls="enabled" if self.tls is not None else "disabled",
            )
        log("info", "Starting Promtail", version=f"(version={standin_version()}, branch=standin, revision=standin)",
            note=STANDIN_TAG)  # fmt: skip
        done.wait()
        self.stop_targets.set()
        for t in self.targets:
            if isinstance(t, JournalTarget):
                t.stop()
            t.thread.join(30)
        self.stop_positions.set()
        positions_thread.join(5)
        self.positions.save()
        for c in self.clients:
            if isinstance(c, Client):
                c.queue.put(Client.STOP)
                c.thread.join()
        if self.httpd:
            self.httpd.shutdown()
        log("info", "stopped", note=STANDIN_TAG)
        return 0


FLAGS = {"config.file": "str", "config.expand-env": "bool", "check-syntax": "bool", "dry-run": "bool",
         "version": "bool", "log.level": "str", "log.format": "str", "server.disable": "bool",
         "server.http-listen-address": "str", "server.http-listen-port": "int", "server.grpc-listen-port": "int",
         "positions.file": "str", "target.sync-period": "duration", "print-config-stderr": "bool",
         "log-config-reverse-order": "bool"}  # fmt: skip
NOT_IMPLEMENTED_FLAGS = {"inspect", "stdin", "client.url", "client.tenant-id", "client.external-labels",
                         "server.enable-runtime-reload", "server.profiling_enabled"}  # fmt: skip


def parse_flags(args: list[str]) -> dict:
    """Go's flag package: -name=value, -name value (not for bools), --name; stops at the first non-flag."""
    out: dict = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--" or not arg.startswith("-") or arg == "-":
            break
        name, has_value, value = arg[2:] if arg.startswith("--") else arg[1:], False, ""
        if "=" in name:
            name, value = name.split("=", 1)
            has_value = True
        if name in ("h", "help"):
            print(
                "Usage of promtail (stand-in, "
                + STANDIN_TAG
                + "):\n  "
                + "\n  ".join(f"-{f} {k}" for f, k in FLAGS.items())
            )
            sys.exit(0)
        if name not in FLAGS:
            extra = " (valid for Promtail; not implemented by the stand-in)" if name in NOT_IMPLEMENTED_FLAGS else ""
            sys.stderr.write(
                f"flag provided but not defined: -{name}{extra}\nRun with -help to get list of available parameters\n"
            )
            sys.exit(2)
        kind = FLAGS[name]
        if kind == "bool":
            value = value if has_value else "true"
            if value not in ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"):
                sys.stderr.write(f'invalid boolean value "{value}" for -{name}: parse error\n')
                sys.exit(2)
            out[name] = value in ("1", "t", "T", "TRUE", "true", "True")
        else:
            if not has_value:
                i += 1
                if i >= len(args):
                    sys.stderr.write(f"flag needs an argument: -{name}\n")
                    sys.exit(2)
                value = args[i]
            converted = (
                go_duration(value) if kind == "duration" else int(value) if re.fullmatch(r"[+-]?\d+", value) else None
            )
            out[name] = value if kind == "str" else converted
            if out[name] is None:
                sys.stderr.write(f'invalid value "{value}" for flag -{name}: parse error\n')
                sys.exit(2)
        i += 1
    return out


def main(argv: list[str]) -> int:
    flags = parse_flags(argv[1:])
    cfg: dict = {}
    if flags.get("config.file"):
        try:
            cfg = load_config(flags["config.file"], flags.get("config.expand-env", False))
        except ParseError as exc:
            print(f"Unable to parse config: {exc}", flush=True)
            return 1
    if flags.get("check-syntax"):
        if not flags.get("config.file"):
            print("Invalid config file")
            return 1
        try:
            App(cfg, flags).check()
        except StartupError as exc:
            print(f"Unable to parse config: {exc}", flush=True)
            return 1
        print("Valid config file! No syntax issues found")
        return 0
    if flags.get("version"):
        print(f"promtail, version {standin_version()} stand-in ({STANDIN_TAG})")
        return 0
    _log_state["level"] = LEVELS.get(flags.get("log.level") or (cfg.get("server") or {}).get("log_level", "info"), -1)
    if _log_state["level"] < 0 or flags.get("log.format", "logfmt") != "logfmt":
        print(
            "Invalid log level" if _log_state["level"] < 0 else "Invalid log format (the stand-in writes logfmt only)"
        )
        return 1
    if flags.get("print-config-stderr"):
        sys.stderr.write(json.dumps(cfg, indent=2, default=lambda o: "<compiled>") + "\n")
    app = App(cfg, flags)
    try:
        app.check()
        app.build()
    except StartupError as exc:
        log("error", "error creating promtail", error=str(exc))
        return 1
    return app.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
