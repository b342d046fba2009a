"""Grafana dashboards in files/dashboards, checked without Grafana.

* every file is a valid dashboard model (JSON, uid = file name, unique uid,
  title, schemaVersion, gridPos, units, no deprecated panel types);
* the data source is only ever the ``$datasource`` variable, by uid;
* every query parses (real promtool, the expressions as recording rules of a
  generated rule file) and uses only defined Grafana variables;
* the dashboards use only metrics that exist: the plan's MetricsService,
  node_exporter, the project's recording rules, or metrics listed in the
  README as expected from the MDL API;
* the thresholds drawn on the overview (and infrastructure) panels are the
  alert thresholds of roles/prometheus/defaults/main.yml.

The loading/substitution helpers live in tests/lib/dashboards.py so molecule
verifiers can run every query against the real Prometheus. The checker
functions return lists of problems; tests at the bottom feed them broken
input to prove they report it.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "lib"))

from dashboards import (  # noqa: E402
    DASHBOARD_DIR,
    DashboardError,
    dashboard_files,
    iter_panels,
    load_dashboard,
    queries,
    raw_queries,
    substitute,
    substitution_values,
    variables,
)

PROMETHEUS_DEFAULTS = REPO_ROOT / "roles" / "prometheus" / "defaults" / "main.yml"
README = DASHBOARD_DIR / "README.md"
EXPECTED_UIDS = {"mdl-api-overview", "mdl-business", "infrastructure", "logs-traces"}
# The stack's own telemetry on the logs & traces dashboard: Loki, Promtail and
# Jaeger (an OpenTelemetry Collector) metrics, each scraped from its own job.
STACK_PREFIXES = {"loki_": "loki", "promtail_": "promtail", "otelcol_": "jaeger"}
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
DEPRECATED_PANEL_TYPES = {"graph", "singlestat", "table-old", "grafana-singlestat-panel", "grafana-piechart-panel"}
MIN_SCHEMA_VERSION = 36
GRID_WIDTH = 24
VARIABLE_REF = re.compile(r"^\$(\{\w+\}|\w+)$")

# Series the MDL API exports according to the plan (Task 1.3, MetricsService).
PLAN_METRICS = {
    "http_requests_total",
    "http_request_duration_seconds",
    "http_request_size_bytes",
    "http_response_size_bytes",
    "mdl_metrics_total",
    "mdl_domains_total",
    "mdl_objectives_total",
    "mdl_active_users",
    "db_connections_active",
    "db_connections_idle",
    "db_query_duration_seconds",
    "db_queries_total",
    "cache_hits_total",
    "cache_misses_total",
    "cache_size_bytes",
    "errors_total",
}
PLAN_HISTOGRAMS = {"http_request_duration_seconds", "http_request_size_bytes", "http_response_size_bytes"} | {
    "db_query_duration_seconds"
}
# Series Prometheus itself writes.
PROMETHEUS_SERIES = {"up", "ALERTS"}
README_SECTION = "Metrics the dashboards expect from the MDL API"

# Overview panel title -> (alert, direction): "above" = red from the threshold up,
# "below" = red under it. The threshold value comes from prometheus_mdl_alerts (alert_threshold;
# for HighErrorRate the error ratio of its fast burn rate).
OVERVIEW_THRESHOLDS = {
    "Error rate": ("HighErrorRate", "above"),
    "Error rate by instance": ("HighErrorRate", "above"),
    "Response time P95": ("SlowResponseTime", "above"),
    "Response time P95 by instance": ("SlowResponseTime", "above"),
    "Active DB connections": ("DatabasePoolExhausted", "above"),
    "Cache hit rate": ("LowCacheHitRate", "below"),
    "DB query time P95": ("SlowDatabaseQueries", "above"),
    "Resident memory": ("HighMemoryUsage", "above"),
    "Failed logins": ("HighAuthFailureRate", "above"),
}
# Infrastructure panel title -> stack alert whose "less than <threshold> free" is drawn as 1 - threshold used.
INFRA_THRESHOLDS = {
    "Memory usage": "NodeMemoryPressure",
    "Filesystem usage": "NodeFilesystemAlmostFull",
    "Filesystem usage now": "NodeFilesystemAlmostFull",
}
# The six panels of the plan's application dashboard (Task 4.1) and their units.
PLAN_OVERVIEW_PANELS = {
    "Request rate": ("timeseries", "reqps"),
    "Response time P95": ("timeseries", "s"),
    "Error rate": ("timeseries", "percentunit"),
    "Active DB connections": ("timeseries", "short"),
    "Cache hit rate": ("stat", "percentunit"),
    "Total metrics": ("stat", "none"),
}


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _defaults() -> dict:
    return yaml.safe_load(PROMETHEUS_DEFAULTS.read_text())


def _dashboards() -> dict[str, dict]:
    return {path.stem: load_dashboard(path) for path in dashboard_files()}


def _panel(dashboard: dict, title: str) -> dict:
    matches = [p for p in iter_panels(dashboard) if p.get("title") == title]
    assert len(matches) == 1, f"{dashboard.get('uid')}: expected one panel {title!r}, found {len(matches)}"
    return matches[0]


def _data_panels(dashboard: dict) -> list[dict]:
    return [p for p in iter_panels(dashboard) if p.get("type") != "row"]


def datasource_problems(node, where: str = "$") -> list[str]:
    """Every ``datasource`` in the JSON that is given by name, has no uid or a fixed uid."""
    problems = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}.{key}"
            if key == "datasource":
                if not isinstance(value, dict):
                    problems.append(f"{here}: data source given as {value!r}, not as {{type, uid}}")
                elif not VARIABLE_REF.match(str(value.get("uid", ""))):
                    problems.append(f"{here}: data source {value!r} is not referenced by a template variable uid")
            problems.extend(datasource_problems(value, here))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            problems.extend(datasource_problems(item, f"{where}[{index}]"))
    return problems


def panel_datasource_problems(dashboard: dict) -> list[str]:
    """Panels, targets, query variables and annotations must use exactly DATASOURCE_REF."""
    problems = []
    for panel in iter_panels(dashboard):
        title = panel.get("title")
        if panel.get("targets") and panel.get("datasource") != DATASOURCE_REF:
            problems.append(f"panel {title!r}: datasource {panel.get('datasource')!r}")
        for target in panel.get("targets") or []:
            if target.get("datasource") != DATASOURCE_REF:
                problems.append(
                    f"panel {title!r} target {target.get('refId')}: datasource {target.get('datasource')!r}"
                )
    for var in variables(dashboard).values():
        if var.get("type") == "query" and var.get("datasource") != DATASOURCE_REF:
            problems.append(f"variable {var['name']!r}: datasource {var.get('datasource')!r}")
    for annotation in (dashboard.get("annotations") or {}).get("list") or []:
        if annotation.get("datasource") != DATASOURCE_REF:
            problems.append(f"annotation {annotation.get('name')!r}: datasource {annotation.get('datasource')!r}")
    return problems


def layout_problems(dashboard: dict) -> list[str]:
    """gridPos present and inside the 24 columns, no two visible panels overlap, panel ids unique."""
    problems, cells, ids = [], {}, set()
    for panel in iter_panels(dashboard):
        title = panel.get("title")
        if panel.get("id") in ids:
            problems.append(f"panel {title!r}: duplicate id {panel.get('id')}")
        ids.add(panel.get("id"))
        pos = panel.get("gridPos") or {}
        if not all(isinstance(pos.get(k), int) for k in ("x", "y", "w", "h")):
            problems.append(f"panel {title!r}: gridPos {pos!r} needs integer x, y, w, h")
            continue
        if pos["x"] < 0 or pos["w"] < 1 or pos["h"] < 1 or pos["x"] + pos["w"] > GRID_WIDTH:
            problems.append(f"panel {title!r}: gridPos {pos!r} outside the {GRID_WIDTH} columns")
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                if (x, y) in cells:
                    problems.append(f"panel {title!r} overlaps {cells[(x, y)]!r} at x={x}, y={y}")
                    break
                cells[(x, y)] = title
            else:
                continue
            break
    return problems


def promql_problems(promtool: Path, triples: list[tuple[str, str, str]], work: Path) -> list[str]:
    """Check every expression with `promtool check rules` (each one a recording rule)."""
    rules = [{"record": f"dashboard_query_{i}", "expr": expr} for i, (_, _, expr) in enumerate(triples)]
    rule_file = work / "dashboard-queries.rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, sort_keys=False))
    proc = subprocess.run(
        [str(promtool), "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode == 0:
        return []
    output = proc.stdout + proc.stderr
    problems = []
    for match in re.finditer(r'"dashboard_query_(\d+)": (.*)', output):
        dashboard, panel, expr = triples[int(match[1])]
        problems.append(f"{dashboard} / {panel!r}: {match[2]}\n    {expr}")
    return problems or [f"promtool check rules failed:\n{output}"]


def _strip_promql(expr: str) -> str:
    """expr without strings, label matchers, range/subquery brackets and grouping label lists."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    return re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)


