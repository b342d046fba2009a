"""kill -9 of every service the roles run, on every host at once: systemd restarts each
one, it answers ready again, and the stack's own alerting notices and forgets it.

A killed service is back within RestartSec (5s) plus its start, far inside TargetDown's
`for:`, so TargetDown must stay quiet; ServiceRestarted (a changed
process_start_time_seconds) must fire for every scraped one, reach the sink, and resolve
once its window (prometheus_stack_alerts.ServiceRestarted.window, shortened for the
scenario's fast_alerting group) has passed.

Evidence: systemd (NRestarts, MainPID), each service's readiness URL, Prometheus' alerts
and targets APIs, and the sink's records. Every Prometheus is killed too; each one's
restart is judged by another Prometheus.
"""

import time
import urllib.parse

import pytest
import sandbox
import testinfra

# Readiness URLs behind the basic auth of these components (expected.yml's auth_usernames).
AUTH = {"prometheus": "vault_prometheus_password", "alertmanager": "vault_alertmanager_password"}


def _unit(host, unit, prop):
    return host.check_output(f"systemctl show -p {prop} --value {unit}")


def _credentials(want, secrets, job):
    if job in AUTH and want["auth_usernames"][job]:
        return want["auth_usernames"][job], secrets[AUTH[job]]
    return None, None


def _prom(expected, secrets, name, path):
    want = expected[name]
    user, password = _credentials(want, secrets, "prometheus")
    host = testinfra.get_host(f"docker://{name}")
    return sandbox.curl_json(host, want["urls"]["prometheus"] + path, user, password)["data"]


@pytest.fixture(scope="module")
def killed(expected, secrets):
    """Kill every service at once; per (host, unit): its job, its judge, and seconds until ready again."""
    judges = sorted(n for n, e in expected.items() if "prometheus" in e["groups"])
    if not judges:
        pytest.skip("no Prometheus in the inventory")
    victims = []
    for name in sorted(expected):
        for service in expected[name]["services"]:
            # A Prometheus cannot see its own restart: another one judges it (with one only, it is spared).
            others = [j for j in judges if j != name]
            if service["unit"] == "prometheus" and not others:
                continue
            judge = others[0] if service["unit"] == "prometheus" else judges[0]
            victims.append({"host": name, **service, "judge": judge, "conn": testinfra.get_host(f"docker://{name}")})
    last = max((r["id"] for r in sandbox.sink_received()), default=0)
    for v in victims:
        v["restarts"], v["pid"] = int(_unit(v["conn"], v["unit"], "NRestarts")), _unit(v["conn"], v["unit"], "MainPID")
    killed_wall = time.time()
    for v in victims:
        v["killed_at"] = time.monotonic()
        v["conn"].check_output(f"systemctl kill --signal=SIGKILL {v['unit']}")
    deadline = time.monotonic() + 180
    pending = list(victims)
    while pending and time.monotonic() < deadline:
        for v in list(pending):
            user, password = _credentials(expected[v["host"]], secrets, v["job"])
            restarted = int(_unit(v["conn"], v["unit"], "NRestarts")) > v["restarts"]
            if restarted and sandbox.curl_code(v["conn"], v["ready_url"], user, password) == "200":
                v["ready_after"] = time.monotonic() - v["killed_at"]
                pending.remove(v)
        time.sleep(0.5)
    print("\nkill -9 -> ready again:")
    for v in victims:
        print(f"  {v['host']:<14} {v['unit']:<30} {v.get('ready_after', float('nan')):6.1f} s")
    return {"victims": victims, "sink_after": last, "killed_wall": killed_wall}


def test_systemd_restarts_every_killed_service_and_it_answers_ready(killed):
    problems = []
    for v in killed["victims"]:
        restarts = int(_unit(v["conn"], v["unit"], "NRestarts"))
        pid = _unit(v["conn"], v["unit"], "MainPID")
        if restarts != v["restarts"] + 1 or pid in (v["pid"], "0") or "ready_after" not in v:
            problems.append(
                f"{v['host']} {v['unit']}: NRestarts {v['restarts']} -> {restarts}, MainPID {v['pid']} -> {pid},"
                f" ready again: {'ready_after' in v}"
            )
    assert not problems, "\n".join(problems)


