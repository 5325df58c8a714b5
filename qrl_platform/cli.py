"""`qrl` — the desk's manual operations from a terminal, each one a Dagster run.

Where the run goes:

* `QRL_DAGSTER_URL` set: to that deployed webserver, through the GraphQL API the UI uses
  (`cli_deployment.py`): one partition is a run, as the UI's "Materialize" submits it; a range of
  partitions is a backfill, as the UI's "Launch backfill" launches it, whose runs the deployment's
  daemon submits. Either way it passes the run queue, its tag limits and the run launcher and shows in
  that UI; the CLI follows it to the end, prints the run or backfill id and the final status and exits
  non-zero on failure.
* otherwise: executed in this process on the local instance, visible in the local UI: DAGSTER_HOME's,
  or when that is unset the persistent instance under QRL_HOME/dagster (where `scripts/demo` puts the
  instance its UI reads), so one command sees what the previous one materialised. A range is the one
  run a backfill of it would launch (the assets' single-run backfill policy: the same job, asset
  selection, config and range tags); a local instance has no daemon to hand a backfill to, so that
  run carries no backfill id.

Whether a partition is stored is answered by the same place the runs go (`defs/stored.py`): the
deployment's webserver with QRL_DAGSTER_URL set, else the local instance.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from qrl_platform import cli_deployment as deployment
from qrl_platform.calendar import (
    TAIPEI,
    closing_data_out,
    day_status,
    parse_date,
    previous_trading_days,
    taipei_now,
    trading_days,
    use_extra_overrides,
)
from qrl_platform.settings import range_run_dagster_environment, settings

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
PARTITION = "dagster/partition"
# Dagster's console logger prints every event at DEBUG; a terminal user wants the run's own messages.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def latest_closed_trading_day(now: dt.datetime | None = None) -> dt.date:
    """The most recent trading day whose closing data is out (after 14:30 Taipei)."""
    now = (now or taipei_now()).astimezone(TAIPEI)
    day = now.date() if closing_data_out(now) else now.date() - dt.timedelta(days=1)
    while not day_status(day).is_open:
        day -= dt.timedelta(days=1)
    return day


# The repository's local instance configuration, which `scripts/demo` also copies into the home it uses.
LOCAL_INSTANCE_YAML = Path(__file__).resolve().parents[1] / "dagster.yaml"


def _instance() -> dg.DagsterInstance:
    """The local instance: DAGSTER_HOME's when set, else the one under QRL_HOME/dagster. Never a
    temporary one: what a command materialised must count as stored for the next command (a second
    `qrl backfill` would otherwise plan everything again) and show in the UI of that home.

    One instance per home and process: a process that runs several commands (a notebook, a script
    calling `main`) keeps its storage connections set up — a new instance checks the schema of every
    SQLite event-log file it touches again, and the indicator gate touches one per run of the day."""
    config = settings()
    home = (config.dagster_home, config.qrl_home)
    if home not in _instances:
        _instances[home] = _new_instance(config)
    return _instances[home]


_instances: dict[tuple[str, str], dg.DagsterInstance] = {}


def _new_instance(config) -> dg.DagsterInstance:
    if config.dagster_home:
        return dg.DagsterInstance.get()
    if "://" in config.qrl_home:
        raise SystemExit(
            "DAGSTER_HOME is not set and QRL_HOME is an object-store URL, where Dagster's SQLite instance "
            "cannot live: set DAGSTER_HOME to the instance the runs are recorded in"
        )
    return dg.DagsterInstance.local_temp(str(local_dagster_home(Path(config.qrl_home))))


def local_dagster_home(qrl_home: Path) -> Path:
    """QRL_HOME/dagster, created as `scripts/demo` creates it: the repository's dagster.yaml with the
    storage under that directory (an existing dagster.yaml is kept)."""
    home = qrl_home / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() and LOCAL_INSTANCE_YAML.exists():
        storage = f"base_dir: {home / 'storage'}"
        config.write_text(LOCAL_INSTANCE_YAML.read_text().replace("base_dir: .qrl/dagster_storage", storage))
    return home


def where_stored(instance: dg.DagsterInstance | None = None):
    """(asset, keys or None) -> the stored keys among them, asked where the runs go: the deployment's
    webserver with QRL_DAGSTER_URL set, else `instance` (default the local one). See `defs/stored.py`."""
    from qrl_platform.defs.stored import stored_partitions, stored_partitions_on_webserver

    if settings().dagster_url:
        return lambda asset, keys: stored_partitions_on_webserver(deployment.graphql, asset, keys)
    local = instance or _instance()
    return lambda asset, keys: stored_partitions(local, asset, keys)


@dataclass
class Launch:
    """One run to launch: a job (with `assets`, that selection of the job's assets) for one
    partition, a partition range (one single-run backfill) or no partition (`span` None)."""

    job_name: str
    span: tuple[str, str] | None
    run_config: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)
    assets: list[str] | None = None

    @property
    def run_tags(self) -> dict[str, str]:
        tags = dict(self.tags)
        if self.span and self.span[0] == self.span[1]:
            tags[PARTITION] = self.span[0]
        elif self.span:
            tags.update({RANGE_START: self.span[0], RANGE_END: self.span[1]})
        return tags

    @property
    def what(self) -> str:
        return ", ".join(self.assets) if self.assets else self.job_name

    @property
    def label(self) -> str:
        what = self.what
        if not self.span:
            return what
        return f"{what} {self.span[0]}" if self.span[0] == self.span[1] else f"{what} {self.span[0]}..{self.span[1]}"


@dataclass
class Outcome:
    run_id: str
    success: bool
    result: dg.ExecuteInProcessResult | None = None  # in-process runs only (its events, for benchmarks)


def launch(request: Launch, *, instance: dg.DagsterInstance | None = None) -> Outcome:
    """Run `request` on the deployment (QRL_DAGSTER_URL) or in this process (on `instance`, default the
    local one), print its outcome. A span that is not a partition stops here, before any run."""
    from qrl_platform.definitions import defs

    if request.span:
        if request.assets:
            partitions_def = defs.resolve_asset_graph().get(dg.AssetKey(request.assets[0])).partitions_def
        else:
            partitions_def = defs.resolve_job_def(request.job_name).partitions_def
        _check_partition_keys(request.what, partitions_def, *request.span)
    if not settings().dagster_url:
        return _launch_local(request, instance)
    if request.span and request.span[0] != request.span[1]:
        keys = partitions_def.get_partition_keys_in_range(dg.PartitionKeyRange(*request.span))
        backfill_id, success = deployment.launch_backfill(
            request.job_name, keys, request.run_config, request.tags, request.assets, request.label
        )
        return Outcome(backfill_id, success)
    run_id, success = deployment.submit_run(
        request.job_name, request.run_config, request.run_tags, request.assets, request.label
    )
    return Outcome(run_id, success)


def _check_partition_keys(job_name: str, partitions_def, start: str, end: str) -> None:
    """A date that is not a partition fails here, naming the field and the date (not Dagster's bare
    "Could not find a partition"), before any run starts or anything is written."""
    if partitions_def is None:
        return
    fields = [("date", start)] if start == end else [("start", start), ("end", end)]
    for field_name, key in fields:
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
        raise SystemExit(f"{field_name}: {key} is {reason} — {job_name} was not run")


def _launch_local(request: Launch, instance: dg.DagsterInstance | None = None) -> Outcome:
    from qrl_platform.definitions import defs

    job = defs.resolve_job_def(request.job_name)
    selection = [dg.AssetKey(name) for name in request.assets] if request.assets else None
    tags = request.run_tags
    started = time.perf_counter()
    many_partitions = RANGE_START in tags
    with range_run_dagster_environment() if many_partitions else contextlib.nullcontext():
        result = job.execute_in_process(
            instance=instance or _instance(),
            asset_selection=selection,
            partition_key=tags.pop(PARTITION, None),
            tags=tags,
            run_config={**QUIET, **request.run_config},
            raise_on_error=False,
        )
    print(
        f"{request.label}: {'ok' if result.success else 'FAILED'} in {time.perf_counter() - started:.1f}s "
        f"(run {result.run_id})"
    )
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            meta = event.step_materialization_data.materialization.metadata
            shown = {k: v.value for k, v in meta.items() if k in SUMMARY_KEYS}
            if shown and not request.assets:
                print(f"  {event.asset_key.to_user_string()}: {shown}")
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            print(f"  step {event.step_key} failed: {event.step_failure_data.error.message.strip()}")
    return Outcome(result.run_id, result.success, result)


SUMMARY_KEYS = (
    "dagster/row_count",
    "strategies_run",
    "strategies_failed",
    "total_signals",
    "buy_signals",
    "sell_signals",
    "hold_signals",
    "slowest_strategy",
    "events_published",
    "events_already_published",
    "market_closed",
    "dry_run",
)


@dataclass
class PastRun:
    """What `retry` needs of a run, from the local instance or the deployment."""

    run_id: str
    job_name: str
    status: dg.DagsterRunStatus
    tags: dict[str, str]
    run_config: dict
    assets: list[str] | None


def _past_run(run_id: str) -> PastRun | None:
    if settings().dagster_url:
        found = deployment.past_run(run_id)
        return PastRun(**found) if found else None
    run = _instance().get_run_by_id(run_id)
    if run is None:
        return None
    assets = sorted(k.to_user_string() for k in run.asset_selection) if run.asset_selection else None
    return PastRun(run.run_id, run.job_name, run.status, dict(run.tags), dict(run.run_config or {}), assets)


def _exit_code(outcome: Outcome) -> int:
    return 0 if outcome.success else 1


def asset_job(selection: list[str]) -> str:
    """The code location's asset job that runs `selection` (definitions.py: one per partitions definition)."""
    from qrl_platform.definitions import asset_job_for

    return asset_job_for(selection)


def _partitioned_selection(partitions_def) -> list[str]:
    from qrl_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    return [
        key.to_user_string()
        for key in graph.get_all_asset_keys()
        if graph.get(key).is_materializable and graph.get(key).partitions_def == partitions_def
    ]


def materialize_range(
    selection: list[str], start: str | None, end: str | None, run_config=None, *, instance=None
) -> Outcome:
    """Materialise `selection` over [start, end] as ONE run (single-run backfill); no span: unpartitioned.
    Stops the command (exit 1) when the run fails: later stages would only fail on its missing output."""
    span = (start, end) if start else None
    outcome = launch(Launch(asset_job(selection), span, run_config or {}, assets=selection), instance=instance)
    if not outcome.success:
        raise SystemExit(1)
    return outcome


def _clamp(partitions_def, start: dt.date, stop: dt.date) -> tuple[str, str]:
    """The first and last partition keys whose windows overlap [start, stop]."""
    keys = partitions_def.get_partition_keys()
    inside = [k for k in keys if start.isoformat() <= k <= stop.isoformat()]
    before = [k for k in keys if k < start.isoformat()]
    first = before[-1] if before else inside[0]
    return first, inside[-1] if inside else first


def _periodic_tables():
    from qrl_platform.defs.partitions import PARTITIONS
    from qrl_platform.factors.families import FAMILIES
    from qrl_platform.market import tables

    # (table, partitions, calendar days of it before the first daily day that the indicators read), from
    # the declarations of the slower tables and of the indicator families that read them
    return [
        (table.name, PARTITIONS[table.partitions], max(f.periodic_windows.get(table.name, 0) for f in FAMILIES))
        for table in tables.RAW
        if table.cadence != "daily"
    ]


def cmd_demo(args: argparse.Namespace) -> int:
    """Materialise the daily chain on the demo market: history for the lookback, then the chain."""
    from qrl_platform.defs.job_tags import RAW_DAILY
    from qrl_platform.defs.partitions import trading_day

    end = parse_date(args.end) if args.end else latest_closed_trading_day()
    chain_days = previous_trading_days(end, args.days)
    history = previous_trading_days(chain_days[0], args.lookback_days)
    first = history[0]
    print(f"demo market: history {first}..{end}, daily chain {chain_days[0]}..{end}")
    materialize_slow_tables(first, end)
    materialize_range(list(RAW_DAILY), first.isoformat(), end.isoformat())
    chain = [k for k in _partitioned_selection(trading_day) if k not in RAW_DAILY]
    if chain:
        materialize_range(chain, chain_days[0].isoformat(), end.isoformat())
    # The QRL treasury side: the latest quarter hour on the simulated exchange (QRL_MEXC_MODE).
    from qrl_platform.calendar import just_finished_quarter_hour

    quarter = just_finished_quarter_hour(dt.datetime.now(dt.UTC))
    materialize_range(["qrl_position", "rebalance_plan"], quarter, quarter)
    print("done.")
    return 0


def materialize_slow_tables(
    first: dt.date, end: dt.date, *, instance: dg.DagsterInstance | None = None, only_missing: bool = False
) -> None:
    """What the daily chain reads but cannot share its run (other partitions, or none): the slower raw
    tables covering what the daily factors from `first` to `end` look back on (those the source
    provides), and the unpartitioned registries (strategies, factor_metadata). `only_missing`: each
    only when something of it is not stored."""
    from qrl_platform.defs.resources import shared_resources

    provided = shared_resources(settings())["market_source"].provided_tables()
    stored = where_stored(instance) if only_missing else None
    for name, partitions_def, extra_days in _periodic_tables():
        if name not in provided:
            continue
        start, stop = _clamp(partitions_def, first - dt.timedelta(days=extra_days), end)
        keys = partitions_def.get_partition_keys_in_range(dg.PartitionKeyRange(start, stop))
        if not only_missing or set(keys) - stored(name, keys):
            materialize_range([name], start, stop, instance=instance)
    import qrl_platform

    unpartitioned = _partitioned_selection(None)
    registries_empty = any(qrl_platform.load(table).height == 0 for table in ("strategies", "factor_metadata"))
    if unpartitioned and (not only_missing or registries_empty):
        materialize_range(unpartitioned, None, None, instance=instance)


def backfill_whole_chain(start: dt.date, end: dt.date, *, lookback_days: int, instance=None) -> Outcome:
    """From an empty home: the slower-cadence tables and `lookback_days` of raw history before
    `start`, then the whole daily chain over [start, end] as ONE run (raw -> technical/fundamental/chip
    indicators + checks -> strategies -> signals -> the order module's event -> stats). Returns that run's outcome."""
    from qrl_platform.defs.job_tags import RAW_DAILY
    from qrl_platform.defs.partitions import trading_day

    history = previous_trading_days(start, lookback_days + 1)[:-1]  # the days before `start`
    materialize_slow_tables(history[0], end, instance=instance)
    materialize_range(list(RAW_DAILY), history[0].isoformat(), history[-1].isoformat(), instance=instance)
    # The evaluation group (factor ICs, backtests) is a stage of its own, launched from the UI or its job.
    from qrl_platform.defs.evaluation.assets import EVALUATION_ASSETS

    evaluation = {asset.key.to_user_string() for asset in EVALUATION_ASSETS}
    chain = [key for key in _partitioned_selection(trading_day) if key not in evaluation]
    return materialize_range(chain, start.isoformat(), end.isoformat(), instance=instance)


def _strategy_config(strategy_ids: list[str], save: bool) -> dict:
    return {"ops": {"strategy_signals": {"config": {"strategy_ids": strategy_ids, "save_results": save}}}}


def _job(job_name: str, day_or_range: tuple[str, str], run_config: dict, command: str, **tags: str) -> int:
    return _exit_code(launch(Launch(job_name, day_or_range, run_config, {"qrl/manual": command, **tags})))


def cmd_run_strategy(args: argparse.Namespace) -> int:
    date = parse_date(args.date, field="date").isoformat()
    config = _strategy_config([args.strategy_id], not args.dry_run)
    return _job("strategies_job", (date, date), config, "run-strategy")


def cmd_run_all(args: argparse.Namespace) -> int:
    date = parse_date(args.date, field="date").isoformat()
    # Re-running replaces the day's rows (deterministic signal ids), so "force" is always safe.
    return _job("strategies_job", (date, date), _strategy_config([], True), "run-all")


def cmd_market(args: argparse.Namespace) -> int:
    """The 16:00 stage by hand: raw tables + the indicators with their blocking checks, for a day or a range."""
    start = parse_date(args.start, field="start").isoformat()
    end = parse_date(args.end, field="end").isoformat() if args.end else start
    if end < start:
        raise SystemExit(f"market: end {end} is before start {start}")
    return _job("daily_market_job", (start, end), {}, "market")


def cmd_stats(args: argparse.Namespace) -> int:
    date = parse_date(args.date, field="date").isoformat()
    return _job("strategy_stats_job", (date, date), {}, "stats")


@dataclass
class BackfillPlan:
    """What `qrl backfill START END` must store before the strategies can run over the range."""

    history_from: dt.date  # the first lookback day the indicators of the range read
    lookback: list[dt.date]  # the days before START that a raw daily table lacks
    missing: list[str]  # what the range lacks, per asset ("daily_quotes: 251 day(s) (first…last)")


def backfill_plan(start: dt.date, end: dt.date, instance: dg.DagsterInstance | None = None) -> BackfillPlan:
    """The lookback the indicators of [start, end] read, and the partitions the range still lacks (raw
    lookback and range, indicator partitions). Stored means materialised where the runs go
    (`where_stored`): the deployment with QRL_DAGSTER_URL set, else `instance` (default the local one)."""
    from qrl_platform.defs.job_tags import INDICATORS, RAW_DAILY
    from qrl_platform.factors import compute_range as ranges

    stored_keys = where_stored(instance)
    days = [d for d in trading_days(start, end)]
    needed = {table: set() for table in RAW_DAILY}
    for asset in INDICATORS:
        for table, history in ranges.history_needed(asset, days).items():
            needed[table].update(history)
    history_from = min((min(h) for h in needed.values() if h), default=start)
    wanted = {table: sorted(needed[table] | set(days)) for table in RAW_DAILY}
    wanted.update({asset: days for asset in INDICATORS})
    missing, lookback = [], set()
    for asset, asset_days in wanted.items():
        stored = stored_keys(asset, [d.isoformat() for d in asset_days])
        absent = [d for d in asset_days if d.isoformat() not in stored]
        if absent:
            missing.append(f"{asset}: {len(absent)} day(s) ({absent[0]}…{absent[-1]})")
        if asset in RAW_DAILY:
            lookback.update(d for d in absent if d < start)
    return BackfillPlan(history_from, sorted(lookback), missing)


def cmd_backfill(args: argparse.Namespace) -> int:
    """Strategies over [start, end] as one run. When the frames the range reads are not all stored (the
    raw lookback before `start`, raw days, indicator days), the stages a person would launch from the
    UI come first, each a range of its own: the slower tables that are missing, the raw daily tables
    over the missing lookback, then one run of the raw tables, indicators + checks and strategies over
    the range. No stage needs run config beyond the strategies' own, so a backfill of the same assets
    and days from the UI gives the same runs."""
    from qrl_platform.defs.job_tags import INDICATORS, RAW_DAILY

    start = parse_date(args.start, field="start")
    end = parse_date(args.end, field="end")
    if end < start:
        raise SystemExit(f"backfill: end {end} is before start {start}")
    from qrl_platform.defs.partitions import trading_day

    _check_partition_keys("backfill", trading_day, start.isoformat(), end.isoformat())
    ids = [s for s in (args.strategies or "").split(",") if s]
    if args.whole_chain:
        if ids:
            raise SystemExit("backfill: --whole-chain runs every ACTIVE strategy; drop --strategies")
        return _exit_code(backfill_whole_chain(start, end, lookback_days=args.lookback_days))
    span = (start.isoformat(), end.isoformat())
    plan = backfill_plan(start, end)
    if not plan.missing and not args.chain:
        return _job("strategies_job", span, _strategy_config(ids, True), "backfill")
    lookback = plan.lookback
    print(
        "backfill: "
        + ("; ".join(plan.missing) + " not stored" if plan.missing else "--chain")
        + (f" — first the raw tables' lookback {lookback[0]}..{lookback[-1]}," if lookback else " —")
        + " then raw, indicators and strategies over the range"
    )
    materialize_slow_tables(plan.history_from, end, only_missing=True)
    if lookback:
        materialize_range(list(RAW_DAILY), lookback[0].isoformat(), lookback[-1].isoformat())
    # tradability: the universes that exclude limit-locked / disposition stocks read it.
    selection = [*RAW_DAILY, "tradability", *INDICATORS, "strategy_signals"]
    config = _strategy_config(ids, True)
    return _exit_code(launch(Launch(asset_job(selection), span, config, {"qrl/manual": "backfill"}, assets=selection)))


def cmd_notify(args: argparse.Namespace) -> int:
    date = parse_date(args.date, field="date").isoformat()
    return _job(
        "notify_m13_job", (date, date), {"ops": {"m13_notification": {"config": {"force": args.force}}}}, "notify"
    )


def cmd_retry(args: argparse.Namespace) -> int:
    """Re-run a failed run: same job, asset selection, partition(s) and config."""
    run = _past_run(args.run_id)
    if run is None:
        raise SystemExit(f"retry: no run with id {args.run_id}")
    if run.status != dg.DagsterRunStatus.FAILURE and not args.any_status:
        raise SystemExit(f"retry: run {args.run_id} is {run.status.value}, not FAILURE (use --any-status)")
    partition = run.tags.get(PARTITION)
    span = (partition, partition) if partition else (run.tags.get(RANGE_START), run.tags.get(RANGE_END))
    if span[0] is None:
        raise SystemExit(f"retry: run {args.run_id} has no partition to retry")
    run_config = {k: v for k, v in run.run_config.items() if k != "loggers"}
    tags = {"qrl/manual": "retry", "qrl/retry_of": run.run_id}
    # An asset selection re-runs through the CLI's asset job for it (a run launched from the UI's
    # "Materialize" ran Dagster's own asset job, which the code location does not name).
    job_name = asset_job(run.assets) if run.assets else run.job_name
    return _exit_code(launch(Launch(job_name, span, run_config, tags, assets=run.assets)))


def cmd_status(args: argparse.Namespace) -> int:
    from qrl_platform.cli_status import status_lines

    day = parse_date(args.date, field="date")
    config = settings()
    if not config.dagster_url:
        print("\n".join(status_lines(day, _instance())))
        return 0
    # What is stored is the deployment's answer; check results are read from a local instance only
    # when DAGSTER_HOME names one (in production, the deployment's own storage).
    print("status: stored partitions from QRL_DAGSTER_URL, check results from DAGSTER_HOME", file=sys.stderr)
    instance = dg.DagsterInstance.get() if config.dagster_home else None
    print("\n".join(status_lines(day, instance, where_stored())))
    return 0


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

    backfill = sub.add_parser(
        "backfill", help="run strategies over a date range as one run, first storing the history it lacks"
    )
    backfill.add_argument("start")
    backfill.add_argument("end")
    backfill.add_argument("--strategies", help="comma-separated strategy ids (default: every ACTIVE one)")
    backfill.add_argument(
        "--whole-chain",
        action="store_true",
        help="the whole daily chain from the raw tables (with their lookback history and the "
        "slower-cadence tables) to strategy_stats, the range as one run",
    )
    backfill.add_argument(
        "--lookback-days",
        type=int,
        default=261,
        help="with --whole-chain: trading days of raw history before start (default 261)",
    )
    backfill.add_argument(
        "--chain", action="store_true", help="also re-ingest the raw tables and recompute the indicators of the range"
    )
    backfill.set_defaults(func=cmd_backfill)

    market = sub.add_parser("market", help="ingest the raw tables and compute the indicators (daily_market_job)")
    market.add_argument("start")
    market.add_argument("end", nargs="?", help="last day of a range (one run)")
    market.set_defaults(func=cmd_market)

    stats = sub.add_parser("stats", help="recompute strategy_stats for a day (strategy_stats_job)")
    stats.add_argument("date")
    stats.set_defaults(func=cmd_stats)

    notify = sub.add_parser("notify", help="(re-)publish STRATEGY_SIGNALS_READY to the order module for a day")
    notify.add_argument("date")
    notify.add_argument("--force", action="store_true", help="publish again even if already published")
    notify.set_defaults(func=cmd_notify)

    retry = sub.add_parser("retry", help="re-run a failed run (same job, partitions and config)")
    retry.add_argument("run_id")
    retry.add_argument("--any-status", action="store_true", help="also re-run a run that did not fail")
    retry.set_defaults(func=cmd_retry)

    status = sub.add_parser(
        "status", help="one screen on a day's stages: raw, indicators + checks, signals, order-module event, stats"
    )
    status.add_argument("date")
    status.set_defaults(func=cmd_status)

    from qrl_platform.cli_report import add_parser as add_report_parser

    add_report_parser(sub)

    args = parser.parse_args(argv)
    use_extra_overrides(settings().calendar_overrides)
    return _with_terminal_progress(lambda: args.func(args))


def _with_terminal_progress(command):
    """Run `command` with progress drawn on this terminal even from inside in-process Dagster steps
    (whose stderr Dagster redirects to the compute log): the progress module gets a duplicate of fd 2."""
    import os

    from qrl_platform import progress

    if not (sys.stderr.isatty() and progress.interactive(sys.stderr, settings().in_ci)):
        return command()
    terminal = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
    progress.attach_terminal(terminal)
    try:
        return command()
    finally:
        progress.attach_terminal(None)
        terminal.close()


if __name__ == "__main__":
    raise SystemExit(main())
