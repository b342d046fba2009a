"""High availability under failure: an Alertmanager of the cluster is stopped, and then
killed with SIGKILL, while playbooks/verify.yml runs its live smoke test through the cluster.

The node taken down is the one that sends the cluster's notifications (position 0 of
the peers sorted by name, as Alertmanager orders them), right after the smoke test
posted its alerts, so the other node must take over before group_wait ends.

- stop: verify (--tags routing, verify_alertmanager_max_unavailable=1) passes and names
  the lost node; the sink got every case on every expected channel exactly once.
- degraded: with the node still down, verify --tags alertmanager fails, says which node
  does not answer and how the rest of the cluster looks, without a Python traceback.
- return: the node is started, the cluster re-forms and verify --tags alertmanager passes.
- kill -9: systemd restarts the node (NRestarts rises, new PID); every notification still
  arrives once; the cluster re-forms.

Evidence comes from the sink's records, the Alertmanagers' status API and systemd, not
from the module's verdict (its report only says which smoke-test id each case used).
"""

import json
import subprocess
import time
import urllib.parse
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sandbox
import testinfra

PROJECT = Path(__file__).resolve().parents[3]
VERIFY = PROJECT / "playbooks/verify.yml"


def am_nodes(expected) -> dict:
    """{name: testinfra host} of every Alertmanager of the scenario, sorted by name."""
    names = sorted(n for n, e in expected.items() if "alertmanager" in e["groups"])
    return {n: testinfra.get_host(f"docker://{n}") for n in names}


@pytest.fixture(scope="module")
def cluster(expected, secrets):
    nodes = am_nodes(expected)
    if len(nodes) < 2:
        pytest.skip("the failure tests need an Alertmanager cluster of two or more")
    yield nodes
    # Whatever happened, leave every node running and the cluster formed for the tests after this one.
    for host in nodes.values():
        host.run("systemctl start alertmanager")
    wait_gossiping(expected, secrets, nodes)


def am_status(expected, secrets, name, host):
    want = expected[name]
    url, user = want["urls"]["alertmanager"] + "/api/v2/status", want["auth_usernames"]["alertmanager"]
    return sandbox.curl_json(host, url, user, secrets["vault_alertmanager_password"])


def wait_formed(expected, secrets, nodes):
    """Until every node answers with cluster ready and all nodes as peers; returns {node: status}."""

    def formed():
        statuses = {}
        for name, host in nodes.items():
            try:
                statuses[name] = am_status(expected, secrets, name, host)
            except AssertionError as exc:
                raise AssertionError(f"{name} does not answer: {exc}") from exc
            cluster = statuses[name]["cluster"]
            assert cluster["status"] == "ready" and len(cluster["peers"]) == len(nodes), (name, cluster)
        return statuses

    return sandbox.eventually(formed, timeout=120, interval=3)


