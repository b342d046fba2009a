import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "lib"))

import sandbox


@pytest.fixture(scope="session")
def secrets():
    return sandbox.sandbox_secrets()


@pytest.fixture(scope="session")
def scenario_hosts():
    return sandbox.molecule_hosts()


@pytest.fixture(scope="session")
def expected(tmp_path_factory):
    """Per host, what the inventory and the role variables say (tests/expected.yml)."""
    state = sandbox.expected_state(tmp_path_factory.mktemp("expected") / "expected.json")
    # Every host has the same CA path (it comes from the roles' variables).
    sandbox.TLS_CA = next(iter(state.values()))["tls"]["ca"]
    return state


@pytest.fixture
def want(host, expected):
    """The expectations of the host under test."""
    return expected[host.backend.get_hostname()]
