"""The fault that must trigger each of the plan's eight alerts, sized from the alert's own threshold.

Shared by the molecule end-to-end test (molecule/default/tests/test_app_e2e.py) and the alert
accuracy benchmark (bench/alert_accuracy.py). ``alerts`` is prometheus_mdl_alerts merged with
prometheus_mdl_alert_overrides, as the Prometheus host renders its rules; ``pool_max`` the
application's db_connections_max. The body is what PUT /admin/faults of the reference MDL API takes.
"""

from __future__ import annotations

import math


def burn_fault(spec: dict) -> float:
    """An error ratio ten times the fastest burn-rate threshold (at most half the requests)."""
    worst = max(b["factor"] for b in spec["burn_rates"].values()) * (1 - spec["objective"])
    return min(0.5, 10 * worst)


def faults(alerts: dict, pool_max: int) -> dict[str, dict]:
    """alertname -> the fault body that makes it fire."""
    return {
        "HighErrorRate": {"error_ratio": burn_fault(alerts["HighErrorRate"])},
        # A fifth of the requests twice the threshold slower: the P95 is well above it.
        "SlowResponseTime": {"latency_seconds": alerts["SlowResponseTime"]["threshold"] * 2, "latency_ratio": 0.2},
        "HighMemoryUsage": {"memory_bytes": int(alerts["HighMemoryUsage"]["threshold_bytes"]) + 256 * 2**20},
        "LowCacheHitRate": {"cache_bypass": True},
        "HighAuthFailureRate": {"fail_logins": True},
        "SlowDatabaseQueries": {
            "slow_query_seconds": alerts["SlowDatabaseQueries"]["threshold"] * 2,
            "slow_query_ratio": 0.2,
        },
        "DatabasePoolExhausted": {
            "hold_connections": math.ceil(alerts["DatabasePoolExhausted"]["threshold"] * pool_max)
        },
        "ServiceDown": {"stop": True},
    }


# Faults that do not disturb each other's signal, injected together by the end-to-end test to save
# time (the accuracy benchmark injects them one at a time): a 5xx share would turn failed logins
# (401) into errors, held connections would slow every query.
BATCHES = [
    ["HighErrorRate", "SlowResponseTime", "HighMemoryUsage"],
    ["LowCacheHitRate", "HighAuthFailureRate", "SlowDatabaseQueries"],
    ["DatabasePoolExhausted"],
    ["ServiceDown"],
]


def batches(alerts: dict, pool_max: int) -> list[dict[str, dict]]:
    table = faults(alerts, pool_max)
    assert sorted(n for b in BATCHES for n in b) == sorted(table), "every alert in exactly one batch"
    return [{name: table[name] for name in batch} for batch in BATCHES]
