"""Every role variable is documented: a comment in defaults and a typed argument spec."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROLES = sorted(p.parent.parent for p in Path(__file__).resolve().parents[2].glob("roles/*/defaults/main.yml"))
# Inventory-wide variables a role requires but does not default.
GLOBALS = {"obs_cluster", "obs_environment"}


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads Ansible's !unsafe strings as plain strings."""


_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))
TYPES = {"str", "int", "bool", "dict", "list", "path", "float", "raw"}


def _defaults(role: Path) -> dict:
    return yaml.load((role / "defaults/main.yml").read_text(), Loader=_Loader) or {}


def _options(role: Path) -> dict:
    spec = yaml.safe_load((role / "meta/argument_specs.yml").read_text())
    return spec["argument_specs"]["main"]["options"]


def test_every_role_is_covered():
    assert {r.name for r in ROLES} >= {"artifact", "service", "node_exporter", "prometheus", "alertmanager"}


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_defaults_and_argument_specs_match(role):
    defaults, options = _defaults(role), _options(role)
    assert set(defaults) - set(options) == set(), "defaults without an argument spec"
    assert set(options) - set(defaults) - GLOBALS == set(), "argument specs without a default"


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_argument_specs_are_typed_and_described(role):
    for name, option in _options(role).items():
        assert option.get("type") in TYPES, f"{name}: missing or unknown type"
        if option["type"] == "list":
            assert option.get("elements") in TYPES, f"{name}: list without elements type"
        assert len(str(option.get("description", ""))) > 10, f"{name}: no description"


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_every_default_has_a_comment(role):
    lines = (role / "defaults/main.yml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        match = re.match(r"^([a-z][a-z0-9_]*):", line)
        if not match:
            continue
        above = [ln for ln in lines[max(0, i - 3) : i] if ln.startswith("#") and "yamllint" not in ln]
        if not above:
            undocumented.append(match.group(1))
    assert undocumented == []


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_choices_include_the_default(role):
    for name, option in _options(role).items():
        if "choices" in option and "default" in option:
            assert option["default"] in option["choices"], name
