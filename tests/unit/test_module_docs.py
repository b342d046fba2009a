"""Every module's DOCUMENTATION, EXAMPLES and RETURN parse as ansible-doc reads them, and the
documented options are exactly the ones its AnsibleModule is created with (type, default, choices).

The argument spec is captured from main() itself, so a module that builds it inline is checked too.
"""

from __future__ import annotations

import pytest
from ansible.module_utils.basic import AnsibleModule
from conftest import PLUGINS, compare_options, load_ansible_module, module_docs

MODULES = sorted(p.stem for p in (PLUGINS / "modules").glob("*.py"))


class _Captured(Exception):
    pass


def _argument_spec(name: str, monkeypatch) -> dict:
    module = load_ansible_module(name)
    captured = {}

    def capture(self, argument_spec, **kwargs):
        captured.update(argument_spec)
        raise _Captured

    monkeypatch.setattr(AnsibleModule, "__init__", capture)
    with pytest.raises(_Captured):
        module.main()
    return captured


@pytest.mark.parametrize("name", MODULES)
def test_documentation_parses_and_matches_the_argument_spec(name, monkeypatch):
    doc, examples, returned = module_docs(name)
    assert doc["module"] == name and doc.get("short_description") and doc.get("description")
    assert examples, f"{name} has no EXAMPLES"
    assert returned is not None, f"{name} has no RETURN"
    compare_options(doc["options"], _argument_spec(name, monkeypatch))
