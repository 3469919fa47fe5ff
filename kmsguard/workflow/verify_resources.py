"""The resource checks of the onboarding verification.

Every S3 bucket, Kinesis stream and SQS queue that the environment lists for a
component requested from support must name the key in its encryption
settings. A listed resource that AWS reports as nonexistent fails. So does a
verification with no listed resource of a requested component, because it
would show nothing about the resources. A resource that could not be read for
another reason is "not checked".
"""

from __future__ import annotations

import shlex
from collections.abc import Collection

from kmsguard.workflow.aws import AwsSession
from kmsguard.workflow.evidence_keys import KeyResolver
from kmsguard.workflow.evidence_resources import (
    KIND_TITLES,
    KINESIS_STREAM,
    S3_BUCKET,
    SQS_QUEUE,
    ResourceReading,
    Resources,
    read_resources,
)
from kmsguard.workflow.verify_checks import (
    FAILED,
    NOT_CHECKED,
    PASSED,
    SKIPPED,
    VerifyCheck,
)

# The components as `--components` names them, with the Resources field that
# lists them and the kind of resource.
COMPONENT_RESOURCES = {
    "s3": ("s3_buckets", S3_BUCKET),
    "kinesis": ("kinesis_streams", KINESIS_STREAM),
    "sqs": ("sqs_queues", SQS_QUEUE),
}
ENCRYPTION_SETTING = {
    S3_BUCKET: "default encryption",
    KINESIS_STREAM: "stream encryption",
    SQS_QUEUE: "server-side encryption",
}
# The `kmsguard env set-resources` option that lists each kind of resource,
# and the placeholder for its value.
SET_RESOURCES_OPTIONS = {
    S3_BUCKET: ("--s3-bucket", "NAME"),
    KINESIS_STREAM: ("--kinesis-stream", "NAME"),
    SQS_QUEUE: ("--sqs-queue", "URL"),
}
RESOURCE_WORKERS = 4
ASK_SUPPORT = "ask support to finish its configuration"


def check_resources(
    aws: AwsSession,
    *,
    environment: str,
    region: str,
    key_arn: str,
    resources: Resources,
    components: Collection[str],
) -> list[VerifyCheck]:
    """Check that each listed resource of a requested component names the key.

    Returns one check for each listed resource. When the environment lists no
    resource of a requested component, a failed check of "pipeline resources"
    takes the place of the checks that could not be made.
    """
    requested_resources, skipped = _split_by_component(
        environment, resources, components
    )
    if not (
        requested_resources.s3_buckets
        or requested_resources.kinesis_streams
        or requested_resources.sqs_queues
    ):
        return [_none_listed(environment, resources, components), *skipped]

    readings = read_resources(
        aws,
        region=region,
        resources=requested_resources,
        resolver=KeyResolver(aws, resources.profile),
        workers=RESOURCE_WORKERS,
    )
    # One fix command replaces every missing resource, so following it once
    # is enough however many are missing.
    missing = {(r.kind, r.name) for r in readings if r.missing}
    checks = [
        _reading_check(r, key_arn, environment, resources, missing) for r in readings
    ]
    return checks + skipped


def _split_by_component(
    environment: str, resources: Resources, components: Collection[str]
) -> tuple[Resources, list[VerifyCheck]]:
    """Split the resources into those of requested components and "skipped"."""
    requested = ", ".join(sorted(components)) or "none"
    skipped: list[VerifyCheck] = []
    requested_names: dict[str, tuple[str, ...]] = {}
    for component, (field, kind) in COMPONENT_RESOURCES.items():
        names: tuple[str, ...] = getattr(resources, field)
        if component in components:
            requested_names[field] = names
            if not names:
                # Normal for a component such as SQS surge protection, but the
                # operator should see that nothing of it was checked.
                skipped.append(
                    _none_of_component(environment, resources, component, kind)
                )
            continue
        requested_names[field] = ()
        skipped.extend(
            VerifyCheck(
                f"{KIND_TITLES[kind]} {name}",
                kind,
                SKIPPED,
                f"{component} is not among the components requested from "
                f"support ({requested})",
            )
            for name in names
        )
    requested_resources = Resources(
        s3_buckets=requested_names["s3_buckets"],
        kinesis_streams=requested_names["kinesis_streams"],
        sqs_queues=requested_names["sqs_queues"],
        profile=resources.profile,
    )
    return requested_resources, skipped


