"""The process the crash test kills: `python -m qrl_platform_tests.reliability.crash_child KIND CONFIG_JSON`.

Prints `ready` once imports and data are prepared, waits for a line on stdin, then runs the target's
write loop, printing `wrote <version>` after each complete write. With CRASH_AFTER_COMMAND=NAME:k it
kills itself right after the k-th Redis command NAME returns (e.g. XADD:2 — after the stream entry
exists, before the outbox commit), a crash point a random delay would rarely hit. CRASH_AT=
module:function:k:before|after does the same around the k-th call of a module-level function (e.g.
os:replace:1:before — the temporary Parquet file is complete but not yet renamed).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys

from qrl_platform_tests.reliability.crash_targets import make


def _kill_after(client, name: str, nth: int) -> None:
    original = client.execute_command
    seen = 0

    def execute_command(*args, **options):
        nonlocal seen
        result = original(*args, **options)
        if str(args[0]).upper() in name.split("|"):
            seen += 1
            if seen == nth:
                os.kill(os.getpid(), signal.SIGKILL)
        return result

    client.execute_command = execute_command


def _kill_around(module_name: str, function: str, nth: int, when: str) -> None:
    module = importlib.import_module(module_name)
    original = getattr(module, function)
    seen = 0

    def wrapper(*args, **kwargs):
        nonlocal seen
        seen += 1
        if seen == nth and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if seen == nth and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(module, function, wrapper)


def main() -> None:
    kind, config = sys.argv[1], json.loads(sys.argv[2])
    target = make(kind, config)
    if kind in ("parquet", "signals", "plan"):
        target.write("B")  # warm the caches (frames, records) so the loop below only writes
        target.reset()
    crash_after = os.environ.get("CRASH_AFTER_COMMAND", "")
    if crash_after:
        name, nth = crash_after.rsplit(":", 1)
        _kill_after(target.redis, name, int(nth))
    crash_at = os.environ.get("CRASH_AT", "")
    if crash_at:
        module_name, function, nth, when = crash_at.split(":")
        _kill_around(module_name, function, int(nth), when)
    print("ready", flush=True)
    sys.stdin.readline()
    target.work(lambda version: print(f"wrote {version}", flush=True))


if __name__ == "__main__":
    main()
