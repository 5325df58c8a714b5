"""Dagster's own storage over a year of the 15-minute QRL job, with and without retention.

    python benchmarks/retention.py [--runs 96] [--charted-runs 24]

What is measured (real runs of `qrl_15min_job`, simulated MEXC mode, on the local SQLite instance of
the repository's dagster.yaml):
  1. `--charted-runs` runs with the position/plan charts on every run (the former behaviour, forced
     for this measurement only) and `--runs` runs as shipped (charts on the one quarter hour a Taipei
     day that ends at Taipei midnight): the instance's growth in KB per run for each.
  2. Retention: the `--runs` runs are backdated evenly over the last 28 days (their run records say
     so; the runs themselves are real), then `dagster_retention_job` runs with the default ages
     (14 days for the 15-minute jobs): instance size and run count before and after.
What is extrapolated (labelled so in the output): a year (35,040 runs) from the measured KB per run,
without retention, and with it (at most 14 days + one week between weekly retention runs = 21 days
of runs, 2,016, kept at any time; SQLite reuses the pages freed in runs.db/index.db, and each run's
own event-log file is removed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import isolated_home  # noqa: E402

RUNS_PER_DAY = 96
RUNS_PER_YEAR = RUNS_PER_DAY * 365


def instance_bytes(dagster_home: Path) -> int:
    return sum(path.stat().st_size for path in dagster_home.rglob("*") if path.is_file())


def quarter_hours(start: dt.datetime, count: int) -> list[str]:
    return [(start + dt.timedelta(minutes=15 * i)).strftime("%Y-%m-%d-%H:%M") for i in range(count)]


def run_quarter_hours(instance, keys: list[str]) -> tuple[list[str], float]:
    from qrl_platform.definitions import defs

    job = defs.resolve_job_def("qrl_15min_job")
    started = time.perf_counter()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # not 96 runs' debug lines
    run_ids = [job.execute_in_process(instance=instance, partition_key=key, run_config=quiet).run_id for key in keys]
    return run_ids, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=96, help="runs as shipped (96 = one day)")
    parser.add_argument("--charted-runs", type=int, default=24, help="runs with charts on every run")
    args = parser.parse_args()

    with isolated_home(universe=10) as root:
        import dagster as dg

        from qrl_platform import dashboard
        from qrl_platform.defs.maintenance.dagster_retention import dagster_retention_job
        from qrl_platform_tests.maintenance.dagster_runs import backdate_run

        os.environ["QRL_MEXC_MODE"] = "simulated"
        home = root / "dagster"
        instance = dg.DagsterInstance.get()
        run_quarter_hours(instance, quarter_hours(dt.datetime(2026, 10, 1, 0, 0), 2))  # warm-up: schema, caches
        base = instance_bytes(home)

        # 1a. Charts on every run (the former behaviour), on quarter hours of another day.
        always = dashboard.treasury_charts_due
        dashboard.treasury_charts_due = lambda end: True
        try:
            _, charted_seconds = run_quarter_hours(instance, quarter_hours(dt.datetime(2026, 10, 5), args.charted_runs))
        finally:
            dashboard.treasury_charts_due = always
        charted_bytes = instance_bytes(home) - base
        # 1b. As shipped: one Taipei day of quarter hours from 16:00 UTC (Taipei midnight) holds one charted run.
        before = instance_bytes(home)
        keys = quarter_hours(dt.datetime(2026, 10, 9, 16, 0), args.runs)
        run_ids, shipped_seconds = run_quarter_hours(instance, keys)
        shipped_bytes = instance_bytes(home) - before
        kb_charted = charted_bytes / args.charted_runs / 1024
        kb_shipped = shipped_bytes / args.runs / 1024
        print(
            f"measured: {args.charted_runs} runs with charts on every run: {kb_charted:6.1f} KB/run, "
            f"{charted_seconds / args.charted_runs:.2f} s/run"
        )
        print(
            f"measured: {args.runs} runs, charts once a Taipei day:   {kb_shipped:6.1f} KB/run, "
            f"{shipped_seconds / args.runs:.2f} s/run"
        )

        # 2. Retention on real runs whose records say they ran over the last 28 days.
        now = dt.datetime.now(dt.UTC)
        for number, run_id in enumerate(run_ids):
            backdate_run(home, run_id, now - dt.timedelta(days=28) + dt.timedelta(days=28) * number / len(run_ids))
        runs_before, size_before = len(instance.get_run_records()), instance_bytes(home)
        started = time.perf_counter()
        result = dagster_retention_job.execute_in_process(
            instance=instance, run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
        )
        retention_seconds = time.perf_counter() - started
        runs_after, size_after = len(instance.get_run_records()), instance_bytes(home)
        deleted = runs_before - runs_after + 1  # the retention run itself is one more
        print(
            f"measured: retention ({'ok' if result.success else 'FAILED'}, {retention_seconds:.1f} s): "
            f"{runs_before} runs / {size_before / 2**20:.1f} MiB -> {runs_after} runs (incl. its own) / "
            f"{size_after / 2**20:.1f} MiB; {deleted} runs older than 14 days deleted, "
            f"{(size_before - size_after) / max(deleted, 1) / 1024:.1f} KB freed per deleted run"
        )

        print("extrapolated to a year of the 15-minute job (35,040 runs), from the KB/run above:")
        kept = 21 * RUNS_PER_DAY
        for label, kb in (("charts every run", kb_charted), ("charts once a day", kb_shipped)):
            print(
                f"  {label:18s} without retention: {RUNS_PER_YEAR:6,d} runs, {RUNS_PER_YEAR * kb / 2**20:7.2f} GiB;"
                f"  with retention: <= {kept:,d} runs, {kept * kb / 2**10:6.0f} MiB"
            )


if __name__ == "__main__":
    main()
