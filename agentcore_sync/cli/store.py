"""``agentcore-sync store init URL``: create what a result store needs, once.

A DynamoDB table (keyed by ``task_id``, on-demand, its TTL attribute enabled) or
an S3 bucket (with the lifecycle rule that deletes expired records). Run again,
it changes nothing and says so: it is safe in a deploy script.
"""

from __future__ import annotations

import click

from ..stores import DEFAULT_TTL, open_store, redact_url


@click.group(short_help="Set up a result store.")
def store() -> None:
    """Set up the result store that AGENTCORE_SYNC_RESULT_STORE names."""


@store.command(short_help="Create a store's table or bucket (idempotent).")
@click.argument("url", envvar="AGENTCORE_SYNC_RESULT_STORE")
@click.option(
    "--ttl",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TTL,
    show_default=True,
    help="Seconds a record is kept (S3: rounded up to whole days).",
)
def init(url: str, ttl: float) -> None:
    """Create what the store at URL needs: dynamodb://TABLE[?overflow=s3://BUCKET/PREFIX]
    or s3://BUCKET[/PREFIX]. The AWS credentials and region are boto3's usual ones.

    \b
      agentcore-sync store init dynamodb://agent-results
      agentcore-sync store init s3://my-bucket/results
    """
    try:
        opened = open_store(url, ttl)
    except (ValueError, ImportError) as exc:
        raise click.BadParameter(str(exc), param_hint="URL") from None
    init_store = getattr(opened, "init", None)
    try:
        if init_store is None:
            click.echo(f"{redact_url(url)}: nothing to create (the store makes what it needs)")
            return
        try:
            done = init_store()
        except Exception as exc:
            raise click.ClickException(f"{opened.url}: {exc}") from None
        for line in done:
            click.echo(f"{opened.url}: {line}")
    finally:
        opened.close()
