"""Pacing of AWS calls with a low per-account quota, on a fake clock."""

from __future__ import annotations

import pytest

from kmsguard.workflow.evidence_resources import DESCRIBE_STREAM_RATE
from kmsguard.workflow.rate_limit import RateLimiter, RateLimits


class FakeClock:
    """A clock that moves only when the code under test sleeps or a test advances it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_rate_limiter_first_call_waits_not() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)

    assert limiter.wait() == 0
    assert clock.slept == []


def test_rate_limiter_spaces_back_to_back_calls() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)

    waits = [limiter.wait() for _ in range(4)]

    assert waits[0] == 0
    assert waits[1:] == pytest.approx([0.1, 0.1, 0.1])
    assert clock.now == pytest.approx(100.3)


def test_rate_limiter_no_wait_after_idle_time() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    limiter.wait()
    clock.now += 1.0

    assert limiter.wait() == 0


def test_rate_limits_pace_each_key_apart() -> None:
    limits = RateLimits(5)

    first = limits.limiter(("pipeline", "eu-west-1"))
    other = limits.limiter(("pipeline", "us-east-1"))

    assert first is not other
    assert limits.limiter(("pipeline", "eu-west-1")) is first


def test_describe_stream_rate_under_kinesis_quota() -> None:
    # Kinesis allows DescribeStreamSummary 20 times a second per account.
    assert DESCRIBE_STREAM_RATE.per_second <= 20
