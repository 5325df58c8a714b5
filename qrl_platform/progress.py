"""Progress of long work (a year of raw history, a backfill), per stage: days done / total, elapsed, ETA.

On a terminal (the stream is a TTY and `CI` is not set) a stage redraws one status line in place, at
most every `min_interval` seconds, and ends it with a summary line. Anywhere else (CI logs, a Dagster
run's captured stderr, a pipe) it stays quiet: exactly one summary line per stage, when it ends, so a
log shows what ran and how long it took without hundreds of redraws.

Core module (no Dagster): the raw-table assets and the CLI share it, and a test drives it with a fake
clock and a fake TTY.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

CLEAR_LINE = "\r\x1b[K"  # back to column 0 and erase the line: the next redraw replaces it


def duration(seconds: float) -> str:
    """12s, 1m05s, 2h03m: short enough for a status line."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def interactive(stream: TextIO, in_ci: bool) -> bool:
    """A person is watching: the stream is a terminal and this is not a CI job (`Settings.in_ci`)."""
    is_tty = getattr(stream, "isatty", None)
    return bool(is_tty and is_tty()) and not in_ci


class Stage:
    """One stage of known size; `advance()` after each unit of work, `finish()` (or leave the `with`) at the end."""

    def __init__(
        self,
        name: str,
        total: int,
        *,
        unit: str = "days",
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        live: bool | None = None,
        in_ci: bool = False,
        min_interval: float = 0.5,
    ):
        self.name, self.total, self.unit = name, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.live = interactive(self.stream, in_ci) if live is None else live
        self.min_interval = min_interval
        self.done = 0
        self.started = clock()
        self._drawn_at: float | None = None
        self._finished = False

    def status_line(self, now: float) -> str:
        elapsed = now - self.started
        text = f"{self.name}: {self.done}/{self.total} {self.unit}, {duration(elapsed)} elapsed"
        if 0 < self.done < self.total:
            text += f", ETA {duration(elapsed / self.done * (self.total - self.done))}"
        return text

    def advance(self, count: int = 1) -> None:
        self.done = min(self.total, self.done + count)
        if not self.live:
            return
        now = self.clock()
        if self._drawn_at is None or now - self._drawn_at >= self.min_interval:
            self.stream.write(CLEAR_LINE + self.status_line(now))
            self.stream.flush()
            self._drawn_at = now

    def finish(self, outcome: str = "") -> None:
        if self._finished:
            return
        self._finished = True
        elapsed = self.clock() - self.started
        line = f"{self.name}: {self.done}/{self.total} {self.unit} in {duration(elapsed)}"
        if outcome:
            line += f" ({outcome})"
        self.stream.write((CLEAR_LINE if self.live and self._drawn_at is not None else "") + line + "\n")
        self.stream.flush()

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.finish("failed" if exc_type else "")


_terminal: TextIO | None = None


def attach_terminal(stream: TextIO | None) -> None:
    """Report on `stream` from now on (None: back to stderr). The CLI passes a duplicate of its terminal:
    Dagster redirects stderr to its compute log while a step runs in-process, so the step's own
    sys.stderr is a file, and only the duplicate still reaches the person at the terminal."""
    global _terminal
    _terminal = stream


def stage(name: str, total: int, *, unit: str = "days") -> Stage:
    """A stage reporting on the attached terminal, else on this process's stderr. The CLI attaches a
    terminal only outside CI (it asks `interactive` with the settings' `in_ci`); inside a Dagster step
    stderr is the compute log, never a terminal, so there the stage stays at its summary line."""
    return Stage(name, total, unit=unit, stream=_terminal if _terminal is not None else sys.stderr)
