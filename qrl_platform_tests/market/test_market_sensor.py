"""market_data_available_sensor: one run per raw table when its publication time has passed, one run per
indicator once its inputs are stored, late data a green run without a materialisation (then asked again),
a failed run not retried; plus the concurrency pools of the raw assets."""

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest
import yaml

from qrl_platform.calendar import TAIPEI
from qrl_platform.definitions import defs
from qrl_platform.defs import clock
from qrl_platform.defs.job_tags import INDICATORS, RAW_DAILY
from qrl_platform.defs.market import assets as market_assets
from qrl_platform.defs.market.sensors import indicator_inputs
from qrl_platform.market.live.twse import NotPublishedYet

DAY = "2024-03-05"  # a Tuesday
PREVIOUS = "2024-03-04"
ROOT = Path(__file__).resolve().parents[2]


def _at(date: str, hhmm: str) -> dt.datetime:
    hour, minute = map(int, hhmm.split(":"))
    return dt.datetime.fromisoformat(date).replace(hour=hour, minute=minute, tzinfo=TAIPEI)


def _materialize(instance, asset: str, partition: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset, partition=partition))


def _tick(instance, when: dt.datetime, monkeypatch):
    monkeypatch.setattr(clock, "current_time", lambda: when)
    context = dg.build_sensor_context(
        instance=instance, definitions=defs, resources={"market_source": defs.resources["market_source"]}
    )
    return defs.get_sensor_def("market_data_available_sensor").evaluate_tick(context)


def _requested(tick) -> list[tuple[str, str, str]]:
    return sorted((r.job_name, r.partition_key, r.run_key) for r in tick.run_requests)


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        for asset in (*RAW_DAILY, *INDICATORS):  # the previous trading day is done
            _materialize(instance, asset, PREVIOUS)
        yield instance


def test_each_table_is_requested_once_due_and_each_indicator_once_its_inputs_are_stored(instance, monkeypatch):
    morning = _tick(instance, _at(DAY, "08:10"), monkeypatch)  # the ex-rights/dividend lists are out by 08:00
    assert _requested(morning) == [("ingest_corporate_actions_job", DAY, f"ingest_corporate_actions_job:{DAY}:1")]
    _materialize(instance, "corporate_actions", DAY)

    early = _tick(instance, _at(DAY, "14:00"), monkeypatch)
    assert not early.run_requests
    assert f"daily_quotes for {DAY} is not published yet: normally out at {DAY} 14:30" in early.skip_message
    assert f"margin_balances for {DAY} is not published yet: normally out at {DAY} 21:00" in early.skip_message
    assert f"technical_indicators {DAY}: waits for daily_quotes {DAY}" in early.skip_message

    quotes = _tick(instance, _at(DAY, "14:40"), monkeypatch)
    assert _requested(quotes) == [("ingest_daily_quotes_job", DAY, f"ingest_daily_quotes_job:{DAY}:1")]
    _materialize(instance, "daily_quotes", DAY)

    technical = _tick(instance, _at(DAY, "14:50"), monkeypatch)
    assert _requested(technical) == [("technical_indicators_job", DAY, f"technical_indicators_job:{DAY}:1")]
    _materialize(instance, "technical_indicators", DAY)

    afternoon = _tick(instance, _at(DAY, "15:40"), monkeypatch)
    assert [r[0] for r in _requested(afternoon)] == ["ingest_institutional_flows_job", "ingest_valuations_job"]
    _materialize(instance, "institutional_flows", DAY)
    _materialize(instance, "valuations", DAY)

    # Chip of D needs D-1's margin (stored), not D's (out at 21:00).
    indicators = _tick(instance, _at(DAY, "15:50"), monkeypatch)
    assert [r[0] for r in _requested(indicators)] == ["chip_indicators_job", "fundamental_indicators_job"]
    _materialize(instance, "chip_indicators", DAY)
    _materialize(instance, "fundamental_indicators", DAY)

    before_margin = _tick(instance, _at(DAY, "20:50"), monkeypatch)
    assert not before_margin.run_requests and "21:00" in before_margin.skip_message
    margin = _tick(instance, _at(DAY, "21:10"), monkeypatch)
    assert _requested(margin) == [("ingest_margin_balances_job", DAY, f"ingest_margin_balances_job:{DAY}:1")]
    _materialize(instance, "margin_balances", DAY)
    done = _tick(instance, _at(DAY, "21:20"), monkeypatch)
    assert not done.run_requests and done.skip_message == "everything is ingested"


