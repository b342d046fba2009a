#!/usr/bin/env python3
"""Detection-latency model of the alert rules, from the shipped role defaults.

No stack needed: reads roles/prometheus/defaults/main.yml and
roles/alertmanager/defaults/main.yml (with ``--settings test`` also
inventories/local/group_vars/fast_alerting.yml, the molecule timings) and prints:

1. **Pipeline latency per alert**, from the moment its condition holds in the
   application until the first notification leaves Alertmanager:

       worst    = S + E + ceil(for / E) * E + E + W
       expected = S/2 + E/2 + ceil(for / E) * E + E/2 + W

   S  scrape interval (prometheus_scrape_interval): the first scrape that sees
      the change comes up to S later;
   E  evaluation interval of the alert's rule group (prometheus_mdl_rule_interval
      for the MDL API groups, prometheus_evaluation_interval for the stack group,
      which sets none): the first evaluation after that sample up to E later;
      the alert turns pending there;
   for  the rule's `for:`; it fires at the first evaluation at least `for` after
      it turned pending (evaluations are E apart, hence the rounding up);
   +E one more evaluation: an alert on a recorded series reads what the
      recording group wrote up to one interval earlier (Prometheus runs the
      groups independently); counted for every alert to keep the bound
      conservative;
   W  group_wait of the first route the alert reaches (a new Alertmanager group
      waits W before its first notification).

   "Expected" takes the scrape, evaluation and recording delays as uniformly
   distributed (half an interval each); `for` and W are deterministic. Network,
   notifier batching and receiver delivery are left out (sub-second), and so is
   the scrape timeout of a hanging target (ServiceDown, TargetDown). A critical
   alert whose worst case exceeds the plan's MTTD target (300 s) is flagged.
   An alert made of several rules (HighErrorRate's burn-rate windows) pages
   through its fastest rule; its slower rules are listed, but they catch burns
   the fast one never sees rather than the same burn later.

2. **Window fill for HighErrorRate.** A rate over a window reacts to a step
   from no errors to an error ratio r gradually: the ratio over a window L
   crosses a threshold T after L * T / r (never if r <= T). A burn-rate rule
   needs both of its windows, so the long one decides. Detection = fill +
   pipeline latency, for r in 2%, 5%, 10%, 25%, 50%, 100%, for the burn-rate
   rules and for the plan's original rule (5m window, > 5%, for 5m).

3. **False alerts on a synthetic day.** Pure Python, minute resolution: a day
   of traffic (10 req/s, +-10%), each request failing with a steady 0.3%
   background probability, plus isolated 1-minute 20% blips about every 2
   hours, a 2-minute full outage and a real incident (30 minutes at 10%). 6
   hours of background traffic before the day fill the longest window. Every
   rule is evaluated each minute on exact window sums; the table counts how
   often each rule starts firing, on what, and how long after the incident
   starts it first fires.

    bench/mttd_model.py                    # the production defaults
    bench/mttd_model.py --settings test    # the fast_alerting test inventory
    bench/mttd_model.py --json results.json

bench/mttd.py measures the real end-to-end MTTD of TargetDown on the sandbox;
tests/unit/test_mttd_model.py pins this model to hand-computed values.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_DEFAULTS = Path("roles/prometheus/defaults/main.yml")
ALERTMANAGER_DEFAULTS = Path("roles/alertmanager/defaults/main.yml")
TEST_SETTINGS = Path("inventories/local/group_vars/fast_alerting.yml")
TARGET_SECONDS = 300.0
ERROR_RATIOS = (0.02, 0.05, 0.10, 0.25, 0.50, 1.00)

# The plan (Task 2.1 and 2.2): its rule group interval, scrape interval, group_wait
# and the eight alerts as written there.
PLAN_TIMING = {"scrape": 15.0, "interval": 30.0, "group_wait": 30.0}
PLAN_ALERTS = {
    "HighErrorRate": {"for": "5m", "severity": "critical"},
    "SlowResponseTime": {"for": "10m", "severity": "warning"},
    "DatabasePoolExhausted": {"for": "5m", "severity": "critical"},
    "LowCacheHitRate": {"for": "15m", "severity": "warning"},
    "HighMemoryUsage": {"for": "10m", "severity": "warning"},
    "ServiceDown": {"for": "1m", "severity": "critical"},
    "SlowDatabaseQueries": {"for": "10m", "severity": "warning"},
    "HighAuthFailureRate": {"for": "5m", "severity": "warning"},
}
# The plan's HighErrorRate: 5xx ratio over 5m > 5%, for 5m.
PLAN_ERROR_RULE = {"windows": ("5m",), "threshold": 0.05, "for": "5m"}

# The synthetic day (minutes from the start of the day).
DAY_MINUTES = 1440
WARMUP_MINUTES = 360
REQUESTS_PER_MINUTE = 600
BACKGROUND_RATIO = 0.003
# The same day with a background inside the 0.1% budget (0.3% is 3x the budget rate on its own).
WITHIN_BUDGET_BACKGROUND = 0.0005
BLIP_RATIO, BLIP_EVERY, BLIP_JITTER = 0.20, 120, 15
OUTAGE = {"start": 500, "minutes": 2, "ratio": 1.0}
INCIDENT = {"start": 1000, "minutes": 30, "ratio": 0.10}

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_REFERENCE = re.compile(r"^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")
_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads Ansible's !unsafe strings as plain strings."""