def _none_listed(
    environment: str, resources: Resources, components: Collection[str]
) -> VerifyCheck:
    """Return the failed check of a verification that had no resource to read."""
    command = set_resources_command(environment, resources, add=components)
    if resources.s3_buckets or resources.kinesis_streams or resources.sqs_queues:
        requested = ", ".join(c for c in COMPONENT_RESOURCES if c in components)
        found = (
            f"environment {environment} lists no resource of the components "
            f"requested from support ({requested})"
        )
    else:
        found = f"environment {environment} lists no pipeline resources"
    return VerifyCheck(
        "pipeline resources",
        "resources",
        FAILED,
        f"{found}, so verify checked none; list them with `{command}`",
    )


def _none_of_component(
    environment: str, resources: Resources, component: str, kind: str
) -> VerifyCheck:
    """Return the skipped check of a requested component with no resource listed."""
    command = set_resources_command(environment, resources, add=[component])
    return VerifyCheck(
        f"{KIND_TITLES[kind]}s",
        kind,
        SKIPPED,
        f"{component} was requested from support, but the environment lists no "
        f"{KIND_TITLES[kind]}, so none was checked; to check one, list it with "
        f"`{command}`, which keeps the resources listed now",
    )


def set_resources_command(
    environment: str,
    resources: Resources,
    *,
    replace: Collection[tuple[str, str]] = (),
    add: Collection[str] = (),
) -> str:
    """Return an `env set-resources` command that keeps the listed resources.

    The command replaces every list and the resource profile at once, so it
    repeats them. Each resource that `replace` names as (kind, name) becomes a
    placeholder, and each component in `add` gets one more placeholder.
    """
    words = ["kmsguard", "env", "set-resources", shlex.quote(environment)]
    for component, (field, kind) in COMPONENT_RESOURCES.items():
        option, placeholder = SET_RESOURCES_OPTIONS[kind]
        for name in getattr(resources, field):
            value = placeholder if (kind, name) in replace else shlex.quote(name)
            words += [option, value]
        if component in add:
            words += [option, placeholder]
    if resources.profile:
        words += ["--resource-profile", shlex.quote(resources.profile)]
    return " ".join(words)


def _reading_check(
    reading: ResourceReading,
    key_arn: str,
    environment: str,
    resources: Resources,
    missing: Collection[tuple[str, str]],
) -> VerifyCheck:
    setting = ENCRYPTION_SETTING[reading.kind]

    def check(status: str, reason: str) -> VerifyCheck:
        return VerifyCheck(reading.label, reading.kind, status, reason)

    if reading.missing:
        return check(FAILED, _missing_reason(reading, environment, resources, missing))
    if reading.error:
        return check(NOT_CHECKED, f"could not be read: {reading.error}")
    if not reading.resolutions:
        return check(FAILED, f"its {setting} names no KMS key; {ASK_SUPPORT}")
    for resolution in reading.resolutions:
        if resolution.key_arn == key_arn:
            match = (
                "by its key ARN"
                if resolution.reference == key_arn
                else f"as {resolution.reference!r}, which resolves to it"
            )
            return check(PASSED, f"its {setting} names the key {match}")
    unresolved = [r for r in reading.resolutions if r.error]
    if unresolved:
        return check(
            NOT_CHECKED,
            f"its {setting} names {unresolved[0].reference!r}, which could not be "
            f"resolved: {unresolved[0].error}",
        )
    named = ", ".join(
        _describe_other(r.reference, r.key_arn) for r in reading.resolutions
    )
    return check(FAILED, f"its {setting} names {named}, not {key_arn}; {ASK_SUPPORT}")


def _missing_reason(
    reading: ResourceReading,
    environment: str,
    resources: Resources,
    missing: Collection[tuple[str, str]],
) -> str:
    """Return why a resource AWS does not find fails, and the two ways to fix it."""
    command = set_resources_command(environment, resources, replace=missing)
    error = str(reading.error).rstrip(".")
    reason = (
        f"not found ({error}). Correct the name with `{command}`, which keeps "
        f"the other resources listed, or create the {KIND_TITLES[reading.kind]} "
        f"in {reading.region}"
    )
    if reading.kind == KINESIS_STREAM and not reading.name.startswith("arn:"):
        # A stream name is looked up in the account of the credentials in use.
        reason += (
            ". A stream of another account needs that account's profile, "
            "given with --resource-profile"
        )
    return reason


def _describe_other(reference: str, key_arn: str | None) -> str:
    if key_arn is None:
        return f"the AWS managed key {reference!r}"
    if reference == key_arn:
        return f"key {key_arn}"
    return f"{reference!r} (key {key_arn})"
