#!/usr/bin/env python3
# ruff: noqa: PLR0911, PLR0912, PLR0915
"""Grafana Loki STAND-IN for tests (tests/standins/loki; not Loki).

Real Loki cannot be used on this project's machines (its Go module is AGPL
licensed and may not be built here). This single-file program (Python 3
standard library only, for the system python3 of Debian 12/13) implements
the part of Loki 3.6's command line and HTTP API that the project uses,
following Loki's documentation, so that the loki role's install path
(release zip, systemd unit, ``loki -config.file=...``) and the project's
checks run against it. It is not Loki and never claims to be:
``-version`` prints ``loki, version <v> stand-in (tests/standins/loki; not
Loki)`` and every response carries ``X-Loki-Standin``.

Command line (Go flag syntax: ``-f=v``, ``-f v``, ``--f=v``; booleans ``-f``)
===========================================================================
``-config.file=PATH`` (required), ``-config.expand-env=true`` (``${VAR}`` and
``${VAR:-default}`` replaced before parsing, undefined -> empty),
``-verify-config`` (validate, log ``config is valid``, exit 0; or exit 1),
``-target=all`` (the only target), ``-log.level=debug|info|warn|error``,
``-version``. Unknown flags exit 2 (``flag provided but not defined``).
A config that cannot be parsed prints ``failed parsing config: ...`` on
stderr and exits 1; a config that fails validation logs ``level=error
msg="validating config" err="..."`` on stderr (Loki's words, several errors
under ``MULTIPLE CONFIG ERRORS FOUND, PLEASE READ CAREFULLY``) and exits 1,
at startup and with ``-verify-config``. SIGTERM/SIGINT stop with status 0.
Logs are logfmt on stderr (``level=info ts=... caller=... msg=...``).

Configuration: the JSON-as-YAML contract, decoded strictly
===========================================================
The standard library has no YAML parser, so the file must be one JSON
document (valid YAML, what the role's ``to_nice_json`` writes); whole-line
``#`` comments and a leading ``---`` are skipped. As Loki's strict YAML
decoding does, an unknown key fails naming it and its Go type, e.g.
``field retention_perod not found in type validation.plain`` (with the
dotted path), and so does a wrong type (``cannot unmarshal !!str ...``).
Keys (``{...}`` free-form: accepted, stored, never used for network I/O):
``auth_enabled`` (Loki's default is **true**; only ``false`` is accepted,
multi-tenancy is not implemented), ``target``; ``server``
{http_listen_address, http_listen_port (3100), grpc_listen_address,
grpc_listen_port (9095: a TCP socket is bound, no gRPC is served),
log_level, http_server_read_timeout, http_server_write_timeout,
http_tls_config {cert_file, key_file, client_auth_type, client_ca_file},
tls_min_version, tls_cipher_suites (refused: see tests/standins/dskit_tls.py)};
``common`` {path_prefix, replication_factor (Loki's default 3; only 1 is
accepted), ring {kvstore {store: inmemory|memberlist}, instance_addr},
storage {filesystem {chunks_directory, rules_directory}, s3, gcs, azure}};
``schema_config`` {configs [{from YYYY-MM-DD, store tsdb|boltdb-shipper,
object_store filesystem|s3|aws|gcs|azure, schema v9..v13, index {prefix,
period}}]}; ``storage_config`` {tsdb_shipper {active_index_directory,
cache_location}, filesystem {directory}, aws, gcs, azure}; ``compactor``
{working_directory, compaction_interval (10m), retention_enabled (false),
retention_delete_delay (2h), retention_delete_worker_count (150),
delete_request_store}; ``limits_config`` {retention_period (0s),
ingestion_rate_mb (4), ingestion_burst_size_mb (6),
max_label_names_per_series (15), max_label_name_length (1024),
max_label_value_length (2048), reject_old_samples (true),
reject_old_samples_max_age (1w), max_line_size (256KB), max_query_length
(721h), max_query_series (500), max_entries_limit_per_query (5000),
allow_structured_metadata (true), volume_enabled, split_queries_by_interval,
discover_service_name, discover_log_levels (true)}; ``query_range``
{results_cache {...}, cache_results}; ``ingester`` {chunk_idle_period (30m),
wal {dir, enabled}, lifecycler {min_ready_duration (15s)}}; ``analytics``
{reporting_enabled (true: Loki would phone home; the stand-in sends nothing
and warns)}; ``ruler`` {...}; ``pattern_ingester`` {enabled}. Durations are
Prometheus durations (model.Duration: ``1y2w3d4h5m6s7ms``, units in that
order, integers, ``0``) for limits and index periods, Go durations
(``1h30m``, ``1.5s``; no d/w/y; a bare integer means nanoseconds, as Go YAML
decodes it) for server, compactor and ingester keys. ``common.path_prefix``
derives, as in Loki, ``chunks``, ``rules``, ``tsdb-index``, ``tsdb-cache``,
``compactor`` and ``wal`` below it.

Validation, with Loki's messages: at least one schema config; ``from``
increasing; a tsdb index period of exactly 24h (``tsdb must always have
periodic config for index set to 24h``), other periods multiples of 24h;
an unknown ``store``/``object_store`` (``unrecognized `object_store` type
...``); with allow_structured_metadata (the default) the active period needs
``store: tsdb`` and schema ``v13`` (``CONFIG ERROR: schema v13 is required to
store Structured Metadata ...``); tsdb needs ``active_index_directory``,
``cache_location`` and ``compactor.working_directory`` (or path_prefix);
filesystem needs a directory; ``retention_enabled: true`` needs
``delete_request_store`` (``compactor.delete-request-store should be
configured when retention is enabled``). ``retention_period: 0`` keeps data
**forever** (Loki's default, and the trap: retention_enabled alone deletes
nothing). A non-zero retention_period below 24h is refused with ``retention
period must be >= 24h was 12h``: the retention docs state "The minimum
retention period is 24h"; Loki's code applies that message to
retention_stream periods, and whether Loki refuses a short global period at
startup could not be confirmed, so the stand-in is stricter here. A
multiple-of-the-index-period rule is documented only for the deprecated
Table Manager and is not enforced.

Storage and compactor
=====================
Entries live in sqlite (WAL mode) at ``<path_prefix>/loki-standin.db`` (no
path_prefix: in the filesystem directory, else the tsdb index directory),
one table (stream labels as canonical JSON, ts ns, line, structured metadata
JSON), so data survives restarts; the same stream/ts/line is stored once.
The directories Loki would create are created (exit 1 when that fails). The
compactor runs every compaction_interval; with retention_enabled it applies
retention every compaction_interval + min(10m, compaction_interval/2) (Loki's
jitter): entries older than retention_period are removed from queries at
once and deleted after retention_delete_delay. Entry-level, not chunk-level.

HTTP API
========
``GET /ready`` 200 ``ready``; 503 while storage opens and for
ingester.lifecycler.min_ready_duration after (Loki's 15s: ``Ingester not
ready: waiting for 15s after being ready``). ``GET /metrics`` (text format
0.0.4): loki_build_info, loki_request_duration_seconds{method,route,
status_code,ws}, loki_distributor_lines_received_total{tenant},
loki_distributor_bytes_received_total{tenant} (line + structured metadata
bytes), loki_discarded_samples_total / loki_discarded_bytes_total
{reason,tenant}, loki_ingester_streams_created_total{tenant},
loki_ingester_memory_streams{tenant} (streams pushed within
chunk_idle_period), loki_boltdb_shipper_compact_tables_operation_total
{status} and its _last_successful_run_timestamp_seconds,
loki_compactor_apply_retention_operation_total{status},
loki_compactor_apply_retention_operation_duration_seconds,
loki_compactor_apply_retention_last_successful_run_timestamp_seconds (0
until retention ran) and loki_standin_retention_deleted_entries_total.
Loki 3 has further labels on some of these (e.g. retention_hours), which the
stand-in omits. ``GET /config`` (effective config as YAML, secrets masked),
``GET /loki/api/v1/status/buildinfo``.

``POST /loki/api/v1/push``: JSON only (``Content-Type: application/json``,
optionally ``Content-Encoding: gzip`` or ``deflate``); protobuf and other
types get 415 (the project's clients push JSON). Body
``{"streams":[{"stream":{...},"values":[["<ns>","<line>"(,{sm})]]}]}``; a
malformed body is 400 and stores nothing. As Loki 3's distributor: labels
with empty values are dropped; ``service_name`` is added from the first of
limits_config.discover_service_name present (service, app, application,
app_name, name, app_kubernetes_io_name, container, container_name,
k8s_container_name, component, workload, job, k8s_job_name), else
``unknown_service`` (``[]`` disables); with discover_log_levels and
structured metadata allowed, ``detected_level`` structured metadata is added
(level label/metadata, JSON or logfmt field, else a level word in the line,
else ``unknown``). Per entry, with Loki's messages and reasons: no labels
(missing_labels), bad label name or a ``__`` prefix (invalid_labels), too
many label names (service_name not counted), name/value too long, line too
long, older than reject_old_samples_max_age, newer than now+10m, structured
metadata not allowed / over 64KB / over 128 entries. Invalid entries are
discarded and counted, valid ones stored, and the answer is 400 with the
last error, else 204. The ingestion rate (token bucket, rate and burst in
MiB) answers 429 and stores nothing. No per-stream rate limit.

Queries: ``/loki/api/v1/query_range`` (query, start, end, since, limit 100,
direction backward|forward, step; logs with start <= ts < end) and
``/loki/api/v1/query`` (time; metric queries only, log queries 400),
``/loki/api/v1/labels``, ``/loki/api/v1/label/<name>/values`` (start
defaults to 6h ago), ``/loki/api/v1/series`` (match[]; selectors only); GET
or POST form. Times: integers of <= 10 digits are seconds, longer ones ns, a
number with a dot is float seconds, else RFC3339(Nano). Results as
documented: streams (stream labels + structured metadata + parsed labels, as
Loki answers without categorize-labels), matrix ``[<s>, "<v>"]``, vector,
with ``stats``. Errors are 400 text/plain: ``parse error at line 1, col N:
...``, the empty-compatible matcher rule, ``max entries limit per query
exceeded ...``, ``the query time range exceeds the limit ...``, ``maximum
number of series (N) reached ...``, step/limit/direction/time errors.

LogQL subset (anything else is a parse error naming the stand-in): stream
selector with = != =~ !~ (regexes fully anchored; at least one matcher that
does not match the empty string); line filters ``|= != |~ !~`` (unanchored
regex); ``| json`` (all fields, nested keys joined with ``_``, arrays
skipped, JSONParserErr) and ``| logfmt`` (LogfmtParserErr); parsed names
sanitised, ``_extracted`` on collision; label filters ``= != =~ !~`` on
strings, ``> >= < <= == !=`` on numbers (LabelFilterErr; as in Loki, numeric
filters keep entries carrying ``__error__``, string matchers filter them
too); ``| line_format
"{{.label}}"`` (only ``{{.label}}`` substitution); count_over_time, rate,
bytes_over_time, bytes_rate over ``[range]``; sum, count, avg, min, max with
``by``/``without`` before or after the parentheses. A metric series carrying
``__error__`` fails the query (``pipeline error: ...``), as in Loki. Python's
``re`` stands in for RE2.
"""

from __future__ import annotations

import bisect
import decimal
import errno
import gzip
import json
import math
import os
import re
import signal
import socket
import sqlite3
import sys
import threading
import time
import urllib.parse
import zlib
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

# >>> dskit_tls
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from dskit_tls import TLSConfigError, serve_tls, server_context

# <<< dskit_tls