_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------


def seconds(value) -> float:
    """Seconds of a Prometheus duration ('15s', '1h30m', '0m')."""
    text = str(value).strip()
    parts = list(_DURATION.finditer(text))
    if not text or "".join(p.group(0) for p in parts) != text:
        raise ValueError(f"not a duration: {value!r}")
    return sum(float(p.group(1)) * _UNIT[p.group(2)] for p in parts)


def _combine(base: dict, override: dict) -> dict:
    """Ansible's combine(recursive=true)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        out[key] = _combine(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _resolve(value, variables: dict, depth: int = 0):
    """Replace strings that are exactly '{{ name }}' by that variable (recursively)."""
    if depth > 10:
        raise ValueError("variable references nest too deeply")
    if isinstance(value, dict):
        return {k: _resolve(v, variables, depth) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, variables, depth) for v in value]
    match = _REFERENCE.match(value) if isinstance(value, str) else None
    if match and match.group(1) in variables:
        return _resolve(variables[match.group(1)], variables, depth + 1)
    return value


def load_settings(settings: str = "production", root: Path = ROOT) -> dict:
    """The role defaults (and with settings='test' the fast_alerting inventory over them)."""
    variables: dict = {}
    for path in (PROMETHEUS_DEFAULTS, ALERTMANAGER_DEFAULTS):
        variables.update(yaml.load((root / path).read_text(), Loader=_Loader) or {})
    if settings == "test":
        variables.update(yaml.load((root / TEST_SETTINGS).read_text(), Loader=_Loader) or {})
    elif settings != "production":
        raise ValueError(f"settings must be production or test, not {settings!r}")
    return {key: _resolve(value, variables) for key, value in variables.items()}


def mdl_alerts(variables: dict) -> dict:
    return _combine(variables["prometheus_mdl_alerts"], variables.get("prometheus_mdl_alert_overrides") or {})


def stack_alerts(variables: dict) -> dict:
    return _combine(variables["prometheus_stack_alerts"], variables.get("prometheus_stack_alert_overrides") or {})


# --------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------


def _matches(matchers, labels: dict) -> bool:
    for matcher in matchers or []:
        match = _MATCHER.match(matcher)
        if not match:
            raise ValueError(f"cannot read matcher {matcher!r}")
        name, op, value = match.groups()
        actual = labels.get(name, "")
        ok = {
            "=": actual == value,
            "!=": actual != value,
            "=~": re.fullmatch(value, actual) is not None,
            "!~": re.fullmatch(value, actual) is None,
        }[op]
        if not ok:
            return False
    return True


def _routes(route: dict, labels: dict, inherited: dict) -> list[tuple[str, float]]:
    """(receiver, group_wait seconds) of every route the labels reach, as Alertmanager walks the tree."""
    settings = {**inherited, **{k: route[k] for k in ("receiver", "group_wait") if k in route}}
    found: list[tuple[str, float]] = []
    for child in route.get("routes") or []:
        if _matches(child.get("matchers"), labels):
            found += _routes(child, labels, settings)
            if not child.get("continue", False):
                break
    return found or [(settings["receiver"], seconds(settings.get("group_wait", "30s")))]


def group_wait(variables: dict, labels: dict) -> float:
    """Seconds until the first notification of a new group with these labels (fastest receiver)."""
    return min(wait for _, wait in _routes(variables["alertmanager_route"], labels, {}))


# --------------------------------------------------------------------------
# 1. Pipeline latency
# --------------------------------------------------------------------------


def pipeline(scrape: float, interval: float, for_: float, wait: float) -> tuple[float, float]:
    """(worst, expected) seconds from the condition holding to the first notification."""
    hold = math.ceil(for_ / interval) * interval if for_ > 0 else 0.0
    return scrape + interval + hold + interval + wait, scrape / 2 + interval / 2 + hold + interval / 2 + wait


def _row(alert: str, rule: str, cfg: dict, timing: tuple[float, float, float]) -> dict:
    """A rule's latency; cfg holds its severity and `for`, timing is (scrape, interval, group_wait)."""
    scrape, interval, wait = timing
    worst, expected = pipeline(scrape, interval, seconds(cfg["for"]), wait)
    return {
        "alert": alert,
        "rule": rule,
        "severity": cfg["severity"],
        "scrape_s": scrape,
        "interval_s": interval,
        "for_s": seconds(cfg["for"]),
        "group_wait_s": wait,
        "worst_s": worst,
        "expected_s": expected,
    }


