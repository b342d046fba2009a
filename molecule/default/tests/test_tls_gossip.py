"""Alertmanager gossip over mutual TLS (alertmanager_cluster_tls), which the inventory leaves
off by default (see the role's defaults): the Alertmanagers are converged with it on, as a
user turns it on, checked with the same evidence as test_tls' inventory-mode check, and
converged back.

A module of its own because the converge is a module-scoped fixture and the host fixture
is parametrized per module: in test_tls the second host's inventory-mode check would run
while gossip was still TLS (CI run ci26). Runs after test_tls and before test_verify_playbook,
which then sees the inventory's mode again.
"""

import pytest
import sandbox
from test_ha_failure import am_nodes, wait_gossiping
from test_tls import _check_gossip


@pytest.fixture(scope="module")
def gossip_tls_expected(tmp_path_factory, expected, secrets):
    """The Alertmanagers converged with alertmanager_cluster_tls=true, as a user turns it on, and
    what expected.yml says then; converged back to the inventory's mode after this module, and
    left only once their gossip flows again (the tests after this one count notifications)."""
    args = ("-e", "alertmanager_cluster_tls=true")
    proc = sandbox.playbook(sandbox.PROJECT / "playbooks/alertmanager.yml", *args, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    yield sandbox.expected_state(tmp_path_factory.mktemp("gossip-tls") / "expected.json", *args)
    proc = sandbox.playbook(sandbox.PROJECT / "playbooks/alertmanager.yml", timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    nodes = am_nodes(expected)
    if len(nodes) > 1:
        wait_gossiping(expected, secrets, nodes)


def test_alertmanager_gossip_is_mutual_tls_when_asked(host, want, secrets, request):
    if "alertmanager" not in want["groups"] or not want["tls"]["enabled"]:
        pytest.skip("gossip over TLS needs an Alertmanager with TLS on")
    tls_want = request.getfixturevalue("gossip_tls_expected")[host.backend.get_hostname()]
    assert tls_want["alertmanager_cluster"]["tls"], tls_want["alertmanager_cluster"]
    _check_gossip(host, tls_want, secrets)
