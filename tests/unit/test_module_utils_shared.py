"""The pieces the project's modules share: the base HTTP client (plugins/module_utils/http_client.py),
the polling helper (polling.py), the connection argument spec and its doc fragments
(plugins/doc_fragments), checked on their own. The modules' tests check them in use."""

from __future__ import annotations

import ast
import io
import json
import os
import subprocess
from http.client import RemoteDisconnected
from urllib.error import HTTPError, URLError

import pytest
from conftest import ANSIBLE_PLAYBOOK, PLUGINS, REPO_ROOT, FakeResponse, load_module_utils, module_docs

http_mod = load_module_utils("http_client")
polling = load_module_utils("polling")
grafana_client = load_module_utils("grafana_client")
alertmanager_client = load_module_utils("alertmanager_client")

BASE = "http://server:8080"
MODULES = ("alertmanager_routing_check", "grafana_dashboards", "obs_grafana_datasource")
CONNECTION_OPTIONS = {"url_username", "url_password", "validate_certs", "ca_path", "ca_cert", "timeout"}


class DemoError(http_mod.HttpError):
    pass


class DemoClient(http_mod.HttpClient):
    service = "demo server"
    error = DemoError


def answer(monkeypatch, outcome):
    """Make open_url return ``outcome`` (bytes) or raise it (an exception); returns the calls."""
    calls = []

    def fake_open_url(url, **kwargs):
        calls.append((url, kwargs))
        if isinstance(outcome, BaseException):
            raise outcome
        return FakeResponse(outcome)

    monkeypatch.setattr(http_mod, "open_url", fake_open_url)
    return calls


def http_error(code, body, reason="x"):
    return HTTPError(f"{BASE}/api", code, reason, {}, io.BytesIO(body) if body is not None else None)


# ------------------------------------------------------------------ base client: errors
@pytest.mark.parametrize(
    ("raised", "reason"),
    [
        (URLError(ConnectionRefusedError(111, "Connection refused")), "[Errno 111] Connection refused"),
        (URLError(OSError(-2, "Name or service not known")), "[Errno -2] Name or service not known"),
        (RemoteDisconnected("Remote end closed connection without response"), "Remote end closed connection"),
        (OSError(), "OSError"),
    ],
)
def test_unreachable_names_the_server_the_reason_and_the_request(monkeypatch, raised, reason):
    answer(monkeypatch, raised)
    with pytest.raises(DemoError) as info:
        DemoClient(BASE + "/").request_json("GET", "/api/x", params={"a": "b c"})
    assert info.value.msg.startswith(f"demo server {BASE} unreachable: {reason}")
    assert info.value.msg.endswith(f"(GET {BASE}/api/x?a=b+c)")
    assert info.value.status is None and info.value.url == f"{BASE}/api/x?a=b+c"


@pytest.mark.parametrize("raised", [URLError(TimeoutError("timed out")), TimeoutError()])
def test_timeout_says_after_how_long(monkeypatch, raised):
    answer(monkeypatch, raised)
    with pytest.raises(DemoError, match=rf"^demo server {BASE} unreachable: timed out after 4 s \(POST {BASE}/w\)$"):
        DemoClient(BASE, timeout=4).request_text("POST", "/w", body={"k": 1})


@pytest.mark.parametrize(
    ("code", "body", "said"),
    [
        (400, b'"start time must be before end time"\n', "start time must be before end time"),
        (400, b'{"code":400,"message":"parsing alerts body failed"}', "parsing alerts body failed"),
        (409, b'{"error": "taken"}', "taken"),
        (500, b"<html>\n  <body>Bad   gateway</body>\n</html>", "<html> <body>Bad gateway</body> </html>"),
        (502, b"x" * 600, "x" * 500 + "..."),
        (503, b"", "overloaded"),
        (503, None, "overloaded"),
    ],
)
def test_http_error_names_the_request_the_status_and_what_the_server_said(monkeypatch, code, body, said):
    answer(monkeypatch, http_error(code, body, reason="overloaded"))
    with pytest.raises(DemoError) as info:
        DemoClient(BASE).request_json("DELETE", "/api/x")
    assert info.value.msg == f"DELETE {BASE}/api/x returned {code}: {said}"
    assert info.value.status == code and info.value.url == f"{BASE}/api/x"
    if body and body.startswith(b"{"):
        assert info.value.data == json.loads(body)


