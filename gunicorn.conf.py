"""Defaults that make plain ``gunicorn wsgi:app`` right for an agent.

Each setting says why; override any of them on the command line or with
``GUNICORN_CMD_ARGS`` as usual.
"""

import os

from agentcore_sync.serving import gunicorn_post_worker_init, gunicorn_worker_exit

# The managed runtime reaches the container on port 8080 on every interface.
bind = f"0.0.0.0:{os.environ.get('PORT', '8080')}"

# Threads, not processes: a sync worker serves one request at a time, so a single
# long invocation would make /ping wait. gthread serves each request on a thread
# and keeps idle keep-alive connections off the threads; this subclass of it also
# answers plain pings on its main thread, so they never wait for a thread, and
# keeps a connection on its thread while its requests come back to back.
worker_class = "agentcore_sync.gunicorn_worker.ThreadWorker"
threads = int(os.environ.get("AGENTCORE_SYNC_THREADS", "16"))

# One worker by default: background tasks and their event loop live in a worker,
# and the managed runtime gives each session its own microVM.
# (Several workers work too: `gunicorn -w 3 wsgi:app`.)
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))

# The arbiter kills a worker that misses heartbeats for `timeout` seconds. gthread
# heartbeats from its main loop, not from request threads, so a 40-minute
# invocation does not miss any; 120 s only bounds a worker that is truly stuck.
timeout = 120

# On SIGTERM the worker stops accepting, finishes requests and background tasks
# (the runtime waits AGENTCORE_SYNC_SHUTDOWN_GRACE = 25 s for them), records what
# is left as interrupted, and must be done before the arbiter's SIGKILL.
graceful_timeout = int(os.environ.get("AGENTCORE_SYNC_GRACEFUL_TIMEOUT", "30"))

# Longer than the idle timeout of the load balancers in front (60 s), so they,
# not we, close idle connections and no request races a closing socket.
keepalive = 75

# Each worker bounds its invocations by its thread count, keeping threads for /ping.
post_worker_init = gunicorn_post_worker_init
# Each worker waits for its background tasks, and records what is left, on exit.
worker_exit = gunicorn_worker_exit
