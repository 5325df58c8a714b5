"""`qrl` — the manual operations of S9 from a terminal, executed as Dagster runs on the local
instance (DAGSTER_HOME) so that every one of them is visible in the UI like a scheduled run."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

import dagster as dg

from qrl_platform.partitions import TAIPEI, day_status, parse_date, previous_trading_days

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
# Dagster's console logger prints every event at DEBUG; a terminal user wants the run's own messages.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def latest_closed_trading_day(now: dt.datetime | None = None) -> dt.date:
    """The most recent trading day whose closing data is out (after 14:30 Taipei)."""
    from zoneinfo import ZoneInfo

    now = now or dt.datetime.now(ZoneInfo(TAIPEI))
    day = now.date() if now.time() >= dt.time(14, 30) else now.date() - dt.timedelta(days=1)
    while not day_status(day).is_open:
        day -= dt.timedelta(days=1)
    return day


def _instance() -> dg.DagsterInstance:
    try:
        return dg.DagsterInstance.get()
    except dg.DagsterInvariantViolationError:
        print("DAGSTER_HOME is not set: runs go to a temporary instance and will not show in the UI", file=sys.stderr)
        return dg.DagsterInstance.ephemeral()


def materialize_range(selection: list[str], start: str, end: str, *, instance: dg.DagsterInstance, run_config=None):
    """Materialise `selection` over [start, end] as ONE run (single-run backfill)."""
    from qrl_platform.definitions import defs

    job = defs.resolve_implicit_global_asset_job_def()
    keys = [dg.AssetKey(name) for name in selection]
    tags = {RANGE_START: start, RANGE_END: end} if start != end else {}
    started = time.perf_counter()
    result = job.execute_in_process(
        instance=instance,
        asset_selection=keys,
        tags=tags,
        partition_key=start if start == end else None,
        run_config={**QUIET, **(run_config or {})},
        raise_on_error=True,
    )
    print(f"  {', '.join(selection)} {start}..{end}: {'ok' if result.success else 'FAILED'} "
          f"in {time.perf_counter() - started:.1f}s (run {result.run_id[:8]})")
    return result


def _partitioned_selection(partitions_def) -> list[str]:
    from qrl_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    return [
        key.to_user_string()
        for key in graph.get_all_asset_keys()
        if graph.get(key).is_materializable and graph.get(key).partitions_def == partitions_def
    ]


def cmd_demo(args: argparse.Namespace) -> int:
    """Materialise the daily chain on the demo market: history for the lookback, then the chain."""
    from qrl_platform.market.assets import DAILY_DESCRIPTIONS
    from qrl_platform.partitions import fiscal_quarter, revenue_month, shareholding_week, trading_day

    instance = _instance()
    end = parse_date(args.end) if args.end else latest_closed_trading_day()
    chain_days = previous_trading_days(end, args.days)
    history = previous_trading_days(chain_days[0], args.lookback_days)
    first = history[0]
    print(f"demo market: history {first}..{end}, daily chain {chain_days[0]}..{end}")

    def key_range(partitions_def, start: dt.date, stop: dt.date) -> tuple[str, str]:
        keys = partitions_def.get_partition_keys_in_range(
            dg.PartitionKeyRange(*_clamp(partitions_def, start, stop))
        )
        return keys[0], keys[-1]

    slow = [("monthly_revenue", revenue_month, 15 * 31), ("financials", fiscal_quarter, 2 * 366),
            ("shareholding_distribution", shareholding_week, 21)]
    for name, partitions_def, extra_days in slow:
        start, stop = key_range(partitions_def, first - dt.timedelta(days=extra_days), end)
        materialize_range([name], start, stop, instance=instance)

    unpartitioned = _partitioned_selection(None)
    if unpartitioned:
        from qrl_platform.definitions import defs

        defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey(k) for k in unpartitioned], run_config=QUIET
        )
        print(f"  {', '.join(unpartitioned)}: ok")
    raw = list(DAILY_DESCRIPTIONS)
    materialize_range(raw, first.isoformat(), end.isoformat(), instance=instance)
    chain = [k for k in _partitioned_selection(trading_day) if k not in raw]
    if chain:
        materialize_range(chain, chain_days[0].isoformat(), end.isoformat(), instance=instance)
    print("done.")
    return 0


def _clamp(partitions_def, start: dt.date, stop: dt.date) -> tuple[str, str]:
    """The first and last partition keys whose windows overlap [start, stop]."""
    keys = partitions_def.get_partition_keys()
    inside = [k for k in keys if start.isoformat() <= k <= stop.isoformat()]
    before = [k for k in keys if k < start.isoformat()]
    first = before[-1] if before else inside[0]
    return first, inside[-1] if inside else first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qrl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="materialise the daily chain on the demo market for recent days")
    demo.add_argument("--days", type=int, default=20, help="trading days of the full chain (default 20)")
    demo.add_argument("--lookback-days", type=int, default=260, help="trading days of raw history before them")
    demo.add_argument("--end", help="last trading day (default: the latest with published closing data)")
    demo.set_defaults(func=cmd_demo)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
