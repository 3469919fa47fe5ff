"""Progress on stderr for scans that take more than a moment.

Progress is drawn on one terminal line of stderr, and only once a scan has
run for PROGRESS_DELAY seconds, so quick commands print nothing extra. When
stderr is not a terminal (a pipeline, a log file, a test) nothing is drawn at
all, and stdout is never touched.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

Confirm = Callable[[Any], bool] | None

# Seconds a scan runs before progress appears.
PROGRESS_DELAY = 0.5
# Seconds between redraws of the elapsed time of a scan without counts.
TICK = 1.0
CLEAR_LINE = "\r\033[K"


class StderrProgress:
    """Show how far a scan has got, on one line of the terminal.

    Callable as the library's progress callback: (source, done, total or None),
    from any thread.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        delay: float = PROGRESS_DELAY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        self.clock = clock
        self.shown_from = clock() + delay
        self.line_visible = False
        self._lock = threading.Lock()

    def __call__(self, source: str, done: int, total: int | None) -> None:
        count = f"{done} of {total}" if total is not None else str(done)
        self.show(f"reading {source}: {count}")

    def show(self, text: str) -> None:
        """Draw `text` over the progress line, once the delay has passed."""
        if self.clock() < self.shown_from:
            return
        with self._lock:
            self.stream.write(f"{CLEAR_LINE}{text}")
            self.stream.flush()
            self.line_visible = True

    def clear(self) -> None:
        with self._lock:
            if self.line_visible:
                self.stream.write(CLEAR_LINE)
                self.stream.flush()
                self.line_visible = False

    def clearing(self, confirm: Confirm) -> Confirm:
        """Wrap a confirmation prompt so that it starts on a clean line."""
        if confirm is None:
            return None
        ask = confirm

        def prompt(ctx: Any) -> bool:
            self.clear()
            return ask(ctx)

        return prompt


def progress_display(stream: TextIO | None = None) -> StderrProgress | None:
    """Return a progress display for `stream` (stderr), or None off a terminal."""
    target = stream or sys.stderr
    return StderrProgress(target) if target.isatty() else None


@contextmanager
def stderr_progress() -> Iterator[StderrProgress | None]:
    """Yield a progress display when stderr is a terminal, else None; clear it after."""
    progress = progress_display()
    try:
        yield progress
    finally:
        if progress is not None:
            progress.clear()


@contextmanager
def step_progress(params: dict[str, Any], confirm: Confirm) -> Iterator[Confirm]:
    """Add the progress display to a step's params; yield the prompt to use."""
    with stderr_progress() as progress:
        if progress is None:
            yield confirm
            return
        params["progress"] = progress
        yield progress.clearing(confirm)


@contextmanager
def busy(
    what: str, stream: TextIO | None = None, delay: float = PROGRESS_DELAY
) -> Iterator[None]:
    """Show `what` and the seconds elapsed while the block runs, on a terminal.

    For scans that report no counts (the audit chain, onboarding checks): a
    background thread draws the line after `delay`, then every TICK seconds.
    """
    target = stream or sys.stderr
    if not target.isatty():
        yield
        return
    progress = StderrProgress(target, delay)
    started = time.monotonic()
    done = threading.Event()

    def redraw() -> None:
        while not done.wait(TICK if progress.line_visible else delay):
            progress.show(f"{what}: {time.monotonic() - started:.0f}s")

    thread = threading.Thread(target=redraw, name="kmsguard-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        progress.clear()
