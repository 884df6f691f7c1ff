"""waitress and gunicorn set up for agents: one way to serve, however started."""