def _instances(expected, secrets, v):
    """The instance labels of the judge's active targets of this victim's job on this victim's host."""
    targets = _prom(expected, secrets, v["judge"], "/api/v1/targets?state=active")["activeTargets"]
    return {
        t["labels"]["instance"]
        for t in targets
        if t["labels"].get("job") == v["job"] and urllib.parse.urlsplit(t["scrapeUrl"]).hostname == v["host"]
    }


def _alerts(expected, secrets, judge, name):
    return [a for a in _prom(expected, secrets, judge, "/api/v1/alerts")["alerts"] if a["labels"]["alertname"] == name]


def _fired_since(expected, secrets, judge, name, since):
    """(job, instance) of every alert ``name`` the judge had firing at any evaluation since ``since`` (its
    ALERTS series), so that a check after the alert resolved still sees it."""
    seconds = max(1, int(time.time() - since) + 5)
    query = urllib.parse.quote(f'max_over_time(ALERTS{{alertname="{name}",alertstate="firing"}}[{seconds}s])')
    result = _prom(expected, secrets, judge, f"/api/v1/query?query={query}")["result"]
    return {(r["metric"].get("job"), r["metric"].get("instance")) for r in result}


@pytest.fixture(scope="module")
def scraped(expected, secrets, killed):
    """The killed services Prometheus scrapes, each with its target instances (Grafana is not scraped)."""
    out = [dict(v, instances=_instances(expected, secrets, v)) for v in killed["victims"] if v["job"]]
    missing = [f"{v['host']} {v['job']}" for v in out if not v["instances"]]
    assert not missing, f"no active target for {missing}"
    return out


def test_service_restarted_fires_for_every_killed_scraped_service(expected, secrets, killed, scraped):
    def all_fired():
        missing = []
        for judge in sorted({v["judge"] for v in scraped}):
            fired = _fired_since(expected, secrets, judge, "ServiceRestarted", killed["killed_wall"])
            missing += [
                f"{v['job']}/{i} (judge {judge})"
                for v in scraped
                if v["judge"] == judge
                for i in sorted(v["instances"])
                if (v["job"], i) not in fired
            ]
        assert not missing, f"ServiceRestarted never fired for {missing}"

    sandbox.eventually(all_fired, timeout=120, interval=3)


def test_the_sink_got_each_restart_and_its_resolution(expected, secrets, killed, scraped):
    summaries = {f"Service {v['job']}/{i} restarted" for v in scraped for i in v["instances"]}

    def received(status):
        records = sandbox.sink_received(contains="ServiceRestarted", status=status, after=killed["sink_after"])
        text = " ".join(r.get("body", "") for r in records if r["accepted"])
        return sorted(s for s in summaries if s not in text)

    def notified():
        assert not received("firing"), f"no firing notification at the sink for {received('firing')}"

    sandbox.eventually(notified, timeout=120, interval=3)

    # Resolved in Prometheus once the window passed, and the resolution notified.
    def resolved():
        still = [
            a["labels"]
            for v in scraped
            for a in _alerts(expected, secrets, v["judge"], "ServiceRestarted")
            if a["labels"].get("job") == v["job"] and a["labels"].get("instance") in v["instances"]
        ]
        assert not still, f"ServiceRestarted still active: {still}"
        assert not received("resolved"), f"no resolved notification at the sink for {received('resolved')}"

    sandbox.eventually(resolved, timeout=240, interval=5)


def test_target_down_stayed_quiet_for_restarts_within_its_for(expected, secrets, killed, scraped):
    """Run after the resolution (more than TargetDown's `for:` after the kills): at no evaluation since
    the kills did any judge have TargetDown firing for a killed target."""
    killed_targets = {(v["job"], i) for v in scraped for i in v["instances"]}
    for judge in sorted({v["judge"] for v in scraped}):
        fired = _fired_since(expected, secrets, judge, "TargetDown", killed["killed_wall"]) & killed_targets
        assert not fired, f"TargetDown fired on {judge} for services that were back within seconds: {sorted(fired)}"