PROMQL_KEYWORDS = {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring", "group_left"} | {
    "group_right",
    "inf",
    "nan",
    "atan2",
}


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (identifiers that are no function or keyword)."""
    names = set()
    for match in re.finditer(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(\s*\()?", _strip_promql(expr)):
        if not match[2] and match[1] not in PROMQL_KEYWORDS:
            names.add(match[1])
    return names


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, label matchers) of every vector selector with braces."""
    return re.findall(r"(?<![\w:])([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}", expr)


def selector_problems(expr: str, required: list[str], exempt=lambda name: False) -> list[str]:
    """Series selected without braces, or without every required matcher (unless exempt)."""
    problems = []
    with_braces = {name for name, _ in selectors(expr)}
    for name in sorted(metric_names(expr) - with_braces):
        problems.append(f"{name} is selected without label matchers")
    for name, matchers in selectors(expr):
        missing = [m for m in required if m not in matchers and not exempt(name)]
        if missing:
            problems.append(f"{name}{{{matchers}}} lacks {', '.join(missing)}")
    return problems


def readme_expected_metrics(text: str) -> set[str]:
    """Metric names in the first column of the README's table of expected metrics."""
    section = re.search(rf"^## {re.escape(README_SECTION)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    if not section:
        return set()
    return set(re.findall(r"^\|\s*`([a-zA-Z_:][\w:]*)", section[1], re.MULTILINE))


def threshold_steps(panel: dict) -> list[dict]:
    return ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("thresholds", {}).get("steps") or []


def threshold_problems(panel: dict, value: float, direction: str) -> list[str]:
    """The panel's thresholds must be exactly: base colour, then `value` (red above, or red below)."""
    steps = threshold_steps(panel)
    title = panel.get("title")
    if len(steps) != 2 or steps[0].get("value") is not None:
        return [f"{title!r}: expected a base step and one threshold, got {steps!r}"]
    problems = []
    if steps[1].get("value") is None or abs(float(steps[1]["value"]) - value) > 1e-9:
        problems.append(f"{title!r}: threshold {steps[1].get('value')!r}, the alert uses {value!r}")
    red_step = steps[1] if direction == "above" else steps[0]
    other = steps[0] if direction == "above" else steps[1]
    if red_step.get("color") != "red" or other.get("color") == "red":
        problems.append(f"{title!r}: must be red {direction} {value}, got {steps!r}")
    custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom") or {}
    if panel.get("type") == "timeseries" and custom.get("thresholdsStyle", {}).get("mode", "off") == "off":
        problems.append(f"{title!r}: the threshold is not drawn (custom.thresholdsStyle.mode is off)")
    return problems


def alert_threshold(alerts: dict, alert: str) -> float:
    cfg = alerts[alert]
    if alert == "HighErrorRate":
        # The fast-burn error ratio: factor x error budget (1 - objective).
        return cfg["burn_rates"]["fast"]["factor"] * (1 - cfg["objective"])
    if alert == "DatabasePoolExhausted":
        return cfg["threshold"] * cfg["pool_size"]
    if alert == "HighMemoryUsage":
        return cfg["threshold_bytes"]
    return cfg["threshold"]


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict]:
    return _dashboards()


