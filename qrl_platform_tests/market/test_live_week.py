"""A simulated live week: the real market sensor over local exchanges that publish
each table only from its publication time on, driven by a stepped clock.

The fake hosts serve a complete seven-stock universe (fake_universe.py) whose year of history before the
week was ingested beforehand through the same live source (the technical indicators read ~250 trading
days), with revenue, financials and TDCC weeks as if ingested earlier: without that history the
indicators' blocking quality checks fail, rightly, and so would their runs.

Friday 2024-03-01 is the last day before the simulation (its margin feeds Monday's chip indicators).
Monday 03-04 is a normal day; Tuesday 03-05 a typhoon closure announced the same morning (a calendar
override file written at 08:00, and the exchanges answering no data); Wednesday 03-06 margin is late
(21:40 instead of 21:00); Thursday 03-07 a normal day. Every tick evaluates market_data_available_sensor
with the real Definitions and executes its run requests in process on the same instance, as the
daemon would. The daily schedules run at their times too (the 16:00 backstop, strategies, the order
module's notification, stats). Every open day must end with its four raw tables and three indicators
materialised, the ten strategies' signals, one order-module event and the stats, and no failed run; the
late margin is one green run without a materialisation, then the real one.
"""

import datetime as dt
import functools

import dagster as dg
import pytest

import qrl_platform
from qrl_platform import calendar
from qrl_platform.calendar import TAIPEI, previous_trading_days
from qrl_platform.definitions import defs
from qrl_platform.defs import clock
from qrl_platform.defs.job_tags import INDICATORS, RAW_DAILY
from qrl_platform.market import timetable
from qrl_platform.market.corporate_actions import by_partition
from qrl_platform.market.ingest import ingest_days
from qrl_platform.market.live import LiveMarketSource
from qrl_platform.market.sources import DAILY_TABLES
from qrl_platform.settings import settings
from qrl_platform_tests.conftest import configured_resources
from qrl_platform_tests.daily_flow.automation_driver import launch, requested
from qrl_platform_tests.daily_flow.automation_driver import tick as evaluate_automation_tick
from qrl_platform_tests.market import fake_exchanges as fx
from qrl_platform_tests.market import fake_universe
from qrl_platform_tests.market.fake_exchanges import FakeExchanges
from qrl_platform_tests.stored_frames import report_home

FRIDAY, MONDAY, TYPHOON, WEDNESDAY, THURSDAY = (dt.date(2024, 3, d) for d in (1, 4, 5, 6, 7))
OPEN_DAYS = [MONDAY, WEDNESDAY, THURSDAY]
# Each endpoint's publication time on the fake hosts (TWSE and TPEx alike), a little after the
# timetable's defaults would be unrealistically exact; these match qrl_platform.market.timetable.
PUBLISHED = {
    fx.MI_INDEX: dt.time(14, 20), fx.DAILY_QUOTES: dt.time(14, 25),
    fx.T86: dt.time(15, 10), fx.DAILY_TRADE: dt.time(15, 15),
    fx.BWIBBU_D: dt.time(15, 20), fx.PE_QRY_DATE: dt.time(15, 20),
    fx.MI_MARGN: dt.time(20, 50), fx.MARGIN_BALANCE: dt.time(20, 55),
}  # fmt: skip
TICKS = [
    "08:00", "14:00", "14:40", "15:00", "15:40", "15:50", "16:00", "16:35", "16:45", "17:00",
    "20:50", "21:10", "21:50", "23:50",
]  # fmt: skip
# The daily market schedule (defs/daily_flow) at its time: the 16:00 backstop. Strategies, the
# notification and stats are launched by their automation conditions, evaluated at every tick.
SCHEDULES = {"16:00": "daily_market_schedule"}
STAGE_JOBS_BY_ASSET = {"strategy_signals": "strategies_job", "m13_notification": "notify_m13_job",
                       "strategy_stats": "strategy_stats_job"}  # fmt: skip


class SimulatedClock:
    def __init__(self):
        self.now = dt.datetime.combine(FRIDAY, dt.time(21, 30), tzinfo=TAIPEI)

    def __call__(self) -> dt.datetime:
        return self.now

    def today(self) -> dt.date:
        return self.now.date()


@pytest.fixture
def week(monkeypatch, qrl_home, tmp_path):
    exchanges = FakeExchanges()
    simulated = SimulatedClock()
    exchanges.publish_after(simulated, PUBLISHED)
    exchanges.publish_late(fx.MI_MARGN, WEDNESDAY, dt.time(21, 40))
    monkeypatch.setenv("QRL_MARKET_SOURCE", "live")
    monkeypatch.setenv("QRL_TWSE_BASE_URL", exchanges.twse_base_url)
    monkeypatch.setenv("QRL_TPEX_BASE_URL", exchanges.tpex_base_url)
    monkeypatch.setenv("QRL_HTTP_MIN_INTERVAL_SECONDS", "0")
    monkeypatch.setenv("QRL_HTTP_BACKOFF_SECONDS", "0.05")
    # Every reader of "now" follows the simulated clock: the sensors, the live source's "may this
    # day still publish?" and its cache's "is this no-data answer recent?".
    monkeypatch.setattr(clock, "current_time", simulated)
    monkeypatch.setattr("qrl_platform.market.live.source.taipei_now", simulated)
    monkeypatch.setattr("qrl_platform.market.live.http.taipei_today", simulated.today)
    fake_universe.install(exchanges)
    _ingest_history(exchanges)
    try:
        yield exchanges, simulated, tmp_path
    finally:
        exchanges.stop()


