# The flagship agent as AgentCore Runtime runs it: linux/arm64 (the runtime's
# architecture) or amd64, port 8080, /ping and /invocations, a non-root user.
#
#   docker buildx build --platform linux/arm64 -t agentcore-sync-agent .
#
# Nothing here is architecture-specific: the slim base image and every wheel
# installed exist for both.
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The package first, so that a change of the agent's code reuses this layer. The
# aws and redis extras: result stores that outlive the microVM.
COPY setup.cfg pyproject.toml README.md ./
COPY agentcore_sync ./agentcore_sync
RUN pip install '.[aws,redis]'

COPY wsgi.py gunicorn.conf.py ./
COPY examples ./examples

RUN useradd --create-home --uid 10001 agent
USER agent

ENV PORT=8080
EXPOSE 8080

# gunicorn reads gunicorn.conf.py from here: the shipped settings (threads,
# invocation bounds kept below them, timeouts for long invocations, 0.0.0.0:$PORT).
CMD ["gunicorn", "wsgi:app"]