@pytest.fixture(scope="module")
def overview(dashboards) -> dict:
    return dashboards["mdl-api-overview"]


@pytest.fixture(scope="module")
def recording_rules(default_rules) -> set[str]:
    names = set()
    for path in default_rules.glob("*.rules.yml"):
        for group in yaml.safe_load(path.read_text()).get("groups") or []:
            names.update(rule["record"] for rule in group.get("rules") or [] if "record" in rule)
    return names


FILES = dashboard_files()


# --------------------------------------------------------------------------
# The dashboard model
# --------------------------------------------------------------------------


def test_the_expected_dashboards_exist():
    assert {path.stem for path in FILES} == EXPECTED_UIDS


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_file_is_valid_json(path):
    try:
        load_dashboard(path)
    except DashboardError as exc:
        pytest.fail(str(exc))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_uid_title_and_schema(path):
    dashboard = load_dashboard(path)
    assert dashboard.get("uid") == path.stem, f"{path.name}: uid {dashboard.get('uid')!r} must equal the file name"
    assert str(dashboard.get("title", "")).strip(), f"{path.name}: no title"
    assert isinstance(dashboard.get("schemaVersion"), int), f"{path.name}: no schemaVersion"
    assert dashboard["schemaVersion"] >= MIN_SCHEMA_VERSION, f"{path.name}: schemaVersion {dashboard['schemaVersion']}"
    # A bare dashboard model, not an API payload ({"dashboard": ...}) or a share export with __inputs.
    assert "dashboard" not in dashboard and "__inputs" not in dashboard, f"{path.name}: not a bare dashboard model"
    assert dashboard.get("panels"), f"{path.name}: no panels"
    assert dashboard.get("time", {}).get("from") and dashboard.get("refresh"), f"{path.name}: time/refresh missing"


