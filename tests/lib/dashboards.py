"""The Grafana dashboards in files/dashboards: loading, walking and their PromQL.

Shared by tests/unit/test_dashboards.py (static checks, promtool parsing) and
the molecule verifiers, which can run every query against the real
Prometheus::

    from dashboards import queries
    for dashboard, panel, expr in queries():
        curl_json(host, f"http://localhost:9090/api/v1/query?query={quote(expr)}")

Grafana variables in the expressions are replaced by values Prometheus
accepts: the dashboard's own variable defaults (``allValue`` for "All",
a constant's value) and fixed values for Grafana's built-in interval
variables (``BUILTIN_VALUES``; pass ``overrides`` to change any of them).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = PROJECT / "files" / "dashboards"

# Grafana's built-in variables, as they could expand for a 1h range with a
# 15s scrape interval ($__rate_interval = max(4 * scrape interval, $__interval)).
BUILTIN_VALUES = {
    "__interval": "1m",
    "__interval_ms": "60000",
    "__rate_interval": "1m",
    "__rate_interval_ms": "60000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
# $name, ${name}, ${name:format}, [[name]], [[name:format]]
VARIABLE_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")


class DashboardError(ValueError):
    """A dashboard file that cannot be used (invalid JSON, undefined variable)."""


def dashboard_files(directory: Path = DASHBOARD_DIR) -> list[Path]:
    return sorted(directory.glob("*.json"))


def load_dashboard(path: Path) -> dict:
    """Parse one dashboard file; invalid JSON raises DashboardError naming file, line and column."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DashboardError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise DashboardError(f"{path}: the dashboard must be a JSON object, not {type(data).__name__}")
    return data


def load_dashboards(directory: Path = DASHBOARD_DIR) -> dict[str, dict]:
    """{file name: dashboard} for every *.json in directory."""
    return {path.name: load_dashboard(path) for path in dashboard_files(directory)}


def iter_panels(dashboard: dict) -> Iterator[dict]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in dashboard.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


def variables(dashboard: dict) -> dict[str, dict]:
    return {var["name"]: var for var in (dashboard.get("templating") or {}).get("list") or []}


def _variable_value(var: dict) -> str:
    """The value a variable expands to with its default selection."""
    current = (var.get("current") or {}).get("value")
    values = current if isinstance(current, list) else [current]
    if var.get("type") == "constant":
        return str(var.get("query", ""))
    if var.get("includeAll") and (current is None or "$__all" in values):
        return var.get("allValue") or ".*"
    values = [str(v) for v in values if v not in (None, "")]
    if not values:
        raise DashboardError(f"variable {var.get('name')!r} has no default value")
    if len(values) == 1:
        return values[0]
    return "(" + "|".join(re.escape(v) for v in values) + ")"


def substitution_values(dashboard: dict, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """{variable name: value} for the dashboard's variables and Grafana's built-ins."""
    values = dict(BUILTIN_VALUES)
    for name, var in variables(dashboard).items():
        if var.get("type") != "datasource":
            values[name] = _variable_value(var)
    values.update(overrides or {})
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace every Grafana variable in expr; an unknown variable raises DashboardError."""

    def replace(match: re.Match) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise DashboardError(f"undefined variable ${name} in {expr!r}")
        return values[name]

    return VARIABLE_RE.sub(replace, expr)


def raw_queries(dashboard: dict) -> Iterator[tuple[str, str]]:
    """(panel title, expression as written) for every target and annotation query."""
    for annotation in (dashboard.get("annotations") or {}).get("list") or []:
        if "expr" in annotation:
            yield f"annotation: {annotation.get('name', '')}", annotation.get("expr") or ""
    for panel in iter_panels(dashboard):
        for target in panel.get("targets") or []:
            yield panel.get("title", ""), target.get("expr") or ""


def queries(directory: Path = DASHBOARD_DIR, overrides: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, expression with variables substituted) for every query."""
    result = []
    for name, dashboard in load_dashboards(directory).items():
        values = substitution_values(dashboard, overrides)
        uid = dashboard.get("uid") or name
        result.extend((uid, title, substitute(expr, values)) for title, expr in raw_queries(dashboard))
    return result