STANDIN_TAG = "tests/standins/loki; not Loki"
DEFAULT_VERSION = "3.6.0"
STANDIN_BAKED_VERSION = ""  # package.sh bakes the release version in here
TENANT = "fake"  # Loki's tenant when auth_enabled is false
DB_NAME = "loki-standin.db"
SEC = 10**9
JSON_AS_YAML = "the Loki stand-in reads its config as JSON-compatible YAML (one JSON document; whole-line # comments)"
NOT_IMPLEMENTED = "not implemented by the Loki stand-in (tests/standins/loki)"


def standin_version() -> str:
    if STANDIN_BAKED_VERSION:
        return STANDIN_BAKED_VERSION
    try:
        text = (Path(__file__).resolve().parent / "VERSION").read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return (text or DEFAULT_VERSION).lstrip("v")


# --------------------------------------------------------------------------- durations, sizes, numbers

_PROM_RE = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?")
_PROM_UNITS = (("y", 365 * 86400 * 1000, True), ("w", 7 * 86400 * 1000, True), ("d", 86400 * 1000, False))
_PROM_UNITS += (("h", 3600 * 1000, False), ("m", 60 * 1000, False), ("s", 1000, False), ("ms", 1, False))
_GO_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": SEC, "m": 60 * SEC, "h": 3600 * SEC}


def parse_prom_duration(text: str) -> int:
    """Nanoseconds of a Prometheus duration (model.ParseDuration)."""
    match = _PROM_RE.fullmatch(text)
    if text == "0":
        return 0
    if not text or match is None or not any(match.groups()):
        raise ValueError(f'not a valid duration string: "{text}"')
    return sum(int(g) * u[1] for g, u in zip(match.groups(), _PROM_UNITS, strict=True) if g) * 10**6


def parse_go_duration(text: str) -> int:
    """Nanoseconds of a Go duration (time.ParseDuration)."""
    body = text[1:] if text[:1] in ("+", "-") else text
    if body == "0":
        return 0
    parts = re.findall(r"(\d+\.?\d*|\.\d+)([^\d.]*)", body)
    if not body or "".join(n + u for n, u in parts) != body:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    for number, unit in parts:
        if not unit:
            raise ValueError(f'time: missing unit in duration "{text}"')
        if unit not in _GO_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{text}"')
        total += float(number) * _GO_UNITS[unit]
    return -int(total) if text.startswith("-") else int(total)


def parse_any_duration(text: str) -> int:
    try:
        return parse_prom_duration(text)
    except ValueError:
        return parse_go_duration(text)


def format_prom_duration(ns: int) -> str:
    ms, out = ns // 10**6, ""
    if ms == 0:
        return "0s"
    for unit, size, exact in _PROM_UNITS:
        if (not exact or ms % size == 0) and ms >= size:
            out += f"{ms // size}{unit}"
            ms %= size
    return out


def format_go_duration(ns: int) -> str:
    sign, ns = ("-" if ns < 0 else ""), abs(ns)
    if ns == 0:
        return "0s"
    if ns < SEC:
        for unit, size in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if ns >= size:
                return sign + go_float(ns / size) + unit
    hours, rest = divmod(ns, 3600 * SEC)
    minutes, rest = divmod(rest, 60 * SEC)
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "")
    return sign + out + go_float(rest / SEC) + "s"


