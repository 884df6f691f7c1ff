"""The fast path serves exactly what Flask's full path would, and steps aside for user hooks."""

from __future__ import annotations

import json
import threading
import uuid

import flask
import pytest
from flask import g, request, request_started
from werkzeug.test import EnvironBuilder, run_wsgi_app

from agentcore_sync import BedrockAgentCoreApp
from agentcore_sync.core import headers
from agentcore_sync.core.context import _new_request_id
from agentcore_sync.core.versions import FLASK_FAST_PATH, gate
from agentcore_sync.web.responses import JSONReply

pytestmark = pytest.mark.unit

FAST_PATH = gate(*FLASK_FAST_PATH)
if not FAST_PATH.on:
    # The fast path does not exist on this Flask; the contract tests cover the plain path.
    pytest.skip(FAST_PATH.describe(), allow_module_level=True)

from agentcore_sync.web.flask31 import InvocationContext as _InvocationContext  # noqa: E402


def make_app():
    app = BedrockAgentCoreApp(result_store="memory://")

    @app.entrypoint
    def handler(payload):
        # Flask's request context is there, as in any view.
        return {
            "payload": payload,
            "endpoint": request.endpoint,
            "raw": request.get_data(as_text=True),
            "app": flask.current_app.name == app.name,
            "g": g.get("seen", None),
        }

    return app


def test_fast_path_serves_what_the_full_path_serves():
    fast = make_app()
    slow = make_app()

    @slow.before_request
    def mark():
        g.seen = None  # a no-op hook: forces the full path

    for app in (fast, slow):
        client = app.test_client()
        reply = client.post("/invocations", json={"a": 1})
        assert reply.status_code == 200
        assert reply.json == {
            "payload": {"a": 1},
            "endpoint": "agentcore.invocations",
            "raw": '{"a": 1}',
            "app": True,
            "g": None,
        }
        ping = client.get("/ping")
        assert ping.status_code == 200 and ping.mimetype == "application/json"
        assert set(ping.json) == {"status", "time_of_last_update"}
        assert client.post("/invocations", data=b"{").status_code == 400
    assert fast.fast_path._setup_allows is True
    assert slow.fast_path._setup_allows is False


def test_hooks_registered_by_the_user_run_on_both_routes():
    app = make_app()
    seen = []

    @app.before_request
    def before():
        seen.append(("before", request.path))
        g.seen = "hooked"

    @app.after_request
    def after(response):
        response.headers["X-Hooked"] = "yes"
        return response

    client = app.test_client()
    reply = client.post("/invocations", json={})
    assert reply.json["g"] == "hooked"
    assert reply.headers["X-Hooked"] == "yes"
    assert client.get("/ping").headers["X-Hooked"] == "yes"
    assert seen == [("before", "/invocations"), ("before", "/ping")]


def test_a_before_request_hook_that_reads_the_body_leaves_it_for_the_handler():
    app = make_app()

    @app.before_request
    def peek():
        g.seen = request.get_json(silent=True)

    reply = app.test_client().post("/invocations", json={"x": [1, 2]})
    assert reply.json["payload"] == {"x": [1, 2]} and reply.json["g"] == {"x": [1, 2]}


def test_signal_receivers_take_the_full_path():
    app = make_app()
    started = []

    def receiver(sender, **extra):
        started.append(request.path)

    request_started.connect(receiver, app)
    try:
        client = app.test_client()
        client.get("/ping")
        client.post("/invocations", json={})
    finally:
        request_started.disconnect(receiver, app)
    assert started == ["/ping", "/invocations"]


def test_wsgi_middleware_wraps_the_fast_path_too():
    app = make_app()
    calls = []
    inner = app.wsgi_app

    def middleware(environ, start_response):
        calls.append(environ["PATH_INFO"])
        return inner(environ, start_response)

    app.wsgi_app = middleware
    client = app.test_client()
    assert client.get("/ping").status_code == 200
    assert client.post("/invocations", json={}).status_code == 200
    assert calls == ["/ping", "/invocations"]


def test_setup_is_frozen_after_the_first_request_as_in_flask():
    app = make_app()
    app.test_client().get("/ping")
    with pytest.raises(AssertionError):
        app.before_request(lambda: None)


def test_a_custom_ping_function_takes_the_full_path_with_an_app_context():
    app = make_app()

    @app.ping
    def status():
        return "HealthyBusy" if flask.current_app else "Healthy"

    assert app.test_client().get("/ping").json["status"] == "HealthyBusy"


# -- the request context the fast path builds -----------------------------------


def fast_and_full(**config):
    """Two apps alike but for the path they take: a no-op hook sends ``full`` down Flask's."""
    fast, full = (
        BedrockAgentCoreApp(result_store="memory://"),
        BedrockAgentCoreApp(result_store="memory://"),
    )
    full.before_request(lambda: None)
    for app in (fast, full):
        app.config.update(config)
    return fast, full