def test_uids_and_titles_are_unique(dashboards):
    uids = [d.get("uid") for d in dashboards.values()]
    titles = [d.get("title") for d in dashboards.values()]
    assert len(uids) == len(set(uids)), f"duplicate uids: {uids}"
    assert len(titles) == len(set(titles)), f"duplicate titles: {titles}"


def test_titles(dashboards):
    assert dashboards["mdl-api-overview"]["title"] == "MDL API \u2013 Overview"
    assert dashboards["mdl-business"]["title"] == "MDL \u2013 Business metrics"
    assert dashboards["infrastructure"]["title"] == "Infrastructure"
    assert dashboards["logs-traces"]["title"] == "Logs & traces"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_panels_layout_types_and_units(path):
    dashboard = load_dashboard(path)
    assert layout_problems(dashboard) == []
    for panel in iter_panels(dashboard):
        assert panel.get("type") not in DEPRECATED_PANEL_TYPES, f"{panel.get('title')!r}: deprecated {panel['type']}"
        assert str(panel.get("title", "")).strip(), f"panel {panel.get('id')} has no title"
    for panel in _data_panels(dashboard):
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        assert unit, f"{path.name}: panel {panel.get('title')!r} has no unit"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_datasource_is_the_variable_by_uid(path):
    dashboard = load_dashboard(path)
    assert datasource_problems(dashboard) == []
    assert panel_datasource_problems(dashboard) == []
    var = variables(dashboard).get("datasource")
    assert var, f"{path.name}: no datasource variable"
    assert (var["type"], var["query"]) == ("datasource", "prometheus")
    assert var["current"]["value"] == "prometheus", "default must be the provisioned uid 'prometheus'"
    assert "${DS_" not in path.read_text(), f"{path.name}: exported with a ${{DS_...}} input"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_target_has_an_expression(path):
    dashboard = load_dashboard(path)
    for panel in _data_panels(dashboard):
        targets = panel.get("targets") or []
        assert targets, f"{path.name}: panel {panel.get('title')!r} has no targets"
        ref_ids = [t.get("refId") for t in targets]
        assert len(ref_ids) == len(set(ref_ids)) and all(ref_ids), f"{panel.get('title')!r}: refIds {ref_ids}"
        for target in targets:
            assert str(target.get("expr", "")).strip(), f"{panel.get('title')!r} {target.get('refId')}: empty expr"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_environment_variable_is_a_constant(path):
    """External labels are not on series queried from the local Prometheus, so
    environment is a constant set at provisioning time, never a query filter."""
    dashboard = load_dashboard(path)
    var = variables(dashboard).get("environment")
    assert var and var["type"] == "constant", f"{path.name}: environment must be a constant variable"
    for title, expr in raw_queries(dashboard):
        assert "environment" not in expr, f"{path.name} {title!r}: filters on environment, which series lack"


