"""One year (2024) of the four daily raw assets on the demo market, as ONE run (single-run backfill),
against a baseline of separate one-day runs in the same process (their per-day cost × the year).

    python benchmarks/market_year.py [--stocks 1800] [--baseline-days 5]

Prints wall time and peak memory. The single run goes through the real `dagster asset materialize`
command, exactly as the issue states it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from _common import isolated_home, peak_rss_mib, timed

RAW = "daily_quotes,institutional_flows,margin_balances,valuations"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stocks", type=int, default=1800)
    parser.add_argument("--baseline-days", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, float] = {}
    with isolated_home(args.stocks):
        command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "qrl_platform.definitions",
                   "--select", RAW, "--partition-range", "2024-01-02...2024-12-31"]
        with timed("year_single_run", results):
            subprocess.run(command, check=True, capture_output=True)
        _, year_peak = peak_rss_mib()
        import dagster as dg

        from qrl_platform import load
        from qrl_platform.definitions import defs

        rows = load("daily_quotes", start="2024-01-01", end="2024-12-31").height
        days = ["2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07", "2024-03-08", "2024-03-11", "2024-03-12"]
        job = defs.resolve_implicit_global_asset_job_def()
        instance = dg.DagsterInstance.get()
        quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
        with timed("baseline_days", results):
            for day in days[: args.baseline_days]:
                job.execute_in_process(instance=instance, partition_key=day, run_config=quiet,
                                       asset_selection=[dg.AssetKey(k) for k in RAW.split(",")])
    per_day = results["baseline_days"] / args.baseline_days
    year_days = 262
    print(f"stocks: {args.stocks}, partitions: {year_days} weekdays of 2024, daily_quotes rows: {rows:,}")
    print(f"one run for the year (dagster asset materialize --partition-range): {results['year_single_run']:.1f} s wall")
    print(f"peak memory of the year run (largest process): {year_peak:.0f} MiB")
    print(f"baseline: one-day runs in-process, {per_day:.2f} s/day → {per_day * year_days:.0f} s for the year")
    print(f"ratio single-run / per-day-runs: {results['year_single_run'] / (per_day * year_days):.2f}")


if __name__ == "__main__":
    main()
