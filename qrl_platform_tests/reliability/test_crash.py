"""Crash tests: SIGKILL the writing process at random points, then check what it left and re-run.

For each target (see crash_targets.py) a child process loops over complete writes of versions A and
B with the real core function, and is killed after a random delay. After each kill every store must
hold exactly version A or exactly version B (never a mix, never torn, nothing missing); a re-run must
converge to the digests of a clean write. The outbox target publishes several days once per child and
is additionally killed right after an XADD returned, before its outbox commit.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from qrl_platform_tests.reliability.crash_targets import OutboxPublish, make
from qrl_platform_tests.reliability.figures import Figures, count

pytestmark = pytest.mark.reliability

KILLS = count("QRL_RELIABILITY_KILLS", ci=2, full=20)
ROOT = Path(__file__).resolve().parents[2]


def spawn(kind: str, config: dict, env: dict | None = None) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-m", "qrl_platform_tests.reliability.crash_child", kind, json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    line = child.stdout.readline()
    if line.strip() != "ready":
        child.kill()
        raise AssertionError(f"crash child for {kind} did not start: {line!r} {child.stderr.read()}")
    return child


def kill_after(child: subprocess.Popen, delay: float) -> list[str]:
    """Start the write loop, SIGKILL the child after `delay` seconds; the writes it reported complete."""
    child.stdin.write("go\n")
    child.stdin.flush()
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    out, err = child.communicate()
    if child.returncode != -signal.SIGKILL:
        raise AssertionError(f"crash child ended by itself ({child.returncode}): {err[-2000:]}")
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("wrote ")]


def kill_at_crash_point(child: subprocess.Popen) -> list[str]:
    """Start the write loop of a child that kills itself at its CRASH_AT point."""
    child.stdin.write("go\n")
    child.stdin.flush()
    child.wait(timeout=60)
    out, err = child.communicate()
    if child.returncode != -signal.SIGKILL:
        raise AssertionError(f"crash child did not reach its crash point ({child.returncode}): {err[-2000:]}")
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("wrote ")]


def timed_write(target, version: str) -> float:
    started = time.perf_counter()
    target.write(version)
    return time.perf_counter() - started


def crash_versions(kind: str, config: dict, record) -> None:
    """A/B targets: every store holds A or B after each kill; a re-run converges to B."""
    rng = random.Random(f"{kind}-{config}")
    reference = make(kind, config)
    reference.write("B")
    reference.reset()
    clean_a = reference.snapshot()["stores"]
    duration = timed_write(reference, "B")
    clean_b = reference.snapshot()["stores"]
    assert clean_a != clean_b, "versions A and B must differ, or a torn write could look complete"
    assert set(clean_a) == set(clean_b)
    lost = duplicated = leftovers = behind = writes = leftovers_before = 0
    failures: list[str] = []
    crash_at, crash_meaning = reference.CRASH_POINT
    targeted = KILLS // 2
    for kill in range(KILLS):
        if kill < targeted:  # the crash point a random delay rarely hits
            child = spawn(kind, config, {"CRASH_AT": crash_at})
            completed = kill_at_crash_point(child)
        else:
            child = spawn(kind, config)
            completed = kill_after(child, rng.uniform(0, 2.5 * duration))
        writes += len(completed)
        state = reference.snapshot()
        duplicated += state["duplicates"]
        leftovers += max(0, state["leftovers"] - leftovers_before)  # left by this kill
        leftovers_before = state["leftovers"]
        bad = {
            store: value for store, value in state["stores"].items() if value not in (clean_a[store], clean_b[store])
        }
        missing = set(clean_a) - set(state["stores"])
        if bad or missing:
            lost += 1
            failures.append(f"kill {kill}: {bad or ''} {sorted(missing) or ''}")
        versions = {
            store: ("A" if value == clean_a[store] else "B")
            for store, value in state["stores"].items()
            if clean_a.get(store) != clean_b.get(store)  # stores the write changes
        }
        if len(set(versions.values())) > 1:
            behind += 1  # e.g. the warehouse has B and Redis still A: killed between the two stores
        reference.converge()
        converged = reference.snapshot()
        assert converged["stores"] == clean_b, f"kill {kill}: the re-run did not converge: {converged} vs {clean_b}"
        assert converged["duplicates"] == 0
    name = reference.name
    reference.close()
    record(
        Figures(
            target=name,
            faults=f"SIGKILL ×{KILLS}: {KILLS - targeted} at random (0–{2.5 * duration * 1000:.0f} ms into a loop of "
            f"{duration * 1000:.0f} ms writes), {targeted} when {crash_meaning}",
            runs=KILLS,
            lost=lost,
            duplicated=duplicated,
            notes=f"{writes} writes completed before the kills; re-run converged {KILLS}/{KILLS}"
            + (f"; {leftovers} orphaned temp files" if leftovers else "")
            + (f"; {behind} kills between the stores (re-run heals)" if behind else ""),
        )
    )
    assert failures == [] and duplicated == 0


def test_parquet_partition_write_survives_sigkill(tmp_path, record):
    crash_versions("parquet", {"root": str(tmp_path / "frames")}, record)


def test_strategy_signals_day_replace_survives_sigkill_on_sqlite(tmp_path, record):
    crash_versions("signals", {"url": f"sqlite:///{tmp_path / 'warehouse.sqlite'}"}, record)


@pytest.mark.postgres
def test_strategy_signals_day_replace_survives_sigkill_on_postgres(postgres_url, record):
    crash_versions("signals", {"url": postgres_url}, record)


@pytest.mark.redis
def test_qrl_plan_write_survives_sigkill(tmp_path, redis_url, record):
    crash_versions("plan", {"url": f"sqlite:///{tmp_path / 'warehouse.sqlite'}", "redis_url": redis_url}, record)


@pytest.mark.redis
def test_outbox_insert_and_xadd_survive_sigkill(tmp_path, redis_url, record):
    rng = random.Random("outbox")

    def fresh() -> dict:
        name = uuid.uuid4().hex[:8]
        return {"url": f"sqlite:///{tmp_path / f'{name}.sqlite'}", "redis_url": redis_url, "stream": f"crash:{name}"}

    reference = make("outbox", fresh())
    started = time.perf_counter()
    reference.converge()
    duration = time.perf_counter() - started
    clean = reference.snapshot()
    assert clean["events"] == len(reference.DAYS) and clean["duplicates"] == 0
    reference.close()

    # Half the kills at a random point, the rest right after the k-th XADD returned (before the commit).
    plans = [("random", None)] * ((KILLS + 1) // 2) + [
        ("after XADD", f"XADD|EVALSHA|EVAL:{1 + k % len(OutboxPublish.DAYS)}") for k in range(KILLS // 2)
    ]
    lost = duplicated = torn = 0
    duplicated_before_rerun = 0
    for _how, crash_point in plans:
        config = fresh()
        child = spawn("outbox", config, {"CRASH_AFTER_COMMAND": crash_point} if crash_point else None)
        if crash_point:
            kill_at_crash_point(child)
        else:
            kill_after(child, rng.uniform(0, duration))
        target = make("outbox", config)
        state = target.snapshot()
        lost += state["lost"]
        duplicated_before_rerun += state["duplicates"]
        target.converge()
        after = target.snapshot()
        lost += after["lost"]
        duplicated += after["duplicates"]
        if after["stores"] != clean["stores"]:
            torn += 1
        target.close()
    record(
        Figures(
            target="outbox insert + XADD publish",
            faults=f"SIGKILL ×{len(plans)}: {(KILLS + 1) // 2} at random, {KILLS // 2} right after an XADD",
            runs=len(plans),
            lost=lost,
            duplicated=duplicated_before_rerun + duplicated,
            notes=f"{len(reference.DAYS)} days published per run; re-run converged {len(plans) - torn}/{len(plans)}",
        )
    )
    assert lost == 0 and torn == 0
    assert duplicated_before_rerun == 0 and duplicated == 0
