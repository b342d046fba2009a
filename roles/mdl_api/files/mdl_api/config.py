"""The configuration file: JSON, every key known, every value typed.

``load(path)`` returns the configuration with the defaults filled in, or raises
``ConfigError`` listing every problem, each naming its key (``database.pool_max``).
Unknown keys are errors too, so a typo never silently falls back to a default.
``python -m mdl_api --check-config --config FILE`` runs only this (exit 0 or 2):
the Ansible role uses it as the ``validate:`` command of the config template.
"""

from __future__ import annotations

import copy
import json
import math
import os
from typing import Any
from urllib.parse import urlsplit

LOG_LEVELS = ("debug", "info", "warn", "warning", "error", "critical")


class ConfigError(Exception):
    """The configuration is invalid; ``errors`` lists each problem ("key: what is wrong")."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


# Each leaf: (kind, default). Kinds: "str", "int", "number", "bool", "strlist", "users".
SCHEMA: dict[str, Any] = {
    "listen": ("str", "127.0.0.1:3000"),
    "service_name": ("str", "mdl-api"),
    "version": ("str", "1.0.0"),
    "environment": ("str", "sandbox"),
    "threads": ("int", 16),
    "database": {
        "host": ("str", "127.0.0.1"),
        "port": ("int", 5432),
        "name": ("str", "mdl"),
        "user": ("str", "mdl_api"),
        "password": ("str", ""),
        "pool_min": ("int", 2),
        "pool_max": ("int", 10),
        "pool_timeout_seconds": ("number", 5),
        "statement_timeout_ms": ("int", 5000),
    },
    "redis": {
        "host": ("str", "127.0.0.1"),
        "port": ("int", 6379),
        "password": ("str", ""),
        "db": ("int", 0),
        "ttl_seconds": ("int", 60),
    },
    "tracing": {
        "enabled": ("bool", True),
        "otlp_endpoint": ("str", "http://127.0.0.1:4318/v1/traces"),
        # CA file (PEM) the https endpoint is verified against; "": the system's trust store.
        "otlp_ca_file": ("str", ""),
        "sample_ratio": ("number", 1.0),
        "export_timeout_seconds": ("number", 10),
    },
    "metrics": {
        "enabled": ("bool", True),
    },
    "log": {
        "path": ("str", "/var/log/mdl-api/mdl-api.log"),
        "level": ("str", "info"),
        "redact": ("strlist", ["password", "token", "authorization", "secret", "cookie"]),
    },
    "users": ("users", []),
    "faults": {
        "enabled": ("bool", False),
        "token": ("str", ""),
    },
    "business_sync_seconds": ("number", 15),
    "active_user_window_seconds": ("number", 300),
}

_KIND_NAMES = {
    "str": "a string",
    "int": "an integer",
    "number": "a number",
    "bool": "a boolean (true/false)",
    "strlist": "a list of strings",
    "users": "a list of {username, password} objects",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "strlist":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "users":
        return isinstance(value, list)
    raise AssertionError(kind)


def _merge(schema: dict, data: Any, prefix: str, errors: list[str]) -> dict:
    """``data`` checked against ``schema`` (types, unknown keys), defaults filled in."""
    out: dict[str, Any] = {}
    if not isinstance(data, dict):
        errors.append(f"{prefix.rstrip('.') or '<top level>'}: expected an object, got {_json_type(data)}")
        data = {}
    for key in sorted(set(data) - set(schema)):
        errors.append(f"{prefix}{key}: unknown key")
    for key, spec in schema.items():
        name = f"{prefix}{key}"
        if isinstance(spec, dict):
            out[key] = _merge(spec, data.get(key, {}), f"{name}.", errors)
            continue
        kind, default = spec
        if key not in data:
            out[key] = copy.deepcopy(default)
            continue
        value = data[key]
        if not _type_ok(kind, value):
            errors.append(f"{name}: expected {_KIND_NAMES[kind]}, got {_json_type(value)}")
            out[key] = copy.deepcopy(default)
        else:
            out[key] = value
    return out


def _check_port(name: str, port: int, errors: list[str]) -> None:
    if not 1 <= port <= 65535:
        errors.append(f"{name}: {port} is not a TCP port (1-65535)")


def parse_listen(listen: str) -> tuple[str, int]:
    """("host", port) of "host:port" (IPv6 as "[::1]:3000"); ValueError if malformed."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{listen!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _check_users(users: list, errors: list[str]) -> None:
    seen: set[str] = set()
    for i, user in enumerate(users):
        name = f"users[{i}]"
        if not isinstance(user, dict):
            errors.append(f"{name}: expected an object with username and password, got {_json_type(user)}")
            continue
        for key in sorted(set(user) - {"username", "password"}):
            errors.append(f"{name}.{key}: unknown key")
        for key in ("username", "password"):
            if not isinstance(user.get(key), str) or not user.get(key):
                errors.append(f"{name}.{key}: expected a non-empty string")
        if isinstance(user.get("username"), str):
            if user["username"] in seen:
                errors.append(f"{name}.username: duplicate user {user['username']!r}")
            seen.add(user["username"])