# --------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------


def test_queries_substitute_every_variable():
    triples = queries()
    assert {uid for uid, _, _ in triples} == EXPECTED_UIDS
    for uid, title, expr in triples:
        assert "$" not in expr and "[[" not in expr, f"{uid} / {title!r}: unsubstituted variable in {expr}"


def test_every_query_parses(promtool, tmp_path):
    triples = queries()
    assert len(triples) > 30  # guards against a walker that finds nothing
    problems = promql_problems(promtool, triples, tmp_path)
    assert problems == [], "\n".join(problems)


def test_recording_rules_used_exist(dashboards, recording_rules):
    assert "job:http_request_duration_seconds:p95_5m" in recording_rules
    for name, dashboard in dashboards.items():
        for title, expr in raw_queries(dashboard):
            for metric in metric_names(expr):
                assert ":" not in metric or metric in recording_rules, f"{name} {title!r}: no recording rule {metric}"


def test_dashboards_use_only_existing_or_documented_metrics(dashboards, recording_rules):
    expected = readme_expected_metrics(README.read_text())
    assert expected, f"{README}: no table under '## {README_SECTION}'"
    histogram_series = {f"{h}{s}" for h in PLAN_HISTOGRAMS for s in ("_bucket", "_sum", "_count")}
    known = PLAN_METRICS | histogram_series | PROMETHEUS_SERIES | recording_rules | expected
    used = set()
    for name, dashboard in dashboards.items():
        for title, expr in raw_queries(dashboard):
            for metric in metric_names(expr):
                used.add(metric)
                if name == "infrastructure":
                    assert metric.startswith("node_") or metric == "up", (
                        f"{title!r}: {metric} is no node_exporter metric"
                    )
                elif name == "logs-traces":
                    job = next((j for p, j in STACK_PREFIXES.items() if metric.startswith(p)), None)
                    assert job, f"{title!r}: {metric} is no Loki, Promtail or Jaeger metric"
                    assert selector_problems(expr, [f'job="{job}"']) == [], f"{title!r}: {metric} without job={job}"
                else:
                    assert metric in known, f"{name} {title!r}: {metric} is neither exported nor in the README"
    assert not expected & PLAN_METRICS, f"README lists metrics the plan already exports: {expected & PLAN_METRICS}"
    assert expected <= used, f"README lists metrics no dashboard uses: {expected - used}"


def test_mdl_queries_select_the_application_job(dashboards):
    job = _defaults()["prometheus_app_job_name"]
    for name in ("mdl-api-overview", "mdl-business"):
        for title, expr in raw_queries(dashboards[name]):
            assert selector_problems(expr, [f'job="{job}"']) == [], f"{name} {title!r}"


def test_overview_queries_follow_the_instance_selector(overview):
    """Raw series filter on $instance; recording rules have no instance label (aggregated away)."""
    for title, expr in raw_queries(overview):
        if title.startswith("annotation:"):
            continue
        problems = selector_problems(expr, ['instance=~"$instance"'], exempt=lambda name: ":" in name)
        assert problems == [], f"{title!r}: {problems}"


def test_infrastructure_queries_follow_the_host_selector(dashboards):
    for title, expr in raw_queries(dashboards["infrastructure"]):
        assert selector_problems(expr, ['job="node"', 'instance=~"$host"']) == [], title


@pytest.mark.parametrize(
    ("uid", "name", "query"),
    [
        ("mdl-api-overview", "instance", 'label_values(up{job="mdl-api"}, instance)'),
        ("infrastructure", "host", 'label_values(node_uname_info{job="node"}, instance)'),
    ],
)
def test_instance_variables(dashboards, uid, name, query):
    var = variables(dashboards[uid]).get(name)
    assert var, f"{uid}: no variable {name}"
    assert var["type"] == "query" and var["multi"] and var["includeAll"]
    assert var["definition"] == query and var["query"]["query"] == query
    assert var["datasource"] == DATASOURCE_REF


