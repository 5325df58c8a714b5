"""`qrl` — the manual operations of S9 from a terminal, executed as Dagster runs on the local
instance (DAGSTER_HOME) so that every one of them is visible in the UI like a scheduled run."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

import dagster as dg

from qrl_platform.calendar import TAIPEI, closing_data_out, day_status, parse_date, previous_trading_days, taipei_now

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
# Dagster's console logger prints every event at DEBUG; a terminal user wants the run's own messages.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def latest_closed_trading_day(now: dt.datetime | None = None) -> dt.date:
    """The most recent trading day whose closing data is out (after 14:30 Taipei)."""
    now = (now or taipei_now()).astimezone(TAIPEI)
    day = now.date() if closing_data_out(now) else now.date() - dt.timedelta(days=1)
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
    from qrl_platform.defs.market.assets import DAILY_DESCRIPTIONS
    from qrl_platform.defs.partitions import trading_day

    instance = _instance()
    end = parse_date(args.end) if args.end else latest_closed_trading_day()
    chain_days = previous_trading_days(end, args.days)
    history = previous_trading_days(chain_days[0], args.lookback_days)
    first = history[0]
    print(f"demo market: history {first}..{end}, daily chain {chain_days[0]}..{end}")
    materialize_slow_tables(first, end, instance=instance)
    raw = list(DAILY_DESCRIPTIONS)
    materialize_range(raw, first.isoformat(), end.isoformat(), instance=instance)
    chain = [k for k in _partitioned_selection(trading_day) if k not in raw]
    if chain:
        materialize_range(chain, chain_days[0].isoformat(), end.isoformat(), instance=instance)
    # The QRL treasury side: the latest quarter hour on the simulated exchange (QRL_MEXC_MODE).
    from qrl_platform.calendar import just_finished_quarter_hour

    quarter = just_finished_quarter_hour(dt.datetime.now(dt.UTC))
    materialize_range(["qrl_position", "rebalance_plan"], quarter, quarter, instance=instance)
    print("done.")
    return 0


def materialize_slow_tables(first: dt.date, end: dt.date, *, instance: dg.DagsterInstance) -> None:
    """The slower-cadence raw tables (revenue, financials, shareholding) covering what the daily
    factors from `first` to `end` look back on, and the unpartitioned assets (factor_metadata...)."""
    from qrl_platform.defs.partitions import fiscal_quarter, revenue_month, shareholding_week

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


def backfill_whole_chain(start: dt.date, end: dt.date, *, lookback_days: int, instance: dg.DagsterInstance):
    """From an empty home: the slower-cadence tables and `lookback_days` of raw history before
    `start`, then the whole daily chain over [start, end] as ONE run (raw -> M07/M08/M09 + checks ->
    strategies -> signals -> M13 -> stats). Returns that run's result."""
    from qrl_platform.defs.market.assets import DAILY_DESCRIPTIONS
    from qrl_platform.defs.partitions import trading_day

    history = previous_trading_days(start, lookback_days + 1)[:-1]  # the days before `start`
    materialize_slow_tables(history[0], end, instance=instance)
    materialize_range(list(DAILY_DESCRIPTIONS), history[0].isoformat(), history[-1].isoformat(), instance=instance)
    return materialize_range(_partitioned_selection(trading_day), start.isoformat(), end.isoformat(),
                             instance=instance)


def _clamp(partitions_def, start: dt.date, stop: dt.date) -> tuple[str, str]:
    """The first and last partition keys whose windows overlap [start, stop]."""
    keys = partitions_def.get_partition_keys()
    inside = [k for k in keys if start.isoformat() <= k <= stop.isoformat()]
    before = [k for k in keys if k < start.isoformat()]
    first = before[-1] if before else inside[0]
    return first, inside[-1] if inside else first


def _run_job(job_name: str, partition_or_range: tuple[str, str], *, run_config=None, tags=None) -> int:
    """Execute one of the code location's jobs on the local instance, for one partition or a range."""
    from qrl_platform.definitions import defs

    start, end = partition_or_range
    job = defs.resolve_job_def(job_name)
    _check_partition_keys(job_name, job.partitions_def, start, end)
    run_tags = dict(tags or {})
    if start != end:
        run_tags.update({RANGE_START: start, RANGE_END: end})
    started = time.perf_counter()
    result = job.execute_in_process(
        instance=_instance(), partition_key=start if start == end else None, tags=run_tags,
        run_config={**QUIET, **(run_config or {})}, raise_on_error=False,
    )
    label = start if start == end else f"{start}..{end}"
    print(f"{job_name} {label}: {'ok' if result.success else 'FAILED'} in {time.perf_counter() - started:.1f}s "
          f"(run {result.run_id})")
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            meta = event.step_materialization_data.materialization.metadata
            shown = {k: v.value for k, v in meta.items() if k in SUMMARY_KEYS}
            if shown:
                print(f"  {event.asset_key.to_user_string()}: {shown}")
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            print(f"  step {event.step_key} failed: {event.step_failure_data.error.message.strip()}")
    return 0 if result.success else 1


def _check_partition_keys(job_name: str, partitions_def, start: str, end: str) -> None:
    """A date that is not a partition fails here, naming the field and the date (not Dagster's bare
    "Could not find a partition"), before any run starts or anything is written."""
    if partitions_def is None:
        return
    fields = [("date", start)] if start == end else [("start", start), ("end", end)]
    for field, key in fields:
        if partitions_def.has_partition_key(key):
            continue
        reason = "not one of its partitions"
        try:
            day = dt.date.fromisoformat(key)
        except ValueError:
            day = None
        if day is not None and day.weekday() >= 5:
            reason = f"a {day:%A}; its partitions are weekdays (exchange holidays are partitions that stay empty)"
        elif day is not None:
            keys = partitions_def.get_partition_keys()
            if keys:
                reason = f"outside its partitions ({keys[0]} .. {keys[-1]})"
        raise SystemExit(f"{field}: {key} is {reason} — {job_name} was not run")