def _wait(variables: dict, alert: str, cfg: dict) -> float:
    return group_wait(variables, {"alertname": alert, "severity": cfg["severity"], "component": cfg["component"]})


def alert_rows(variables: dict) -> list[dict]:
    """One row per alerting rule of the shipped configuration."""
    scrape = seconds(variables["prometheus_scrape_interval"])
    mdl_interval = seconds(variables["prometheus_mdl_rule_interval"])
    stack_interval = seconds(variables["prometheus_evaluation_interval"])
    rows = []
    for name, cfg in mdl_alerts(variables).items():
        timing = (scrape, mdl_interval, _wait(variables, name, cfg))
        pairs = cfg.get("burn_rates") or {"": {"for": cfg["for"]}}
        for window, pair in pairs.items():
            rows.append(_row(name, window, {**cfg, "for": pair["for"]}, timing) | {"group": "mdl-api"})
    for name, cfg in stack_alerts(variables).items():
        timing = (scrape, stack_interval, _wait(variables, name, cfg))
        rows.append(_row(name, "", cfg, timing) | {"group": "stack"})
    return rows


def plan_rows() -> list[dict]:
    """The plan's eight alerts as written there (its `for:`, rule interval, group_wait)."""
    timing = (PLAN_TIMING["scrape"], PLAN_TIMING["interval"], PLAN_TIMING["group_wait"])
    return [_row(name, "", cfg, timing) | {"group": "plan"} for name, cfg in PLAN_ALERTS.items()]


def verdicts(rows: list[dict], target: float = TARGET_SECONDS) -> dict[str, dict]:
    """Per alert: its fastest rule's latency, and whether a critical alert misses the target."""
    out: dict[str, dict] = {}
    for row in rows:
        best = out.get(row["alert"])
        if best is None or row["worst_s"] < best["worst_s"]:
            out[row["alert"]] = {
                "group": row["group"],
                "severity": row["severity"],
                "rule": row["rule"],
                "worst_s": row["worst_s"],
                "expected_s": row["expected_s"],
            }
    for verdict in out.values():
        verdict["over_target"] = verdict["severity"] == "critical" and verdict["worst_s"] > target
    return out


# --------------------------------------------------------------------------
# 2. Window fill of HighErrorRate
# --------------------------------------------------------------------------


def window_fill(window_s: float, threshold: float, ratio: float) -> float | None:
    """Seconds until the ratio over the window exceeds the threshold after a step to `ratio`; None: never."""
    if ratio <= threshold:
        return None
    return window_s * threshold / ratio


def error_rules(variables: dict) -> dict[str, dict]:
    """HighErrorRate's rules as {name: {windows (long first), threshold, for}}, the plan's original included."""
    cfg = mdl_alerts(variables)["HighErrorRate"]
    windows = variables["prometheus_mdl_windows"]
    rules = {"plan (5m > 5%, for 5m)": dict(PLAN_ERROR_RULE, plan=True)}
    for name, pair in cfg["burn_rates"].items():
        rules[f"{name} ({pair['factor']}x: {windows[pair['long']]}/{windows[pair['short']]}, for {pair['for']})"] = {
            "windows": (windows[pair["long"]], windows[pair["short"]]),
            "threshold": pair["factor"] * (1 - cfg["objective"]),
            "for": pair["for"],
            "plan": False,
        }
    return rules