def test_refused_credentials_are_named(monkeypatch):
    answer(monkeypatch, http_error(401, b"Unauthorized\n"))
    with pytest.raises(DemoError) as info:
        DemoClient(BASE).request_text("GET", "/")
    assert info.value.msg == (
        f"GET {BASE}/ returned 401: Unauthorized; the demo server requires credentials: set url_username and"
        " url_password"
    )
    answer(monkeypatch, http_error(403, b'{"message": "forbidden"}'))
    with pytest.raises(DemoError) as info:
        DemoClient(BASE, username="bob", password="s3cret").request_text("GET", "/")
    assert info.value.msg.endswith(
        "forbidden; the demo server rejected the credentials of user 'bob': check url_username and url_password"
    )
    assert "s3cret" not in info.value.msg


def test_bodies_json_empty_not_json_and_allowed_404(monkeypatch):
    client = DemoClient(BASE)
    answer(monkeypatch, b' {"a": [1, 2]} ')
    assert client.request_json("GET", "/j") == {"a": [1, 2]}
    answer(monkeypatch, b"")
    assert client.request_json("GET", "/j") is None
    assert client.request_text("GET", "/j") == ""
    answer(monkeypatch, b"<html>login</html>")
    with pytest.raises(DemoError, match=rf"^GET {BASE}/j\?q=1 returned a body that is not JSON: <html>login</html>$"):
        client.request_json("GET", "/j", params=[("q", "1")])
    answer(monkeypatch, http_error(404, b"404 page not found"))
    assert client.request_json("GET", "/gone", allow_404=True) is http_mod.NOT_FOUND
    with pytest.raises(DemoError, match=r"returned 404: 404 page not found$"):
        client.request_json("GET", "/gone")


def test_request_options_headers_and_counts(monkeypatch):
    class TokenClient(DemoClient):
        user_agent = "demo-agent"

        def headers(self):
            return {"Authorization": "Bearer t"}

    calls = answer(monkeypatch, b"{}")
    client = TokenClient(BASE, timeout=3, validate_certs=False)
    client.request_json("GET", "/r")
    client.request_json("PUT", "/w", body={"x": 1})
    url, kwargs = calls[-1]
    assert (url, kwargs["method"], json.loads(kwargs["data"])) == (f"{BASE}/w", "PUT", {"x": 1})
    assert kwargs["headers"] == {
        "Accept": "application/json",
        "Content-Type": "application/json",
        "Authorization": "Bearer t",
    }
    assert (kwargs["timeout"], kwargs["validate_certs"], kwargs["http_agent"]) == (3, False, "demo-agent")
    assert kwargs["url_username"] is None and kwargs["url_password"] is None and kwargs["force_basic_auth"] is False
    assert kwargs["context"] is calls[0][1]["context"], "one SSL context for every request"
    assert (client.requests, client.writes) == (2, 1)
    DemoClient(BASE, username="u", password="p").request_text("GET", "/")
    assert (calls[-1][1]["url_username"], calls[-1][1]["url_password"], calls[-1][1]["force_basic_auth"]) == (
        "u",
        "p",
        True,
    )


def test_unusable_ca_path_is_reported_before_any_request(monkeypatch):
    calls = answer(monkeypatch, b"{}")
    with pytest.raises(DemoError, match=r"^cannot use ca_path /nonexistent/ca.pem: \[Errno 2\]"):
        DemoClient(BASE, ca_path="/nonexistent/ca.pem").request_json("GET", "/")
    assert calls == []


def test_every_client_builds_on_the_base_client():
    for client, error in (
        (alertmanager_client.AlertmanagerClient, alertmanager_client.AlertmanagerError),
        (alertmanager_client.SinkClient, alertmanager_client.AlertmanagerError),
        (grafana_client.GrafanaClient, grafana_client.GrafanaError),
    ):
        assert issubclass(client, http_mod.HttpClient) and client.error is error
        assert issubclass(error, http_mod.HttpError)
        assert "_send" not in vars(client) and "request_text" not in vars(client), "one transport"


def test_server_message():
    assert http_mod.server_message(b"") == "(empty response body)"
    assert http_mod.server_message('{"msg": "m", "message": ""}') == "m"
    assert http_mod.server_message(b"\xff bad utf-8") == "\ufffd bad utf-8"
    assert http_mod.server_message("a " * 10, limit=5) == "a a a..."


# ------------------------------------------------------------------ polling
class Clock:
    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(polling, "_monotonic", clock.monotonic)
    monkeypatch.setattr(polling, "_sleep", clock.sleep)
    return clock


def test_poll_checks_at_once_and_stops_when_the_check_holds(clock):
    results = iter([False, False, True])
    assert polling.poll_until(lambda: next(results), timeout=10, interval=2) is True
    assert clock.sleeps == [2, 2] and clock.now == 104


