"""The resource row of `doctor`: do all the pipeline's resources use the key?

The row of the troubleshooting table is "some streams appear encrypted but
not others". Doctor reads the encryption settings of the resources the
environment lists, as the evidence report does. It sorts them into four
groups: those that name a pipeline key, those that still name a key kmsguard
retired, those that name something else, and those it could not read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kmsguard.workflow.doctor_findings import (
    ERROR,
    INFO,
    KEY_UNUSABLE,
    PARTIAL_ENCRYPTION,
    WARNING,
    DoctorFinding,
)
from kmsguard.workflow.doctor_keys import (
    PIPELINE_KEY,
    RETIRED_KEY,
    Examination,
    KeyTarget,
)
from kmsguard.workflow.environment_resources import resources_of
from kmsguard.workflow.evidence_keys import KeyResolver
from kmsguard.workflow.evidence_resources import ResourceReading, read_resources

RESOURCE_WORKERS = 4


@dataclass
class ResourceSorting:
    """The listed resources, sorted by the key their encryption settings name."""

    using_key: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)


def resource_findings(
    exam: Examination, targets: list[KeyTarget]
) -> list[DoctorFinding] | None:
    """Return the findings about the listed resources, or None when none are listed."""
    resources = resources_of(exam.environment)
    if not (resources.s3_buckets or resources.kinesis_streams or resources.sqs_queues):
        return None
    readings = read_resources(
        exam.aws,
        region=exam.environment.region,
        resources=resources,
        resolver=KeyResolver(exam.aws, resources.profile),
        workers=RESOURCE_WORKERS,
    )
    sorting = sort_readings(readings, targets)
    return _findings(exam, sorting)


def sort_readings(
    readings: list[ResourceReading], targets: list[KeyTarget]
) -> ResourceSorting:
    pipeline = {t.arn for t in targets if t.role == PIPELINE_KEY}
    retired = {t.arn for t in targets if t.role == RETIRED_KEY}
    sorting = ResourceSorting()
    for reading in readings:
        named = {r.key_arn for r in reading.resolutions if r.key_arn}
        if reading.error:
            sorting.unread.append(f"{reading.label} ({reading.error})")
        elif named & retired:
            sorting.retired.append(reading.label)
        elif named & pipeline:
            sorting.using_key.append(reading.label)
        else:
            sorting.other.append(f"{reading.label} ({_named(reading)})")
    return sorting


def _named(reading: ResourceReading) -> str:
    if not reading.resolutions:
        return "no KMS key"
    parts = []
    for resolution in reading.resolutions:
        if resolution.error:
            parts.append(f"{resolution.reference}, which could not be resolved")
        elif resolution.aws_managed:
            parts.append(f"the AWS managed key {resolution.reference}")
        else:
            parts.append(f"key {resolution.key_arn}")
    return "names " + ", ".join(parts)


def _findings(exam: Examination, sorting: ResourceSorting) -> list[DoctorFinding]:
    findings = []
    if sorting.retired:
        findings.append(
            DoctorFinding(
                ERROR,
                KEY_UNUSABLE,
                "resources_name_retired_key",
                "these resources still name a key kmsguard disabled or scheduled "
                f"for deletion: {', '.join(sorting.retired)}",
                f"enable the key again (`kmsguard recover re-enable {exam.env_name}`) "
                "and ask support to move these resources to the current key",
            )
        )
    if sorting.other and (sorting.using_key or sorting.retired):
        findings.append(
            DoctorFinding(
                WARNING,
                PARTIAL_ENCRYPTION,
                "resources_partial",
                f"{len(sorting.using_key)} listed resource(s) use the pipeline key, "
                f"but these do not: {', '.join(sorting.other)}",
                "ask support to check that every pipeline stack was configured "
                "with the key",
            )
        )
    elif sorting.other:
        findings.append(
            DoctorFinding(
                INFO,
                PARTIAL_ENCRYPTION,
                "resources_unconfigured",
                "no listed resource uses the pipeline key yet: "
                f"{', '.join(sorting.other)}. That is expected until support has "
                "configured the pipeline.",
            )
        )
    if sorting.unread:
        findings.append(
            DoctorFinding(
                INFO,
                PARTIAL_ENCRYPTION,
                "resources_unread",
                f"these resources could not be read: {', '.join(sorting.unread)}",
                "allow the reads to the credentials in use, or store a profile "
                "that can read them with `kmsguard env set-resources "
                f"{exam.env_name} ... --resource-profile NAME`",
            )
        )
    return findings