# --------------------------------------------------------------------------
# Thresholds = alert thresholds
# --------------------------------------------------------------------------


def test_overview_has_the_plans_panels(overview):
    for title, (ptype, unit) in PLAN_OVERVIEW_PANELS.items():
        panel = _panel(overview, title)
        assert panel["type"] == ptype, f"{title!r}: type {panel['type']}"
        assert panel["fieldConfig"]["defaults"]["unit"] == unit, f"{title!r}: unit"
    request_rate = [t["expr"] for t in _panel(overview, "Request rate")["targets"]]
    assert any(e.startswith("job_method_path:http_requests:rate5m{") for e in request_rate)
    p95 = [t["expr"] for t in _panel(overview, "Response time P95")["targets"]]
    assert p95 == ['job:http_request_duration_seconds:p95_5m{job="mdl-api"}']
    assert "mdl_metrics_total" in _panel(overview, "Total metrics")["targets"][0]["expr"]
    assert _panel(overview, "Instances up")["targets"][0]["expr"].startswith("up{")


def test_overview_thresholds_are_the_alert_thresholds(overview):
    alerts = _defaults()["prometheus_mdl_alerts"]
    # Every threshold-carrying alert of the API is on the overview (ServiceDown is "Instances up").
    covered = {alert for alert, _ in OVERVIEW_THRESHOLDS.values()}
    assert covered == set(alerts) - {"ServiceDown"}
    problems = []
    for title, (alert, direction) in OVERVIEW_THRESHOLDS.items():
        problems += threshold_problems(_panel(overview, title), alert_threshold(alerts, alert), direction)
    assert problems == [], "\n".join(problems)
    login = _panel(overview, "Failed logins")["targets"][0]["expr"]
    assert f'path="{alerts["HighAuthFailureRate"]["login_path"]}"' in login


def test_no_other_overview_panel_claims_a_threshold(overview):
    for panel in _data_panels(overview):
        if panel["title"] in OVERVIEW_THRESHOLDS or panel["title"] == "Instances up":
            continue
        assert len(threshold_steps(panel)) <= 1, f"{panel['title']!r}: threshold without an alert behind it"


def test_infrastructure_thresholds_are_the_stack_alert_thresholds(dashboards):
    defaults = _defaults()
    alerts = defaults["prometheus_stack_alerts"]
    infra = dashboards["infrastructure"]
    problems = []
    for title, alert in INFRA_THRESHOLDS.items():
        problems += threshold_problems(_panel(infra, title), 1 - alerts[alert]["threshold"], "above")
    assert problems == [], "\n".join(problems)
    ignored = f'fstype!~"{defaults["prometheus_node_fs_types_ignored"]}"'
    for title in ("Filesystem usage", "Filesystem usage now"):
        assert ignored in _panel(infra, title)["targets"][0]["expr"], title


def test_readme_documents_the_decisions():
    text = README.read_text()
    for phrase in (README_SECTION, "graph", "timeseries", "environment", "$__rate_interval"):
        assert phrase in text, f"README does not mention {phrase!r}"


# --------------------------------------------------------------------------
# The checkers report broken input
# --------------------------------------------------------------------------


def test_invalid_json_is_reported_with_line_and_column(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "uid": "broken",\n  "title": "x",,\n}\n')
    with pytest.raises(DashboardError, match=r"broken\.json:3:16: invalid JSON"):
        load_dashboard(broken)


def test_datasource_by_name_or_fixed_uid_is_reported(overview):
    dashboard = copy.deepcopy(overview)
    panels = [p for p in dashboard["panels"] if p.get("targets")]
    panels[0]["datasource"] = "Prometheus"
    panels[1]["targets"][0]["datasource"] = {"type": "prometheus"}
    panels[2]["targets"][0]["datasource"] = {"type": "prometheus", "uid": "prometheus"}
    dashboard["annotations"]["list"][0]["datasource"] = None
    problems = datasource_problems(dashboard)
    assert len(problems) == 4, problems
    assert any("given as 'Prometheus'" in p for p in problems)
    assert len(panel_datasource_problems(dashboard)) == 4


