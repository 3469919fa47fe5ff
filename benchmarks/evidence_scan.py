"""The evidence scan of 300 resources against a moto server: one thread against a pool.

100 S3 buckets (one object each), 100 Kinesis streams and 100 SQS queues are
created in a moto server, started as its own process on 127.0.0.1 so that it
does not share this process's interpreter lock. CloudTrail LookupEvents,
which moto lacks, comes from the test suite's CloudTrail server. The scan is
`gather_usage_report` for the key the resources no longer use.

moto returns in about a millisecond, where an AWS call takes tens of
milliseconds (an estimate that varies by service and region). So the scan is
also timed with a fixed delay added before every AWS request, which is where
a thread pool pays off.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from timing import Timing

from kmsguard.workflow.aws import AwsSession, AwsSettings
from kmsguard.workflow.evidence import DEFAULT_WORKERS, Resources, gather_usage_report

REGION = "eu-west-1"
TESTS = Path(__file__).resolve().parent.parent / "tests"
SERVICES = ("s3", "kinesis", "sqs", "kms", "cloudtrail", "sts")
# Credentials for the local servers only; nothing here reaches AWS.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@dataclass(frozen=True)
class ScanTimings:
    """The scan's times: one worker and the default pool, with and without delay."""

    resources: int
    workers: int
    outcome: str
    sequential: Timing
    concurrent: Timing
    delay_ms: float
    sequential_delayed: Timing
    concurrent_delayed: Timing


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def moto_process() -> Iterator[str]:
    """Run `moto_server` in its own process on 127.0.0.1; yield its URL."""
    port = free_port()
    server = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_until_up(url: str) -> None:
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto server at {url} did not start")


@contextmanager
def cloudtrail_process() -> Iterator[str]:
    """Run the test suite's CloudTrail LookupEvents server; yield its URL."""
    sys.path.insert(0, str(TESTS))
    from cloudtrail_server import start_server

    url, stop = start_server([])
    try:
        yield url
    finally:
        stop()


def populate(aws: AwsSession, count: int) -> tuple[str, Resources]:
    """Create `count` buckets, streams and queues on a new key; return the old key."""
    kms = aws.client("kms", REGION)
    old_key = kms.create_key(Description="old key")["KeyMetadata"]["Arn"]
    new_key = kms.create_key(Description="new key")["KeyMetadata"]["Arn"]
    buckets = [_bucket(aws, f"pipeline-bench-{i:03d}", new_key) for i in range(count)]
    streams = [_stream(aws, f"pipeline-bench-{i:03d}", new_key) for i in range(count)]
    queues = [_queue(aws, f"pipeline-bench-{i:03d}", new_key) for i in range(count)]
    return old_key, Resources(tuple(buckets), tuple(streams), tuple(queues))


def _bucket(aws: AwsSession, name: str, key_arn: str) -> str:
    s3 = aws.client("s3", REGION)
    s3.create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    rule = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": rule}]
        },
    )
    s3.put_object(
        Bucket=name,
        Key="batch/part-0000.gz",
        Body=b"{}",
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=key_arn,
    )
    return name


def _stream(aws: AwsSession, name: str, key_arn: str) -> str:
    kinesis = aws.client("kinesis", REGION)
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.start_stream_encryption(
        StreamName=name, EncryptionType="KMS", KeyId=key_arn
    )
    return name


def _queue(aws: AwsSession, name: str, key_arn: str) -> str:
    sqs = aws.client("sqs", REGION)
    answer = sqs.create_queue(QueueName=name, Attributes={"KmsMasterKeyId": key_arn})
    return str(answer["QueueUrl"])


def add_delay(aws: AwsSession, seconds: float) -> None:
    """Make every AWS request of the session wait `seconds` before it is sent."""

    def wait(**_: Any) -> None:
        time.sleep(seconds)

    for service in SERVICES:
        aws.client(service, REGION).meta.events.register("before-send", wait)


def scan_once(aws: AwsSession, key_arn: str, resources: Resources, workers: int) -> str:
    # Support confirmed the switch longer ago than any queue or stream keeps
    # its records, so none can still be under the old key.
    report = gather_usage_report(
        aws,
        region=REGION,
        key_arn=key_arn,
        resources=resources,
        confirmed_at=datetime.now(UTC) - timedelta(days=5),
        workers=workers,
        sleep=lambda seconds: None,
    )
    return report.outcome


def time_scan(
    url: str, key_arn: str, resources: Resources, workers: int, runs: int, delay: float
) -> tuple[Timing, str]:
    """Time the scan with a fresh session each run, so no client is warm."""
    samples, outcome = [], ""
    for _ in range(runs):
        aws = AwsSession(AwsSettings(endpoint_url=url))
        if delay:
            add_delay(aws, delay)
        started = time.perf_counter()
        outcome = scan_once(aws, key_arn, resources, workers)
        samples.append(time.perf_counter() - started)
    return Timing(f"{workers} worker(s)", tuple(samples)), outcome


def run_scan_benchmark(
    per_kind: int = 100, runs: int = 3, delay_ms: float = 20
) -> ScanTimings:
    """Create the resources, then time the scan four ways."""
    os.environ.update(FAKE_CREDENTIALS)
    with moto_process() as url, cloudtrail_process() as trail_url:
        os.environ["AWS_ENDPOINT_URL_CLOUDTRAIL"] = trail_url
        key_arn, resources = populate(
            AwsSession(AwsSettings(endpoint_url=url)), per_kind
        )
        sequential, outcome = time_scan(url, key_arn, resources, 1, runs, 0)
        concurrent, _ = time_scan(url, key_arn, resources, DEFAULT_WORKERS, runs, 0)
        delay = delay_ms / 1000
        slow_one, _ = time_scan(url, key_arn, resources, 1, 1, delay)
        slow_pool, _ = time_scan(url, key_arn, resources, DEFAULT_WORKERS, 1, delay)
    return ScanTimings(
        resources=3 * per_kind,
        workers=DEFAULT_WORKERS,
        outcome=outcome,
        sequential=sequential,
        concurrent=concurrent,
        delay_ms=delay_ms,
        sequential_delayed=slow_one,
        concurrent_delayed=slow_pool,
    )


if __name__ == "__main__":
    timings = run_scan_benchmark(per_kind=int(sys.argv[1]) if len(sys.argv) > 1 else 10)
    print(json.dumps({k: str(v) for k, v in timings.__dict__.items()}, indent=2))
