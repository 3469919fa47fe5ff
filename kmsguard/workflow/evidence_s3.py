"""The S3 objects source: objects that still name the key they were written with.

Changing a bucket's default encryption does not re-encrypt its objects. Each
object keeps its SSE-KMS key for good, becomes unreadable while that key is
disabled, and is lost once the key is deleted. So every object counts, not only
the bucket's default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kmsguard.workflow.aws import AwsSession, error_code
from kmsguard.workflow.evidence_keys import (
    KeyResolver,
    Resolution,
    aws_errors,
    failure_text,
)
from kmsguard.workflow.evidence_report import SourceReport

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]

SOURCE = "s3_objects"
LIST_PAGE_SIZE = 1000  # the most ListObjectsV2 returns in one page
MISSING_OBJECT_CODES = ("404", "NoSuchKey", "NotFound")


@dataclass(frozen=True)
class ListedObject:
    """One object as ListObjectsV2 returned it."""

    bucket: str
    key: str
    size: int
    last_modified: datetime | None

    @property
    def prefix(self) -> str:
        """The top-level prefix: the key up to and including its first '/'."""
        head, slash, _ = self.key.partition("/")
        return head + slash if slash else ""


@dataclass(frozen=True)
class ObjectHead:
    """The HeadObject result for one object: its SSE-KMS key, or an error."""

    listed: ListedObject
    resolution: Resolution | None = None
    error: str | None = None
    missing: bool = False


def scan_objects(
    aws: AwsSession,
    *,
    region: str,
    profile: str | None,
    buckets: tuple[str, ...],
    key_arn: str,
    resolver: KeyResolver,
    max_objects: int,
    workers: int,
    inventory: str | None = None,
    progress: Progress | None = None,
) -> SourceReport:
    """List the buckets and read each object's SSE-KMS key, up to `max_objects` in all.

    Buckets are read in the environment's region, where the pipeline keeps them.
    """
    source = SourceReport(SOURCE)
    if not buckets:
        source.note("no S3 buckets listed for the environment")
        return source

    # TODO: read the S3 Inventory manifest to list objects past max_objects.
    # Inventory reports carry EncryptionStatus but no key ID, so each SSE-KMS
    # object would still need a HeadObject.
    if inventory:
        source.note(
            f"S3 Inventory {inventory} was not read; objects were listed with "
            "ListObjectsV2"
        )

    s3 = aws.client("s3", region, profile)
    listed = _list_buckets(s3, buckets, max_objects, source, progress)
    heads = _head_objects(s3, region, listed, resolver, workers, progress)
    _summarise(source, buckets, heads, key_arn)
    return source


def _list_buckets(
    s3: Any,
    buckets: tuple[str, ...],
    max_objects: int,
    source: SourceReport,
    progress: Progress | None,
) -> list[ListedObject]:
    # NOTE: ListObjectsV2 lists current versions only. Noncurrent versions in a
    # versioned bucket also keep their key, and this scan does not read them.
    listed: list[ListedObject] = []
    for bucket in buckets:
        remaining = max_objects - len(listed)
        if remaining <= 0:
            source.gaps.append(
                f"S3 bucket {bucket}: objects not listed, because the scan reached "
                f"max_objects ({max_objects}) first; raise --max-objects"
            )
            continue
        try:
            cut_short = _list_bucket(s3, bucket, remaining, listed)
        except aws_errors() as exc:
            text = failure_text(exc, "s3:ListObjectsV2", bucket)
            source.gaps.append(
                f"S3 bucket {bucket}: objects could not be listed: {text}"
            )
            cut_short = False

        if progress:
            progress(SOURCE, len(listed), None)
        if cut_short:
            source.gaps.append(
                f"S3 bucket {bucket}: listing stopped at max_objects ({max_objects}) "
                "objects in total, so later objects were not read; raise --max-objects"
            )
    return listed


def _list_bucket(s3: Any, bucket: str, limit: int, listed: list[ListedObject]) -> bool:
    """Append up to `limit` objects of one bucket; return True when more remain."""
    listed_count = 0
    request: dict[str, Any] = {"Bucket": bucket}
    while True:
        request["MaxKeys"] = min(LIST_PAGE_SIZE, limit - listed_count)
        page = s3.list_objects_v2(**request)
        for item in page.get("Contents", []):
            listed.append(
                ListedObject(
                    bucket,
                    item["Key"],
                    int(item.get("Size", 0)),
                    item.get("LastModified"),
                )
            )
            listed_count += 1

        if not page.get("IsTruncated"):
            return False
        if listed_count >= limit:
            return True
        request["ContinuationToken"] = page["NextContinuationToken"]


def _head_objects(
    s3: Any,
    region: str,
    listed: list[ListedObject],
    resolver: KeyResolver,
    workers: int,
    progress: Progress | None,
) -> list[ObjectHead]:
    def head(item: ListedObject) -> ObjectHead:
        return _head_object(s3, region, item, resolver)

    heads: list[ObjectHead] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for result in pool.map(head, listed):
            heads.append(result)
            if progress:
                progress(SOURCE, len(heads), len(listed))
    return heads


def _head_object(
    s3: Any, region: str, item: ListedObject, resolver: KeyResolver
) -> ObjectHead:
    try:
        answer = s3.head_object(Bucket=item.bucket, Key=item.key)
    except aws_errors() as exc:
        if error_code(exc) in MISSING_OBJECT_CODES:
            return ObjectHead(item, missing=True)
        target = f"s3://{item.bucket}/{item.key}"
        return ObjectHead(item, error=failure_text(exc, "s3:HeadObject", target))

    if not str(answer.get("ServerSideEncryption", "")).startswith("aws:kms"):
        return ObjectHead(item)
    # SSE-KMS without a key ID means the AWS managed key aws/s3.
    reference = answer.get("SSEKMSKeyId") or "alias/aws/s3"
    return ObjectHead(item, resolution=resolver.resolve(reference, region))


@dataclass
class _Tally:
    objects: int = 0
    size: int = 0
    newest: datetime | None = None

    def add(self, item: ListedObject) -> None:
        self.objects += 1
        self.size += item.size
        if item.last_modified and (
            self.newest is None or item.last_modified > self.newest
        ):
            self.newest = item.last_modified


def _summarise(
    source: SourceReport,
    buckets: tuple[str, ...],
    heads: list[ObjectHead],
    key_arn: str,
) -> None:
    under_key: dict[tuple[str, str], _Tally] = {}
    read = {bucket: 0 for bucket in buckets}
    for head in heads:
        read[head.listed.bucket] += 1
        if head.resolution is not None and head.resolution.matches(key_arn):
            place = (head.listed.bucket, head.listed.prefix)
            under_key.setdefault(place, _Tally()).add(head.listed)

    for (bucket, prefix), tally in sorted(under_key.items()):
        source.findings.append(_prefix_finding(bucket, prefix, tally))
        source.reasons.append(_prefix_reason(bucket, prefix, tally))
    for bucket in buckets:
        source.findings.append({"bucket": bucket, "objects_read": read[bucket]})
    _report_unreadable(source, heads)


def _prefix_finding(bucket: str, prefix: str, tally: _Tally) -> dict[str, Any]:
    return {
        "bucket": bucket,
        "prefix": prefix,
        "objects_under_key": tally.objects,
        "bytes_under_key": tally.size,
        "newest_last_modified": tally.newest.isoformat() if tally.newest else None,
    }


def _prefix_reason(bucket: str, prefix: str, tally: _Tally) -> str:
    where = f"prefix {prefix!r}" if prefix else "the bucket root"
    newest = f", newest written {tally.newest.isoformat()}" if tally.newest else ""
    return (
        f"S3 bucket {bucket}: {tally.objects} object(s) ({format_size(tally.size)}) "
        f"under {where} were written under the key{newest}; they cannot be read "
        "while it is disabled and are lost once it is deleted"
    )


def _report_unreadable(source: SourceReport, heads: list[ObjectHead]) -> None:
    failed = [head for head in heads if head.error]
    if failed:
        source.gaps.append(
            f"HeadObject failed on {len(failed)} object(s), so their keys are "
            f"unknown; the first failure: {failed[0].error}"
        )

    unresolved = [
        (head.listed, head.resolution.error)
        for head in heads
        if head.resolution is not None and head.resolution.error
    ]
    if unresolved:
        item, error = unresolved[0]
        source.gaps.append(
            f"{len(unresolved)} object(s) name a key that could not be resolved, "
            f"for example s3://{item.bucket}/{item.key}: {error}"
        )

    missing = sum(1 for head in heads if head.missing)
    if missing:
        source.note(f"{missing} object(s) were deleted between listing and HeadObject")


def format_size(size: int) -> str:
    """Return a byte count in binary units, for example '3.4 MiB'."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
