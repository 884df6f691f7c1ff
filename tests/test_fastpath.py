"""The fast path serves exactly what Flask's full path would, and steps aside for user hooks."""

from __future__ import annotations

import flask
import pytest
from flask import g, request, request_started

from agentcore_sync import BedrockAgentCoreApp


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
    assert fast._fast_path._setup_allows is True
    assert slow._fast_path._setup_allows is False


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
