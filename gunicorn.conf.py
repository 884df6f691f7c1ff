"""Defaults that make plain ``gunicorn wsgi:app`` right for an agent.

gunicorn reads this file from the folder it is started in. The settings live
in the package, so that they are the same from any folder:
``gunicorn -c python:agentcore_sync.servers.gunicorn_config MODULE:APP``.
"""

from agentcore_sync.servers.gunicorn_config import *  # noqa: F403
