"""Mounting the runtime into a Flask application you already have.

``AgentCore`` is the runtime without an app of its own; its blueprint serves
``/ping`` and ``/invocations`` wherever it is registered, beside your routes.

    python examples/mounted.py
    # or: gunicorn -c gunicorn.conf.py --chdir examples mounted:flask_app
    curl -s localhost:8080/agent/ping
    curl -s localhost:8080/agent/invocations -d '{"name": "Ada"}'
"""

from flask import Flask

from agentcore_sync import AgentCore

flask_app = Flask(__name__)
agent = AgentCore()


@flask_app.get("/")
def home():
    return {"service": "an existing Flask app", "agent": "/agent/invocations"}


@agent.entrypoint
def greet(payload, context):
    return {"greeting": f"Hello, {payload.get('name', 'world')}", "session": context.session_id}


flask_app.register_blueprint(agent.blueprint, url_prefix="/agent")

if __name__ == "__main__":
    agent.run(app=flask_app)  # the whole app; agent.run() would serve the agent alone