def wait_gossiping(expected, secrets, nodes, timeout: float = 120):
    """Until the cluster is formed and a silence made on each node is listed by every other one.

    A formed cluster can still lose its first broadcasts after its nodes restart (CI run ci29:
    right after test_tls_gossip switched gossip back to plain, both nodes sent one notification);
    the notification-log entries that deduplicate notifications travel the same way as silences.
    Each probe silence matches no alert (a label of its own) and is expired afterwards."""
    wait_formed(expected, secrets, nodes)
    password = secrets["vault_alertmanager_password"]

    def api(name, path):
        """URL, user and password of ``path`` of the Alertmanager on ``name`` (sandbox's curl helpers)."""
        return (
            f"{expected[name]['urls']['alertmanager']}/api/v2/{path}",
            expected[name]["auth_usernames"]["alertmanager"],
            password,
        )

    for source, host in nodes.items():
        now = datetime.now(UTC)
        body = json.dumps({
            "matchers": [{"name": "obs_gossip_probe", "value": uuid.uuid4().hex, "isRegex": False, "isEqual": True}],
            "startsAt": now.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "endsAt": (now + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "createdBy": "molecule", "comment": "gossip probe of the HA tests, expired at once",
        })  # fmt: skip
        post = sandbox.curl_args(*api(source, "silences"))
        out = host.check_output(
            f"curl -sS --max-time 5 -f -X POST -H 'Content-Type: application/json' -d '{body}' {post}"
        )
        silence = json.loads(out)["silenceID"]

        def listed_everywhere(silence=silence, source=source):
            for name, other in nodes.items():
                code = sandbox.curl_code(other, *api(name, f"silence/{silence}"))
                assert code == "200", f"silence {silence} made on {source} is not on {name} (HTTP {code})"

        try:
            sandbox.eventually(listed_everywhere, timeout=timeout, interval=1)
        finally:
            host.run(f"curl -sS --max-time 5 -f -X DELETE {sandbox.curl_args(*api(source, f'silence/{silence}'))}")


def sending_node(expected, secrets, nodes):
    """The node at position 0: Alertmanager sorts the peers by name and the first one notifies at once."""
    statuses = wait_formed(expected, secrets, nodes)
    return min(nodes, key=lambda name: statuses[name]["cluster"]["name"])


def cluster_url(expected, name):
    """How the smoke test (and Prometheus) reach a node: by its inventory name, on its local URL's port."""
    local = urllib.parse.urlsplit(expected[name]["urls"]["alertmanager"])
    return f"{local.scheme}://{name}:{local.port}"


def start_verify(run_id, report, *extra):
    cmd, env = sandbox.playbook_command(
        VERIFY, "--tags", "routing", "-e", f"verify_run_id={run_id}", "-e", f"verify_report_file={report}", *extra
    )
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_posted(expected, secrets, name, run_id, proc):
    """Until ``name`` lists an alert of this run (the smoke test has posted its first batch)."""
    host = testinfra.get_host(f"docker://{name}")
    label = expected[name]["smoke_label"]
    query = urllib.parse.quote(f'{label}=~"{run_id}-.*"')
    url = f"{expected[name]['urls']['alertmanager']}/api/v2/alerts?filter={query}"
    user = expected[name]["auth_usernames"]["alertmanager"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"verify ended before posting anything:\n{proc.stdout.read()[-4000:]}"
        if sandbox.curl_json(host, url, user, secrets["vault_alertmanager_password"]):
            return
        time.sleep(0.5)
    raise AssertionError(f"no alert of run {run_id} on {name} within 300 s")


def finish(proc):
    out, _ = proc.communicate(timeout=900)
    return proc.returncode, out


def delivered_once(report, receivers):
    """Problems with what the sink recorded for every case of the run: each expected channel got exactly
    one firing notification, no other channel any, an inhibited case none, and none was resolved twice."""
    problems = []
    for case in report["cases"]:
        records = [r for r in sandbox.sink_received(contains=case["id"]) if r["accepted"]]
        want = set() if case["expected_inhibited"] else {receivers[name]["channel"] for name in case["expected"]}
        counts = {}
        for record in records:
            key = (record["channel"], record["status"])
            counts[key] = counts.get(key, 0) + 1
        firing = {channel: n for (channel, status), n in counts.items() if status == "firing"}
        if firing != dict.fromkeys(want, 1):
            problems.append(f"{case['name']} ({case['id']}): firing {firing}, expected one each on {sorted(want)}")
        twice = {key: n for key, n in counts.items() if key[1] != "firing" and n > 1}
        if twice:
            problems.append(f"{case['name']} ({case['id']}): {twice}")
        if {r["channel"] for r in records} - want:
            problems.append(f"{case['name']} ({case['id']}): reached {sorted({r['channel'] for r in records})}")
    return problems


def unit(host, prop):
    return host.check_output(f"systemctl show -p {prop} --value alertmanager")


@pytest.fixture(scope="module")
def stopped(expected, secrets, cluster, tmp_path_factory):
    """Stop the sending node while a smoke test runs; the run's report, output and the node."""
    victim = sending_node(expected, secrets, cluster)
    survivor = next(name for name in cluster if name != victim)
    run_id = f"ha-stop-{int(time.time())}"
    report = tmp_path_factory.mktemp("ha") / "stop.json"
    proc = start_verify(run_id, report, "-e", "verify_alertmanager_max_unavailable=1")
    wait_posted(expected, secrets, survivor, run_id, proc)
    cluster[victim].check_output("systemctl stop alertmanager")
    rc, out = finish(proc)
    return {"victim": victim, "survivor": survivor, "rc": rc, "out": out, "report": report}


def test_a_stopped_node_loses_no_notification_and_sends_none_twice(expected, stopped, cluster):
    assert stopped["rc"] == 0, stopped["out"][-6000:]
    report = json.loads(stopped["report"].read_text())
    victim_url = cluster_url(expected, stopped["victim"])
    lost = {am["url"]: am["lost"] for am in report["alertmanagers"]}
    assert lost.get(victim_url), f"the run did not notice that {victim_url} went down: {lost}"
    assert not lost[cluster_url(expected, stopped["survivor"])], lost
    problems = delivered_once(report, sandbox.deployed_receivers(stopped["survivor"]))
    assert not problems, "\n".join(problems)


def test_verify_reports_the_degraded_cluster(expected, stopped, cluster):
    """The node is still down: the first play says which one and what the survivor sees; the routing
    smoke test (max_unavailable 0) refuses to start and names the unreachable URL."""
    assert cluster[stopped["victim"]].run("systemctl is-active alertmanager").stdout.strip() != "active"
    proc = sandbox.playbook(VERIFY, "--tags", "alertmanager", "-e", "verify_alertmanager_retries=2", timeout=600)
    out = proc.stdout + proc.stderr
    total = len(cluster)
    local_url = expected[stopped["victim"]]["urls"]["alertmanager"]
    assert proc.returncode != 0, out[-4000:]
    assert f"Alertmanager cluster degraded: {total - 1} of {total} Alertmanager(s) answer" in out, out[-4000:]
    assert f"{stopped['victim']}: does not answer" in out, out[-4000:]
    assert f"{stopped['survivor']}: cluster ready with {total - 1} of {total} peer(s)" in out, out[-4000:]
    assert f"Alertmanager at {local_url} does not answer" in out, out[-4000:]
    routing = f"Alertmanager {cluster_url(expected, stopped['victim'])} unreachable"
    assert routing in out, f"the routing play did not name the node that is down ({routing}): {out[-4000:]}"
    assert "Traceback" not in out, out[-4000:]


def test_the_cluster_re_forms_when_the_node_returns(expected, secrets, stopped, cluster):
    cluster[stopped["victim"]].check_output("systemctl start alertmanager")
    wait_formed(expected, secrets, cluster)
    proc = sandbox.playbook(VERIFY, "--tags", "alertmanager", timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "Alertmanager cluster complete" in proc.stdout


def test_kill_9_of_the_sending_node_is_restarted_and_loses_no_notification(
    expected, secrets, stopped, cluster, tmp_path
):
    victim = sending_node(expected, secrets, cluster)
    survivor = next(name for name in cluster if name != victim)
    host = cluster[victim]
    restarts, pid = int(unit(host, "NRestarts")), unit(host, "MainPID")
    run_id = f"ha-kill-{int(time.time())}"
    report = tmp_path / "kill.json"
    proc = start_verify(run_id, report, "-e", "verify_alertmanager_max_unavailable=1")
    wait_posted(expected, secrets, survivor, run_id, proc)
    killed_at = time.monotonic()
    host.check_output("systemctl kill --signal=SIGKILL alertmanager")

    def answers_again():
        assert int(unit(host, "NRestarts")) == restarts + 1, "systemd did not restart the killed Alertmanager"
        return am_status(expected, secrets, victim, host)

    sandbox.eventually(answers_again, timeout=60, interval=0.5)
    ready_after = time.monotonic() - killed_at
    wait_formed(expected, secrets, cluster)
    formed_after = time.monotonic() - killed_at
    rc, out = finish(proc)
    assert rc == 0, out[-6000:]
    problems = delivered_once(json.loads(report.read_text()), sandbox.deployed_receivers(survivor))
    assert not problems, "\n".join(problems)
    assert unit(host, "MainPID") not in (pid, "0")
    print(f"kill -9 of {victim}'s Alertmanager: answers after {ready_after:.1f} s, cluster after {formed_after:.1f} s")
