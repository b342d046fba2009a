"""Shared fixtures for the unit tests.

* ``load_module_from_path`` loads a Python file as a module: Ansible plugins
  (plugins/filter/obs.py, plugins/modules/*.py) and the test doubles are files,
  not importable package modules. ``load_ansible_module`` loads a module of
  plugins/modules, ``load_module_utils`` a file of plugins/module_utils under the
  name the modules import it by (ansible.module_utils.<name>), and
  ``module_docs`` reads a module's documentation as ansible-doc does, with its
  doc fragments (plugins/doc_fragments) merged. ``run_module`` runs a module's
  main() and returns what it passed to exit_json or fail_json.
* ``render_prometheus`` renders roles/prometheus/templates/prometheus.yml.j2
  through ansible-playbook, so the project's filter plugins and Ansible's own
  filters are the ones used in production.
* ``promtool`` is the real promtool binary from build/tools/bin; every real
  tool is looked up through ``require_tool``.

No silent skips: ``make unit`` (and so ``make test`` and CI) sets
OBS_REQUIRE_TOOLS=1, under which a missing real-binary tool is a failure that
says how to build it, and any other skip fails too. A developer running a
subset by hand without the tools gets skips instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import ansible.module_utils
import pytest
import yaml
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PLUGINS = REPO_ROOT / "plugins"
OBS_FILTER_PATH = REPO_ROOT / "plugins" / "filter" / "obs.py"
# The project venv's ansible-playbook; fall back to the one next to the
# running interpreter (pytest started from another venv with ansible-core).
ANSIBLE_PLAYBOOK = next(
    (
        p
        for p in (
            REPO_ROOT / ".venv" / "bin" / "ansible-playbook",
            Path(sys.executable).parent / "ansible-playbook",
        )
        if p.exists()
    ),
    REPO_ROOT / ".venv" / "bin" / "ansible-playbook",
)
# The real binaries the unit tests run (scripts/build-artifacts.sh builds them).
TOOLS_DIR = Path(os.environ.get("OBS_TOOLS_DIR") or REPO_ROOT / "build" / "tools" / "bin")
STRICT = os.environ.get("OBS_REQUIRE_TOOLS") == "1"
BUILD_HINT = "build the real tools with scripts/build-artifacts.sh (make setup does it)"
RENDER_PLAYBOOK = FIXTURES / "render_prometheus.yml"


def load_module_from_path(name: str, path: Path, *, register: bool = False):
    """The Python file ``path`` loaded as a module called ``name``.

    With ``register`` it is also put in sys.modules, where ``import name`` finds it.
    """
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# The modules import plugins/module_utils/<name>.py as ansible.module_utils.<name>
# (ansible.cfg: module_utils = plugins/module_utils); the tests import them the same way.
if str(PLUGINS / "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(PLUGINS / "module_utils"))


def load_module_utils(name: str):
    """plugins/module_utils/<name>.py, as ansible.module_utils.<name> (one instance for all tests)."""
    return importlib.import_module(f"ansible.module_utils.{name}")


def load_ansible_module(name: str):
    """plugins/modules/<name>.py, registered as <name>_under_test."""
    return load_module_from_path(f"{name}_under_test", PLUGINS / "modules" / f"{name}.py", register=True)


def module_docs(name: str):
    """(DOCUMENTATION, EXAMPLES, RETURN) of plugins/modules/<name>.py as ansible-doc reads them:
    DOCUMENTATION with its doc fragments merged (ansible.cfg: doc_fragment_plugins)."""
    from ansible.plugins.loader import fragment_loader  # noqa: PLC0415 - only the documentation tests need it
    from ansible.utils.plugin_docs import get_docstring  # noqa: PLC0415

    fragment_loader.add_directory(str(PLUGINS / "doc_fragments"))
    doc, examples, returns, _metadata = get_docstring(
        str(PLUGINS / "modules" / f"{name}.py"), fragment_loader, is_module=True
    )
    return doc, yaml.safe_load(examples), returns


def compare_options(doc_options: dict, spec_options: dict, path: str = "") -> None:
    """The documented options are exactly the argument spec's, with the same type, default, choices..."""
    assert set(doc_options) == set(spec_options), f"{path}: documented {sorted(doc_options)} != {sorted(spec_options)}"
    for name, spec in spec_options.items():
        doc = doc_options[name]
        where = f"{path}{name}"
        assert doc.get("type", "str") == spec.get("type", "str"), where
        assert doc.get("required", False) == spec.get("required", False), where
        assert doc.get("default") == spec.get("default"), where
        assert doc.get("choices") == spec.get("choices"), where
        assert doc.get("elements") == spec.get("elements"), where
        assert doc.get("description"), f"{where} has no description"
        assert ("suboptions" in doc) == ("options" in spec), where
        if "options" in spec:
            compare_options(doc["suboptions"], spec["options"], path=f"{where}.")