def test_publication_time_override_moves_the_request(instance, monkeypatch):
    monkeypatch.setenv("QRL_PUBLISH_MARGIN_BALANCES", "21:30")
    for asset in ("daily_quotes", "institutional_flows", "valuations", "corporate_actions", *INDICATORS):
        _materialize(instance, asset, DAY)
    waiting = _tick(instance, _at(DAY, "21:10"), monkeypatch)
    assert not waiting.run_requests
    assert "normally out at 2024-03-05 21:30 Taipei (QRL_PUBLISH_MARGIN_BALANCES=21:30)" in waiting.skip_message
    assert [r.job_name for r in _tick(instance, _at(DAY, "21:30"), monkeypatch).run_requests] == [
        "ingest_margin_balances_job"
    ]


def test_yesterdays_late_table_is_still_picked_up_after_midnight(instance, monkeypatch):
    wednesday = "2024-03-06"
    for asset in ("daily_quotes", "institutional_flows", "valuations", "corporate_actions", *INDICATORS):
        _materialize(instance, asset, DAY)
    tick = _tick(instance, _at(wednesday, "00:30"), monkeypatch)
    assert _requested(tick) == [("ingest_margin_balances_job", DAY, f"ingest_margin_balances_job:{DAY}:1")]


def test_a_closed_day_requests_nothing_and_says_why(monkeypatch):
    with dg.instance_for_test() as instance:
        for asset in (*RAW_DAILY, *INDICATORS):
            _materialize(instance, asset, "2024-10-30")
        tick = _tick(instance, _at("2024-10-31", "16:00"), monkeypatch)  # typhoon Kong-rey
        assert not tick.run_requests
        assert tick.skip_message.startswith("2024-10-31: market closed (Typhoon Kong-rey")


def test_the_1600_backstop_leaves_margin_to_the_evening_sensor():
    job = defs.resolve_job_def("daily_market_job")
    assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == {
        "daily_quotes",
        "institutional_flows",
        "valuations",
        "corporate_actions",
        "tradability",
        *INDICATORS,
    }


def test_chip_needs_the_margin_of_the_previous_trading_day():
    assert indicator_inputs("chip_indicators", dt.date(2024, 3, 4)) == [
        ("daily_quotes", dt.date(2024, 3, 4)),
        ("institutional_flows", dt.date(2024, 3, 4)),
        ("margin_balances", dt.date(2024, 3, 1)),  # Monday reads Friday's margin
    ]
    # The day after the typhoon closure reads the last open day's margin.
    assert indicator_inputs("chip_indicators", dt.date(2024, 11, 1))[-1] == ("margin_balances", dt.date(2024, 10, 30))
    assert indicator_inputs("technical_indicators", dt.date(2024, 3, 4)) == [("daily_quotes", dt.date(2024, 3, 4))]


def _run_margin_job(instance, partition: str):
    job = defs.resolve_job_def("ingest_margin_balances_job")
    return job.execute_in_process(instance=instance, partition_key=partition, raise_on_error=False)


def test_late_data_is_a_green_run_without_materialisation_and_is_asked_again(instance, monkeypatch, qrl_home):
    for asset in ("daily_quotes", "institutional_flows", "valuations", "corporate_actions", *INDICATORS):
        _materialize(instance, asset, DAY)

    def late(self, table, date):
        raise NotPublishedYet(f"MI_MARGN {date}: no data yet although TWSE has quotes for the day")

    monkeypatch.setattr("qrl_platform.market.demo.DemoMarket.fetch_day", late)
    first = _tick(instance, _at(DAY, "21:10"), monkeypatch)
    assert [r.run_key for r in first.run_requests] == [f"ingest_margin_balances_job:{DAY}:1"]
    result = _run_margin_job(instance, DAY)
    assert result.success
    margin_today = dg.AssetRecordsFilter(asset_key=dg.AssetKey("margin_balances"), asset_partitions=[DAY])
    assert not instance.fetch_materializations(margin_today, limit=5).records
    observation = instance.fetch_observations(margin_today, limit=1).records[0]
    assert "no data yet" in observation.asset_observation.metadata["not_published_yet"].value
    # The failure sensor's count sees no failed run.
    assert not instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))

    second = _tick(instance, _at(DAY, "21:20"), monkeypatch)
    assert [r.run_key for r in second.run_requests] == [f"ingest_margin_balances_job:{DAY}:2"]


