"""bench/mttd_model.py: the detection-latency model, pinned to hand-computed values.

The model reads the shipped role defaults, so a default that breaks the plan's
MTTD target (< 5 minutes for a critical MDL API alert) fails here.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_PATH = REPO_ROOT / "bench" / "mttd_model.py"


def _load():
    spec = importlib.util.spec_from_file_location("mttd_model_under_test", MODEL_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


mttd = _load()


@pytest.fixture(scope="module")
def production() -> dict:
    return mttd.load_settings("production")


@pytest.fixture(scope="module")
def result(production) -> dict:
    return mttd.model(variables=production)


def _row(rows: list[dict], alert: str, rule: str = "") -> dict:
    return next(r for r in rows if r["alert"] == alert and r["rule"] == rule)


# --- the pipeline latency, by hand ------------------------------------------------------------


def test_settings_are_read_from_the_role_defaults(production):
    assert mttd.seconds(production["prometheus_scrape_interval"]) == 15
    assert mttd.seconds(production["prometheus_mdl_rule_interval"]) == 30
    # "{{ alertmanager_group_wait }}" in the route resolves to the Alertmanager default.
    assert production["alertmanager_route"]["group_wait"] == "30s"
    assert mttd.group_wait(production, {"alertname": "X", "severity": "critical"}) == 30
    assert mttd.group_wait(production, {"alertname": "Watchdog", "severity": "none"}) == 0


def test_service_down_by_hand(result):
    # scrape 15 + eval 30 + for 60 + eval 30 + group_wait 30; expected 7.5 + 15 + 60 + 15 + 30.
    row = _row(result["alerts"], "ServiceDown")
    assert (row["worst_s"], row["expected_s"]) == (165, 127.5)


def test_database_pool_exhausted_by_hand(result):
    # for: 2m -> 15 + 30 + 120 + 30 + 30 = 225; expected 7.5 + 15 + 120 + 15 + 30 = 187.5.
    row = _row(result["alerts"], "DatabasePoolExhausted")
    assert (row["worst_s"], row["expected_s"]) == (225, 187.5)
    # The plan's `for: 5m`: 405 s, over the target.
    plan = _row(result["plan_alerts"], "DatabasePoolExhausted")
    assert plan["worst_s"] == 405
    assert result["plan_verdicts"]["DatabasePoolExhausted"]["over_target"]


def test_high_error_rate_pages_through_its_fast_window(result):
    fast, slow = _row(result["alerts"], "HighErrorRate", "fast"), _row(result["alerts"], "HighErrorRate", "slow")
    assert fast["worst_s"] == 15 + 30 + 60 + 30 + 30
    assert slow["worst_s"] == 15 + 30 + 900 + 30 + 30
    verdict = result["verdicts"]["HighErrorRate"]
    assert (verdict["rule"], verdict["worst_s"], verdict["over_target"]) == ("fast", 165, False)
    # The plan's rule (for: 5m) cannot meet the target at any error ratio.
    assert result["plan_verdicts"]["HighErrorRate"]["worst_s"] == 405


def test_for_is_rounded_up_to_the_evaluation_grid():
    assert mttd.pipeline(15, 30, 45, 30) == (15 + 30 + 60 + 30 + 30, 7.5 + 15 + 60 + 15 + 30)
    assert mttd.pipeline(15, 15, 0, 0) == (45, 22.5)


def test_test_settings_come_from_the_fast_alerting_inventory():
    variables = mttd.load_settings("test")
    rows = mttd.alert_rows(variables)
    # scrape 5 + eval 5 + for 15 + eval 5 + group_wait 5.
    assert _row(rows, "HighErrorRate", "fast")["worst_s"] == 35
    assert _row(rows, "ServiceDown")["worst_s"] == 35
    assert variables["prometheus_mdl_windows"]["rate1h"] == "3m"


# --- the target -------------------------------------------------------------------------------


def test_shipped_defaults_keep_every_critical_mdl_api_alert_under_target(result):
    critical = {
        name: v for name, v in result["verdicts"].items() if v["group"] == "mdl-api" and v["severity"] == "critical"
    }
    assert set(critical) == {"HighErrorRate", "DatabasePoolExhausted", "ServiceDown"}
    assert {name: v["worst_s"] for name, v in critical.items() if v["over_target"] or v["worst_s"] >= 300} == {}


def test_a_critical_alert_with_for_5m_is_flagged(production):
    variables = copy.deepcopy(production)
    variables["prometheus_mdl_alert_overrides"] = {"DatabasePoolExhausted": {"for": "5m"}}
    verdict = mttd.verdicts(mttd.alert_rows(variables))["DatabasePoolExhausted"]
    assert (verdict["worst_s"], verdict["over_target"]) == (405, True)
    # A 5m fast burn window is flagged the same way; a slow window alone is not the alert's latency.
    variables["prometheus_mdl_alert_overrides"] = {"HighErrorRate": {"burn_rates": {"fast": {"for": "5m"}}}}
    verdict = mttd.verdicts(mttd.alert_rows(variables))["HighErrorRate"]
    assert (verdict["worst_s"], verdict["over_target"]) == (405, True)


def test_a_warning_alert_is_never_flagged(result):
    assert _row(result["alerts"], "SlowResponseTime")["worst_s"] == 705
    assert not result["verdicts"]["SlowResponseTime"]["over_target"]


# --- window fill ------------------------------------------------------------------------------


def test_window_fill_by_hand():
    assert mttd.window_fill(3600, 0.0144, 0.5) == pytest.approx(103.68)
    assert mttd.window_fill(300, 0.05, 0.10) == pytest.approx(150)
    assert mttd.window_fill(300, 0.05, 0.05) is None  # the plan's rule never fires at exactly 5%


def test_fill_table(result):
    cell = {(r["rule"].split()[0], r["error_ratio"]): r for r in result["error_rate_fill"]}
    assert cell[("fast", 0.5)]["fill_s"] == pytest.approx(3600 * 0.0144 / 0.5)
    assert cell[("fast", 0.5)]["worst_s"] == pytest.approx(3600 * 0.0144 / 0.5 + 165)
    assert cell[("slow", 0.1)]["fill_s"] == pytest.approx(21600 * 0.006 / 0.1)
    assert cell[("plan", 0.05)]["worst_s"] is None
    assert cell[("plan", 1.0)]["worst_s"] == pytest.approx(15 + 405)
    # A large burn pages within the target through the fast window; the plan's rule never does.
    plan_best = min(r["worst_s"] for (name, _), r in cell.items() if name == "plan" and r["worst_s"] is not None)
    assert cell[("fast", 0.5)]["worst_s"] < 300 < plan_best


# --- the synthetic day ------------------------------------------------------------------------


def test_synthetic_day(result):
    rules = {name.split()[0]: r for name, r in result["synthetic_day"]["rules"].items()}
    # Every rule sees the incident; no rule fires on noise alone.
    assert all(r["by_cause"]["incident"] == 1 and r["false_alerts"] == 0 for r in rules.values())
    # The fast window pages during the 2-minute outage; the plan's rule only after it has ended.
    assert rules["fast"]["outage_detected_after_min"] <= 1
    assert rules["plan"]["outage_detected_after_min"] > mttd.OUTAGE["minutes"]
    # The fast window never fires on a blip.
    assert rules["fast"]["by_cause"]["blip"] == 0


def test_json_output(tmp_path, capsys):
    path = tmp_path / "mttd.json"
    assert mttd.main(["--json", str(path)]) == 0
    assert "Critical alerts over 300 s" in capsys.readouterr().out
    data = json.loads(path.read_text())
    assert data["verdicts"]["ServiceDown"]["worst_s"] == 165
    assert set(data) >= {"alerts", "verdicts", "plan_alerts", "error_rate_fill", "synthetic_day"}
