"""The ``agentcore-sync`` command line (also ``python -m agentcore_sync``).

- ``serve MODULE:APP``: serve an agent on waitress or gunicorn;
- ``invoke [URL] PAYLOAD``: call it with the headers the managed runtime sends;
- ``monitor [URL]``: watch it as the managed runtime does: status, tasks, the
  idle timeout and the maximum lifetime counting down, stuck sessions;
- ``store init URL``: create a result store's DynamoDB table or S3 bucket;
- ``emulate MODULE:APP``: a local AgentCore Runtime, sessions as processes.
"""

from __future__ import annotations

import click

from .emulate import emulate
from .invoke import invoke
from .monitor import monitor
from .serve import serve
from .store import store


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="agentcore_sync")
def cli() -> None:
    """Serve, call and watch agents on the Amazon Bedrock AgentCore Runtime contract."""


cli.add_command(serve)
cli.add_command(invoke)
cli.add_command(monitor)
cli.add_command(store)
cli.add_command(emulate)


def main() -> None:
    """The console script's entry point."""
    cli()


__all__ = ["cli", "main"]