def test_a_failed_run_is_not_retried_by_the_sensor(instance, monkeypatch, qrl_home):
    for asset in ("daily_quotes", "institutional_flows", "valuations", "corporate_actions", *INDICATORS):
        _materialize(instance, asset, DAY)

    def bad(self, table, date):
        # Final at once: the jobs' step retry policy would otherwise back off for minutes first.
        raise dg.Failure(f"MI_MARGN {date}: field 融資今日餘額 missing", allow_retries=False)

    monkeypatch.setattr("qrl_platform.market.demo.DemoMarket.fetch_day", bad)
    result = _run_margin_job(instance, DAY)
    assert not result.success
    tick = _tick(instance, _at(DAY, "21:20"), monkeypatch)
    assert not tick.run_requests
    assert f"margin_balances {DAY}: last run" in tick.skip_message and "FAILURE; not retried" in tick.skip_message


def test_a_backfill_range_meeting_unpublished_data_fails(monkeypatch, qrl_home):
    def late(self, table, date):
        raise NotPublishedYet(f"{table} {date}: not yet")

    monkeypatch.setattr("qrl_platform.market.demo.DemoMarket.fetch_day", late)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [market_assets.margin_balances],
            instance=instance,
            resources={"market_source": defs.resources["market_source"], "frames": defs.resources["frames"]},
            tags={"dagster/asset_partition_range_start": PREVIOUS, "dagster/asset_partition_range_end": DAY},
            raise_on_error=False,
        )
        assert not result.success


# ---------------------------------------------------------------------------------------- pools (6a)
def test_each_raw_asset_holds_its_exchange_pool():
    pools = {name: getattr(market_assets, name).op.pool for name in market_assets.POOLS}
    assert pools == {
        "daily_quotes": "twse-tpex",
        "institutional_flows": "twse-tpex",
        "margin_balances": "twse-tpex",
        "valuations": "twse-tpex",
        "monthly_revenue": "mops",
        "financials": "mops",
        "shareholding_distribution": "tdcc",
        "corporate_actions": "twse-tpex",
    }
    # Every pool in the code location is an exchange host group (the treasury's MEXC pool is the other
    # one), so the instance's default limit of 1 holds nothing else back.
    pooled = {
        key.to_user_string(): definition.op.pool
        for definition in defs.assets
        if isinstance(definition, dg.AssetsDefinition) and definition.op.pool
        for key in definition.keys
    }
    assert pooled == {**pools, "qrl_position": "qrl_mexc", "rebalance_plan": "qrl_mexc"}


@pytest.mark.parametrize("path", ["dagster.yaml", "deploy/dagster.yaml"])
def test_instance_config_limits_every_pool_to_one_step_at_a_time(path):
    pools = yaml.safe_load((ROOT / path).read_text())["concurrency"]["pools"]
    assert pools == {"default_limit": 1, "granularity": "op"}


def test_a_local_instance_from_dagster_yaml_gives_each_pool_one_slot(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = (ROOT / "dagster.yaml").read_text().replace(".qrl/dagster_storage", str(tmp_path / "storage"))
    (home / "dagster.yaml").write_text(config)
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 2
        for pool in sorted(set(market_assets.POOLS.values())):
            # What the run worker does when a step of a pool without a hand-set limit first claims a slot.
            assert instance.event_log_storage.initialize_concurrency_limit_to_default(pool)
            assert instance.event_log_storage.get_concurrency_info(pool).slot_count == 1, pool
    finally:
        instance.dispose()