SUMMARY_KEYS = ("dagster/row_count", "strategies_run", "strategies_failed", "total_signals", "buy_signals",
                "sell_signals", "hold_signals", "slowest_strategy", "events_published", "events_already_published",
                "market_closed", "dry_run")


def _strategy_config(strategy_ids: list[str], save: bool) -> dict:
    return {"ops": {"strategy_signals": {"config": {"strategy_ids": strategy_ids, "save_results": save}}}}


def cmd_run_strategy(args: argparse.Namespace) -> int:
    date = parse_date(args.date, field="date").isoformat()
    return _run_job("strategies_job", (date, date), run_config=_strategy_config([args.strategy_id], not args.dry_run),
                    tags={"qrl/manual": "run-strategy"})


def cmd_run_all(args: argparse.Namespace) -> int:
    date = parse_date(args.date, field="date").isoformat()
    # Re-running replaces the day's rows (deterministic signal ids), so "force" is always safe.
    return _run_job("strategies_job", (date, date), run_config=_strategy_config([], True),
                    tags={"qrl/manual": "run-all"})


def cmd_backfill(args: argparse.Namespace) -> int:
    start = parse_date(args.start, field="start").isoformat()
    end = parse_date(args.end, field="end").isoformat()
    if end < start:
        raise SystemExit(f"backfill: end {end} is before start {start}")
    ids = [s for s in (args.strategies or "").split(",") if s]
    if args.whole_chain:
        if ids:
            raise SystemExit("backfill: --whole-chain runs every ACTIVE strategy; drop --strategies")
        result = backfill_whole_chain(parse_date(start), parse_date(end), lookback_days=args.lookback_days,
                                      instance=_instance())
        return 0 if result.success else 1
    return _run_job("strategies_job", (start, end), run_config=_strategy_config(ids, True),
                    tags={"qrl/manual": "backfill"})


def cmd_notify(args: argparse.Namespace) -> int:
    date = parse_date(args.date, field="date").isoformat()
    config = {"ops": {"m13_notification": {"config": {"force": args.force}}}}
    return _run_job("notify_m13_job", (date, date), run_config=config, tags={"qrl/manual": "notify"})


def cmd_retry(args: argparse.Namespace) -> int:
    """Re-run a failed run: same job, same partition(s), same config."""
    instance = _instance()
    run = instance.get_run_by_id(args.run_id)
    if run is None:
        raise SystemExit(f"retry: no run with id {args.run_id}")
    if run.status != dg.DagsterRunStatus.FAILURE and not args.any_status:
        raise SystemExit(f"retry: run {args.run_id} is {run.status.value}, not FAILURE (use --any-status)")
    tags = run.tags
    partition = tags.get("dagster/partition")
    span = (partition, partition) if partition else (tags.get(RANGE_START), tags.get(RANGE_END))
    if span[0] is None:
        raise SystemExit(f"retry: run {args.run_id} has no partition to retry")
    run_config = {k: v for k, v in (run.run_config or {}).items() if k != "loggers"}
    return _run_job(run.job_name, span, run_config=run_config, tags={"qrl/manual": "retry", "qrl/retry_of": run.run_id})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qrl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="materialise the daily chain on the demo market for recent days")
    demo.add_argument("--days", type=int, default=20, help="trading days of the full chain (default 20)")
    demo.add_argument("--lookback-days", type=int, default=260, help="trading days of raw history before them")
    demo.add_argument("--end", help="last trading day (default: the latest with published closing data)")
    demo.set_defaults(func=cmd_demo)

    one = sub.add_parser("run-strategy", help="run one strategy for one trading day")
    one.add_argument("strategy_id")
    one.add_argument("date")
    one.add_argument("--dry-run", action="store_true", help="compute and report, write nothing")
    one.set_defaults(func=cmd_run_strategy)

    every = sub.add_parser("run-all", help="run every ACTIVE strategy for a day (replaces the day's signals)")
    every.add_argument("date")
    every.set_defaults(func=cmd_run_all)

    backfill = sub.add_parser("backfill", help="run strategies over a date range as one run")
    backfill.add_argument("start")
    backfill.add_argument("end")
    backfill.add_argument("--strategies", help="comma-separated strategy ids (default: every ACTIVE one)")
    backfill.add_argument("--whole-chain", action="store_true",
                          help="the whole daily chain from the raw tables (with their lookback history and the "
                               "slower-cadence tables) to strategy_stats, the range as one run")
    backfill.add_argument("--lookback-days", type=int, default=261,
                          help="with --whole-chain: trading days of raw history before start (default 261)")
    backfill.set_defaults(func=cmd_backfill)

    notify = sub.add_parser("notify", help="(re-)publish STRATEGY_SIGNALS_READY to M13 for a day")
    notify.add_argument("date")
    notify.add_argument("--force", action="store_true", help="publish again even if already published")
    notify.set_defaults(func=cmd_notify)

    retry = sub.add_parser("retry", help="re-run a failed run (same job, partitions and config)")
    retry.add_argument("run_id")
    retry.add_argument("--any-status", action="store_true", help="also re-run a run that did not fail")
    retry.set_defaults(func=cmd_retry)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
