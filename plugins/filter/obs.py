"""Filters that turn the inventory into monitoring wiring.

Kept in Python (not inline Jinja) so the wiring rules are unit-tested in
tests/unit/test_filters.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

# ansible_facts.architecture -> the arch suffix of upstream release archives.
_RELEASE_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "armv7",
    "armv6l": "armv6",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}

# The default listen address of every component, in one place: the role
# defaults, the targets Prometheus generates for hosts that do not set their
# own address, Grafana's datasource URL and playbooks/verify.yml read it here.
DEFAULT_LISTEN = {
    "prometheus": "0.0.0.0:9090",
    "alertmanager": "0.0.0.0:9093",
    "alertmanager_cluster": "0.0.0.0:9094",
    "node_exporter": "0.0.0.0:9100",
    "grafana": "0.0.0.0:3000",
    # Jaeger v2 (an OpenTelemetry Collector distribution): upstream binds
    # localhost by default; these are the well-known ports on every address.
    "jaeger_otlp_grpc": "0.0.0.0:4317",
    "jaeger_otlp_http": "0.0.0.0:4318",
    "jaeger_thrift_http": "0.0.0.0:14268",
    "jaeger_query": "0.0.0.0:16686",
    "jaeger_query_grpc": "0.0.0.0:16685",
    "jaeger_health": "0.0.0.0:13133",
    "jaeger_metrics": "0.0.0.0:8888",
    "loki": "0.0.0.0:3100",
    # Loki's gRPC (internal ring traffic in single-binary mode): loopback.
    "loki_grpc": "127.0.0.1:9095",
    "promtail": "0.0.0.0:9080",
    # The reference MDL API (plan: port 3000) and its database's exporter.
    "mdl_api": "0.0.0.0:3000",
    "postgres_exporter": "0.0.0.0:9187",
}

_HOST_PORT = re.compile(r"(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]*):(?P<port>[0-9]{1,5})")


def default_listen(component: str) -> str:
    """'alertmanager' | default_listen -> '0.0.0.0:9093' (DEFAULT_LISTEN)."""
    try:
        return DEFAULT_LISTEN[component]
    except KeyError:
        raise ValueError(f"no default listen address for {component!r}; known: {', '.join(DEFAULT_LISTEN)}") from None


def release_arch(architecture: str) -> str:
    """Map a kernel architecture to the suffix used by upstream archives."""
    return _RELEASE_ARCH.get(architecture, architecture)


def _parse(value):
    """(host, port) of a listen address, or None when it is not host:port with port 1..65535."""
    if not isinstance(value, str):
        return None
    match = _HOST_PORT.fullmatch(value)
    if not match or not 0 < int(match.group("port")) < 65536:
        return None
    return match.group("host"), int(match.group("port"))


def is_listen_address(value) -> bool:
    """True for 'host:port', ':port' or '[v6]:port' with a port in 1..65535."""
    return _parse(value) is not None


def listen_port(value: str) -> int:
    """Port part of a listen address."""
    parsed = _parse(value)
    if parsed is None:
        raise ValueError(f"not a host:port listen address: {value!r}")
    return parsed[1]


def listen_host(value: str) -> str:
    """Host part of a listen address, IPv6 brackets removed ('' for ':port')."""
    parsed = _parse(value)
    if parsed is None:
        raise ValueError(f"not a host:port listen address: {value!r}")
    return parsed[0].strip("[]")


_DURATION = re.compile(r"(?P<n>[0-9]+)(?P<unit>ms|s|m|h|d|w|y)")
_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def duration_seconds(value) -> float:
    """Seconds of a Prometheus/Loki duration ('744h', '1h30m', '7d'); ValueError when it is not one."""
    text = str(value).strip()
    parts = list(_DURATION.finditer(text))
    if not text or "".join(p.group(0) for p in parts) != text:
        raise ValueError(f"not a duration such as 24h, 7d or 1h30m: {value!r}")
    return sum(int(p.group("n")) * _DURATION_SECONDS[p.group("unit")] for p in parts)


def local_url(listen_address: str, path: str = "/", scheme: str = "http") -> str:
    """URL that reaches a service from its own host (wildcard binds become loopback)."""
    parsed = _parse(listen_address)
    if parsed is None:
        raise ValueError(f"not a host:port listen address: {listen_address!r}")
    host, port = parsed
    if host in ("", "0.0.0.0", "[::]"):
        host = "127.0.0.1"
    if path and not path.startswith("/"):
        path = "/" + path
    return f"{scheme}://{host}:{port}{path}"


def bare_flags(names, prefix: str = "") -> dict:
    """['systemd'] | bare_flags('collector.') -> {'collector.systemd': True}."""
    return {f"{prefix}{name}": True for name in names or []}


def scrape_targets(hosts, hostvars, listen_var: str, default_listen: str) -> list:
    """One static_config per host: '<obs_address>:<port>' with instance=<inventory name>.

    The port comes from the host's own listen variable (so a per-host override
    is honoured), the address from obs_address, then ansible_host, then the
    inventory name.
    """
    configs = []
    for name in hosts or []:
        hv = hostvars.get(name, {}) if hasattr(hostvars, "get") else hostvars[name]
        address = str(hv.get("obs_address") or hv.get("ansible_host") or name)
        if ":" in address and not address.startswith("["):
            address = f"[{address}]"  # IPv6 literal
        listen = hv.get(listen_var) or default_listen
        configs.append(
            {
                "targets": [f"{address}:{listen_port(listen)}"],
                "labels": {"instance": name},
            }
        )
    return configs


def scrape_configs(jobs, groups, hostvars, ca_file: str = "") -> list:
    """Scrape configs of the inventory-generated jobs, one per job whose group has hosts.

    ``jobs``: [{job_name, group, var, listen, auth, path?, tls?}] (the
    prometheus role's _prometheus_scrape_jobs); targets come from
    scrape_targets(). A job with a true ``tls`` is scraped over HTTPS and its
    certificates are verified against ``ca_file`` (required then).
    """
    configs = []
    for job in jobs or []:
        hosts = groups.get(job["group"]) or []
        if not hosts:
            continue
        tls = str(job.get("tls", False)).lower() in ("true", "1", "yes")
        if tls and not ca_file:
            raise ValueError(f"job {job['job_name']!r} is scraped over TLS but no CA file was given")
        config = {
            "job_name": job["job_name"],
            "scheme": "https" if tls else "http",
            "static_configs": scrape_targets(hosts, hostvars, job["var"], job["listen"]),
        }
        if tls:
            config["tls_config"] = {"ca_file": ca_file}
        if job.get("path"):
            config["metrics_path"] = job["path"]
        auth = job.get("auth") or {}
        if auth:
            config["basic_auth"] = {"username": auth["username"], "password": auth["password"]}
        configs.append(config)
    return configs


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{[^}]*\})?\s+(?P<value>\S+)")


def metric_value(text, name: str):
    """Value of the first unlabelled sample ``name`` in Prometheus text exposition, or None.

    Used by the reload gate to read ``*_config_last_reload_success_timestamp_seconds``
    and ``*_config_last_reload_successful`` (floats such as ``1.79e+09``).
    """
    for line in str(text or "").splitlines():
        match = _SAMPLE.match(line)
        if match and match.group("name") == name and not match.group("labels"):
            try:
                return float(match.group("value"))
            except ValueError:
                return None
    return None


def obs_differs(entry, content=None, owner=None, group=None, mode=None, *, kind="file", target=None) -> bool:
    """True unless the host already has what a task would make of a path.

    ``entry`` is one path of the obs_host_state module's ``paths`` result.
    ``content`` (a string) is compared by SHA-1, as ansible.builtin.copy does;
    ``owner``, ``group``, ``mode`` ("0640") and a link's ``target`` only when
    given. A missing entry, a missing path or another type always differs.
    """
    if not entry or not entry.get("exists") or entry.get("type") != kind:
        return True
    wanted = {"owner": owner, "group": group, "target": target}
    if mode is not None:
        wanted["mode"] = f"{int(str(mode), 8):04o}"
    if content is not None:
        wanted["checksum"] = hashlib.sha1(str(content).encode("utf-8", "surrogateescape")).hexdigest()
    return any(value is not None and entry.get(key) != str(value) for key, value in wanted.items())


def binaries_linked(binaries, host_paths, bin_dir: str, install_dir: str) -> bool:
    """True when every binary's link in bin_dir points into install_dir (obs_host_state paths)."""
    for binary in binaries or []:
        entry = (host_paths or {}).get(f"{bin_dir}/{binary['name']}") or {}
        if entry.get("type") != "link" or entry.get("target") != f"{install_dir}/{binary['src']}":
            return False
    return bool(binaries)


def account_differs(entry, home: str, shell: str = "/usr/sbin/nologin", groups=None) -> bool:
    """True unless obs_host_state's ``users`` entry already has this home, (nologin) shell and these
    supplementary groups (among others: the user module appends)."""
    entry = entry or {}
    if not entry.get("exists") or entry.get("home") != home or entry.get("shell") != shell:
        return True
    return not set(groups or []) <= set(entry.get("groups") or [])


def unit_running(entry) -> bool:
    """True when obs_host_state reports a unit active and enabled."""
    return bool(entry) and entry.get("active") == "active" and entry.get("enabled") == "enabled"


# The project's root (roles/ and plugins/ below it): the code a converge stamp covers.
_ROOT = Path(__file__).resolve().parents[2]
_STATE_KEYS = ("paths", "globs", "users", "units")


def code_digest(roles) -> str:
    """SHA-256 over every file of these roles and of plugins/ (names and contents): a new
    project version, or any edit of the code a role runs, changes it."""
    digest = hashlib.sha256()
    for tree in [_ROOT / "roles" / name for name in roles] + [_ROOT / "plugins"]:
        if not tree.is_dir():
            raise ValueError(f"code_digest: {tree} is not a directory (roles and plugins must sit side by side)")
        for path in sorted(p for p in tree.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(str(path.relative_to(_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def converge_stamp(host_state, inputs, stamp_path: str) -> str:
    """The text a role writes to ``stamp_path`` after a complete converge: a digest of its inputs
    (variables, TLS material, code) and one of what the host then had (obs_host_state's result,
    the stamp itself left out). Both are digests: no value, secret or not, is in the text."""
    state = {key: dict((host_state or {}).get(key) or {}) for key in _STATE_KEYS}
    state["paths"].pop(stamp_path, None)

    def digest(value):
        return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()

    return f"inputs {digest(inputs)}\nstate {digest(state)}\n"


def converged(host_state, inputs, stamp_path: str) -> bool:
    """True when the host still has exactly what its last complete converge left, for these same
    inputs: the stamp read by obs_host_state (its SHA-1) equals the one these inputs and the host's
    present state make. Any drift (a file, a mode, a link, a user, a stopped unit) or any new input
    makes it false, and the role then runs every task as usual."""
    entry = ((host_state or {}).get("paths") or {}).get(stamp_path) or {}
    if not entry.get("exists") or entry.get("type") != "file":
        return False
    wanted = converge_stamp(host_state, inputs, stamp_path)
    return entry.get("checksum") == hashlib.sha1(wanted.encode()).hexdigest()


class FilterModule:
    def filters(self):
        return {
            "default_listen": default_listen,
            "release_arch": release_arch,
            "listen_port": listen_port,
            "listen_host": listen_host,
            "duration_seconds": duration_seconds,
            "local_url": local_url,
            "bare_flags": bare_flags,
            "scrape_targets": scrape_targets,
            "is_listen_address": is_listen_address,
            "metric_value": metric_value,
            "obs_differs": obs_differs,
            "binaries_linked": binaries_linked,
            "account_differs": account_differs,
            "unit_running": unit_running,
            "scrape_configs": scrape_configs,
            "code_digest": code_digest,
            "converge_stamp": converge_stamp,
            "converged": converged,
        }
