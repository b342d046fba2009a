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