def parse_bytes(value: object) -> int:
    """flagext.ByteSize: an integer or a size like 256KB (1024-based)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:([KMGTPE])(?:I?B)?|B)?\s*", str(value), re.I)
    if match is None:
        raise ValueError(f"invalid byte size {value!r}")
    return int(float(match.group(1)) * 1024 ** ("_KMGTPE".index(match.group(2).upper()) if match.group(2) else 0))


def format_bytes(size: int) -> str:
    for power, unit in ((4, "TB"), (3, "GB"), (2, "MB"), (1, "KB")):
        if size and size % 1024**power == 0:
            return f"{size // 1024**power}{unit}"
    return f"{size}B"


def go_float(value: float) -> str:
    """strconv.FormatFloat(v, 'f', -1, 64): shortest digits, never an exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(decimal.Decimal(repr(float(value))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def rfc3339(ns: int) -> str:
    return datetime.fromtimestamp(ns // SEC, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def labels_string(labels: dict) -> str:
    """A label set as Prometheus writes it: {a="b", c="d"}, names sorted."""
    return "{" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels.items())) + "}"


class Log:
    LEVELS: ClassVar[dict[str, int]] = {"debug": 0, "info": 1, "warn": 2, "error": 3}

    def __init__(self, level: str = "info") -> None:
        self.level = self.LEVELS.get(level, 1)
        self.lock = threading.Lock()

    @staticmethod
    def _value(value: object) -> str:
        text = str(value)
        return json.dumps(text, ensure_ascii=False) if not text or re.search(r'[\s="\\]', text) else text

    def log(self, level: str, msg: str, **fields: object) -> None:
        if self.LEVELS[level] < self.level:
            return
        ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        parts = [f"level={level}", f"ts={ts}", "caller=loki_standin.py", f"msg={self._value(msg)}"]
        parts += [f"{k}={self._value(v)}" for k, v in fields.items()]
        with self.lock:
            sys.stderr.write(" ".join(parts) + "\n")
            sys.stderr.flush()


# --------------------------------------------------------------------------- configuration


class ConfigError(Exception):
    """The file cannot be read or decoded: `failed parsing config: ...`."""


# Every key the stand-in accepts: dotted path (``[]``: list items), type, default (``-``: none).
SPEC = """
auth_enabled bool true
target str all
server.http_listen_address str ""
server.http_listen_port int 3100
server.grpc_listen_address str ""
server.grpc_listen_port int 9095
server.log_level str info
server.http_server_read_timeout gdur 30s
server.http_server_write_timeout gdur 30s
server.http_tls_config.cert_file str ""
server.http_tls_config.key_file str ""
server.http_tls_config.client_auth_type str ""
server.http_tls_config.client_ca_file str ""
server.tls_min_version str ""
server.tls_cipher_suites str ""
common.path_prefix str ""
common.replication_factor int 3
common.ring.kvstore.store str inmemory
common.ring.instance_addr str ""
common.storage.filesystem.chunks_directory str ""
common.storage.filesystem.rules_directory str ""
common.storage.s3 any -
common.storage.gcs any -
common.storage.azure any -
schema_config.configs[].from str -
schema_config.configs[].store str -
schema_config.configs[].object_store str -
schema_config.configs[].schema str -
schema_config.configs[].index.prefix str -
schema_config.configs[].index.period pdur -
storage_config.tsdb_shipper.active_index_directory str ""
storage_config.tsdb_shipper.cache_location str ""
storage_config.filesystem.directory str ""
storage_config.aws any -
storage_config.gcs any -
storage_config.azure any -
compactor.working_directory str ""
compactor.compaction_interval gdur 10m
compactor.retention_enabled bool false
compactor.retention_delete_delay gdur 2h
compactor.retention_delete_worker_count int 150
compactor.delete_request_store str ""
limits_config.retention_period pdur 0s
limits_config.ingestion_rate_mb float 4
limits_config.ingestion_burst_size_mb float 6
limits_config.max_label_names_per_series int 15
limits_config.max_label_name_length int 1024
limits_config.max_label_value_length int 2048
limits_config.reject_old_samples bool true
limits_config.reject_old_samples_max_age pdur 1w
limits_config.max_line_size bytes 256KB
limits_config.max_query_length pdur 721h
limits_config.max_query_series int 500
limits_config.max_entries_limit_per_query int 5000
limits_config.allow_structured_metadata bool true
limits_config.volume_enabled bool true
limits_config.split_queries_by_interval pdur 1h
limits_config.discover_service_name strlist service,app,application,app_name,name,app_kubernetes_io_name,\
container,container_name,k8s_container_name,component,workload,job,k8s_job_name
limits_config.discover_log_levels bool true
query_range.results_cache any -
query_range.cache_results bool false
ingester.chunk_idle_period gdur 30m
ingester.wal.dir str wal
ingester.wal.enabled bool true
ingester.lifecycler.min_ready_duration gdur 15s
analytics.reporting_enabled bool true
ruler any -
pattern_ingester.enabled bool false
"""
SECTIONS = dict(
    pair.split("=")
    for pair in """=loki.ConfigWrapper server=server.Config server.http_tls_config=server.TLSConfig
    common=common.Config common.ring=lokiring.RingConfig
    common.ring.kvstore=kv.Config common.storage=common.Storage common.storage.filesystem=common.FilesystemConfig
    schema_config=config.SchemaConfig schema_config.configs[]=config.plain
    schema_config.configs[].index=config.IndexPeriodicTableConfig storage_config=storage.Config
    storage_config.tsdb_shipper=indexshipper.Config storage_config.filesystem=local.FSConfig compactor=compactor.Config
    limits_config=validation.plain query_range=queryrange.Config ingester=ingester.Config
    ingester.wal=ingester.WALConfig
    ingester.lifecycler=ring.LifecyclerConfig analytics=analytics.Config pattern_ingester=pattern.Config""".split()
)
GO_TYPES = {"bool": "bool", "int": "int", "float": "float64", "str": "string", "pdur": "model.Duration"}
GO_TYPES |= {
    "gdur": "time.Duration",
    "bytes": "flagext.ByteSize",
    "strlist": "[]string",
    "any": "map[string]interface {}",
}
OBJECT_STORES = ("aws", "azure", "filesystem", "gcs", "s3")
INDEX_STORES = ("tsdb", "boltdb-shipper")


def _yaml_tag(value: object) -> str:
    for kind, tag in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"), (list, "seq"), (dict, "map")):
        if isinstance(value, kind):
            return tag
    return "null"


def decode(value: object, spec: object, path: str, errors: list[str]) -> object:
    """Value checked against spec as Loki's strict YAML decoding would; errors collected."""

    def wrong(go_type: str) -> None:
        shown = (
            json.dumps(value)
            if isinstance(value, (dict, list))
            else str(value).lower()
            if isinstance(value, bool)
            else value
        )
        errors.append(f"cannot unmarshal !!{_yaml_tag(value)} `{shown}` into {go_type} (at {path})")

    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return wrong(spec["_type"])
        out = {}
        for key, item in value.items():
            if key not in spec or key == "_type":
                errors.append(f"field {key} not found in type {spec['_type']} (at {path + '.' if path else ''}{key})")
            elif item is not None:
                out[key] = decode(item, spec[key], f"{path + '.' if path else ''}{key}", errors)
        return out
    if isinstance(spec, list):
        if not isinstance(value, list):
            return wrong("[]" + spec[0]["_type"])
        return [decode(item, spec[0], f"{path}[{i}]", errors) for i, item in enumerate(value)]
    if spec == "any":
        return value if isinstance(value, dict) else wrong(GO_TYPES["any"])
    if spec == "strlist":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return wrong("[]string")
        return list(value)
    if spec == "bool":
        return value if isinstance(value, bool) else wrong("bool")
    if spec == "int":
        return value if isinstance(value, int) and not isinstance(value, bool) else wrong("int")
    if spec == "float":
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else wrong("float64")
    if isinstance(value, (dict, list)):
        return wrong(GO_TYPES[spec])
    text = str(value).lower() if isinstance(value, bool) else str(value)
    try:
        if spec == "pdur":
            return parse_prom_duration(text)
        if spec == "gdur":
            return value if isinstance(value, int) and not isinstance(value, bool) else parse_go_duration(text)
        if spec == "bytes":
            return parse_bytes(value)
    except ValueError as exc:
        errors.append(f"{exc} (at {path})")
        return None
    return text


def _build_spec() -> tuple[dict, dict]:
    """KEYS (nested spec for decode) and DEFAULTS (nested effective defaults) from SPEC."""
    keys: dict = {"_type": SECTIONS[""]}
    defaults: dict = {}
    for row in SPEC.strip().splitlines():
        path, kind, default = row.split()
        node, dnode, where = keys, defaults, ""
        *parents, leaf = path.split(".")
        for part in parents:
            where = f"{where}.{part}" if where else part
            if part.endswith("[]"):
                node, dnode = node.setdefault(part[:-2], [{"_type": SECTIONS[where]}])[0], None
            else:
                node = node.setdefault(part, {"_type": SECTIONS[where]})
                dnode = dnode.setdefault(part, {}) if dnode is not None else None
        node[leaf] = kind
        if default != "-" and dnode is not None:
            text = "" if default == '""' else default
            plain = {"bool": lambda t: t == "true", "int": int, "float": float, "strlist": lambda t: t.split(",")}
            dnode[leaf] = plain[kind](text) if kind in plain else decode(text, kind, path, [])
    defaults["schema_config"] = {"configs": []}
    return keys, {k: defaults[k] for k in keys if k in defaults}


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


KEYS, DEFAULTS = _build_spec()


def expand_env(text: str) -> str:
    pattern = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
    return pattern.sub(lambda m: os.environ.get(m.group(1)) or (m.group(2) or ""), text)


def load_config(path: str, expand: bool) -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: open {path}: {(exc.strerror or str(exc)).lower()}") from exc
    if expand:
        text = expand_env(text)
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    while lines and not lines[0].strip():
        lines.pop(0)
    if lines and lines[0].strip() == "---":
        lines.pop(0)
    body = "\n".join(lines).strip()
    try:
        raw = json.loads(body) if body else {}
    except ValueError as exc:
        raise ConfigError(f"{path}: {JSON_AS_YAML}: {exc}") from exc
    errors: list[str] = []
    decoded = decode(raw, KEYS, "", errors)
    if errors:
        raise ConfigError(f"{path}: yaml: unmarshal errors:\n  " + "\n  ".join(errors))
    cfg = merge(DEFAULTS, decoded or {})
    prefix, common_fs = cfg["common"]["path_prefix"], cfg["common"]["storage"]["filesystem"]
    if prefix:  # Loki's path_prefix defaults
        storage = cfg["common"]["storage"]
        if not any(storage.get(k) for k in ("s3", "gcs", "azure")):
            common_fs["chunks_directory"] = common_fs["chunks_directory"] or f"{prefix}/chunks"
        common_fs["rules_directory"] = common_fs["rules_directory"] or f"{prefix}/rules"
        tsdb = cfg["storage_config"]["tsdb_shipper"]
        tsdb["active_index_directory"] = tsdb["active_index_directory"] or f"{prefix}/tsdb-index"
        tsdb["cache_location"] = tsdb["cache_location"] or f"{prefix}/tsdb-cache"
        cfg["compactor"]["working_directory"] = cfg["compactor"]["working_directory"] or f"{prefix}/compactor"
        if cfg["ingester"]["wal"]["dir"] == "wal":
            cfg["ingester"]["wal"]["dir"] = f"{prefix}/wal"
    fs = cfg["storage_config"]["filesystem"]
    fs["directory"] = fs["directory"] or common_fs["chunks_directory"]
    return cfg


def _day(text: str) -> int:
    try:
        return int(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()) * SEC
    except ValueError:
        raise ValueError(f'parsing time "{text}" as "2006-01-02": cannot parse "{text}" as a date') from None


def active_period(configs: list[dict]) -> dict:
    now, active = time.time_ns(), configs[0]
    for period in configs:
        if period["_from"] <= now:
            active = period
    return active


_SM_HINT = (
    "Set `allow_structured_metadata: false` in the `limits_config` section or set the command line argument "
    "`-validation.allow-structured-metadata=false` and restart Loki. Then proceed to update {what} before re-enabling "
    "this config, search for 'Storage Schema' in the docs for the schema update procedure"
)
_TSDB_DIR = (
    "CONFIG ERROR: `tsdb` index type is configured in at least one schema period, however, `storage_config`, "
    "`tsdb_shipper`, `{key}` is not set, please set this directly or set `path_prefix:` in the `common:` section"
)
MESSAGES = {  # Loki's messages (pkg/loki, pkg/storage/config, compactor), then the stand-in's own
    "schema": "CONFIG ERROR: invalid schema config: ",
    "tsdb24h": "validating period_config: tsdb must always have periodic config for index set to 24h",
    "period": "validating period_config: validating index tables: the table period must be a multiple of 24h "
    "(1h for schema v1)",
    "retention": "CONFIG ERROR: invalid limits_config config: retention period must be >= 24h was {0}",
    "delete_store": "CONFIG ERROR: invalid compactor config: compactor.delete-request-store should be configured "
    "when retention is enabled",
    "store": "unrecognized `store` (index) type `{0}`, choose one of: " + ", ".join(INDEX_STORES),
    "object": "unrecognized `object_store` type `{0}`, which also does not match any named_stores. Choose one of: "
    + ", ".join(OBJECT_STORES)
    + ". Or choose a named_store (the stand-in knows none)",
    "v13": "CONFIG ERROR: schema v13 is required to store Structured Metadata and use native OTLP ingestion, your "
    "schema version is {0}. " + _SM_HINT.format(what="to schema v13 or newer"),
    "tsdb_sm": "CONFIG ERROR: `tsdb` index type is required to store Structured Metadata and use native OTLP "
    "ingestion, your index type is `{0}` (defined in the `store` parameter of the schema_config). "
    + _SM_HINT.format(what="the schema to use index type `tsdb`"),
    "compactor_dir": "CONFIG ERROR: `compactor:` `working_directory:` is empty, please set a valid directory or set "
    "`path_prefix:` in the `common:` section",
    "bad_delete_store": "CONFIG ERROR: invalid compactor config: delete_request_store {0!r} is not one of: "
    + ", ".join(OBJECT_STORES),
    "fs_dir": "CONFIG ERROR: object_store filesystem needs a directory: set storage_config.filesystem.directory, "
    "common.storage.filesystem.chunks_directory or common.path_prefix",
    "cloud": "CONFIG ERROR: object_store {0} needs storage_config.{1} or common.storage.{2}",
    "auth": "CONFIG ERROR: auth_enabled is true (Loki's default when the key is missing): multi-tenant mode is "
    f"{NOT_IMPLEMENTED}; set auth_enabled: false",
    "target": "CONFIG ERROR: target {0!r}: the Loki stand-in runs only target all",
    "replication": "CONFIG ERROR: common.replication_factor is {0} (Loki's default is 3): a single Loki instance "
    "needs 1, the stand-in accepts only 1",
    "kvstore": "CONFIG ERROR: common.ring.kvstore.store {0!r}: the Loki stand-in implements inmemory and memberlist",
    "port": "CONFIG ERROR: server.{0} {1} is not a port (0-65535)",
    "log_level": 'CONFIG ERROR: unrecognized log level "{0}"',
}


def validate(cfg: dict) -> list[str]:
    """Loki's startup validation (and the stand-in's limits), in Loki's order; messages as Loki's."""
    errs: list[str] = []
    configs, limits, comp = cfg["schema_config"]["configs"], cfg["limits_config"], cfg["compactor"]
    schema_errs = [] if configs else ["must specify at least one schema configuration"]
    for i, period in enumerate(configs):
        try:
            period["_from"] = _day(period.get("from", ""))
        except ValueError as exc:
            schema_errs.append(str(exc))
            period["_from"] = 0
        version, days = period.get("schema", ""), period.get("index", {}).get("period", 0)
        period["_version"] = int(version.lstrip("v")) if re.fullmatch(r"v?\d+", version) else -1
        if period.get("store") == "tsdb" and days != 86400 * SEC:
            schema_errs.append(MESSAGES["tsdb24h"])
        elif days % (86400 * SEC):
            schema_errs.append(MESSAGES["period"])
        elif period["_version"] not in (9, 10, 11, 12, 13):
            schema_errs.append("validating period_config: invalid schema version")
        if i and period["_from"] <= configs[i - 1]["_from"]:
            schema_errs.append("from time in schemas must be distinct and in increasing order")
    errs += [MESSAGES["schema"] + schema_errs[0]] if schema_errs else []
    if 0 < limits["retention_period"] < 86400 * SEC:
        errs.append(MESSAGES["retention"].format(format_prom_duration(limits["retention_period"])))
    if comp["retention_enabled"] and not comp["delete_request_store"]:
        errs.append(MESSAGES["delete_store"])
    elif comp["delete_request_store"] and comp["delete_request_store"] not in OBJECT_STORES:
        errs.append(MESSAGES["bad_delete_store"].format(comp["delete_request_store"]))
    for period in configs:
        store, obj = period.get("store", ""), period.get("object_store", "")
        errs += [] if store in INDEX_STORES else [MESSAGES["store"].format(store)]
        cloud = {"s3": ("aws", "s3"), "aws": ("aws", "s3")}.get(obj, (obj, obj))
        if obj not in OBJECT_STORES:
            errs.append(MESSAGES["object"].format(obj))
        elif obj == "filesystem" and not cfg["storage_config"]["filesystem"]["directory"]:
            errs.append(MESSAGES["fs_dir"])
        elif obj != "filesystem" and not (
            cfg["storage_config"].get(cloud[0]) or cfg["common"]["storage"].get(cloud[1])
        ):
            errs.append(MESSAGES["cloud"].format(obj, *cloud))
    if configs and limits["allow_structured_metadata"]:
        active = active_period(configs)
        errs += [MESSAGES["v13"].format(active.get("schema", ""))] if active["_version"] < 13 else []
        errs += [MESSAGES["tsdb_sm"].format(active.get("store", ""))] if active.get("store") != "tsdb" else []
    if any(p.get("store") == "tsdb" for p in configs):
        tsdb = cfg["storage_config"]["tsdb_shipper"]
        errs += [_TSDB_DIR.format(key=k) for k in ("active_index_directory", "cache_location") if not tsdb[k]]
        errs += [] if comp["working_directory"] else [MESSAGES["compactor_dir"]]
    # The stand-in's own limits: single binary, single tenant, no KV server.
    errs += [MESSAGES["auth"]] if cfg["auth_enabled"] else []
    errs += [MESSAGES["target"].format(cfg["target"])] if cfg["target"] != "all" else []
    replication, kvstore = cfg["common"]["replication_factor"], cfg["common"]["ring"]["kvstore"]["store"]
    errs += [MESSAGES["replication"].format(replication)] if replication != 1 else []
    errs += [MESSAGES["kvstore"].format(kvstore)] if kvstore not in ("inmemory", "memberlist") else []
    for key in ("http_listen_port", "grpc_listen_port"):
        errs += [] if 0 <= cfg["server"][key] <= 65535 else [MESSAGES["port"].format(key, cfg["server"][key])]
    level = cfg["server"]["log_level"]
    errs += [] if level in Log.LEVELS else [MESSAGES["log_level"].format(level)]
    return ["MULTIPLE CONFIG ERRORS FOUND, PLEASE READ CAREFULLY", *errs] if len(errs) > 1 else errs


def config_yaml(cfg: dict, spec: object = None, indent: str = "") -> str:
    """The effective config as YAML, durations and sizes in Loki's notation, secrets masked."""
    out, spec = [], KEYS if spec is None else spec
    for key, value in cfg.items():
        if key.startswith("_"):
            continue
        kind = spec.get(key, "any") if isinstance(spec, dict) else "any"
        if isinstance(value, dict):
            body = config_yaml(value, kind, indent + "  ")
            out.append(f"{indent}{key}:" + ("\n" + body if body else " {}"))
        elif isinstance(value, list):
            out.append(f"{indent}{key}:" + ("" if value else " []"))
            for item in value:
                if isinstance(item, dict):
                    body = config_yaml(item, kind[0] if isinstance(kind, list) else "any", indent + "    ")
                    out.append(f"{indent}  - " + body.lstrip())
                else:
                    out.append(f"{indent}  - {_yaml_scalar(item)}")
        else:
            shown = {"pdur": format_prom_duration, "gdur": format_go_duration, "bytes": format_bytes}.get(kind, str)
            secret = kind == "any" and value and re.search(r"secret|password|token|account_key|service_account", key)
            text = "********" if secret else shown(value) if kind in ("pdur", "gdur", "bytes") else value
            out.append(f"{indent}{key}: {_yaml_scalar(text)}")
    return "\n".join(out)


def _yaml_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return go_float(value) if isinstance(value, float) else str(value)
    text = str(value)
    plain = re.fullmatch(r"[A-Za-z0-9_/.][A-Za-z0-9_./:-]*", text) and not re.fullmatch(r"[0-9.eE+-]*", text)
    plain = plain and text.lower() not in ("true", "false", "null", "yes", "no", "on", "off", "~")
    return text if plain else json.dumps(text, ensure_ascii=False)


# --------------------------------------------------------------------------- metrics

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
METRICS = {
    "loki_build_info": ("gauge", "A metric with a constant '1' value labeled by the build information (stand-in)."),
    "loki_request_duration_seconds": ("histogram", "Time (in seconds) spent serving HTTP requests."),
    "loki_distributor_lines_received_total": ("counter", "The total number of lines received per tenant."),
    "loki_distributor_bytes_received_total": ("counter", "The total number of uncompressed bytes received per tenant."),
    "loki_discarded_samples_total": ("counter", "The total number of samples that were discarded."),
    "loki_discarded_bytes_total": ("counter", "The total number of bytes that were discarded."),
    "loki_ingester_streams_created_total": ("counter", "The total number of streams created per tenant."),
    "loki_ingester_memory_streams": ("gauge", "The total number of streams in memory per tenant."),
    "loki_boltdb_shipper_compact_tables_operation_total": (
        "counter",
        "Total number of tables compaction done by status.",
    ),
    "loki_boltdb_shipper_compact_tables_operation_last_successful_run_timestamp_seconds": (
        "gauge",
        "Unix timestamp of the last successful compaction run.",
    ),
    "loki_compactor_apply_retention_operation_total": ("counter", "Total number of attempts done to apply retention."),
    "loki_compactor_apply_retention_operation_duration_seconds": (
        "gauge",
        "Time (in seconds) spent applying retention.",
    ),
    "loki_compactor_apply_retention_last_successful_run_timestamp_seconds": (
        "gauge",
        "Unix timestamp of the last successful retention run.",
    ),
    "loki_standin_retention_deleted_entries_total": ("counter", "Entries the Loki stand-in's retention deleted."),
    "process_start_time_seconds": ("gauge", "Start time of the process since unix epoch in seconds."),
}


class Metrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[str, dict[tuple, float]] = {name: {} for name in METRICS}
        self.hist: dict[tuple, list] = {}

    def add(self, name: str, value: float = 1, **labels: str) -> None:
        with self.lock:
            key = tuple(sorted(labels.items()))
            self.values[name][key] = self.values[name].get(key, 0) + value

    def set(self, name: str, value: float, **labels: str) -> None:
        with self.lock:
            self.values[name][tuple(sorted(labels.items()))] = value

    def observe(self, seconds: float, **labels: str) -> None:
        with self.lock:
            entry = self.hist.setdefault(tuple(sorted(labels.items())), [[0] * len(BUCKETS), 0.0, 0])
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    entry[0][i] += 1
            entry[1] += seconds
            entry[2] += 1

    @staticmethod
    def _labels(pairs: tuple) -> str:
        esc = lambda v: str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")  # noqa: E731
        return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in pairs) + "}" if pairs else ""

    def render(self, extra: dict[str, dict[tuple, float]]) -> str:
        out = []
        with self.lock:
            for name, (kind, help_text) in METRICS.items():
                out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
                if kind == "histogram":
                    for key, (counts, total, count) in sorted(self.hist.items()):
                        for bound, n in zip(BUCKETS, counts, strict=True):
                            out.append(f"{name}_bucket{self._labels((*key, ('le', go_float(bound))))} {n}")
                        out.append(f"{name}_bucket{self._labels((*key, ('le', '+Inf')))} {count}")
                        out += [
                            f"{name}_sum{self._labels(key)} {go_float(total)}",
                            f"{name}_count{self._labels(key)} {count}",
                        ]
                    continue
                for key, value in sorted({**self.values[name], **extra.get(name, {})}.items()):
                    out.append(f"{name}{self._labels(key)} {go_float(value)}")
        return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- storage


