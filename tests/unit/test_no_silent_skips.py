"""make unit / make test never skip: a missing real-binary tool is a failure that says how to build it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import REPO_ROOT

CASE = "tests/unit/test_alertmanager_routing.py::test_a_tree_change_that_breaks_a_case_is_caught"


def _pytest(tmp_path, **env):
    run_env = {k: v for k, v in os.environ.items() if k not in ("OBS_REQUIRE_TOOLS", "OBS_TOOLS_DIR")}
    run_env.update(env, OBS_TOOLS_DIR=str(tmp_path / "no-tools"))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", CASE],
        cwd=REPO_ROOT, env=run_env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_missing_tool_fails_under_make(tmp_path):
    proc = _pytest(tmp_path, OBS_REQUIRE_TOOLS="1")
    assert proc.returncode == 1, proc.stdout
    assert re.search(r"\b1 (failed|error)\b", proc.stdout), proc.stdout
    assert "amtool is missing" in proc.stdout and "scripts/build-artifacts.sh" in proc.stdout, proc.stdout


def test_missing_tool_skips_for_a_developer_run(tmp_path):
    proc = _pytest(tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert "1 skipped" in proc.stdout, proc.stdout
    assert "scripts/build-artifacts.sh" in proc.stdout, proc.stdout


def test_make_unit_sets_the_strict_mode():
    makefile = (REPO_ROOT / "Makefile").read_text()
    unit = makefile.split("\nunit:", 1)[1].split("\n\n", 1)[0]
    assert "OBS_REQUIRE_TOOLS=1" in unit, unit