class FakeResponse:
    """What ansible.module_utils.urls.open_url returns, for the fake servers of the module tests."""

    def __init__(self, body: bytes, status: int = 200):
        self._body = body
        self.status = status

    def read(self):
        return self._body

    def getcode(self):
        return self.status


class ExitJson(Exception):
    pass


class FailJson(Exception):
    pass


@pytest.fixture
def run_module(monkeypatch):
    """``run_module(main, args) -> result``: run a module's main() with these arguments.

    The result is what the module passed to exit_json, or to fail_json (with
    failed=True and its msg).
    """

    def exit_json(self, **kwargs):
        raise ExitJson(kwargs)

    def fail_json(self, msg, **kwargs):
        raise FailJson(dict(kwargs, msg=msg, failed=True))

    monkeypatch.setattr(AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(AnsibleModule, "fail_json", fail_json)

    def run(main, args: dict) -> dict:
        with patch_module_args(args):
            try:
                main()
            except (ExitJson, FailJson) as exc:
                return exc.args[0]
        raise AssertionError("the module returned without exit_json or fail_json")

    return run


@pytest.fixture(scope="session")
def obs():
    """The plugins/filter/obs.py module."""
    return load_module_from_path("obs_filter_plugin_under_test", OBS_FILTER_PATH)


def _ansible_env(tmp_dir: Path) -> dict:
    # Drop any ANSIBLE_* settings from the caller's environment so the run
    # only depends on the project's ansible.cfg.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        {
            "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": str(tmp_dir),
        }
    )
    return env