def _ingest_history(exchanges: FakeExchanges) -> None:
    """The year before the simulation, as an earlier backfill would have stored it (no Dagster runs)."""
    store = configured_resources()["frames"].get()
    current = settings()
    source = LiveMarketSource(current.market_source_settings(), current.raw_cache_root)
    try:
        days = previous_trading_days(FRIDAY - dt.timedelta(days=1), 255)
        for table in DAILY_TABLES:
            ingest_days(source, store, table, days)
        for day, frame in by_partition(source.corporate_actions(days[0], days[-1]), days).items():
            store.write("corporate_actions", day.isoformat(), frame)
    finally:
        source.close()
    months = [dt.date(y, m, 1) for y in (2022, 2023) for m in range(1, 13)] + [dt.date(2024, 1, 1)]
    quarters = [dt.date(y, m, 1) for y in (2022, 2023) for m in (1, 4, 7, 10)]
    fridays = sorted(FRIDAY - dt.timedelta(days=7 * i) for i in range(16))
    for table, partitions in fake_universe.periodic_history(months, quarters, fridays).items():
        for key, frame in partitions.items():
            store.write(table, key, frame)


def _tick(instance, runs: list):
    context = dg.build_sensor_context(
        instance=instance, definitions=defs, resources={"market_source": defs.resources["market_source"]}
    )
    result = defs.get_sensor_def("market_data_available_sensor").evaluate_tick(context)
    for request in result.run_requests:
        job = defs.resolve_job_def(request.job_name)
        outcome = job.execute_in_process(
            instance=instance, partition_key=request.partition_key, tags=request.tags, raise_on_error=False
        )
        runs.append((request.job_name, request.partition_key, request.run_key, outcome.success, clock.current_time()))
    return result


def _schedule_tick(instance, name: str, runs: list):
    context = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=clock.current_time(),
        repository_def=defs.get_repository_def(),
        resources={"market_source": configured_resources()["market_source"]},
    )
    result = defs.get_schedule_def(name).evaluate_tick(context)
    for request in result.run_requests or []:
        job_name = request.job_name or defs.get_schedule_def(name).job_name
        outcome = defs.resolve_job_def(job_name).execute_in_process(
            instance=instance, partition_key=request.partition_key, tags=request.tags, raise_on_error=False
        )
        runs.append((job_name, request.partition_key, request.run_key, outcome.success, clock.current_time()))
    return result


def _automation_tick(instance, cursor, runs: list):
    """The daily flow's automation sensors at the simulated time; each requested stage runs as the
    sensor launches it (recorded under its named job)."""
    result = evaluate_automation_tick(instance, clock.current_time(), cursor)
    for asset, partitions in requested(result).items():
        for partition in partitions:
            outcome = launch(instance, asset, partition)
            runs.append((STAGE_JOBS_BY_ASSET[asset], partition, "automation", outcome.success, clock.current_time()))
    return result.cursor


def _materialized(instance, asset: str, day: dt.date) -> dg.EventLogRecord | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day.isoformat()]), limit=1
    )
    return records.records[0] if records.records else None


