"""One run worker for test_pools.py: materialises a single asset in a given pool on the instance in
DAGSTER_HOME, in its own process (as a run pod would), and writes what the step saw to a shared
directory. `python -m qrl_platform_tests.market.pool_steps HOME NAME POOL OTHER MODE SHARED`.

MODE `meet`: the step waits until the OTHER step has started (proves the two ran at the same time).
MODE `exclusive`: unless OTHER already ran, the step holds its pool slot until OTHER's step is queued
on the pool, and records whether OTHER had started by then (it must not have)."""

import json
import sys
import time
from pathlib import Path

import dagster as dg

# Generous: the other run worker is a fresh Python process importing Dagster on a loaded 2-core CI machine,
# and a step that times out waiting proves nothing (the test then fails rather than passes).
MEETING_TIMEOUT_SECONDS = 90


def _wait_for(condition, timeout: float = MEETING_TIMEOUT_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        # Not faster: each look is a read of the instance's SQLite storage, which the other worker must
        # write to (its run, its pending claim on the pool) to get queued at all.
        time.sleep(0.5)
    return False


def step_asset(name: str, pool: str, other: str, mode: str, shared: Path) -> dg.AssetsDefinition:
    def other_started() -> bool:
        return (shared / f"{other}.started").exists()

    @dg.asset(name=name, pool=pool)
    def _asset(context: dg.AssetExecutionContext) -> None:
        begin = time.monotonic()
        (shared / f"{name}.started").write_text(str(begin))
        if mode == "meet":
            saw = _wait_for(other_started)
        elif other_started():
            saw = False  # the other step already ran: this is the second one
        else:

            def other_is_queued_on_the_pool() -> bool:
                # Any step of another run registered on the pool: when both ask at the same moment Dagster
                # *assigns* both (each saw a free slot) and the slot rows let only one claim it, so the
                # waiting one is listed as assigned, not as pending (`pending_step_count` counts only
                # unassigned steps). This step holds the pool's one slot, so that step cannot be running.
                info = context.instance.event_log_storage.get_concurrency_info(pool)
                return any(step.run_id != context.run_id for step in info.pending_steps)

            saw = _wait_for(other_is_queued_on_the_pool) and not other_started()
        (shared / f"{name}.json").write_text(json.dumps({"start": begin, "end": time.monotonic(), "saw": saw}))

    return _asset


def main(home: str, name: str, pool: str, other: str, mode: str, shared: str) -> int:
    asset = step_asset(name, pool, other, mode, Path(shared))
    with dg.DagsterInstance.from_config(home) as instance:
        return 0 if dg.materialize([asset], instance=instance).success else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
