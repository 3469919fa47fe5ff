"""Client-side pacing of AWS calls whose per-account quota is low.

A thread pool with AWS round trips of tens of milliseconds makes a hundred
or more calls a second. Most read calls kmsguard makes allow far more than
that, but a few do not, and a throttled read that still fails after the
standard retries becomes a gap in the evidence. Those calls are paced here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable


class RateLimiter:
    """Space calls at least 1/per_second seconds apart, across threads."""

    def __init__(
        self,
        per_second: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / per_second
        self.clock = clock
        self.sleep = sleep
        # The earliest time the next call may start.
        self._next_start = float("-inf")
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Block until the next call may start; return the seconds waited."""
        with self._lock:
            now = self.clock()
            start = max(now, self._next_start)
            self._next_start = start + self.interval
        delay = start - now
        if delay > 0:
            self.sleep(delay)
        return delay


class RateLimits:
    """One RateLimiter per key, such as an AWS profile and region."""

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self._limiters: dict[Hashable, RateLimiter] = {}
        self._lock = threading.Lock()

    def limiter(self, key: Hashable) -> RateLimiter:
        with self._lock:
            if key not in self._limiters:
                self._limiters[key] = RateLimiter(self.per_second)
            return self._limiters[key]

    def wait(self, key: Hashable) -> float:
        return self.limiter(key).wait()
