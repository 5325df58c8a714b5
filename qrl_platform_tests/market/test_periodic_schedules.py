"""The slower-cadence raw tables' jobs and schedules are built from their declarations: the publication
rule gives the cron, the partition each run ingests and the description (`timetable.SCHEDULED_RULES`),
the declaration's `OwnSchedule` the names. A new monthly or weekly table gets its job and schedule from
its `RawTable` entry alone."""

import dataclasses
import datetime as dt

import dagster as dg
import pytest

from qrl_platform.definitions import defs
from qrl_platform.defs.market.jobs import PERIODIC_JOBS, periodic_jobs
from qrl_platform.defs.market.schedules import PERIODIC_SCHEDULES, periodic_schedules
from qrl_platform.defs.partitions import PARTITIONS
from qrl_platform.market import tables, timetable
from qrl_platform.market.demo import DemoMarket
from qrl_platform_tests.conftest import configured_resources

TAIPEI = timetable.TAIPEI
PERIODIC = [table for table in tables.RAW if table.cadence != "daily"]


def _fires_on(cron: str, day: dt.date) -> bool:
    """Whether a cron of the forms the rules use ("m h D M *" and "m h * * W") fires on `day`."""
    _, _, day_of_month, month, weekday = cron.split()
    cron_weekday = (day.weekday() + 1) % 7  # cron counts from Sunday = 0
    return (
        day_of_month in ("*", str(day.day)) and month in ("*", str(day.month)) and weekday in ("*", str(cron_weekday))
    )


def _crons(table: tables.RawTable) -> list[str]:
    cron = timetable.schedule_cron(table)
    return [cron] if isinstance(cron, str) else cron


def test_the_shipped_jobs_and_schedules_are_the_declared_slower_tables():
    assert list(PERIODIC_JOBS) == [table.name for table in PERIODIC]
    assert [job.name for job in PERIODIC_JOBS.values()] == ["monthly_revenue_job", "financials_job", "shareholding_job"]
    shipped = {schedule.name: schedule for schedule in defs.get_repository_def().schedule_defs}
    for table, schedule in zip(PERIODIC, PERIODIC_SCHEDULES, strict=True):
        assert shipped[schedule.name] is schedule
        assert schedule.job_name == PERIODIC_JOBS[table.name].name
        assert schedule.execution_timezone == "Asia/Taipei"
    assert {schedule.name: (schedule.cron_schedule, schedule.description) for schedule in PERIODIC_SCHEDULES} == {
        "monthly_revenue_schedule": (
            "0 8 11 * *",
            "The 11th at 08:00: last month's revenue (companies publish by the 10th).",
        ),
        "financials_schedule": (
            ["0 8 1 4 *", "0 8 16 5 *", "0 8 15 8 *", "0 8 15 11 *"],
            "The day after each statutory filing deadline (Mar 31, May 15, Aug 14, Nov 14): that quarter's results.",
        ),
        "shareholding_schedule": (
            "0 10 * * 6",
            "Saturday 10:00: archive the TDCC shareholding distribution of Friday (TDCC keeps only the latest week).",
        ),
    }


@pytest.mark.parametrize("table", PERIODIC, ids=lambda table: table.name)
def test_a_schedule_fires_exactly_on_the_days_a_partition_falls_due_and_ingests_that_partition(table):
    """Over three years, day by day: the cron fires on a day if and only if the publication timetable
    makes one of the table's partitions due that day, and the run of that day ingests that partition."""
    keys = set(PARTITIONS[table.partitions].get_partition_keys())
    due_days = {timetable.due_at(table.name, dt.date.fromisoformat(key)).date(): key for key in keys}
    day = dt.date(2022, 1, 1)
    fired = 0
    while day <= dt.date(2024, 12, 31):
        fires = any(_fires_on(cron, day) for cron in _crons(table))
        assert fires == (day in due_days), f"{table.name} on {day}"
        if fires:
            fired += 1
            assert timetable.partition_due_on(table, day).isoformat() == due_days[day]
        else:
            with pytest.raises(ValueError, match=f"{table.name}: no partition falls due on {day}"):
                timetable.partition_due_on(table, day)
        day += dt.timedelta(days=1)
    assert fired == {"monthly": 36, "quarterly": 12, "weekly": 157}[table.cadence]


# Two tables that do not exist, declared as a new monthly and a new weekly table would be: the
# declaration is all they add.
MONTHLY_FAKE = dataclasses.replace(
    tables.BY_NAME["monthly_revenue"],
    name="monthly_dividends",
    description="Declared dividends per stock, by the month they were declared in.",
    schedule=tables.OwnSchedule(stem="dividends", subject="declared dividends", at=dt.time(9, 30)),
)
WEEKLY_FAKE = dataclasses.replace(
    tables.BY_NAME["shareholding_distribution"],
    name="weekly_lending",
    publish_at=dt.time(11, 15),
    description="Securities lending balances per stock for the Friday data date.",
    schedule=tables.OwnSchedule(stem="lending", subject="securities lending balances"),  # runs at publish_at
)