def test_layout_problems_are_reported(overview):
    dashboard = copy.deepcopy(overview)
    panels = [p for p in dashboard["panels"] if p.get("targets")]
    panels[1]["gridPos"] = dict(panels[0]["gridPos"])
    panels[2]["gridPos"] = {"x": 20, "y": 100, "w": 8, "h": 4}
    panels[3]["id"] = panels[4]["id"]
    problems = layout_problems(dashboard)
    assert any("overlaps" in p for p in problems)
    assert any("outside" in p for p in problems)
    assert any("duplicate id" in p for p in problems)


def test_unparsable_promql_is_reported_with_dashboard_and_panel(promtool, tmp_path):
    triples = [
        ("good", "fine", "sum(rate(http_requests_total[5m]))"),
        ("mdl-api-overview", "Broken panel", "sum(rate(http_requests_total[5m])"),
        ("infrastructure", "Bad regex", 'up{instance=~"(a|b"}'),
    ]
    problems = promql_problems(promtool, triples, tmp_path)
    assert len(problems) == 2, problems
    assert problems[0].startswith("mdl-api-overview / 'Broken panel': ") and "unclosed left parenthesis" in problems[0]
    assert problems[1].startswith("infrastructure / 'Bad regex': ")


def test_variable_substitution():
    dashboard = {
        "templating": {
            "list": [
                {"type": "datasource", "name": "datasource", "current": {"value": "prometheus"}},
                {"type": "constant", "name": "environment", "query": "staging"},
                {"type": "query", "name": "instance", "includeAll": True, "allValue": ".*", "multi": True,
                 "current": {"value": ["$__all"]}},
                {"type": "custom", "name": "pick", "multi": True, "current": {"value": ["a.1", "b"]}},
            ]
        }
    }  # fmt: skip
    values = substitution_values(dashboard, {"__range": "2h"})
    expr = 'x{instance=~"$instance",e="${environment}",p=~"[[pick]]"}[$__rate_interval] offset $__range'
    assert substitute(expr, values) == 'x{instance=~".*",e="staging",p=~"(a\\.1|b)"}[1m] offset 2h'
    assert substitute("rate(x[${__interval:text}])", values) == "rate(x[1m])"
    with pytest.raises(DashboardError, match=r"undefined variable \$hots"):
        substitute('up{instance=~"$hots"}', values)


def test_metric_name_and_selector_parsing():
    expr = (
        "histogram_quantile(0.95, sum by (instance, le) (rate(http_request_duration_seconds_bucket"
        '{job="mdl-api",instance=~"$instance"}[5m]))) / on (instance) group_left max(db_connections_max) '
        "* 1e3 offset 1h and job:http_requests:rate5m"
    )
    assert metric_names(expr) == {
        "http_request_duration_seconds_bucket",
        "db_connections_max",
        "job:http_requests:rate5m",
    }
    problems = selector_problems(expr, ['job="mdl-api"'])
    assert problems == [
        "db_connections_max is selected without label matchers",
        "job:http_requests:rate5m is selected without label matchers",
    ]
    assert selector_problems('up{job="node"}', ['job="node"', 'instance=~"$host"']) == [
        'up{job="node"} lacks instance=~"$host"'
    ]


def test_threshold_mismatch_is_reported(overview):
    panel = copy.deepcopy(_panel(overview, "Error rate"))
    assert threshold_problems(panel, 0.0144, "above") == []
    # The plan's 5% is no longer the alert's threshold.
    assert threshold_problems(panel, 0.05, "above") != []
    panel["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] = 0.1
    panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] = "off"
    problems = threshold_problems(panel, 0.0144, "above")
    assert len(problems) == 2, problems
    cache = _panel(overview, "Cache hit rate")
    assert threshold_problems(cache, 0.5, "above")  # red below, not above


def test_readme_table_parsing():
    table = "| metric | why |\n|---|---|\n| `a_b{c}` | x |\n| `d` | y |\n"
    text = f"# x\n\n## {README_SECTION}\n\n{table}\n## Other\n| `e` |\n"
    assert readme_expected_metrics(text) == {"a_b", "d"}
