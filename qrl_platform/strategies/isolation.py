"""Run one call in a worker process with a deadline, and stop the process when the deadline passes.

Why a process, not a thread: Python cannot stop a thread. A strategy evaluation that hangs in a
thread keeps its CPU and memory until it returns by itself — the run would record TIMEOUT while the
hung work carried on competing with the strategies after it. Polars releases the GIL, so a thread
would not block the others, but nothing can end it; `collect(background=True).cancel()` ends a polars
query, yet not Python code around it (expression building, diagnostics, a slow hook). A process can be
killed whatever it is doing, and the operating system reclaims everything it held.

Why forkserver (spawn where it is missing): polars runs a thread pool, and fork() in a process whose
pool has run can deadlock the child. The forkserver is a fresh process that only *imports* the
modules below (no polars work, so no pool), and every worker is forked from it, not started as a new
interpreter. The first worker in a process starts the server (the import time of the engine, 2-4 s
here). `map_with_deadline` keeps one worker for a whole list of calls (the runner: the strategies of
one chunk of days), so the shared input is sent once; only a timeout or a crash costs a new worker.
Measured by benchmarks/strategies.py (10 built-ins x 1,800 stocks, one day, 2 shared cores): about
0.6-0.8 s in a worker against 0.1 s inline, most of it the start of the worker.

The outcome is data, never an exception from the worker: `Finished(value)`, `Raised(type, message)`,
`TimedOut(seconds)` or `Crashed(exitcode)` (the worker died without answering, e.g. out of memory).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

# Imported by the forkserver before it forks workers, so a worker starts with them loaded. "__main__"
# is the parent's main script (multiprocessing re-runs it in a worker otherwise, with all its imports).
PRELOAD = ["__main__", "qrl_platform.strategies.engine"]
# After terminate() (SIGTERM) a worker gets this long to exit before kill() (SIGKILL).
TERMINATE_GRACE_SECONDS = 2.0
# A worker's start (fork, re-import of the main script, unpickling the shared input) is not charged to
# the first call's deadline; a worker that is not ready within this long counts as crashed.
STARTUP_TIMEOUT_SECONDS = 300.0
READY = "ready"


@dataclass(frozen=True)
class Finished:
    value: Any


@dataclass(frozen=True)
class Raised:
    error_type: str
    message: str


@dataclass(frozen=True)
class TimedOut:
    seconds: float


@dataclass(frozen=True)
class Crashed:
    exitcode: int | None


Outcome = Finished | Raised | TimedOut | Crashed


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


def start_server_early() -> threading.Thread | None:
    """Start the forkserver now, in a background thread, so that its start (a fresh interpreter
    importing the engine, about a second) overlaps the caller's own work — the indicator gate, reading
    the day's frames — instead of delaying the first worker. A run process starts it once; later calls
    return at once.
    Where forkserver is missing (spawn), there is no server to start. Returns the starting thread."""
    if _context().get_start_method() != "forkserver":
        return None
    starting = threading.Thread(target=multiprocessing.forkserver.ensure_running, name="forkserver-start", daemon=True)
    starting.start()
    return starting


def _serve(connection, function: Callable, shared: tuple) -> None:
    """The worker: answer `function(item, *shared)` for each item received, until told to stop (None)."""
    try:
        connection.send(READY)  # started and `shared` unpickled: the deadlines count from here
        while True:
            try:
                item = connection.recv()
            except EOFError:  # the parent went away
                return
            if item is None:
                return
            try:
                result: Outcome = Finished(function(item[0], *shared))
            except BaseException as exc:  # reported to the parent, which records it; the worker goes on
                detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                result = Raised(type(exc).__name__, detail[:4000])
            try:
                connection.send(result)
            except Exception as exc:  # e.g. a result that cannot be pickled: report that instead
                connection.send(Raised(type(exc).__name__, f"the worker could not return its result: {exc}"[:4000]))
    finally:
        connection.close()


class _Worker:
    def __init__(self, function: Callable, shared: tuple):
        context = _context()
        self.connection, child_end = context.Pipe(duplex=True)
        self.process = context.Process(target=_serve, args=(child_end, function, shared), daemon=True)
        self.process.start()
        child_end.close()
        try:
            self.ready = self.connection.poll(STARTUP_TIMEOUT_SECONDS) and self.connection.recv() == READY
        except (EOFError, ConnectionResetError):
            self.ready = False

    def ask(self, item: Any, timeout_seconds: float) -> Outcome:
        """Send one item and wait for its answer; a TimedOut or Crashed answer leaves the worker unusable."""
        if not self.ready:
            self.process.join(timeout=TERMINATE_GRACE_SECONDS)
            return Crashed(self.process.exitcode)
        try:
            self.connection.send((item,))
            if not self.connection.poll(timeout_seconds):
                return TimedOut(timeout_seconds)
            return self.connection.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self.process.join(timeout=TERMINATE_GRACE_SECONDS)
            return Crashed(self.process.exitcode)

    def close(self, *, polite: bool) -> None:
        if polite:
            try:
                self.connection.send(None)
            except (BrokenPipeError, ConnectionResetError, EOFError):
                pass
            self.process.join(timeout=TERMINATE_GRACE_SECONDS)
        self.connection.close()
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=TERMINATE_GRACE_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def map_with_deadline(
    function: Callable, items: Iterable[Any], shared: tuple, timeout_seconds: float
) -> Iterator[Outcome]:
    """`function(item, *shared)` for each item, one at a time in a worker process, each within `timeout_seconds`.

    One worker serves the items in turn, so `shared` (e.g. the day's factor frame) is sent once and a
    process is forked once, not per item. Each item's time counts from when the worker is ready (its
    start is not charged to the first item). An item past its time kills the worker (and whatever it was
    doing); the next item starts a fresh one. `function`, the items and `shared` must be picklable
    (a module-level function, plain data, polars frames).
    """
    if timeout_seconds <= 0:
        raise ValueError(f"timeout_seconds must be > 0, got {timeout_seconds}")
    worker: _Worker | None = None
    try:
        for item in items:
            if worker is None:
                worker = _Worker(function, shared)
            outcome = worker.ask(item, timeout_seconds)
            if isinstance(outcome, (TimedOut, Crashed)):
                worker.close(polite=False)
                worker = None
            yield outcome
    finally:
        if worker is not None:
            worker.close(polite=True)


def call_with_deadline(function: Callable, args: tuple, timeout_seconds: float) -> Outcome:
    """`function(*args)` in a worker process; after `timeout_seconds` the worker is stopped."""
    return next(map_with_deadline(_apply, [function], args, timeout_seconds))


def _apply(function: Callable, *args: Any) -> Any:
    return function(*args)
