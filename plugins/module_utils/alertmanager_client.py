"""Small HTTP clients for the Alertmanager v2 API and the notification sink.

Used by the alertmanager_routing_check module, on the transport of http_client.py.
Only the Python 3 standard library and ansible.module_utils.urls are needed, so it
runs on any managed host (Python >= 3.8, the ansible-core 2.19 minimum).

Every failure is raised as AlertmanagerError with a message an operator can act
on: which service, which URL, and what the server or the network said.
"""

from __future__ import annotations

import json
import re

from ansible.module_utils.http_client import HttpClient, HttpError, server_message

USER_AGENT = "ansible-alertmanager-routing-check"

_LABEL_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


class AlertmanagerError(HttpError):
    """A request to Alertmanager (or the notification sink) failed."""


def equal_matcher(name, value):
    """``name="value"`` in the Alertmanager matcher syntax, with the value escaped."""
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{name}="{escaped}"'


def regex_matcher(name, regex):
    """``name=~"regex"`` in the Alertmanager matcher syntax."""
    escaped = str(regex).replace("\\", "\\\\").replace('"', '\\"')
    return f'{name}=~"{escaped}"'


def _unescape_label_value(value):
    return re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group(0)], value)


def parse_prometheus_text(text):
    """Parse the Prometheus text exposition format, just enough for counters.

    Returns {(metric_name, frozenset({(label, value), ...})): float}. Comments,
    blank lines and lines that do not parse are skipped; a trailing timestamp is
    ignored.
    """
    samples = {}
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        labels = {}
        if "{" in line:
            name, _, rest = line.partition("{")
            close = _find_label_end(rest)
            if close < 0:
                continue
            label_text, value_text = rest[:close], rest[close + 1 :]
            for match in _LABEL_PAIR.finditer(label_text):
                labels[match.group(1)] = _unescape_label_value(match.group(2))
        else:
            name, _, value_text = line.partition(" ")
        fields = value_text.split()
        if not name.strip() or not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        samples[(name.strip(), frozenset(labels.items()))] = value
    return samples


def _find_label_end(rest):
    """Index of the '}' closing the label set (quotes and escapes respected)."""
    in_quotes = False
    escaped = False
    for index, char in enumerate(rest):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            in_quotes = not in_quotes
        elif char == "}" and not in_quotes:
            return index
    return -1


def sum_samples(samples, name, **match):
    """Sum of every sample of ``name`` whose labels include ``match``."""
    total = 0.0
    for (sample_name, labels), value in samples.items():
        if sample_name != name:
            continue
        label_dict = dict(labels)
        if all(label_dict.get(k) == v for k, v in match.items()):
            total += value
    return total


def receiver_integrations(config_text):
    """{receiver name: sorted integration names} from an Alertmanager config.

    Alertmanager's /api/v2/status returns the loaded config re-serialised
    (``config.original``); ``<kind>_configs`` lists become integration ``<kind>``,
    the label value of alertmanager_notifications_total{integration=...}.
    PyYAML is used when available; otherwise a line parser that understands the
    normalised YAML Alertmanager emits.
    """
    try:
        import yaml  # noqa: PLC0415 - optional dependency, the fallback covers its absence
    except ImportError:
        yaml = None
    if yaml is not None:
        try:
            data = yaml.safe_load(config_text) or {}
        except yaml.YAMLError:
            data = None
        if isinstance(data, dict):
            result = {}
            for receiver in data.get("receivers") or []:
                if isinstance(receiver, dict) and receiver.get("name"):
                    result[str(receiver["name"])] = sorted(
                        key[: -len("_configs")] for key, value in receiver.items() if key.endswith("_configs") and value
                    )
            return result
    return _receiver_integrations_from_lines(config_text)


def _receiver_integrations_from_lines(config_text):
    result = {}
    in_receivers = False
    current = None
    for line in config_text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith((" ", "-")):
            in_receivers = line.rstrip() == "receivers:"
            current = None
            continue
        if not in_receivers:
            continue
        item = re.match(r"^(\s*)- name:\s*(.+?)\s*$", line)
        if item and len(item.group(1)) <= 2:
            current = item.group(2).strip("'\"")
            result.setdefault(current, [])
            continue
        integration = re.match(r"^\s{2,4}([a-z0-9]+)_configs:\s*(\[\s*\])?\s*$", line)
        if integration and current is not None and not integration.group(2):
            result[current] = sorted(set(result[current]) | {integration.group(1)})
    return result


class _Client(HttpClient):
    error = AlertmanagerError
    user_agent = USER_AGENT

    def get_json(self, path, params=None):
        return self.request_json("GET", path, params=params)


class AlertmanagerClient(_Client):
    """The parts of the Alertmanager v2 API the routing check needs."""

    service = "Alertmanager"

    def status(self):
        """GET /api/v2/status: cluster, versionInfo and the loaded config."""
        data = self.get_json("/api/v2/status")
        if not isinstance(data, dict):
            raise AlertmanagerError(f"GET {self.base_url}/api/v2/status returned unexpected data: {data!r}")
        return data

    def post_alerts(self, alerts):
        """POST /api/v2/alerts with a list of postable alerts."""
        self.request_text("POST", "/api/v2/alerts", body=list(alerts))

    def get_alerts(self, filters=(), *, active=True, silenced=True, inhibited=True, unprocessed=True, receiver=None):
        """GET /api/v2/alerts; ``filters`` are matcher strings (see equal_matcher)."""
        params = [("filter", matcher) for matcher in filters]
        params += [
            ("active", _flag(active)),
            ("silenced", _flag(silenced)),
            ("inhibited", _flag(inhibited)),
            ("unprocessed", _flag(unprocessed)),
        ]
        if receiver:
            params.append(("receiver", receiver))
        data = self.get_json("/api/v2/alerts", params=params)
        if not isinstance(data, list):
            raise AlertmanagerError(f"GET {self.base_url}/api/v2/alerts returned unexpected data: {data!r}")
        return data

    def metrics(self):
        """GET /metrics parsed: {(name, frozenset(labels.items())): value}."""
        return parse_prometheus_text(self.request_text("GET", "/metrics"))


class SinkClient(_Client):
    """The test notification sink: GET /api/received?contains=<text>."""

    service = "notification sink"

    def received(self, contains):
        """Records {channel, status, received_at, ...} whose notification contains ``contains``."""
        data = self.get_json("/api/received", params=[("contains", contains)])
        if isinstance(data, dict) and isinstance(data.get("records"), list):
            data = data["records"]
        if not isinstance(data, list):
            found = server_message(json.dumps(data))
            raise AlertmanagerError(
                f"GET {self.base_url}/api/received returned unexpected data (expected a list of records): {found}"
            )
        return [record for record in data if isinstance(record, dict)]


def _flag(value):
    return "true" if value else "false"
