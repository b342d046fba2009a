"""Filters that compare a running stack with what the inventory expects.

Used by playbooks/verify.yml; kept in Python so that every check is
unit-tested, including the cases where it must fail (tests/unit/test_verify_filters.py).
"""

from __future__ import annotations


def _expected_targets(configs, schemes=None):
    """{(job, instance): address} of every static target, and the jobs discovered otherwise.

    ``schemes`` (a dict), when given, is filled with {job: scheme} of every job.
    """
    expected, open_jobs = {}, set()
    for config in configs or []:
        job = config["job_name"]
        if schemes is not None:
            schemes[job] = config.get("scheme", "http")
        if any(key.endswith("_sd_configs") for key in config):
            open_jobs.add(job)  # targets come from service discovery: membership is not predictable
        for static in config.get("static_configs") or []:
            for address in static.get("targets") or []:
                instance = (static.get("labels") or {}).get("instance", address)
                expected[(job, instance)] = address
    return expected, open_jobs


def target_report(active_targets, configs) -> dict:
    """Compare Prometheus' active targets (/api/v1/targets) with the scrape configs the inventory expects.

    Returns {ok, expected, up, missing, unexpected, wrong_address, wrong_scheme, down}:
    each problem list holds readable "job/instance ..." strings. A target is
    missing when the inventory expects it and Prometheus does not scrape it,
    unexpected when Prometheus scrapes it and the inventory does not list it
    (jobs with service discovery are exempt), at a wrong scheme when its
    scrapeUrl is not http(s) as the job's config says (TLS on or off), down
    when its health is not "up".
    """
    schemes = {}
    expected, open_jobs = _expected_targets(configs, schemes)
    actual = {}
    for target in active_targets or []:
        labels = target.get("labels") or {}
        actual[(labels.get("job", ""), labels.get("instance", ""))] = target
    missing = [f"{job}/{inst} ({addr})" for (job, inst), addr in sorted(expected.items()) if (job, inst) not in actual]
    unexpected = [
        f"{job}/{inst} ({(t.get('discoveredLabels') or {}).get('__address__', t.get('scrapeUrl', '?'))})"
        for (job, inst), t in sorted(actual.items())
        if (job, inst) not in expected and job not in open_jobs
    ]
    wrong_address = []
    for key, target in sorted(actual.items()):
        seen = (target.get("discoveredLabels") or {}).get("__address__")
        if key in expected and seen is not None and seen != expected[key]:
            wrong_address.append(f"{key[0]}/{key[1]} (scraped at {seen}, the inventory says {expected[key]})")
    wrong_scheme = []
    for (job, inst), target in sorted(actual.items()):
        scheme = (target.get("scrapeUrl") or "").partition("://")[0]
        if job in schemes and scheme and scheme != schemes[job]:
            wrong_scheme.append(f"{job}/{inst} (scraped over {scheme}, the inventory says {schemes[job]})")
    down = [
        f"{job}/{inst} ({t.get('health', '?')}: {t.get('lastError') or 'no error reported'})"
        for (job, inst), t in sorted(actual.items())
        if t.get("health") != "up"
    ]
    return {
        "ok": not (missing or unexpected or wrong_address or wrong_scheme or down) and bool(actual),
        "expected": len(expected),
        "up": sum(1 for t in actual.values() if t.get("health") == "up"),
        "missing": missing,
        "unexpected": unexpected,
        "wrong_address": wrong_address,
        "wrong_scheme": wrong_scheme,
        "down": down,
    }


def set_report(seen, expected) -> dict:
    """Compare two collections of strings (e.g. Alertmanager URLs): {ok, missing, unexpected}."""
    seen, expected = set(seen or []), set(expected or [])
    return {
        "ok": seen == expected and bool(expected),
        "missing": sorted(expected - seen),
        "unexpected": sorted(seen - expected),
    }


def rule_report(groups) -> dict:
    """Health of the rule groups of /api/v1/rules.

    Returns {ok, groups, rules, unhealthy, unknown, max_interval}: ``unhealthy``
    lists rules whose last evaluation failed (with the error), ``unknown`` the
    rules never evaluated yet. ``ok`` needs at least one group and neither.
    The caller waits a few times ``max_interval`` (seconds) before it treats
    ``unknown`` as a failure.
    """
    groups = list(groups or [])
    unhealthy, unknown, count = [], [], 0
    for group in groups:
        for rule in group.get("rules") or []:
            count += 1
            name = f"{group.get('name', '?')}/{rule.get('name', '?')}"
            health = rule.get("health")
            if health == "unknown":
                unknown.append(name)
            elif health != "ok":
                unhealthy.append(f"{name} ({health}: {rule.get('lastError') or 'no error reported'})")
    return {
        "ok": bool(groups) and not unhealthy and not unknown,
        "groups": len(groups),
        "rules": count,
        "unhealthy": unhealthy,
        "unknown": unknown,
        "max_interval": max((float(g.get("interval") or 0) for g in groups), default=0.0),
    }


class FilterModule:
    def filters(self):
        return {
            "target_report": target_report,
            "set_report": set_report,
            "rule_report": rule_report,
        }