def test_a_live_week_ingests_every_table_on_its_timetable_without_a_failed_run(week, qrl_home, monkeypatch, request):
    exchanges, simulated, tmp_path = week
    runs: list[tuple[str, str, str, bool, dt.datetime]] = []
    skips: dict[str, str] = {}
    schedule_runs: list[tuple[str, str, str, bool, dt.datetime]] = []
    with dg.instance_for_test() as instance:
        report_home(instance, qrl_home)  # the earlier backfill's history counts as stored
        # Set-up once per deployment (as `qrl demo` does): the declared strategies into the warehouse.
        setup = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("strategies")]
        )
        assert setup.success
        _tick(instance, runs)  # Friday evening: the day before the simulated week is ingested
        cursor = _automation_tick(instance, None, schedule_runs)
        for day in (MONDAY, TYPHOON, WEDNESDAY, THURSDAY):
            for hhmm in TICKS:
                simulated.now = dt.datetime.combine(day, dt.time.fromisoformat(hhmm), tzinfo=TAIPEI)
                if day == TYPHOON and hhmm == "08:00":  # closure announced the same morning
                    overrides = tmp_path / "typhoon.yaml"
                    overrides.write_text(f'closed:\n  "{TYPHOON}": "Typhoon (simulated): TWSE/TPEx closed"\n')
                    monkeypatch.setenv("QRL_CALENDAR_OVERRIDES", str(overrides))
                    # What the code location does when it (re)loads with the new setting.
                    previous = calendar.use_extra_overrides(settings().calendar_overrides)
                    request.addfinalizer(functools.partial(calendar.use_extra_overrides, previous))
                    exchanges.close_day(TYPHOON)
                result = _tick(instance, runs)
                if result.skip_message:
                    skips[f"{day} {hhmm}"] = result.skip_message
                cursor = _automation_tick(instance, cursor, schedule_runs)
                if hhmm in SCHEDULES:
                    scheduled = _schedule_tick(instance, SCHEDULES[hhmm], schedule_runs)
                    if scheduled.skip_message:
                        skips[f"{day} {hhmm} {SCHEDULES[hhmm]}"] = scheduled.skip_message

        failed = [run for run in runs + schedule_runs if not run[3]]
        assert failed == []
        # Each open day the market schedule and the three stages ran once; the closed day nothing ran.
        assert sorted((job, partition) for job, partition, *_ in schedule_runs) == sorted(
            (job, day.isoformat())
            for day in OPEN_DAYS
            for job in ("daily_market_job", "strategies_job", "notify_m13_job", "strategy_stats_job")
        )
        for day in OPEN_DAYS:
            executions = qrl_platform.load("strategy_executions", day.isoformat())
            assert executions.height == 10 and (executions["status"] == "SUCCESS").all(), day
            signals = qrl_platform.load("strategy_signals", day.isoformat())
            # Every strategy scores all seven stocks (no factor is missing after a year of history) and
            # the day's signals, HOLD included, are stored.
            assert signals.height == 10 * len(fake_universe.CODES), day
            assert executions["signals_generated"].sum() == signals.height, day
            assert set(signals["stock_id"].unique()) <= set(fake_universe.CODES), day
            assert qrl_platform.load("m13_notification", day.isoformat()).height == 1, day
            stats = qrl_platform.load("strategy_stats", day.isoformat())
            assert set(stats["period_days"].unique()) == {7, 30, 90} and stats["strategy_id"].n_unique() == 10, day
        assert not instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))

        for day in OPEN_DAYS:
            for asset in (*RAW_DAILY, *INDICATORS):
                assert _materialized(instance, asset, day) is not None, f"{asset} {day}"
            quotes = _materialized(instance, "daily_quotes", day).asset_materialization
            assert quotes.metadata["market_closed"].value is False
            assert quotes.metadata["dagster/row_count"].value == len(fake_universe.CODES)
            assert quotes.metadata["stocks_per_market"].value == {"TPEx": 3, "TWSE": 4}
        for asset in (*RAW_DAILY, *INDICATORS):  # the closed day is never requested
            assert _materialized(instance, asset, TYPHOON) is None, asset
        assert skips[f"{TYPHOON} 16:00"].startswith(f"{TYPHOON}: market closed (Typhoon (simulated)")

        # Each raw table was asked for only once the timetable said it was due.
        for job, partition, _key, _ok, at in runs:
            table = job.removeprefix("ingest_").removesuffix("_job")
            if table in RAW_DAILY:
                assert at >= timetable.due_at(
                    table, dt.date.fromisoformat(partition), settings().publication_times()
                ), (
                    job,
                    partition,
                    at,
                )
        assert (
            f"margin_balances for {MONDAY} is not published yet: normally out at {MONDAY} 21:00"
            in skips[f"{MONDAY} 20:50"]
        )
        assert f"daily_quotes for {MONDAY} is not published yet" in skips[f"{MONDAY} 14:00"]

        # One run per table and day, except Wednesday's late margin: green without data at 21:10,
        # then materialised at 21:50.
        per_day = {}
        for job, partition, key, _ok, _at in runs:
            per_day.setdefault((job, partition), []).append(key)
        for day in OPEN_DAYS:
            for asset in (*RAW_DAILY, *INDICATORS):
                job = f"ingest_{asset}_job" if asset in RAW_DAILY else f"{asset}_job"
                expected = 2 if (asset, day) == ("margin_balances", WEDNESDAY) else 1
                assert len(per_day[(job, day.isoformat())]) == expected, (job, day)
        assert per_day[("ingest_margin_balances_job", WEDNESDAY.isoformat())] == [
            f"ingest_margin_balances_job:{WEDNESDAY}:1",
            f"ingest_margin_balances_job:{WEDNESDAY}:2",
        ]
        late = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("margin_balances"), asset_partitions=[WEDNESDAY.isoformat()]),
            limit=1,
        ).records[0]
        assert "no data yet" in late.asset_observation.metadata["not_published_yet"].value
        wednesday_margin = _materialized(instance, "margin_balances", WEDNESDAY)
        assert wednesday_margin.timestamp > late.timestamp

        # Thursday's chip read Wednesday's margin; Wednesday's read Monday's (Tuesday was closed).
        chip = _materialized(instance, "chip_indicators", WEDNESDAY).asset_materialization
        assert str(MONDAY) in str(chip.metadata["lagged_source_days"].value)