def _fake_definitions() -> tuple[dg.Definitions, dict, list[dg.ScheduleDefinition]]:
    """The jobs and schedules built from `RAW` plus the two fakes, and a code location holding the
    fakes' (trivial) assets, jobs and schedules."""
    raw = (*tables.RAW, MONTHLY_FAKE, WEEKLY_FAKE)
    jobs = periodic_jobs(raw)
    schedules = periodic_schedules(raw, jobs)
    fakes = (MONTHLY_FAKE, WEEKLY_FAKE)
    fake_jobs = {jobs[fake.name].name for fake in fakes}
    built = dg.Definitions(
        assets=[_stand_in_asset(fake) for fake in fakes],
        jobs=[jobs[fake.name] for fake in fakes],
        schedules=[schedule for schedule in schedules if schedule.job_name in fake_jobs],
        resources={"market_source": configured_resources(market_source="demo")["market_source"]},
    )
    return built, jobs, schedules


def _stand_in_asset(table: tables.RawTable) -> dg.AssetsDefinition:
    """An asset with the table's name and partitions (its fetch code is not what is tested here)."""

    @dg.asset(name=table.name, partitions_def=PARTITIONS[table.partitions])
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"partition": context.partition_key})

    return _asset


def _tick(built: dg.Definitions, name: str, when: dt.datetime):
    repository = built.get_repository_def()
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=when,
            repository_def=repository,
            resources={"market_source": configured_resources(market_source="demo")["market_source"]},
        ) as context,
    ):
        return repository.get_schedule_def(name).evaluate_tick(context)


def test_a_new_periodic_table_gets_its_job_and_schedule_from_its_declaration_alone(monkeypatch):
    built, jobs, schedules = _fake_definitions()
    assert jobs["monthly_dividends"].name == "dividends_job" and jobs["weekly_lending"].name == "lending_job"
    by_name = {schedule.name: schedule for schedule in schedules}
    # The real tables' schedules are built the same way, unchanged by the new entries.
    assert [s.name for s in schedules[:3]] == [s.name for s in PERIODIC_SCHEDULES]
    monthly, weekly = by_name["dividends_schedule"], by_name["lending_schedule"]
    assert (monthly.job_name, monthly.cron_schedule) == ("dividends_job", "30 9 11 * *")
    assert monthly.description == "The 11th at 09:30: last month's declared dividends (companies publish by the 10th)."
    assert (weekly.job_name, weekly.cron_schedule) == ("lending_job", "15 11 * * 6")
    assert weekly.default_status == dg.DefaultScheduleStatus.RUNNING
    dg.Definitions.validate_loadable(built)

    # A source that does not provide the table: a skip with the reason, not a failing run.
    skipped = _tick(built, "dividends_schedule", dt.datetime(2024, 4, 11, 9, 30, tzinfo=TAIPEI))
    assert not skipped.run_requests
    assert skipped.skip_message == (
        "monthly_dividends: the demo market source does not provide this table; nothing to ingest"
    )

    monkeypatch.setattr(DemoMarket, "provides", DemoMarket.provides | {"monthly_dividends", "weekly_lending"})
    april = _tick(built, "dividends_schedule", dt.datetime(2024, 4, 11, 9, 30, tzinfo=TAIPEI))
    assert [(r.run_key, r.partition_key) for r in april.run_requests] == [("dividends:2024-03-01", "2024-03-01")]
    saturday = _tick(built, "lending_schedule", dt.datetime(2024, 3, 9, 11, 15, tzinfo=TAIPEI))
    assert [(r.run_key, r.partition_key) for r in saturday.run_requests] == [("lending:2024-03-08", "2024-03-08")]

    # The job the schedule names runs the partition it asked for.
    with dg.instance_for_test() as instance:
        result = built.resolve_job_def("dividends_job").execute_in_process(
            partition_key="2024-03-01", instance=instance
        )
        assert result.success
        stored = instance.get_latest_materialization_event(dg.AssetKey("monthly_dividends"))
        assert stored.asset_materialization.partition == "2024-03-01"


def test_a_declaration_that_cannot_be_scheduled_is_refused_with_the_table_named():
    with pytest.raises(ValueError, match="raw table monthly_dividends: schedule must be given for a monthly table"):
        dataclasses.replace(MONTHLY_FAKE, schedule=None)
    with pytest.raises(ValueError, match="raw table daily_extra: schedule must be given for a daily table"):
        dataclasses.replace(tables.BY_NAME["daily_quotes"], name="daily_extra", schedule=MONTHLY_FAKE.schedule)
    same_day = dataclasses.replace(MONTHLY_FAKE, publish_rule="same_day")
    with pytest.raises(KeyError, match="monthly_dividends: publication rule 'same_day' has no schedule"):
        timetable.schedule_cron(same_day)
    with pytest.raises(ValueError, match="raw table daily_quotes: a daily table has no schedule of its own"):
        timetable.schedule_description(tables.BY_NAME["daily_quotes"])