def _check_values(cfg: dict, errors: list[str]) -> None:
    _check_top(cfg, errors)
    _check_database(cfg["database"], errors)
    _check_services(cfg, errors)
    _check_users(cfg["users"], errors)
    fl = cfg["faults"]
    if fl["enabled"]:
        if len(fl["token"]) < 8:
            errors.append("faults.token: must be at least 8 characters when faults.enabled is true")
        if cfg["environment"].strip().lower() in ("production", "prod"):
            errors.append(
                f"faults.enabled: fault injection is refused in environment {cfg['environment']!r}"
                " (only test environments may enable it)"
            )


def _check_top(cfg: dict, errors: list[str]) -> None:
    try:
        _, port = parse_listen(cfg["listen"])
        _check_port("listen", port, errors)
    except ValueError as exc:
        errors.append(f"listen: {exc}")
    for key in ("service_name", "version", "environment"):
        if not cfg[key].strip():
            errors.append(f"{key}: must not be empty")
    if not 1 <= cfg["threads"] <= 512:
        errors.append(f"threads: {cfg['threads']} is not between 1 and 512")
    for key in ("business_sync_seconds", "active_user_window_seconds"):
        if cfg[key] <= 0:
            errors.append(f"{key}: must be greater than 0")


def _check_database(db: dict, errors: list[str]) -> None:
    _check_port("database.port", db["port"], errors)
    for key in ("host", "name", "user"):
        if not db[key]:
            errors.append(f"database.{key}: must not be empty")
    if db["pool_min"] < 0:
        errors.append(f"database.pool_min: {db['pool_min']} is negative")
    if db["pool_max"] < 1 or db["pool_max"] < db["pool_min"]:
        errors.append(f"database.pool_max: {db['pool_max']} must be at least 1 and at least database.pool_min")
    if db["pool_timeout_seconds"] <= 0:
        errors.append("database.pool_timeout_seconds: must be greater than 0")
    if db["statement_timeout_ms"] < 0:
        errors.append("database.statement_timeout_ms: must be 0 (no timeout) or more")


def _check_services(cfg: dict, errors: list[str]) -> None:
    rd = cfg["redis"]
    _check_port("redis.port", rd["port"], errors)
    if not rd["host"]:
        errors.append("redis.host: must not be empty")
    if rd["db"] < 0:
        errors.append("redis.db: must be 0 or more")
    if rd["ttl_seconds"] < 1:
        errors.append("redis.ttl_seconds: must be at least 1")
    tr = cfg["tracing"]
    url = urlsplit(tr["otlp_endpoint"])
    if tr["enabled"] and (url.scheme not in ("http", "https") or not url.netloc):
        errors.append(f"tracing.otlp_endpoint: {tr['otlp_endpoint']!r} is not an http(s) URL")
    if tr["enabled"] and tr["otlp_ca_file"]:
        if url.scheme != "https":
            errors.append(f"tracing.otlp_ca_file: set, but tracing.otlp_endpoint {tr['otlp_endpoint']!r} is not https")
        if not os.access(tr["otlp_ca_file"], os.R_OK):
            errors.append(f"tracing.otlp_ca_file: {tr['otlp_ca_file']!r} is not a readable file")
    if not 0 <= tr["sample_ratio"] <= 1:
        errors.append(f"tracing.sample_ratio: {tr['sample_ratio']} is not between 0 and 1")
    if tr["export_timeout_seconds"] <= 0:
        errors.append("tracing.export_timeout_seconds: must be greater than 0")
    lg = cfg["log"]
    if not lg["path"]:
        errors.append("log.path: must not be empty")
    if lg["level"].lower() not in LOG_LEVELS:
        errors.append(f"log.level: {lg['level']!r} is not one of {', '.join(LOG_LEVELS)}")


def validate(data: Any) -> dict:
    """The configuration ``data`` (parsed JSON) checked, with defaults; ConfigError if invalid."""
    errors: list[str] = []
    cfg = _merge(SCHEMA, data, "", errors)
    if not errors:
        _check_values(cfg, errors)
    if errors:
        raise ConfigError(errors)
    return cfg


def load(path: str) -> dict:
    """The configuration file at ``path``, validated; ConfigError if unreadable or invalid."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{path}: not valid JSON: {exc}"]) from exc
    return validate(data)
