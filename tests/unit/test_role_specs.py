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
    required = {name for name, option in options.items() if option.get("required")}
    assert set(defaults) - set(options) == set(), "defaults without an argument spec"
    assert set(options) - set(defaults) - GLOBALS - required == set(), "argument specs without a default"
    # A default would satisfy "required" and make it meaningless.
    assert required & set(defaults) == set(), "required inputs must not have a default"


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_defaults_live_only_in_defaults(role):
    """One place for a default: the argument spec types and documents, defaults/main.yml sets."""
    assert [name for name, option in _options(role).items() if "default" in option] == []


@pytest.mark.parametrize("role", ["service", "artifact"])
def test_shared_roles_require_their_inputs(role):
    path = Path(__file__).resolve().parents[2] / "roles" / role
    required = {name for name, option in _options(path).items() if option.get("required")}
    expected = {
        "service": {"service_name", "service_description", "service_user", "service_binary", "service_ready_url"},
        "artifact": {"artifact_name", "artifact_version", "artifact_binaries"},
    }[role]
    assert required == expected
    comments = (path / "defaults/main.yml").read_text()
    assert all(re.search(rf"^#\s+{name}\s", comments, re.M) for name in required), "required inputs are documented"


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
    defaults = _defaults(role)
    for name, option in _options(role).items():
        value = defaults.get(name)
        if "choices" in option and isinstance(value, str) and "{{" not in value:
            assert value in option["choices"], name


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_argument_spec_descriptions_hold_no_template(role):
    """Ansible templates the spec when it validates: a {{ }} in a description runs (and fails on an undefined name)."""
    text = (role / "meta/argument_specs.yml").read_text()
    assert "{{" not in text and "{%" not in text, f"{role.name}: a description holds a Jinja expression"