def wsgi_call(app, path="/invocations", method="POST", body=b"", headers=None):
    """Status line, header list (in order) and body, as a server would get them."""
    environ = EnvironBuilder(
        path=path, method=method, data=body, headers=headers or {}
    ).get_environ()
    app_iter, status, response_headers = run_wsgi_app(app, environ, buffered=True)
    return status, response_headers.to_wsgi_list(), b"".join(app_iter)


def test_handler_sees_the_url_rule_as_flask_matching_sets_it():
    fast, full = fast_and_full()
    for app in (fast, full):

        @app.entrypoint
        def handler(payload):
            return {
                "endpoint": request.endpoint,
                "rule": request.url_rule.rule,
                "methods": sorted(request.url_rule.methods),
                "view_args": request.view_args,
                "blueprint": request.blueprint,
                "routing_exception": repr(request.routing_exception),
                "url": flask.url_for("agentcore.ping", _external=True),
            }

    answers = [
        app.test_client().post("/invocations", json={}, headers={"Host": "agent.example:8080"})
        for app in (fast, full)
    ]
    assert answers[0].json == answers[1].json
    assert answers[0].json["endpoint"] == "agentcore.invocations"
    assert answers[0].json["url"] == "http://agent.example:8080/ping"
    assert answers[0].json["view_args"] == {}
    assert fast.fast_path._setup_allows is True


def test_session_with_a_secret_key_works_in_a_handler_on_the_fast_path():
    fast, full = fast_and_full(SECRET_KEY="test-secret")
    for app in (fast, full):

        @app.entrypoint
        def handler(payload):
            flask.session["count"] = flask.session.get("count", 0) + 1
            return {"count": flask.session["count"]}

    for app in (fast, full):
        client = app.test_client()
        counts = [client.post("/invocations", json={}).json["count"] for _ in range(3)]
        assert counts == [1, 2, 3]
    replies = [app.test_client().post("/invocations", json={}) for app in (fast, full)]
    assert [r.headers.get("Vary") for r in replies] == ["Cookie", "Cookie"]
    assert all("session=" in r.headers["Set-Cookie"] for r in replies)
    assert fast.fast_path._setup_allows is True


def test_after_this_request_runs_on_the_fast_path():
    fast, full = fast_and_full()
    for app in (fast, full):

        @app.entrypoint
        def handler(payload):
            @flask.after_this_request
            def tag(response):
                response.headers["X-After"] = "ran"
                return response

            return {"ok": True}

    for app in (fast, full):
        reply = app.test_client().post("/invocations", json={})
        assert reply.headers["X-After"] == "ran" and reply.json == {"ok": True}


def test_copy_current_request_context_works_in_a_thread():
    app = BedrockAgentCoreApp(result_store="memory://")
    seen = []

    @app.entrypoint
    def handler(payload):
        @flask.copy_current_request_context
        def work():
            seen.append((request.endpoint, request.get_json(), flask.url_for("agentcore.ping")))

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        return {"ok": True}

    assert app.test_client().post("/invocations", json={"n": 1}).json == {"ok": True}
    assert seen == [("agentcore.invocations", {"n": 1}, "/ping")]


def test_the_test_clients_preserved_context_is_kept():
    app = make_app()
    with app.test_client() as client:
        client.post("/invocations", json={"kept": True})
        assert request.path == "/invocations" and request.get_json() == {"kept": True}


@pytest.mark.parametrize(
    "config, headers",
    [
        ({"TRUSTED_HOSTS": ["good.example"]}, {"Host": "bad.example"}),
        ({"TRUSTED_HOSTS": ["good.example"]}, {"Host": "good.example"}),
        ({}, {"Connection": "Upgrade", "Upgrade": "websocket"}),
        ({"SERVER_NAME": "agent.example"}, {"Host": "agent.example"}),
    ],
)
def test_what_flasks_url_matching_refuses_is_refused_alike(config, headers):
    fast, full = fast_and_full(**config)
    for app in (fast, full):
        app.entrypoint(lambda payload: payload)
    for path, method in (("/invocations", "POST"), ("/ping", "GET")):
        fast_answer, full_answer = (
            wsgi_call(app, path, method, b"{}", headers) for app in (fast, full)
        )
        if path == "/ping":  # the time of the last update may differ
            assert fast_answer[:2] == full_answer[:2]
        else:
            assert fast_answer == full_answer