def fill_table(variables: dict, ratios=ERROR_RATIOS) -> list[dict]:
    """Per rule and error ratio: window fill and detection (fill + pipeline), worst and expected."""
    scrape = seconds(variables["prometheus_scrape_interval"])
    interval = seconds(variables["prometheus_mdl_rule_interval"])
    wait = group_wait(variables, {"alertname": "HighErrorRate", "severity": "critical", "component": "api"})
    table = []
    for name, rule in error_rules(variables).items():
        timing = (PLAN_TIMING["scrape"], PLAN_TIMING["interval"], PLAN_TIMING["group_wait"])
        if not rule["plan"]:
            timing = (scrape, interval, wait)
        worst, expected = pipeline(timing[0], timing[1], seconds(rule["for"]), timing[2])
        for ratio in ratios:
            fills = [window_fill(seconds(w), rule["threshold"], ratio) for w in rule["windows"]]
            fill = None if None in fills else max(fills)
            table.append(
                {
                    "rule": name,
                    "threshold": rule["threshold"],
                    "error_ratio": ratio,
                    "fill_s": fill,
                    "worst_s": None if fill is None else fill + worst,
                    "expected_s": None if fill is None else fill + expected,
                }
            )
    return table


# --------------------------------------------------------------------------
# 3. False alerts on a synthetic day
# --------------------------------------------------------------------------


