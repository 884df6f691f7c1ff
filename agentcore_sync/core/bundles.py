"""Configuration bundles: the reference a request carries in its ``baggage``
header, and the configuration it points to.

The managed runtime tells an agent which version of its configuration bundle a
request runs with in W3C baggage entries; the configuration itself is fetched
from the AgentCore control plane on first use, once per bundle version, as the
official SDK does. boto3 is imported only then: agents without bundles never
load it.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from ..models import (
    BAGGAGE_BUNDLE_ARN,
    BAGGAGE_BUNDLE_VERSION,
    BAGGAGE_EXPERIMENT_ARN,
    BAGGAGE_EXPERIMENT_VARIANT,
    ConfigBundleRef,
)

logger = logging.getLogger("agentcore_sync.bundles")


def parse_baggage(value: str) -> dict[str, list[str]]:
    """The entries of a ``baggage`` header value, each key with its values in order.

    As the SDK reads it: entries split on commas (several ``baggage`` headers
    arrive joined by commas), properties after ``;`` dropped, values
    percent-decoded; entries without ``=``, a key or a value are skipped.
    """
    entries: dict[str, list[str]] = {}
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        key, equals, rest = item.partition("=")
        key = key.strip()
        decoded = unquote(rest.split(";")[0].strip())
        if not equals or not key or not decoded:
            logger.warning("Skipping a malformed baggage entry: %r", item)
            continue
        entries.setdefault(key, []).append(decoded)
    return entries


@dataclass(frozen=True, slots=True)
class Baggage:
    """What the runtime reads from a request's baggage."""

    bundle_ref: ConfigBundleRef | None = None
    experiment_arn: str | None = None
    experiment_variant: str | None = None


NO_BAGGAGE = Baggage()


def read_baggage(value: str | None) -> Baggage:
    """The bundle reference and routing experiment in a ``baggage`` header value.

    A malformed header is logged and read as no baggage: it never fails the
    request, as in the SDK.
    """
    if not value:
        return NO_BAGGAGE
    try:
        entries = parse_baggage(value)
    except Exception as exc:
        logger.warning("Failed to parse baggage: %s: %s", type(exc).__name__, exc)
        return NO_BAGGAGE
    return Baggage(
        bundle_ref=_bundle_ref(entries),
        experiment_arn=_first(entries, BAGGAGE_EXPERIMENT_ARN),
        experiment_variant=_first(entries, BAGGAGE_EXPERIMENT_VARIANT),
    )


def _first(entries: dict[str, list[str]], key: str) -> str | None:
    values = entries.get(key)
    return values[0] if values else None


def _bundle_ref(entries: dict[str, list[str]]) -> ConfigBundleRef | None:
    arns = entries.get(BAGGAGE_BUNDLE_ARN, [])
    versions = entries.get(BAGGAGE_BUNDLE_VERSION, [])
    if not arns or not versions:
        return None
    if len(arns) > 1 or len(versions) > 1:
        logger.warning("Several config bundle ARNs or versions in baggage: the first is used")
    try:
        return ConfigBundleRef(bundle_arn=arns[0], bundle_version=versions[0])
    except ValueError as exc:
        logger.warning("Skipping an invalid config bundle reference: %s", exc)
        return None


def runtime_arn() -> str | None:
    """This agent runtime's ARN, from ``cloud.resource_id`` in ``OTEL_RESOURCE_ATTRIBUTES``.

    The managed runtime sets it to the runtime's ARN or to one of its endpoints'
    (``.../runtime-endpoint/NAME``), which is cut back to the runtime's.
    """
    prefix = "cloud.resource_id="
    for attribute in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        attribute = attribute.strip()
        if attribute.startswith(prefix):
            return attribute[len(prefix) :].split("/runtime-endpoint/")[0]
    return None


@functools.lru_cache(maxsize=1)
def _control_client() -> Any:
    import boto3  # only agents that receive a bundle need it

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-west-2"
    options: dict[str, Any] = {"region_name": region}
    endpoint = os.environ.get("BEDROCK_AGENTCORE_CP_ENDPOINT")
    if endpoint:
        options["endpoint_url"] = endpoint
    return boto3.client("bedrock-agentcore-control", **options)


@functools.lru_cache(maxsize=30)
def bundle_config(ref: ConfigBundleRef) -> dict[str, Any]:
    """This runtime's configuration in bundle version ``ref``, fetched once per version.

    ``{}`` when the runtime's ARN is unknown or the bundle has no component for
    it. Errors of the control plane propagate (and are not cached), as in the
    SDK: a caller that must degrade gracefully catches them.
    """
    try:
        answer = _control_client().get_configuration_bundle_version(
            bundleId=ref.bundle_id, versionId=ref.bundle_version
        )
    except Exception as exc:
        logger.error(
            "Failed to fetch config bundle %r version %r: %s: %s",
            ref.bundle_id,
            ref.bundle_version,
            type(exc).__name__,
            exc,
        )
        raise
    arn = runtime_arn()
    if arn is None:
        logger.warning("OTEL_RESOURCE_ATTRIBUTES names no runtime: no config component selected")
        return {}
    component = answer.get("components", {}).get(arn)
    if component is None:
        logger.warning("Runtime %r has no component in config bundle %r", arn, ref.bundle_id)
        return {}
    return component.get("configuration", {})