def test_an_override_of_flasks_dispatch_takes_the_full_path():
    class Tagging(BedrockAgentCoreApp):
        def process_response(self, response):
            response.headers["X-Tagged"] = "yes"
            return super().process_response(response)

    app = Tagging(result_store="memory://")
    app.entrypoint(lambda payload: payload)
    client = app.test_client()
    assert client.post("/invocations", json={}).headers["X-Tagged"] == "yes"
    assert client.get("/ping").headers["X-Tagged"] == "yes"
    assert app.fast_path._setup_allows is False


def test_the_invocation_context_has_what_flasks_request_context_has():
    app = make_app()
    app.test_client().get("/ping")  # freezes the setup: the known rule
    environ = EnvironBuilder(path="/invocations", method="POST", data=b"{}").get_environ()
    flasks = app.request_context(dict(environ))
    ours = _InvocationContext(app, dict(environ), rule=app.fast_path._invocations_rule)
    for ctx in (flasks, ours):
        with ctx:
            assert ctx.url_adapter is not None
    assert set(vars(ours)) == set(vars(flasks))
    assert ours.request.url_rule is flasks.request.url_rule
    assert ours.request.view_args == flasks.request.view_args
    assert vars(ours.url_adapter) == vars(flasks.url_adapter)


# -- the runtime's own answers, sent without a Response ---------------------------


@pytest.mark.parametrize(
    "body, headers",
    [
        (b'{"prompt": "Hello, agent!", "turn": 1}', {"Content-Type": "application/json"}),
        ('{"text": "h\u00e9llo \u2713"}'.encode(), {}),
        (b"{not json", {}),
        (b"\xff\xfe", {}),
        (b"[" * 999, {}),  # nesting too deep
        (b"x" * 2000, {}),  # over max_body_size
        (b"{}", {"X-Amzn-Bedrock-AgentCore-Runtime-Session-Id": "bad id"}),
        (b'{"raise": "boom"}', {}),
        (b'{"http": 409}', {}),
        (b'{"none": 1}', {}),
    ],
)
def test_both_paths_answer_the_same_bytes(body, headers):
    fast, full = fast_and_full()
    for app in (fast, full):
        app.runtime.max_body_size = 1000

        @app.entrypoint
        def handler(payload):
            if isinstance(payload, dict) and "raise" in payload:
                raise RuntimeError(payload["raise"])
            if isinstance(payload, dict) and "http" in payload:
                flask.abort(payload["http"])
            return None if isinstance(payload, dict) and "none" in payload else payload

    fast_answer, full_answer = (wsgi_call(app, body=body, headers=headers) for app in (fast, full))
    assert fast_answer == full_answer
    assert ("Content-Type", "application/json") in fast_answer[1]
    assert fast.fast_path._setup_allows is True


def test_a_refusal_for_saturation_is_the_same_on_both_paths():
    fast, full = fast_and_full()
    answers = []
    for app in (fast, full):
        app.runtime.limiter.limit = 1
        app.entrypoint(lambda payload: payload)
        app.runtime.limiter.try_acquire()  # one invocation in flight: the next is refused
        try:
            answers.append(wsgi_call(app, body=b"{}"))
        finally:
            app.runtime.limiter.release()
    assert answers[0] == answers[1]
    status, headers, body = answers[0]
    assert status == "503 SERVICE UNAVAILABLE"
    assert headers[0] == ("Retry-After", "1")
    assert json.loads(body) == {"error": "Too many concurrent invocations", "limit": 1}


@pytest.mark.parametrize("status", [200, 400, 413, 500, 503, 599])
def test_a_json_reply_sends_what_its_response_would(status):
    reply = JSONReply(b'{"a": 1}', status, (("Retry-After", "1"),))
    environ = EnvironBuilder().get_environ()
    sent = []
    body = reply(environ, lambda status_line, headers: sent.append((status_line, headers)))
    response_body = reply.to_response()(
        environ, lambda status_line, headers: sent.append((status_line, headers))
    )
    assert sent[0] == sent[1]
    assert b"".join(body) == b"".join(response_body) == b'{"a": 1}'


# -- ids and headers -----------------------------------------------------------------


def test_request_ids_made_for_a_request_are_canonical_version_4_uuids():
    ids = {_new_request_id() for _ in range(2000)}
    assert len(ids) == 2000
    for made in ids:
        parsed = uuid.UUID(made)
        assert str(parsed) == made
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_the_cache_of_header_names_stays_bounded_and_right(monkeypatch):
    monkeypatch.setattr(headers, "_NAMES", {})
    for i in range(headers._MAX_NAMES + 500):
        environ = {f"HTTP_X_RANDOM_{i}": "v", "HTTP_ACCEPT": "*/*", "PATH_INFO": "/"}
        assert headers.forwarded_headers(environ) == {f"x-random-{i}": "v"}
    assert len(headers._NAMES) == headers._MAX_NAMES
