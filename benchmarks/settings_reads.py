"""How often the settings are validated while one raw table's year (2024, 242 trading days) is
materialised as one run on the demo market, and what the validations cost.

    python benchmarks/settings_reads.py [--stocks 60] [--table daily_quotes]

`settings()` validates the environment on every call (no cache), so this count is what the hot paths
cost: the wiring reads the settings once per resource use and passes values to the core (frame store,
market source, calendar, timetable), which never reads them per partition.
"""

from __future__ import annotations

import argparse
import time

from _common import isolated_home

START, END = "2024-01-02", "2024-12-31"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stocks", type=int, default=60)
    parser.add_argument("--table", default="daily_quotes")
    args = parser.parse_args()
    with isolated_home(args.stocks):
        import dagster as dg

        from qrl_platform import settings as settings_module
        from qrl_platform.calendar import trading_days
        from qrl_platform.definitions import defs

        validations = {"count": 0, "seconds": 0.0}
        original_init = settings_module.Settings.__init__

        def counted_init(self, *positional, **named):
            started = time.perf_counter()
            original_init(self, *positional, **named)
            validations["count"] += 1
            validations["seconds"] += time.perf_counter() - started

        settings_module.Settings.__init__ = counted_init
        try:
            job = defs.resolve_implicit_global_asset_job_def()
            with dg.DagsterInstance.ephemeral() as instance:
                started = time.perf_counter()
                result = job.execute_in_process(
                    instance=instance,
                    asset_selection=[dg.AssetKey(args.table)],
                    tags={"dagster/asset_partition_range_start": START, "dagster/asset_partition_range_end": END},
                )
                elapsed = time.perf_counter() - started
        finally:
            settings_module.Settings.__init__ = original_init
        assert result.success
        days = len(trading_days(START, END))
        count, seconds = validations["count"], validations["seconds"]
        print(f"{args.table} {START}..{END} as one run ({days} trading days, {args.stocks} stocks): {elapsed:.1f} s")
        print(f"settings validations: {count} ({count / days:.2f} per trading day)")
        print(f"time in validation: {seconds * 1000:.1f} ms ({seconds * 1000 / max(count, 1):.2f} ms each)")


if __name__ == "__main__":
    main()