def synthetic_day(seed: int = 1, background: float = BACKGROUND_RATIO) -> tuple[list[int], list[int], list[dict]]:
    """(requests, errors) per minute from -WARMUP_MINUTES to DAY_MINUTES, and the injected events."""
    rng = random.Random(seed)
    events = [
        {"kind": "outage", **OUTAGE},
        {"kind": "incident", **INCIDENT},
    ]
    busy = [(e["start"] - 90, e["start"] + e["minutes"] + 90) for e in events]
    for k in range(DAY_MINUTES // BLIP_EVERY):
        start = BLIP_EVERY // 2 + k * BLIP_EVERY + rng.randint(-BLIP_JITTER, BLIP_JITTER)
        if not any(lo <= start <= hi for lo, hi in busy):
            events.append({"kind": "blip", "start": start, "minutes": 1, "ratio": BLIP_RATIO})
    events.sort(key=lambda e: e["start"])
    requests, errors = [], []
    for minute in range(-WARMUP_MINUTES, DAY_MINUTES):
        ratio = next((e["ratio"] for e in events if e["start"] <= minute < e["start"] + e["minutes"]), background)
        n = rng.randint(int(REQUESTS_PER_MINUTE * 0.9), int(REQUESTS_PER_MINUTE * 1.1))
        requests.append(n)
        errors.append(n if ratio >= 1 else sum(rng.random() < ratio for _ in range(n)))
    return requests, errors, events


def _window_ratio(prefix_req, prefix_err, i: int, minutes: int) -> float:
    lo = max(0, i + 1 - minutes)
    total = prefix_req[i + 1] - prefix_req[lo]
    return (prefix_err[i + 1] - prefix_err[lo]) / total if total else math.nan


def _firing(condition: list[bool], for_minutes: int) -> list[bool]:
    """Prometheus' `for:` on one evaluation a minute: firing once true for `for` since turning pending."""
    out, run = [], 0
    for value in condition:
        run = run + 1 if value else 0
        out.append(run > for_minutes)
    return out


def simulate(variables: dict, seed: int = 1, background: float = BACKGROUND_RATIO) -> dict:
    """Fire episodes of the plan's rule and the burn-rate rules on the synthetic day."""
    requests, errors, events = synthetic_day(seed, background)
    prefix_req, prefix_err = [0], [0]
    for n, e in zip(requests, errors, strict=True):
        prefix_req.append(prefix_req[-1] + n)
        prefix_err.append(prefix_err[-1] + e)
    min_rate = mdl_alerts(variables)["HighErrorRate"]["min_request_rate"]
    guard_minutes = max(1, round(seconds(variables["prometheus_mdl_windows"]["rate5m"]) / 60))
    minutes = range(len(requests))
    results = {}
    for name, rule in error_rules(variables).items():
        windows = [max(1, round(seconds(w) / 60)) for w in rule["windows"]]
        condition = []
        for i in minutes:
            above = all(_window_ratio(prefix_req, prefix_err, i, w) > rule["threshold"] for w in windows)
            lo = max(0, i + 1 - guard_minutes)
            rate = (prefix_req[i + 1] - prefix_req[lo]) / (60 * guard_minutes)
            condition.append(above and (rule["plan"] or rate >= min_rate))
        firing = _firing(condition, math.ceil(seconds(rule["for"]) / 60))
        results[name] = _episodes(firing, events, max(windows))
    return {
        "seed": seed,
        "background": background,
        "events": events,
        "rules": results,
        "day": {
            "requests": sum(requests[WARMUP_MINUTES:]),
            "errors": sum(errors[WARMUP_MINUTES:]),
        },
    }


def _episodes(firing: list[bool], events: list[dict], memory: int) -> dict:
    """Firing episodes within the day.

    Each is attributed to the latest event that started at most the rule's longest
    window (`memory`) before it ("background" if none). A blip episode whose long
    window still holds the outage or the incident is counted apart: the rule
    re-fires on a blip because the budget burnt by the bigger event is still in
    its window. False alerts are the blip and background episodes without one.
    """
    episodes = []
    for i, value in enumerate(firing):
        minute = i - WARMUP_MINUTES
        if value and (i == 0 or not firing[i - 1]) and minute >= 0:
            end = next((j for j in range(i, len(firing)) if not firing[j]), len(firing)) - WARMUP_MINUTES
            cause = next(
                (e for e in reversed(events) if e["start"] <= minute <= e["start"] + e["minutes"] + memory), None
            )
            held = sorted(
                {
                    e["kind"]
                    for e in events
                    if e["kind"] != "blip" and e["start"] <= minute and e["start"] + e["minutes"] > minute - memory
                }
            )
            episodes.append(
                {
                    "start": minute,
                    "minutes": end - minute,
                    "cause": cause["kind"] if cause else "background",
                    "after_event_start": minute - cause["start"] if cause else None,
                    "window_holds": held,
                }
            )
    incident = next((ep for ep in episodes if ep["cause"] == "incident"), None)
    outage = next((ep for ep in episodes if ep["cause"] == "outage"), None)
    count = {kind: sum(ep["cause"] == kind for ep in episodes) for kind in ("incident", "outage", "blip", "background")}
    refires = sum(ep["cause"] == "blip" and bool(ep["window_holds"]) for ep in episodes)
    return {
        "episodes": episodes,
        "fires": len(episodes),
        "by_cause": count,
        "blip_refires": refires,
        "false_alerts": count["blip"] + count["background"] - refires,
        "incident_detected_after_min": incident["after_event_start"] if incident else None,
        "outage_detected_after_min": outage["after_event_start"] if outage else None,
        "firing_minutes": sum(ep["minutes"] for ep in episodes),
    }


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def model(settings: str = "production", root: Path = ROOT, seed: int = 1, variables: dict | None = None) -> dict:
    """Everything the report prints, as data."""
    variables = variables if variables is not None else load_settings(settings, root)
    rows = alert_rows(variables)
    plan = plan_rows()
    return {
        "settings": settings,
        "target_s": TARGET_SECONDS,
        "alerts": rows,
        "verdicts": verdicts(rows),
        "plan_alerts": plan,
        "plan_verdicts": verdicts(plan),
        "error_rate_fill": fill_table(variables),
        "synthetic_day": simulate(variables, seed),
        "synthetic_day_within_budget": simulate(variables, seed, WITHIN_BUDGET_BACKGROUND),
    }


def _fmt(value: float | None) -> str:
    if value is None:
        return "never"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _table(headers: list[str], rows: list[list]) -> str:
    widths = [max(len(str(x)) for x in [h] + [r[i] for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def report(result: dict) -> str:
    target = result["target_s"]
    out = [
        f"MTTD model ({result['settings']} settings); target for critical alerts: < {target:.0f} s",
        "worst = scrape + eval + ceil(for/eval)*eval + eval + group_wait;",
        "expected = the same with half a scrape, half an evaluation and half the extra evaluation",
        "",
        "1. Pipeline latency once the condition holds (seconds)",
    ]
    verdict = result["verdicts"]
    rows = []
    for row in result["alerts"]:
        name = row["alert"] + (f" [{row['rule']}]" if row["rule"] else "")
        v = verdict[row["alert"]]
        flag = ""
        if row["severity"] == "critical" and row["worst_s"] > target:
            flag = "OVER TARGET" if v["over_target"] else f"slower window ({v['rule']} pages in {v['worst_s']:.0f} s)"
        rows.append(
            [
                row["group"],
                name,
                row["severity"],
                _fmt(row["scrape_s"]),
                _fmt(row["interval_s"]),
                _fmt(row["for_s"]),
                _fmt(row["group_wait_s"]),
                _fmt(row["worst_s"]),
                _fmt(row["expected_s"]),
                flag,
            ]
        )
    out.append(_table(["group", "alert", "severity", "scrape", "eval", "for", "wait", "worst", "expected", ""], rows))
    plan = [
        [
            r["alert"],
            r["severity"],
            _fmt(r["for_s"]),
            _fmt(r["worst_s"]),
            _fmt(r["expected_s"]),
            "OVER TARGET" if result["plan_verdicts"][r["alert"]]["over_target"] else "",
        ]
        for r in result["plan_alerts"]
    ]
    out += ["", "   The plan's eight alerts as written (scrape 15s, rule interval 30s, group_wait 30s):"]
    out.append(_table(["alert", "severity", "for", "worst", "expected", ""], plan))
    over = sorted(name for name, v in verdict.items() if v["over_target"])
    out.append("")
    out.append(f"   Critical alerts over {target:.0f} s: {', '.join(over) if over else 'none'}")

    out += ["", "2. HighErrorRate: window fill + pipeline after a step to an error ratio (seconds, worst / expected)"]
    fill = result["error_rate_fill"]
    names = list(dict.fromkeys(r["rule"] for r in fill))
    ratios = list(dict.fromkeys(r["error_ratio"] for r in fill))
    cell = {(r["rule"], r["error_ratio"]): r for r in fill}
    rows = []
    for name in names:
        threshold = cell[(name, ratios[0])]["threshold"]
        row = [name, f"{threshold:.2%}"]
        for ratio in ratios:
            c = cell[(name, ratio)]
            row.append("never" if c["fill_s"] is None else f"{_fmt(c['worst_s'])} / {_fmt(c['expected_s'])}")
        rows.append(row)
    out.append(_table(["rule", "threshold", *(f"{r:.0%}" for r in ratios)], rows))
    fills = []
    for name in names:
        fills.append([name, *(_fmt(cell[(name, r)]["fill_s"]) for r in ratios)])
    out += ["", "   of which window fill (long window * threshold / error ratio):"]
    out.append(_table(["rule", *(f"{r:.0%}" for r in ratios)], fills))

    out += ["", *_day_report(result["synthetic_day"], "3."), ""]
    out += _day_report(result["synthetic_day_within_budget"], "  ")
    return "\n".join(out)


def _day_report(day: dict, number: str) -> list[str]:
    kinds: dict[str, list] = {}
    for e in day["events"]:
        kinds.setdefault(e["kind"], []).append(e)
    total = day["day"]
    out = [
        f"{number} Synthetic day (seed {day['seed']}, minute resolution): {REQUESTS_PER_MINUTE / 60:.0f} req/s +-10%, "
        f"{day['background']:.2%} background 5xx, {len(kinds.get('blip', []))} one-minute {BLIP_RATIO:.0%} blips,",
        f"   a {OUTAGE['minutes']}-minute full outage at minute {OUTAGE['start']}, an incident of "
        f"{INCIDENT['minutes']} minutes at {INCIDENT['ratio']:.0%} from minute {INCIDENT['start']} "
        f"({total['errors']} of {total['requests']} requests failed: {total['errors'] / total['requests']:.2%}).",
    ]
    rows = []
    for name, r in day["rules"].items():
        rows.append(
            [
                name,
                r["fires"],
                r["by_cause"]["incident"],
                r["by_cause"]["outage"],
                f"{r['by_cause']['blip']} ({r['blip_refires']})",
                r["by_cause"]["background"],
                r["false_alerts"],
                "-" if r["outage_detected_after_min"] is None else f"+{r['outage_detected_after_min']} min",
                "-" if r["incident_detected_after_min"] is None else f"+{r['incident_detected_after_min']} min",
                r["firing_minutes"],
            ]
        )
    headers = ["rule", "fires", "incident", "outage", "blips (refires)", "background", "false"]
    out.append(_table([*headers, "outage paged", "incident paged", "min firing"], rows))
    out += [
        "   (refires: a blip while the long window still holds the outage or the incident; false: the other blip",
        "   and background fires; times are the rule starting to fire, the page follows after scrape, evaluation",
        "   and group_wait)",
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", choices=("production", "test"), default="production")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON ('-': stdout only)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic day")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    result = model(args.settings, args.root, args.seed)
    if args.json == "-":
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