def test_poll_gives_up_at_the_deadline_after_a_last_check(clock):
    checks = []
    poll = polling.Poll(timeout=5, interval=2)
    assert poll.until(lambda: checks.append(clock.now)) is False
    assert checks == [100, 102, 104, 106], "the last check runs at or after the deadline"
    assert poll.elapsed() == 6


def test_poll_deadline_can_be_moved_by_the_check(clock):
    poll = polling.Poll(timeout=100, interval=1)
    seen = []

    def check():
        seen.append(clock.now)
        if clock.now == 102:  # what was awaited happened: watch 3 s more, then stop
            poll.deadline = polling.now() + 3
        return False

    assert poll.until(check) is False
    assert seen == [100, 101, 102, 103, 104, 105]


def test_poll_clock_helpers(clock):
    start = polling.now()
    polling.sleep(0.25)
    assert polling.since(start) == 0.25 and clock.sleeps == [0.25]
    assert polling.poll_until(lambda: True, timeout=0, interval=1) is True and clock.sleeps == [0.25]


def test_the_routing_check_has_one_polling_loop():
    """Every wait of the routing check goes through polling.Poll: no loop or clock of its own."""
    files = [PLUGINS / "modules" / "alertmanager_routing_check.py"] + [
        PLUGINS / "module_utils" / f"{name}.py"
        for name in ("alertmanager_cases", "alertmanager_fleet", "alertmanager_delivery")
    ]
    for path in files:
        tree = ast.parse(path.read_text())
        assert not [node.lineno for node in ast.walk(tree) if isinstance(node, ast.While)], path.name
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert "time" not in imported, path.name


# ------------------------------------------------------------------ argument spec and doc fragments
def test_connection_argument_spec_and_options():
    spec = http_mod.connection_argument_spec(extra=dict(type="int"))
    assert list(spec) == ["url_username", "url_password", "validate_certs", "ca_path", "ca_cert", "timeout", "extra"]
    assert spec["url_password"]["no_log"] is True
    assert (spec["validate_certs"]["default"], spec["timeout"]["default"], spec["ca_path"]["type"]) == (
        True,
        10,
        "path",
    )
    params = {"url_username": "u", "url_password": "p", "validate_certs": False, "ca_path": "/ca", "ca_cert": None,
              "timeout": 3}  # fmt: skip
    assert http_mod.connection_options(params) == dict(
        username="u", password="p", timeout=3, validate_certs=False, ca_path="/ca", ca_cert=None
    )
    assert http_mod.connection_options(params, credentials=False) == dict(
        timeout=3, validate_certs=False, ca_path="/ca", ca_cert=None
    )


def test_grafana_argument_spec_and_client_from_params():
    spec = grafana_client.grafana_argument_spec(uid=dict(type="str", required=True))
    assert set(spec) == CONNECTION_OPTIONS | {"url", "token", "org_id", "uid"}
    assert spec["token"]["no_log"] is True and spec["url"]["required"] is True
    params = {key: None for key in spec} | {"url": "https://g/", "token": "t", "org_id": 2, "timeout": 5}
    params["validate_certs"] = True
    client = grafana_client.GrafanaClient.from_params(params)
    assert (client.base_url, client.token, client.org_id, client.timeout, client.username) == (
        "https://g",
        "t",
        2,
        5,
        None,
    )
    assert client.headers() == {"Authorization": "Bearer t", "X-Grafana-Org-Id": "2"}


@pytest.mark.parametrize("name", MODULES)
def test_modules_take_their_connection_options_from_the_shared_pieces(name):
    doc, _examples, _returned = module_docs(name)
    assert CONNECTION_OPTIONS <= set(doc["options"])
    source = (PLUGINS / "modules" / f"{name}.py").read_text()
    documentation = source.split('DOCUMENTATION = r"""', 1)[1].split('"""', 1)[0]
    assert "  - obs_http\n" in documentation
    for option in CONNECTION_OPTIONS:
        assert f"\n  {option}:\n" not in documentation, f"{name} documents {option} itself"
        assert f"    {option}=dict(" not in source, f"{name} specifies {option} itself"


@pytest.mark.parametrize("name", MODULES)
def test_ansible_doc_renders_the_merged_documentation(name):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    command = [str(ANSIBLE_PLAYBOOK.with_name("ansible-doc")), "-M", str(PLUGINS / "modules"), "--json", name]
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)[name]["doc"]
    assert CONNECTION_OPTIONS <= set(doc["options"])
    assert doc["options"]["timeout"]["default"] == 10