class Store:
    """Entries in one sqlite table; one connection shared under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30, isolation_level=None)
        with self.lock:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY, stream TEXT NOT NULL, ts INTEGER NOT NULL,"
                " line TEXT NOT NULL, metadata TEXT NOT NULL DEFAULT '{}', marked_at REAL)"
            )
            self.conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS entries_stream_ts ON entries (stream, ts, line)")
            self.conn.execute("CREATE INDEX IF NOT EXISTS entries_ts ON entries (ts)")

    def insert(self, rows: list[tuple[str, int, str, str]]) -> None:
        with self.lock:
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "INSERT OR IGNORE INTO entries (stream, ts, line, metadata) VALUES (?, ?, ?, ?)", rows
            )
            self.conn.execute("COMMIT")

    def streams(self, start: int, end: int) -> list[str]:
        """Streams with entries in [start, end)."""
        with self.lock:
            sql = "SELECT DISTINCT stream FROM entries WHERE ts >= ? AND ts < ? AND marked_at IS NULL"
            return [row[0] for row in self.conn.execute(sql, (start, end))]

    def entries(self, streams: list[str], start: int, end: int, backward: bool):
        """(stream, ts, line, metadata) in [start, end), newest first when backward, in batches."""
        if not streams:
            return
        marks = ",".join("?" * len(streams))
        order, cmp = ("DESC", "<") if backward else ("ASC", ">")
        last: tuple[int, int] | None = None
        while True:
            where = f"stream IN ({marks}) AND ts >= ? AND ts < ? AND marked_at IS NULL"
            args: list = [*streams, start, end]
            if last is not None:
                where += f" AND (ts {cmp} ? OR (ts = ? AND id {cmp} ?))"
                args += [last[0], last[0], last[1]]
            sql = f"SELECT id, stream, ts, line, metadata FROM entries WHERE {where}"
            sql += f" ORDER BY ts {order}, id {order} LIMIT 2000"
            with self.lock:
                rows = self.conn.execute(sql, args).fetchall()
            yield from (row[1:] for row in rows)
            if len(rows) < 2000:
                return
            last = (rows[-1][2], rows[-1][0])

    def apply_retention(self, cutoff_ns: int, delay_s: float) -> int:
        """Mark entries older than cutoff (gone from queries) and delete those marked delay_s ago or earlier."""
        with self.lock:
            now = time.time()
            self.conn.execute("UPDATE entries SET marked_at = ? WHERE ts < ? AND marked_at IS NULL", (now, cutoff_ns))
            return self.conn.execute("DELETE FROM entries WHERE marked_at <= ?", (now - delay_s,)).rowcount

    def checkpoint(self) -> None:
        with self.lock:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        with self.lock:
            self.conn.close()


# --------------------------------------------------------------------------- LogQL


class QueryError(Exception):
    """A 400 answer: the message is the body."""


_TOKEN_RE = re.compile(
    r"""(?P<ws>\s+)|(?P<str>"(?:[^"\\\n]|\\.)*"|`[^`]*`)
    |(?P<dur>(?:\d+(?:\.\d+)?(?:ms|ns|us|µs|s|m|h|d|w|y)(?![A-Za-z_]))+)
    |(?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<ident>[a-zA-Z_][a-zA-Z0-9_]*)
    |(?P<op>\|=|\|~|!=|!~|=~|==|>=|<=|[|=><{}()\[\],])""",
    re.X,
)
RANGE_FUNCS = ("count_over_time", "rate", "bytes_over_time", "bytes_rate")
VECTOR_AGGS = ("sum", "count", "avg", "min", "max")
LINE_OPS = ("|=", "!=", "|~", "!~")
EMPTY_COMPAT = (
    "parse error : queries require at least one regexp or equality matcher that does not have an empty-compatible "
    "value. "
    'For instance, app=~".*" does not meet this requirement, but app=~".+" will'
)


def unquote(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1]
    try:
        return json.loads(
            re.sub(
                r"\\([abfv'])",
                lambda m: {"a": "\\u0007", "b": "\\b", "f": "\\f", "v": "\\u000b", "'": "'"}[m.group(1)],
                text,
            )
        )
    except ValueError:
        raise QueryError(f"parse error : invalid string literal {text}") from None


class Tok:
    __slots__ = ("col", "kind", "line", "text")

    def __init__(self, kind: str, text: str, line: int, col: int) -> None:
        self.kind, self.text, self.line, self.col = kind, text, line, col

    def is_op(self, *ops: str) -> bool:
        return self.kind == "op" and self.text in ops

    def describe(self) -> str:
        names = {"str": "STRING", "dur": "DURATION", "num": "NUMBER", "ident": "IDENTIFIER", "eof": "$end"}
        return names.get(self.kind, self.text)


def tokenize(text: str) -> list[Tok]:
    toks, pos, line, line_start = [], 0, 1, 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        col = pos - line_start + 1
        if match is None:
            char = text[pos]
            what = "literal not terminated" if char in '"`' else f"syntax error: unexpected character {char!r}"
            raise QueryError(f"parse error at line {line}, col {col}: {what}")
        if match.lastgroup != "ws":
            toks.append(Tok(match.lastgroup, match.group(), line, col))
        for offset in [m.start() for m in re.finditer("\n", match.group())]:
            line, line_start = line + 1, pos + offset + 1
        pos = match.end()
    toks.append(Tok("eof", "", line, len(text) - line_start + 1))
    return toks


class Matcher:
    def __init__(self, name: str, op: str, value: str) -> None:
        self.name, self.op, self.value = name, op, value
        self.regex = re.compile(value, re.S) if "~" in op else None

    def matches(self, labels: dict) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = self.regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found


class LogExpr:
    def __init__(self, matchers: list[Matcher], stages: list[tuple]) -> None:
        self.matchers, self.stages = matchers, stages

    def selects(self, labels: dict) -> bool:
        return all(m.matches(labels) for m in self.matchers)


class RangeAgg:
    def __init__(self, func: str, log: LogExpr, range_ns: int) -> None:
        self.func, self.log, self.range_ns = func, log, range_ns


class VectorAgg:
    def __init__(self, op: str, grouping: tuple[str, list[str]] | None, inner: RangeAgg | VectorAgg) -> None:
        self.op, self.grouping, self.inner = op, grouping, inner

    @property
    def log(self) -> LogExpr:
        return self.inner.log


class Parser:
    def __init__(self, text: str) -> None:
        self.toks, self.i = tokenize(text), 0

    def peek(self) -> Tok:
        return self.toks[self.i]

    def next(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def fail(self, tok: Tok, extra: str = "") -> QueryError:
        return QueryError(
            f"parse error at line {tok.line}, col {tok.col}: syntax error: unexpected {tok.describe()}{extra}"
        )

    def expect(self, kind: str, *ops: str) -> Tok:
        tok = self.next()
        if tok.kind != kind or (ops and tok.text not in ops):
            raise self.fail(tok, f", expecting {' or '.join(ops) if ops else Tok(kind, '', 0, 0).describe()}")
        return tok

    def unsupported(self, tok: Tok, what: str) -> QueryError:
        return QueryError(f"parse error at line {tok.line}, col {tok.col}: {what} is {NOT_IMPLEMENTED}")

    def parse(self) -> LogExpr | RangeAgg | VectorAgg:
        expr = self.parse_log() if self.peek().is_op("{") else self.parse_metric()
        if self.peek().kind != "eof":
            tok = self.peek()
            if tok.kind == "op" and tok.text in ("+", "-", "*", "/", "=="):
                raise self.unsupported(tok, "binary operations are")
            raise self.fail(tok)
        return expr

    def parse_selector(self) -> list[Matcher]:
        self.expect("op", "{")
        matchers = []
        while True:
            name = self.expect("ident")
            op = self.expect("op", "=", "!=", "=~", "!~")
            value = unquote(self.expect("str").text)
            try:
                matchers.append(Matcher(name.text, op.text, value))
            except re.error as exc:
                raise QueryError(
                    f"parse error at line {name.line}, col {name.col}: error parsing regexp: {exc}"
                ) from None
            if self.next_is("}"):
                break
            self.expect("op", ",")
        if all(m.matches({}) for m in matchers):
            raise QueryError(EMPTY_COMPAT)
        return matchers

    def next_is(self, op: str) -> bool:
        if self.peek().is_op(op):
            self.i += 1
            return True
        return False

    def parse_log(self) -> LogExpr:
        return LogExpr(self.parse_selector(), self.parse_stages([]))

    def parse_stages(self, stages: list[tuple]) -> list[tuple]:
        while True:
            tok = self.peek()
            if tok.is_op(*LINE_OPS):
                self.next()
                value = unquote(self.expect("str").text)
                try:
                    stages.append(("line", tok.text, value, re.compile(value) if "~" in tok.text else None))
                except re.error as exc:
                    raise QueryError(
                        f"parse error at line {tok.line}, col {tok.col}: error parsing regexp: {exc}"
                    ) from None
                if self.peek().kind == "ident" and self.peek().text == "or":
                    raise self.unsupported(self.peek(), "or in line filters")
            elif tok.is_op("|"):
                self.next()
                stages.append(self.parse_stage())
            else:
                return stages

    def parse_stage(self) -> tuple:
        tok = self.expect("ident")
        if tok.text in ("json", "logfmt"):
            if self.peek().kind in ("ident", "str") or self.peek().is_op("-"):
                raise self.unsupported(self.peek(), f"{tok.text} with parameters")
            return (tok.text,)
        if tok.text == "line_format":
            template = unquote(self.expect("str").text)
            parts = re.split(r"(\{\{.*?\}\})", template, flags=re.S)
            for i in range(1, len(parts), 2):
                field = re.fullmatch(r"\{\{-?\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*-?\}\}", parts[i], re.S)
                if field is None:
                    raise self.unsupported(tok, f"the template action {parts[i]} (only {{{{.label}}}})")
                parts[i] = field.group(1)
            return ("line_format", parts)
        if tok.text in ("pattern", "regexp", "unpack", "label_format", "drop", "keep", "decolorize", "unwrap", "limit"):
            raise self.unsupported(tok, f"| {tok.text}")
        op = self.expect("op", "=", "!=", "=~", "!~", ">", ">=", "<", "<=", "==")
        value = self.next()
        if value.kind == "str" and op.text in ("=", "!=", "=~", "!~"):
            matcher = Matcher(tok.text, op.text, unquote(value.text))
            stage: tuple = ("label", tok.text, matcher)
        elif value.kind == "num":
            stage = ("number", tok.text, op.text, float(value.text))
        elif value.kind in ("dur", "ident"):
            raise self.unsupported(value, "a duration or bytes label filter")
        else:
            raise self.fail(value, ", expecting STRING or NUMBER")
        if self.peek().is_op(",") or (self.peek().kind == "ident" and self.peek().text in ("and", "or")):
            raise self.unsupported(self.peek(), "combined label filters (use | per filter)")
        return stage

    def parse_range_duration(self) -> int:
        self.expect("op", "[")
        tok = self.expect("dur")
        self.expect("op", "]")
        try:
            return parse_any_duration(tok.text)
        except ValueError as exc:
            raise QueryError(f"parse error at line {tok.line}, col {tok.col}: {exc}") from None

    def parse_metric(self) -> RangeAgg | VectorAgg:
        tok = self.next()
        if tok.kind == "ident" and tok.text in RANGE_FUNCS:
            self.expect("op", "(")
            log = self.parse_log()
            range_ns = self.parse_range_duration()
            if self.peek().kind == "ident" and self.peek().text == "offset":
                raise self.unsupported(self.peek(), "offset")
            if self.peek().is_op("|", *LINE_OPS):  # count_over_time({...}[5m] | json)
                log = LogExpr(log.matchers, self.parse_stages(list(log.stages)))
            self.expect("op", ")")
            return RangeAgg(tok.text, log, range_ns)
        if tok.kind == "ident" and tok.text in VECTOR_AGGS:
            grouping = self.parse_grouping()
            self.expect("op", "(")
            inner = self.parse_metric()
            self.expect("op", ")")
            grouping = grouping or self.parse_grouping()
            return VectorAgg(tok.text, grouping, inner)
        if tok.kind == "ident" and (
            tok.text.endswith("_over_time") or tok.text in ("topk", "bottomk", "stddev", "absent")
        ):
            raise self.unsupported(tok, tok.text)
        if tok.is_op("("):
            raise self.unsupported(tok, "a parenthesised expression")
        raise self.fail(tok)

    def parse_grouping(self) -> tuple[str, list[str]] | None:
        if self.peek().kind != "ident" or self.peek().text not in ("by", "without"):
            return None
        mode = self.next().text
        self.expect("op", "(")
        names: list[str] = []
        while not self.next_is(")"):
            if names:
                self.expect("op", ",")
            names.append(self.expect("ident").text)
        return mode, names


def parse_query(text: str) -> LogExpr | RangeAgg | VectorAgg:
    if not text.strip():
        raise QueryError("parse error at line 1, col 1: syntax error: unexpected $end")
    return Parser(text).parse()


def sanitize_key(key: str) -> str:
    key = re.sub(r"[^a-zA-Z0-9_]", "_", key)
    return "_" + key if key[:1].isdigit() else key


class _Raw(str):
    """A JSON number kept as written."""


def _flatten(obj: dict, prefix: str, out: dict) -> None:
    for key, value in obj.items():
        name = prefix + sanitize_key(key)
        if isinstance(value, dict):
            _flatten(value, name + "_", out)
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, str):
            out[name] = str(value)


def parse_logfmt(line: str) -> dict[str, str]:
    out, i, n = {}, 0, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        start = i
        while i < n and line[i] not in " =":
            if line[i] == '"':
                raise ValueError(f"unexpected '\"' at column {i + 1}")
            i += 1
        key = line[start:i]
        if not key:
            if i < n and line[i] == "=":
                raise ValueError(f"unexpected '=' at column {i + 1}")
            continue
        value = ""
        if i < n and line[i] == "=":
            i += 1
            if i < n and line[i] == '"':
                end, escaped = i + 1, False
                while end < n and (line[end] != '"' or escaped):
                    escaped = line[end] == "\\" and not escaped
                    end += 1
                if end >= n:
                    raise ValueError("unterminated quoted value")
                value = json.loads(line[i : end + 1])
                i = end + 1
            else:
                start = i
                while i < n and line[i] != " ":
                    i += 1
                value = line[start:i]
        out[sanitize_key(key)] = value
    return out


def run_pipeline(stages: list[tuple], base: dict, line: str) -> tuple[dict, str] | None:
    """The labels and line after the pipeline, None when a filter drops the entry."""
    labels = dict(base)
    for stage in stages:
        kind = stage[0]
        if kind == "line":
            _, op, value, regex = stage
            found = (regex.search(line) is not None) if regex else value in line
            if found != (op in ("|=", "|~")):
                return None
        elif kind in ("json", "logfmt"):
            try:
                if kind == "json":
                    obj = json.loads(line, parse_float=_Raw, parse_int=_Raw, parse_constant=_Raw)
                    if not isinstance(obj, dict):
                        raise ValueError("the line is not a JSON object")
                    parsed: dict = {}
                    _flatten(obj, "", parsed)
                else:
                    parsed = parse_logfmt(line)
            except ValueError as exc:
                labels["__error__"] = "JSONParserErr" if kind == "json" else "LogfmtParserErr"
                labels["__error_details__"] = str(exc)
                continue
            for key, value in parsed.items():
                labels[key + "_extracted" if key in base else key] = value
        elif kind == "label":  # string matchers filter entries with errors too, as in Loki
            if not stage[2].matches(labels):
                return None
        elif kind == "number":
            _, name, op, want = stage
            if "__error__" in labels:
                continue
            if name not in labels or labels[name] == "":
                return None
            try:
                got = float(labels[name])
            except ValueError:
                labels["__error__"], labels["__error_details__"] = (
                    "LabelFilterErr",
                    f"strconv.ParseFloat: parsing {labels[name]!r}: invalid syntax",
                )
                continue
            ok = {
                ">": got > want,
                ">=": got >= want,
                "<": got < want,
                "<=": got <= want,
                "==": got == want,
                "=": got == want,
                "!=": got != want,
            }[op]
            if not ok:
                return None
        elif kind == "line_format":
            parts = stage[1]
            line = "".join(part if i % 2 == 0 else labels.get(part, "") for i, part in enumerate(parts))
    return {k: v for k, v in sorted(labels.items()) if v != ""}, line


# --------------------------------------------------------------------------- query evaluation


def seconds(ns: int) -> int | float:
    return ns // SEC if ns % SEC == 0 else round(ns / SEC, 3)


class Engine:
    def __init__(self, store: Store, limits: dict) -> None:
        self.store, self.limits = store, limits
        self.lines = self.bytes = 0

    def _rows(self, log: LogExpr, start: int, end: int, backward: bool):
        """(labels, ts, line) after the pipeline for entries in [start, end)."""
        cache: dict[str, dict] = {}
        streams = [s for s in self.store.streams(start, end) if log.selects(cache.setdefault(s, json.loads(s)))]
        for stream, ts, line, metadata in self.store.entries(streams, start, end, backward):
            self.lines, self.bytes = self.lines + 1, self.bytes + len(line.encode())
            out = run_pipeline(log.stages, {**cache[stream], **json.loads(metadata)}, line)
            if out is not None:
                yield out[0], ts, out[1]

    def logs(self, log: LogExpr, start: int, end: int, limit: int, backward: bool) -> list[dict]:
        streams: dict[str, dict] = {}
        count = 0
        for labels, ts, line in self._rows(log, start, end, backward):
            key = labels_string(labels)
            streams.setdefault(key, {"stream": labels, "values": []})["values"].append([str(ts), line])
            count += 1
            if count >= limit:
                break
        return [streams[k] for k in sorted(streams)]

    def series(
        self, expr: RangeAgg | VectorAgg, start: int, end: int, step: int
    ) -> dict[str, tuple[dict, dict[int, float]]]:
        """{labels string: (labels, {step ts: value})} evaluated at start, start+step, ..., <= end."""
        if isinstance(expr, VectorAgg):
            inner = self.series(expr.inner, start, end, step)
            groups: dict[str, tuple[dict, dict[int, list[float]]]] = {}
            for labels, points in inner.values():
                if expr.grouping is None:
                    kept = {}
                elif expr.grouping[0] == "by":
                    kept = {k: v for k, v in labels.items() if k in expr.grouping[1]}
                else:
                    kept = {k: v for k, v in labels.items() if k not in expr.grouping[1]}
                group = groups.setdefault(labels_string(kept), (kept, {}))
                for t, v in points.items():
                    group[1].setdefault(t, []).append(v)
            ops = {"sum": sum, "count": len, "min": min, "max": max, "avg": lambda vs: sum(vs) / len(vs)}
            return {
                k: (lbls, {t: float(ops[expr.op](vs)) for t, vs in pts.items()}) for k, (lbls, pts) in groups.items()
            }
        samples: dict[str, tuple[dict, list[int], list[int]]] = {}
        for labels, ts, line in self._rows(expr.log, start - expr.range_ns + 1, end + 1, False):
            entry = samples.setdefault(labels_string(labels), (labels, [], []))
            entry[1].append(ts)
            entry[2].append(entry[2][-1] + len(line.encode()) if entry[2] else len(line.encode()))
        out = {}
        for key, (labels, stamps, sizes) in samples.items():
            if "__error__" in labels:
                err = labels["__error__"]
                raise QueryError(
                    f"pipeline error: '{err}' for series: '{labels_string(labels)}'.\n"
                    f'Use a label filter to intentionally skip this error. (e.g | __error__!="{err}").\n'
                    'To skip all potential errors you can match empty errors.(e.g __error__="")'
                )
            points = {}
            for t in range(start, end + 1, step):
                lo, hi = bisect.bisect_right(stamps, t - expr.range_ns), bisect.bisect_right(stamps, t)
                if hi > lo:
                    count = hi - lo
                    size = sizes[hi - 1] - (sizes[lo - 1] if lo else 0)
                    value = {"count_over_time": count, "bytes_over_time": size}.get(expr.func)
                    if value is None:
                        value = (count if expr.func == "rate" else size) / (expr.range_ns / SEC)
                    points[t] = float(value)
            if points:
                out[key] = (labels, points)
        return out

    def check_series(self, result: dict) -> None:
        limit = self.limits["max_query_series"]
        if limit and len(result) > limit:
            raise QueryError(
                f"maximum number of series ({limit}) reached for a single query; consider reducing query cardinality "
                "by adding more specific stream selectors, reducing the time range, or aggregating results with "
                "functions like sum(), count() or topk()"
            )

    def stats(self, started: float, returned: int) -> dict:
        took = time.monotonic() - started
        summary = {
            "bytesProcessedPerSecond": int(self.bytes / took) if took else 0,
            "linesProcessedPerSecond": int(self.lines / took) if took else 0,
            "totalBytesProcessed": self.bytes,
            "totalLinesProcessed": self.lines,
            "execTime": took,
            "queueTime": 0,
            "subqueries": 0,
            "totalEntriesReturned": returned,
            "splits": 0,
            "shards": 0,
        }
        zero = dict.fromkeys(("totalChunksRef", "totalChunksDownloaded", "chunksDownloadTime", "totalDuplicates"), 0)
        return {
            "summary": summary,
            "querier": {"store": zero},
            "ingester": {"totalReached": 1, "totalLinesSent": self.lines},
        }


def parse_time(value: str, default: int) -> int:
    """A query time in ns (loghttp's rules)."""
    if not value:
        return default
    if "." in value:
        try:
            whole, frac = divmod(float(value), 1)
            return int(whole) * SEC + round(frac * 1000) * 10**6
        except ValueError:
            pass
    if re.fullmatch(r"-?\d+", value):
        return int(value) * (SEC if len(value) <= 10 else 1)
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", value)
    if match:
        base = datetime.strptime(match.group(1) + match.group(3).replace("Z", "+00:00"), "%Y-%m-%dT%H:%M:%S%z")
        return int(base.timestamp()) * SEC + int((match.group(2) or "0").ljust(9, "0"))
    raise QueryError(f'strconv.ParseInt: parsing "{value}": invalid syntax')


# --------------------------------------------------------------------------- ingestion

LEVEL_FIELDS = ("level", "LEVEL", "Level", "Severity", "severity", "SEVERITY", "lvl", "LVL", "Lvl")
LEVEL_WORDS = (("trace", "trace"), ("debug", "debug"), ("fatal", "fatal"), ("critical", "critical"), ("error", "error"))
LEVEL_WORDS += (("err", "error"), ("warning", "warn"), ("warn", "warn"), ("info", "info"))
LEVEL_ALIASES = {"trace": "trace", "trc": "trace", "debug": "debug", "dbg": "debug", "info": "info", "inf": "info"}
LEVEL_ALIASES |= {
    "information": "info",
    "warn": "warn",
    "wrn": "warn",
    "warning": "warn",
    "error": "error",
    "err": "error",
}
LEVEL_ALIASES |= {"critical": "critical", "fatal": "fatal"}
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


REASONS = {  # discard reason: Loki's message (pkg/validation)
    "missing_labels": "error at least one label pair is required per stream",
    "invalid_labels": "Error parsing labels '{s}' with error: invalid label name {x!r} "
    "(names match [a-zA-Z_][a-zA-Z0-9_]* and do not start with __)",
    "max_label_names_per_series": "entry for stream '{s}' has {x} label names; limit {y}",
    "label_name_too_long": "stream '{s}' has label name too long: '{x}'",
    "label_value_too_long": "stream '{s}' has label value too long: '{x}'",
    "greater_than_max_sample_age": "entry for stream '{s}' has timestamp too old: {x}, "
    "oldest acceptable timestamp is: {y}",
    "too_far_in_future": "entry for stream '{s}' has timestamp too new: {x}",
    "line_too_long": "Max entry size '{y}' bytes exceeded for stream '{s}' while adding an entry with length "
    "'{x}' bytes",
    "disallowed_structured_metadata": "stream '{s}' includes structured metadata, but this feature is disallowed. "
    "Please see `limits_config.allow_structured_metadata` or contact your Loki administrator to enable it.",
    "structured_metadata_too_large": "stream '{s}' has structured metadata too large: '{x}' bytes, limit: '65536' "
    "bytes. Please see `limits_config.max_structured_metadata_size` or contact your Loki administrator to increase it.",
    "structured_metadata_too_many": "stream '{s}' has too many structured metadata labels: '{x}', limit: '128'. Please "
    "see `limits_config.max_structured_metadata_entries_count` or contact your Loki administrator to increase it.",
    "rate_limited": "Ingestion rate limit exceeded for user {s} (limit: {x} bytes/sec) while attempting to ingest "
    "'{y}' lines totaling '{z}' bytes, reduce log volume or contact your Loki administrator to see if the limit can "
    "be increased",
}


class PushError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def detect_level(labels: dict, metadata: dict, line: str) -> str:
    """Loki 3's detected_level (discover_log_levels), as its distributor documents and does it."""
    for source in (labels, metadata):
        for name in LEVEL_FIELDS:
            if name in source:
                return LEVEL_ALIASES.get(source[name].lower(), source[name])
    value = None
    stripped = line.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        try:
            stack = [json.loads(stripped)]
            while stack and value is None:
                obj = stack.pop(0)
                for key, item in obj.items() if isinstance(obj, dict) else ():
                    if isinstance(item, str) and key in LEVEL_FIELDS:
                        value = item
                        break
                    if isinstance(item, dict):
                        stack.append(item)
        except ValueError:
            pass
    elif "=" in line:
        try:
            parsed = {k.lower(): v for k, v in reversed(parse_logfmt(line).items())}
            value = next((parsed[f.lower()] for f in LEVEL_FIELDS if f.lower() in parsed), None)
        except ValueError:
            pass
    if value is not None and value.lower() in LEVEL_ALIASES:
        return LEVEL_ALIASES[value.lower()]
    lower = line.lower()
    for word, level in LEVEL_WORDS:
        if re.search(rf"(?<![a-z0-9_]){word}(?![a-z0-9_])", lower):
            return level
    return "unknown"


class Ingester:
    def __init__(self, cfg: dict, store: Store, metrics: Metrics) -> None:
        self.limits, self.store, self.metrics = cfg["limits_config"], store, metrics
        self.idle = cfg["ingester"]["chunk_idle_period"] / SEC
        self.lock = threading.Lock()
        self.rate = self.limits["ingestion_rate_mb"] * 1024 * 1024
        self.burst = self.limits["ingestion_burst_size_mb"] * 1024 * 1024
        self.tokens, self.refilled = self.burst, time.monotonic()
        self.memory: dict[str, float] = {}

    def discard(self, reason: str, lines: int, size: int) -> None:
        self.metrics.add("loki_discarded_samples_total", lines, reason=reason, tenant=TENANT)
        self.metrics.add("loki_discarded_bytes_total", size, reason=reason, tenant=TENANT)

    def memory_streams(self) -> int:
        now = time.monotonic()
        with self.lock:
            return sum(1 for last in self.memory.values() if now - last < self.idle)

    @staticmethod
    def decode(body: bytes) -> list[tuple[dict, list[tuple[int, str, dict]]]]:
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise PushError(400, f"loghttp.PushRequest: {exc}") from None
        streams = (doc.get("streams") or []) if isinstance(doc, dict) else None
        if not isinstance(streams, list):
            raise PushError(400, 'loghttp.PushRequest: "streams" must be a list of streams')
        out = []
        for s in streams:
            labels, values = (s.get("stream"), s.get("values")) if isinstance(s, dict) else (None, None)
            if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
                raise PushError(400, 'loghttp.PushRequest: "stream" must be an object of string label values')
            entries = []
            for value in values or []:
                if not isinstance(value, list) or len(value) not in (2, 3) or not isinstance(value[1], str):
                    shape = '["<unix epoch in nanoseconds>", "<log line>"(, {structured metadata})]'
                    raise PushError(400, f"loghttp.PushRequest: a value must be {shape}")
                if not isinstance(value[0], str) or not re.fullmatch(r"-?\d+", value[0]):
                    got = json.dumps(value[0])
                    raise PushError(
                        400, f"loghttp.PushRequest: the timestamp must be a string of nanoseconds, got {got}"
                    )
                meta = value[2] if len(value) == 3 else {}
                if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
                    raise PushError(400, "loghttp.PushRequest: structured metadata must be an object of string values")
                entries.append((int(value[0]), value[1], meta))
            out.append((labels, entries))
        return out

    def stream_problem(self, labels: dict, shown: str) -> tuple[str, dict] | None:
        lim = self.limits
        if not labels:
            return "missing_labels", {}
        bad = next((k for k in labels if not LABEL_NAME.fullmatch(k) or k.startswith("__")), None)
        if bad is not None:
            return "invalid_labels", {"x": bad}
        if "service_name" not in labels and lim["discover_service_name"]:
            found = (labels[n] for n in lim["discover_service_name"] if n in labels)
            labels["service_name"] = next(found, "unknown_service")
        count = len(labels) - (1 if "service_name" in labels else 0)
        if count > lim["max_label_names_per_series"]:
            return "max_label_names_per_series", {"x": count, "y": lim["max_label_names_per_series"]}
        for name, value in labels.items():
            if len(name.encode()) > lim["max_label_name_length"]:
                return "label_name_too_long", {"x": name}
            if len(value.encode()) > lim["max_label_value_length"]:
                return "label_value_too_long", {"x": value}
        return None

    def entry_problem(self, ts: int, size: int, meta: dict, meta_size: int, now: int) -> tuple[str, dict] | None:
        lim = self.limits
        if lim["reject_old_samples"] and ts < now - lim["reject_old_samples_max_age"]:
            return "greater_than_max_sample_age", {
                "x": rfc3339(ts),
                "y": rfc3339(now - lim["reject_old_samples_max_age"]),
            }
        if ts > now + 600 * SEC:  # creation_grace_period
            return "too_far_in_future", {"x": rfc3339(ts)}
        if lim["max_line_size"] and size > lim["max_line_size"]:
            return "line_too_long", {"x": size, "y": lim["max_line_size"]}
        if meta and not lim["allow_structured_metadata"]:
            return "disallowed_structured_metadata", {}
        if meta_size > 64 * 1024:
            return "structured_metadata_too_large", {"x": meta_size}
        return ("structured_metadata_too_many", {"x": len(meta)}) if len(meta) > 128 else None

    def push(self, body: bytes) -> str | None:
        """Validate and store; the last validation error (a 400), None when all entries were accepted."""
        lim, now = self.limits, time.time_ns()
        error, rows = None, []
        for pushed, entries in self.decode(body):
            labels = {k: v for k, v in pushed.items() if v != ""}
            shown = labels_string(labels)
            problem = self.stream_problem(labels, shown)
            if problem is not None:
                self.discard(problem[0], len(entries), sum(len(e[1].encode()) for e in entries))
                error = REASONS[problem[0]].format(s=shown, **problem[1])
                continue
            stream = json.dumps(labels, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            for ts, line, pushed_meta in entries:
                size = len(line.encode())
                meta_size = sum(len(k.encode()) + len(v.encode()) for k, v in pushed_meta.items())
                problem = self.entry_problem(ts, size, pushed_meta, meta_size, now)
                if problem is not None:
                    self.discard(problem[0], 1, size)
                    error = REASONS[problem[0]].format(s=shown, **problem[1])
                    continue
                meta = dict(pushed_meta)
                if lim["allow_structured_metadata"] and lim["discover_log_levels"]:
                    level = meta.get("detected_level")
                    meta["detected_level"] = (
                        LEVEL_ALIASES.get(level.lower(), level) if level else detect_level(labels, meta, line)
                    )
                rows.append((stream, ts, line, json.dumps(meta, sort_keys=True, ensure_ascii=False), size + meta_size))
        if not rows:
            return error
        total = sum(r[4] for r in rows)
        with self.lock:
            clock = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (clock - self.refilled) * self.rate)
            self.refilled = clock
            allowed = total <= self.tokens
            self.tokens -= total if allowed else 0
        if not allowed:
            self.discard("rate_limited", len(rows), sum(len(r[2].encode()) for r in rows))
            raise PushError(429, REASONS["rate_limited"].format(s=TENANT, x=int(self.rate), y=len(rows), z=total))
        self.store.insert([r[:4] for r in rows])
        self.metrics.add("loki_distributor_lines_received_total", len(rows), tenant=TENANT)
        self.metrics.add("loki_distributor_bytes_received_total", total, tenant=TENANT)
        with self.lock:
            for stream in {r[0] for r in rows}:
                if time.monotonic() - self.memory.get(stream, -math.inf) >= self.idle:
                    self.metrics.add("loki_ingester_streams_created_total", tenant=TENANT)
                self.memory[stream] = time.monotonic()
        return error


# --------------------------------------------------------------------------- HTTP API


class App:
    def __init__(self, cfg: dict, log: Log) -> None:
        self.cfg, self.log, self.metrics = cfg, log, Metrics()
        self.store: Store | None = None
        self.ingester: Ingester | None = None
        self.ready_since: float | None = None
        self.started = time.time()
        self.metrics.set(
            "loki_build_info",
            1,
            branch="standin",
            goarch={"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine),
            goos="linux",
            goversion="none (python stand-in)",
            revision="standin",
            tags="standin",
            version=standin_version(),
        )
        self.metrics.set("process_start_time_seconds", self.started)
        self.metrics.set("loki_compactor_apply_retention_last_successful_run_timestamp_seconds", 0)
        self.metrics.set("loki_boltdb_shipper_compact_tables_operation_last_successful_run_timestamp_seconds", 0)

    def open(self, path: Path) -> None:
        self.store = Store(path)
        self.ingester = Ingester(self.cfg, self.store, self.metrics)
        self.ready_since = time.monotonic()

    def compactor(self, stop: threading.Event) -> None:
        comp, limits = self.cfg["compactor"], self.cfg["limits_config"]
        interval = max(comp["compaction_interval"] / SEC, 0.01)
        apply_every = interval + min(600.0, interval / 2)
        next_compact, next_apply = time.monotonic() + interval, time.monotonic() + apply_every
        while not stop.wait(
            max(0.0, min(next_compact, next_apply if comp["retention_enabled"] else math.inf) - time.monotonic())
        ):
            now = time.monotonic()
            if now >= next_compact and self.store is not None:
                self.store.checkpoint()
                self.metrics.add("loki_boltdb_shipper_compact_tables_operation_total", status="success")
                self.metrics.set(
                    "loki_boltdb_shipper_compact_tables_operation_last_successful_run_timestamp_seconds", time.time()
                )
                next_compact = now + interval
            if comp["retention_enabled"] and now >= next_apply and self.store is not None:
                began = time.monotonic()
                try:
                    # retention_period 0 disables retention: nothing is older than "forever".
                    cutoff = time.time_ns() - limits["retention_period"] if limits["retention_period"] else -(2**62)
                    deleted = self.store.apply_retention(cutoff, comp["retention_delete_delay"] / SEC)
                except sqlite3.Error as exc:
                    self.metrics.add("loki_compactor_apply_retention_operation_total", status="failure")
                    self.log.log("error", "failed to apply retention", err=str(exc))
                else:
                    self.metrics.add("loki_compactor_apply_retention_operation_total", status="success")
                    self.metrics.add("loki_standin_retention_deleted_entries_total", deleted)
                    self.metrics.set(
                        "loki_compactor_apply_retention_operation_duration_seconds", time.monotonic() - began
                    )
                    self.metrics.set(
                        "loki_compactor_apply_retention_last_successful_run_timestamp_seconds", time.time()
                    )
                    self.log.log(
                        "info",
                        "retention applied",
                        deleted_entries=deleted,
                        retention_period=format_prom_duration(limits["retention_period"]),
                    )
                next_apply = now + apply_every


ROUTES = (
    ("/ready", "ready", ("GET",)),
    ("/metrics", "metrics", ("GET",)),
    ("/config", "config", ("GET",)),
    ("/loki/api/v1/status/buildinfo", "loki_api_v1_status_buildinfo", ("GET",)),
    ("/loki/api/v1/push", "loki_api_v1_push", ("POST",)),
    ("/loki/api/v1/query_range", "loki_api_v1_query_range", ("GET", "POST")),
    ("/loki/api/v1/query", "loki_api_v1_query", ("GET", "POST")),
    ("/loki/api/v1/labels", "loki_api_v1_labels", ("GET", "POST")),
    ("/loki/api/v1/label/{name}/values", "loki_api_v1_label_name_values", ("GET", "POST")),
    ("/loki/api/v1/series", "loki_api_v1_series", ("GET", "POST")),
)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "loki-standin"

    @property
    def app(self) -> App:
        return self.server.app  # type: ignore[attr-defined]

    def log_message(self, fmt: str, *args: object) -> None:
        self.app.log.log("debug", "request", detail=fmt % args)

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_POST(self) -> None:
        self.dispatch("POST")

    def reply(self, status: int, body: bytes | str, ctype: str = "text/plain; charset=utf-8") -> None:
        data = body.encode() if isinstance(body, str) else body
        self.status = status
        # Observed before the body goes out, as Loki's middleware does: a client that
        # reads /metrics right after its push must see the push counted.
        self.observe()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Loki-Standin", STANDIN_TAG)
        self.end_headers()
        self.wfile.write(data)

    def reply_json(self, doc: object) -> None:
        self.reply(200, json.dumps(doc, separators=(",", ":"), ensure_ascii=False), "application/json; charset=UTF-8")

    def body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def observe(self) -> None:
        if not self.observed:
            self.observed = True
            self.app.metrics.observe(
                time.monotonic() - self.began,
                method=self.method,
                route=self.route,
                status_code=str(self.status),
                ws="false",
            )

    def dispatch(self, method: str) -> None:
        self.began, self.status, self.observed = time.monotonic(), 500, False
        url = urllib.parse.urlsplit(self.path)
        route, params = "other", {}
        for pattern, name, _methods in ROUTES:
            match = re.fullmatch(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(pattern)), url.path)
            if match:
                route, params = name, {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
                break
        self.method, self.route = method, route
        try:
            if route == "other":
                self.reply(404, "404 page not found\n")
            elif method not in dict((n, m) for _, n, m in ROUTES)[route]:
                self.reply(405, "")
            else:
                form = urllib.parse.parse_qs(url.query, keep_blank_values=True)
                if method == "POST" and route != "loki_api_v1_push":
                    if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
                        for key, values in urllib.parse.parse_qs(self.body().decode(), keep_blank_values=True).items():
                            form.setdefault(key, []).extend(values)
                getattr(self, "route_" + route)(form, params)
        except QueryError as exc:
            self.reply(400, f"{exc}\n")
        except PushError as exc:
            self.reply(exc.status, f"{exc}\n")
        except (ConnectionError, sqlite3.Error) as exc:
            self.app.log.log("error", "request failed", route=route, err=str(exc))
            if not isinstance(exc, ConnectionError):
                self.reply(500, f"{exc}\n")
        finally:
            self.observe()  # requests that ended without a reply

    # ----------------------------------------------------------------- status endpoints

    def route_ready(self, form: dict, params: dict) -> None:
        app = self.app
        need = app.cfg["ingester"]["lifecycler"]["min_ready_duration"]
        if app.ready_since is None:
            self.reply(503, "Some services are not Running:\nStarting: 1\n")
        elif (time.monotonic() - app.ready_since) * SEC < need:
            self.reply(503, f"Ingester not ready: waiting for {format_go_duration(need)} after being ready\n")
        else:
            self.reply(200, "ready\n")

    def route_metrics(self, form: dict, params: dict) -> None:
        app = self.app
        memory = app.ingester.memory_streams() if app.ingester else 0
        extra = {"loki_ingester_memory_streams": {(("tenant", TENANT),): memory}}
        self.reply(200, app.metrics.render(extra), "text/plain; version=0.0.4; charset=utf-8")

    def route_config(self, form: dict, params: dict) -> None:
        self.reply(200, config_yaml(self.app.cfg) + "\n", "text/plain; charset=utf-8")

    def route_loki_api_v1_status_buildinfo(self, form: dict, params: dict) -> None:
        self.reply_json(
            {
                "version": standin_version(),
                "revision": "standin",
                "branch": "standin",
                "buildUser": "tests/standins/loki (not Loki)",
                "buildDate": "",
                "goVersion": "none (python stand-in)",
            }
        )

    # ----------------------------------------------------------------- push

    def route_loki_api_v1_push(self, form: dict, params: dict) -> None:
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        body = self.body()
        if ctype != "application/json":
            raise PushError(
                415,
                f"Content-Type {ctype or '(none)'!r}: the Loki stand-in implements JSON push only "
                f"(Content-Type: application/json); Loki's protobuf push is {NOT_IMPLEMENTED}",
            )
        encoding = self.headers.get("Content-Encoding", "").strip().lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            elif encoding not in ("", "identity"):
                raise PushError(415, f"Content-Encoding {encoding!r} is not supported (gzip, deflate)")
        except (OSError, EOFError, zlib.error) as exc:
            raise PushError(400, f"{encoding}: {exc}") from None
        if self.app.ingester is None:
            raise PushError(503, "Ingester not ready: storage is still starting")
        error = self.app.ingester.push(body)
        if error:
            raise PushError(400, error)
        self.reply(204, b"")

    # ----------------------------------------------------------------- queries

    @staticmethod
    def one(form: dict, key: str) -> str:
        return (form.get(key) or [""])[0]

    def engine(self) -> Engine:
        if self.app.store is None:
            raise PushError(503, "Querier not ready: storage is still starting")
        return Engine(self.app.store, self.app.cfg["limits_config"])

    def bounds(self, form: dict, default_since: int) -> tuple[int, int]:
        now = time.time_ns()
        end = parse_time(self.one(form, "end"), now)
        since = self.one(form, "since")
        try:
            since_ns = parse_any_duration(since) if since else default_since
        except ValueError as exc:
            raise QueryError(str(exc)) from None
        start = parse_time(self.one(form, "start"), min(end, now) - since_ns)
        if end < start:
            raise QueryError("end timestamp must not be before or equal to start time")
        return start, end

    def limit_direction(self, form: dict) -> tuple[int, bool]:
        text, direction = self.one(form, "limit"), self.one(form, "direction")
        if text and not re.fullmatch(r"[+-]?\d+", text):
            raise QueryError(f'strconv.Atoi: parsing "{text}": invalid syntax')
        limit = int(text) if text else 100
        if limit <= 0:
            raise QueryError("limit must be a positive value")
        if direction and direction.lower() not in ("forward", "backward"):
            raise QueryError(f"invalid direction '{direction}'")
        return limit, direction.lower() != "forward"

    def check_entries_limit(self, limit: int) -> None:
        cap = self.app.cfg["limits_config"]["max_entries_limit_per_query"]
        if cap and limit > cap:
            raise QueryError(
                f"max entries limit per query exceeded, limit > max_entries_limit_per_query ({limit} > {cap})"
            )

    def route_loki_api_v1_query_range(self, form: dict, params: dict) -> None:
        began = time.monotonic()
        expr = parse_query(self.one(form, "query"))
        start, end = self.bounds(form, 3600 * SEC)
        limit, backward = self.limit_direction(form)
        cap = self.app.cfg["limits_config"]["max_query_length"]
        if cap and end - start > cap:
            raise QueryError(
                f"the query time range exceeds the limit (query length: {format_go_duration(end - start)}, "
                f"limit: {format_prom_duration(cap)})"
            )
        engine = self.engine()
        if isinstance(expr, LogExpr):
            self.check_entries_limit(limit)
            result = engine.logs(expr, start, end, limit, backward)
            returned = sum(len(s["values"]) for s in result)
            self.reply_json(
                {
                    "status": "success",
                    "data": {"resultType": "streams", "result": result, "stats": engine.stats(began, returned)},
                }
            )
            return
        text = self.one(form, "step")
        if not text:
            step = max(int((end - start) / SEC / 250), 1) * SEC
        elif re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?", text, re.I):
            step = int(float(text) * SEC)
        else:
            try:
                step = parse_prom_duration(text)
            except ValueError:
                raise QueryError(f'cannot parse "{text}" to a valid duration') from None
        if step <= 0:
            raise QueryError("zero or negative query resolution step widths are not accepted. Try a positive integer")
        if (end - start) // step > 11000:
            raise QueryError(
                "exceeded maximum resolution of 11,000 points per time series. "
                "Try increasing the value of the step parameter"
            )
        series = engine.series(expr, start, end, step)
        engine.check_series(series)
        result = [
            {"metric": lbls, "values": [[seconds(t), go_float(v)] for t, v in sorted(pts.items())]}
            for _, (lbls, pts) in sorted(series.items())
        ]
        self.reply_json(
            {"status": "success", "data": {"resultType": "matrix", "result": result, "stats": engine.stats(began, 0)}}
        )

    def route_loki_api_v1_query(self, form: dict, params: dict) -> None:
        began = time.monotonic()
        expr = parse_query(self.one(form, "query"))
        at = parse_time(self.one(form, "time"), time.time_ns())
        self.limit_direction(form)
        if isinstance(expr, LogExpr):
            raise QueryError(
                "log queries are not supported as an instant query type, please change your query to a range query type"
            )
        engine = self.engine()
        series = engine.series(expr, at, at, SEC)
        engine.check_series(series)
        result = [
            {"metric": lbls, "value": [seconds(at), go_float(pts[at])]} for _, (lbls, pts) in sorted(series.items())
        ]
        self.reply_json(
            {"status": "success", "data": {"resultType": "vector", "result": result, "stats": engine.stats(began, 0)}}
        )

    def selected_streams(self, form: dict, queries: list[str], default_since: int) -> list[dict]:
        start, end = self.bounds(form, default_since)
        selectors = []
        for text in queries:
            expr = parse_query(text)
            if not isinstance(expr, LogExpr) or expr.stages:
                raise QueryError("only label matchers are supported")
            selectors.append(expr)
        streams = [json.loads(s) for s in self.engine().store.streams(start, end)]
        return [s for s in streams if not selectors or any(sel.selects(s) for sel in selectors)]

    def route_loki_api_v1_labels(self, form: dict, params: dict) -> None:
        query = self.one(form, "query")
        streams = self.selected_streams(form, [query] if query else [], 6 * 3600 * SEC)
        self.reply_json({"status": "success", "data": sorted({k for s in streams for k in s})})

    def route_loki_api_v1_label_name_values(self, form: dict, params: dict) -> None:
        query = self.one(form, "query")
        streams = self.selected_streams(form, [query] if query else [], 6 * 3600 * SEC)
        self.reply_json(
            {"status": "success", "data": sorted({s[params["name"]] for s in streams if params["name"] in s})}
        )

    def route_loki_api_v1_series(self, form: dict, params: dict) -> None:
        matches = form.get("match[]") or form.get("match") or []
        if not matches:
            raise QueryError("0 matcher groups supplied")
        streams = self.selected_streams(form, matches, 3600 * SEC)
        self.reply_json({"status": "success", "data": sorted(streams, key=labels_string)})


# --------------------------------------------------------------------------- command line

FLAGS = {"config.file": False, "config.expand-env": True, "verify-config": True, "target": False, "log.level": False}
FLAGS |= {"version": True, "print-config-stderr": True, "help": True, "h": True}


def parse_flags(args: list[str]) -> dict:
    flags: dict = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--" or not arg.startswith("-") or arg == "-":
            break
        name, sep, value = arg.lstrip("-").partition("=")
        if name not in FLAGS:
            raise SystemExit(f"flag provided but not defined: -{name}")
        if FLAGS[name]:
            if sep and value.lower() not in ("true", "false", "1", "0", "t", "f"):
                raise SystemExit(f'invalid boolean value "{value}" for -{name}: parse error')
            flags[name] = not sep or value.lower() in ("true", "1", "t")
        elif sep:
            flags[name] = value
        elif i < len(args):
            flags[name], i = args[i], i + 1
        else:
            raise SystemExit(f"flag needs an argument: -{name}")
    return flags


def version_text() -> str:
    return (
        f"loki, version {standin_version()} stand-in ({STANDIN_TAG})\n"
        "  build user:       tests/standins/loki/package.sh\n"
        "  go version:       none (Python stand-in)\n"
        f"  platform:         linux/{os.uname().machine}\n"
        "  tags:             standin"
    )


def main(argv: list[str]) -> int:
    try:
        flags = parse_flags(argv[1:])
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    if flags.get("help") or flags.get("h"):
        print(
            f"Usage of loki ({STANDIN_TAG}):\n  -config.file PATH  -config.expand-env  -verify-config  -target all"
            "  -log.level LEVEL  -version"
        )
        return 0
    if flags.get("version"):
        print(version_text())
        return 0
    log = Log(flags.get("log.level") or "info")
    if not flags.get("config.file"):
        print("failed parsing config: the Loki stand-in needs -config.file=PATH", file=sys.stderr)
        return 1
    try:
        cfg = load_config(flags["config.file"], bool(flags.get("config.expand-env")))
    except ConfigError as exc:
        print(f"failed parsing config: {exc}", file=sys.stderr)
        return 1
    if flags.get("target"):
        cfg["target"] = flags["target"]
    if flags.get("log.level"):
        cfg["server"]["log_level"] = flags["log.level"]
    errors = validate(cfg)
    log = Log(cfg["server"]["log_level"] if cfg["server"]["log_level"] in Log.LEVELS else "info")
    if errors:
        log.log("error", "validating config", err="\n".join(errors))
        return 1
    if flags.get("print-config-stderr"):
        print(config_yaml(cfg), file=sys.stderr)
    if flags.get("verify-config"):
        log.log("info", "config is valid")
        return 0
    return serve(cfg, log)


def serve(cfg: dict, log: Log) -> int:
    version = standin_version()
    log.log(
        "info",
        f"Starting Loki stand-in ({STANDIN_TAG})",
        version=f"(version={version}, branch=standin, revision=standin)",
    )
    if cfg["analytics"]["reporting_enabled"]:
        log.log(
            "warn",
            "analytics.reporting_enabled is true (Loki's default): Loki would send anonymous usage statistics "
            "to Grafana Labs; the stand-in sends nothing",
        )
    prefix, fs = cfg["common"]["path_prefix"], cfg["storage_config"]["filesystem"]["directory"]
    db_dir = prefix or fs or cfg["storage_config"]["tsdb_shipper"]["active_index_directory"]
    dirs = [
        db_dir,
        fs,
        cfg["common"]["storage"]["filesystem"]["rules_directory"],
        cfg["compactor"]["working_directory"],
    ]
    dirs += list(cfg["storage_config"]["tsdb_shipper"].values())
    if cfg["ingester"]["wal"]["enabled"]:
        dirs.append(cfg["ingester"]["wal"]["dir"])
    try:
        for directory in dict.fromkeys(d for d in dirs if d):
            Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.log(
            "error",
            "error initialising module: store",
            err=f"mkdir {exc.filename}: {(exc.strerror or str(exc)).lower()}",
        )
        return 1
    app = App(cfg, log)
    server = cfg["server"]
    try:
        tls = server_context(server)
    except TLSConfigError as exc:
        log.log("error", "error initialising module: server", err=str(exc))
        return 1
    try:
        httpd = _listen(server["http_listen_address"], server["http_listen_port"], _http_server)
        grpc = _listen(server["grpc_listen_address"], server["grpc_listen_port"], _grpc_socket)
    except OSError as exc:
        log.log("error", "error initialising module: server", err=f"listen tcp: {exc.strerror or exc}")
        return 1
    if tls is not None:
        serve_tls(httpd, tls, lambda text: log.log("warn", text))
    httpd.daemon_threads = True
    httpd.app = app  # type: ignore[attr-defined]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    log.log(
        "info",
        "server listening on addresses",
        http=_addr(httpd.server_address),
        grpc=_addr(grpc.getsockname()),
        tls="enabled" if tls is not None else "disabled",
    )
    try:
        app.open(Path(db_dir) / DB_NAME)
    except (OSError, sqlite3.Error) as exc:
        log.log("error", "error initialising module: store", err=f"{Path(db_dir) / DB_NAME}: {exc}")
        httpd.shutdown()
        return 1
    threading.Thread(target=app.compactor, args=(stop,), daemon=True).start()
    log.log(
        "info",
        "Loki stand-in started",
        startup_time=f"{time.time() - app.started:.3f}s",
        storage=str(Path(db_dir) / DB_NAME),
    )
    stop.wait()
    log.log("info", "=== received SIGINT/SIGTERM ===\n*** exiting")
    httpd.shutdown()
    httpd.server_close()
    grpc.close()
    if app.store is not None:
        app.store.close()
    log.log("info", "Loki stand-in stopped", running_time=f"{time.time() - app.started:.3f}s")
    return 0


def _listen(address: str, port: int, make):
    """Bind address:port; an empty address is every interface (dual-stack, else IPv4 when IPv6 is missing)."""
    if address:
        return make(socket.AF_INET6 if ":" in address else socket.AF_INET, address, port, False)
    try:
        return make(socket.AF_INET6, "::", port, True)
    except OSError as exc:
        if exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
            raise
        return make(socket.AF_INET, "0.0.0.0", port, False)


def _http_server(family: socket.AddressFamily, host: str, port: int, dual: bool) -> ThreadingHTTPServer:
    class Server(ThreadingHTTPServer):
        address_family = family

        def server_bind(self) -> None:
            if dual:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            super().server_bind()

    return Server((host, port), Handler)


def _grpc_socket(family: socket.AddressFamily, host: str, port: int, dual: bool) -> socket.socket:
    return socket.create_server((host, port), family=family, dualstack_ipv6=dual and socket.has_dualstack_ipv6())


def _addr(address: tuple) -> str:
    host = address[0]
    return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"


if __name__ == "__main__":
    sys.exit(main(sys.argv))