@pytest.fixture(scope="session")
def render_prometheus(tmp_path_factory):
    """Return ``render(inventory_name, extra_vars=None) -> Path`` of the rendered file."""
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.skip(f"ansible-playbook not found at {ANSIBLE_PLAYBOOK}")
    work = tmp_path_factory.mktemp("render")
    counter = iter(range(1_000_000))

    def render(inventory: str, extra_vars: dict | None = None) -> Path:
        dest = work / f"prometheus-{next(counter)}.yml"
        cmd = [
            str(ANSIBLE_PLAYBOOK),
            "-i",
            str(FIXTURES / inventory),
            str(RENDER_PLAYBOOK),
            "-e",
            json.dumps({"dest": str(dest)}),
        ]
        if extra_vars:
            cmd += ["-e", json.dumps(extra_vars)]
        proc = subprocess.run(
            cmd,
            cwd=REPO_ROOT,
            env=_ansible_env(work),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, f"ansible-playbook failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        assert dest.is_file(), f"template was not written to {dest}:\n{proc.stdout}"
        return dest

    return render


def render_role(tmp_path: Path, role: str, extra: dict | None = None) -> subprocess.CompletedProcess:
    """Run fixtures/render_<role>.yml (the role's preflight, then its config written to <tmp_path>/<role>.yaml)."""
    cmd = [str(ANSIBLE_PLAYBOOK), "-i", str(FIXTURES / "inventory.yml"), str(FIXTURES / f"render_{role}.yml")]
    cmd += ["-e", json.dumps({"dest": str(tmp_path / f"{role}.yaml"), **(extra or {})})]
    return subprocess.run(
        cmd, cwd=REPO_ROOT, env=_ansible_env(tmp_path), capture_output=True, text=True, timeout=120, check=False
    )


def rendered_config(tmp_path: Path, role: str, extra: dict | None = None) -> dict:
    """The config the role renders with these extra vars (YAML or JSON), after its preflight passed."""
    proc = render_role(tmp_path, role, extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return yaml.safe_load((tmp_path / f"{role}.yaml").read_text())


def assert_refused(proc: subprocess.CompletedProcess, message: str, tmp_path: Path, role: str) -> None:
    """The render failed with ``message`` (whitespace-normalised) and wrote no config."""
    assert proc.returncode != 0
    assert message in " ".join((proc.stdout + proc.stderr).split()), proc.stdout
    assert not (tmp_path / f"{role}.yaml").exists()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a test server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(proc: subprocess.Popen | None, timeout: float = 15) -> int | None:
    """Stop a test server: SIGTERM, then SIGKILL after timeout s; its exit code (None without a process)."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode if proc is not None else None


def dpkg_arch() -> str:
    """This machine's Debian architecture (amd64, arm64, ...), as release archives name it."""
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


def require_tool(name: str) -> Path:
    """Path of a real tool from TOOLS_DIR: a failure under OBS_REQUIRE_TOOLS=1, else a skip."""
    path = TOOLS_DIR / name
    if path.is_file() and os.access(path, os.X_OK):
        return path
    message = f"{path} is missing: {BUILD_HINT}"
    if STRICT:
        pytest.fail(f"{message} (OBS_REQUIRE_TOOLS=1: make unit and make test never skip)", pytrace=False)
    pytest.skip(message)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under OBS_REQUIRE_TOOLS=1 a skipped test is a failed test (importorskip included)."""
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, but OBS_REQUIRE_TOOLS=1 (make unit, make test) runs everything: {reason}"


@pytest.fixture(scope="session")
def promtool() -> Path:
    return require_tool("promtool")


@pytest.fixture(scope="session")
def amtool() -> Path:
    return require_tool("amtool")


@pytest.fixture(scope="session")
def promtool_check_config(promtool):
    """Return ``check(path) -> CompletedProcess`` for `promtool check config`."""

    def check(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(promtool), "check", "config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return check


RENDER_RULES_PLAYBOOK = FIXTURES / "render_rules.yml"


@pytest.fixture(scope="session")
def render_rules(tmp_path_factory):
    """Return ``render(extra_vars=None) -> Path``: a directory holding the built-in
    rule files (<name>.rules.yml) rendered from the prometheus role's templates."""
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.skip(f"ansible-playbook not found at {ANSIBLE_PLAYBOOK}")
    counter = iter(range(1_000_000))

    def render(extra_vars: dict | None = None) -> Path:
        dest = tmp_path_factory.mktemp(f"rules-{next(counter)}")
        cmd = [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", str(RENDER_RULES_PLAYBOOK)]
        cmd += ["-e", json.dumps({"dest": str(dest), **(extra_vars or {})})]
        proc = subprocess.run(
            cmd, cwd=REPO_ROOT, env=_ansible_env(dest), capture_output=True, text=True, timeout=120, check=False
        )
        assert proc.returncode == 0, f"ansible-playbook failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        return dest

    return render


@pytest.fixture(scope="session")
def default_rules(render_rules) -> Path:
    """The built-in rule files rendered with the role defaults."""
    return render_rules()


@pytest.fixture(scope="session")
def alerting():
    """plugins/filter/alerting.py loaded as a module."""
    return load_module_from_path("alerting_filters", REPO_ROOT / "plugins/filter/alerting.py")
