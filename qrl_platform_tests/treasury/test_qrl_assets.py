"""The 15-minute assets end to end: simulated with no network, live against the fake MEXC, Redis,
idempotent re-runs, and that API secrets never reach logs, event records or metadata."""

import base64
import datetime as dt
import json
import logging
import socket
from decimal import Decimal as D

import dagster as dg
import pytest
import redis

from qrl_platform.calendar import just_finished_quarter_hour
from qrl_platform.defs.partitions import quarter_hour
from qrl_platform.defs.resources import RedisResource, WarehouseResource
from qrl_platform.defs.treasury.assets import QRL_ASSETS
from qrl_platform.defs.treasury.checks import QRL_CHECKS
from qrl_platform.defs.treasury.jobs import QRL_JOBS
from qrl_platform.defs.treasury.resources import QRL_RESOURCES, MexcResource, mexc_resource
from qrl_platform.defs.treasury.schedules import QRL_SCHEDULES
from qrl_platform.settings import settings
from qrl_platform.treasury.rebalance import REDIS_HISTORY_KEY, REDIS_LATEST_KEY
from qrl_platform.warehouse import Warehouse
from qrl_platform_tests.conftest import configured_resources

KEY = "2026-11-20-07:45"  # in the past whatever day the tests run
FAST = {"timeout_seconds": 1.0, "backoff_seconds": 0.01, "max_retries": 1, "min_request_interval_seconds": 0.0}


def materialize(resources, key=KEY, instance=None, raise_on_error=True):
    return dg.materialize(
        [*QRL_ASSETS, *QRL_CHECKS],
        partition_key=key,
        resources=resources,
        instance=instance,
        raise_on_error=raise_on_error,
    )


def metadata_of(result, asset: str) -> dict:
    events = [event for event in result.get_asset_materialization_events() if event.asset_key.path[-1] == asset]
    return {name: value.value for name, value in events[-1].materialization.metadata.items()}


def check_results(result) -> dict[str, bool]:
    return {
        event.event_specific_data.check_name: event.event_specific_data.passed
        for event in result.all_events
        if event.event_type_value == "ASSET_CHECK_EVALUATION"
    }


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test: the simulated default must be fully offline."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def clean_env(monkeypatch):
    for name in (
        "QRL_MEXC_MODE",
        "QRL_MEXC_BASE_URL",
        "MEXC_API_KEY",
        "MEXC_API_SECRET",
        "QRL_EXECUTE_ORDERS",
        "QRL_REDIS_URL",
        "QRL_TARGET_RATIO",
        "QRL_MAX_ORDER_NOTIONAL",
    ):
        monkeypatch.delenv(name, raising=False)


def test_simulated_mode_materialises_with_no_network_and_no_redis(qrl_home, clean_env, no_network):
    resources = {
        **QRL_RESOURCES,
        "warehouse": configured_resources()["warehouse"],
        "redis": configured_resources()["redis"],
    }
    result = materialize(resources)
    assert result.success
    plan = metadata_of(result, "rebalance_plan")
    assert plan["mode"] == "simulated" and plan["redis"] == "not configured"
    assert plan["action"] in {"BUY", "SELL", "HOLD"} and plan["dagster/row_count"] == 1
    assert plan["order_status"] == "NOT_EXECUTED"
    assert plan["total_value"] == pytest.approx(plan["qrl_value"] + plan["usdt_balance"])
    for field in ("price", "qrl_balance", "usdt_balance", "current_ratio", "quantity", "notional_usdt", "reason"):
        assert field in plan
    position = metadata_of(result, "qrl_position")
    assert position["position_qty"] == 1000.0 and position["redis"] == "not configured"  # the opening balance
    assert position["avg_cost"] > 0 and position["dagster/row_count"] == 1
    assert all(check_results(result).values()) and len(check_results(result)) == 3

    # Same partition again: same price (deterministic path), rows replaced, not duplicated.
    again = materialize(resources)
    assert metadata_of(again, "rebalance_plan")["price"] == plan["price"]
    warehouse = Warehouse(f"sqlite:///{qrl_home / 'warehouse.sqlite'}")
    assert warehouse.read_table("rebalance_plans").height == 1
    assert warehouse.read_table("qrl_positions").height == 1
    assert warehouse.read_table("qrl_trades")["account"].to_list() == ["simulated"]
    other = materialize(resources, key="2026-11-20-12:00")
    assert metadata_of(other, "rebalance_plan")["price"] != plan["price"]


def test_simulated_mode_with_redis_keeps_one_history_entry_per_partition(qrl_home, clean_env, redis_url):
    resources = {
        **QRL_RESOURCES,
        "warehouse": configured_resources()["warehouse"],
        "redis": RedisResource(url=redis_url),
    }
    materialize(resources)
    materialize(resources, key="2026-11-20-08:00")
    result = materialize(resources)  # the older partition again
    assert "replaced existing entry" in metadata_of(result, "rebalance_plan")["redis"]
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = [json.loads(entry)["partition_key"] for entry in client.lrange(REDIS_HISTORY_KEY, 0, -1)]
    assert keys == ["2026-11-20-08:00", KEY]
    assert json.loads(client.get(REDIS_LATEST_KEY))["partition_key"] == "2026-11-20-08:00"
    assert client.hget("qrl:position", "partition_key") == "2026-11-20-08:00"
    assert client.hget("qrl:position", "mode") == "simulated"


def test_simulated_paper_fills_change_the_next_plan(qrl_home, clean_env, monkeypatch):
    monkeypatch.setenv("QRL_EXECUTE_ORDERS", "true")
    now = dt.datetime.now(dt.UTC)
    key = just_finished_quarter_hour(now)  # fresh, so the staleness guard lets it trade
    # All QRL, no USDT: whatever the simulated price, the plan SELLs (capped at 100 USDT).
    resources = {
        "mexc": mexc_resource(settings(), min_trade_interval_minutes=0, paper_initial_usdt=0),
        "warehouse": configured_resources()["warehouse"],
        "redis": configured_resources()["redis"],
    }
    first = metadata_of(materialize(resources, key=key), "rebalance_plan")
    assert (first["action"], first["order_status"], first["qrl_balance"]) == ("SELL", "PLACED", 1000.0)
    assert first["notional_usdt"] <= 100.0

    rerun = metadata_of(materialize(resources, key=key), "rebalance_plan")
    assert rerun["order_status"] == "PLACED" and "the executed plan is kept" in rerun["note"]
    assert (rerun["quantity"], rerun["client_order_id"]) == (first["quantity"], first["client_order_id"])

    earlier = just_finished_quarter_hour(now - dt.timedelta(hours=1))
    later_plan = metadata_of(materialize(resources, key=earlier), "rebalance_plan")
    assert later_plan["qrl_balance"] == pytest.approx(1000.0 - first["quantity"])  # the fill moved it
    assert later_plan["usdt_balance"] == pytest.approx(first["notional_usdt"] * 0.999)  # minus the 0.1 % fee
    assert later_plan["order_status"] in ("BLOCKED", "NOT_EXECUTED")  # a stale partition never trades


def live_env(monkeypatch, fake, *, execute: bool):
    monkeypatch.setenv("QRL_MEXC_MODE", "live")
    monkeypatch.setenv("QRL_MEXC_BASE_URL", fake.url)
    monkeypatch.setenv("MEXC_API_KEY", fake.api_key)
    monkeypatch.setenv("MEXC_API_SECRET", fake.api_secret)
    monkeypatch.setenv("QRL_EXECUTE_ORDERS", "true" if execute else "false")


def test_live_mode_against_the_fake_server_on_both_warehouses(clean_env, monkeypatch, fake, warehouse_url, qrl_home):
    live_env(monkeypatch, fake, execute=True)
    now = dt.datetime.now(dt.UTC)
    key = just_finished_quarter_hour(now)
    start = int((now - dt.timedelta(hours=2)).timestamp() * 1000)
    fake.add_trade(price="0.40", qty="1000", is_buyer=True, time_ms=start, commission="0.8")
    fake.add_trade(price="0.60", qty="100", is_buyer=False, time_ms=start + 60_000, commission="0.12")
    resources = {
        "mexc": mexc_resource(settings(), **FAST),
        "warehouse": WarehouseResource(url=warehouse_url),
        "redis": configured_resources()["redis"],
    }
    result = materialize(resources, key=key)
    position = metadata_of(result, "qrl_position")
    assert position["mode"] == "live" and position["trades_synced"] == 2
    assert position["position_qty"] == 900.0
    assert position["avg_cost"] == pytest.approx(400.8 / 1000)
    assert position["realized_pnl"] == pytest.approx(59.88 - 40.08)
    plan = metadata_of(result, "rebalance_plan")
    # 1000 QRL @0.5 + 300 USDT: SELL, capped at the 100 USDT max order notional → 200 QRL.
    assert (plan["action"], plan["quantity"], plan["order_status"]) == ("SELL", 200.0, "PLACED")
    assert plan["fee_rate"] == 0.002  # from the account's takerCommission (20 bps)
    assert [call["path"] for call in fake.requests if call["method"] == "POST"] == [
        "/api/v3/order/test",
        "/api/v3/order",
    ]
    assert all(check_results(result).values())

    again = materialize(resources, key=key)  # a retried run of the same partition
    assert metadata_of(again, "rebalance_plan")["order_status"] == "PLACED"
    assert len(fake.orders) == 1
    assert metadata_of(again, "qrl_position")["trades_synced"] == 1  # only the new fill
    stored = Warehouse(warehouse_url)
    assert stored.read_table("rebalance_plans").height == 1
    assert stored.read_table("qrl_trades").height == 3


def test_paper_mode_uses_public_prices_and_paper_balances(clean_env, monkeypatch, fake, qrl_home):
    monkeypatch.setenv("QRL_MEXC_MODE", "paper")
    monkeypatch.setenv("QRL_MEXC_BASE_URL", fake.url)
    fake.price = D("0.25")
    resources = {
        "mexc": mexc_resource(settings(), **FAST),
        "warehouse": configured_resources()["warehouse"],
        "redis": configured_resources()["redis"],
    }
    result = materialize(resources, key=just_finished_quarter_hour(dt.datetime.now(dt.UTC)))
    plan = metadata_of(result, "rebalance_plan")
    assert plan["mode"] == "paper" and plan["price"] == 0.25
    assert (plan["qrl_balance"], plan["usdt_balance"]) == (1000.0, 500.0)  # the paper account, not the fake's
    # The paper account opened now, at the live price: its opening buy is in the paper ledger.
    assert metadata_of(result, "qrl_position")["trades_synced"] == 1
    ledger = Warehouse(f"sqlite:///{qrl_home / 'warehouse.sqlite'}").read_table("qrl_trades")
    assert ledger["account"].to_list() == ["paper"] and ledger["price"].to_list() == [0.25]
    signed = [call for call in fake.requests if call["path"] in ("/api/v3/account", "/api/v3/myTrades")]
    assert signed == [] and all(call["api_key"] is None for call in fake.requests)


def test_live_mode_plan_only_by_default_and_faults_fail_clearly(clean_env, monkeypatch, fake, qrl_home):
    live_env(monkeypatch, fake, execute=False)
    monkeypatch.delenv("QRL_EXECUTE_ORDERS")
    resources = {
        "mexc": mexc_resource(settings(), **FAST),
        "warehouse": configured_resources()["warehouse"],
        "redis": configured_resources()["redis"],
    }
    result = materialize(resources)
    assert metadata_of(result, "rebalance_plan")["order_status"] == "NOT_EXECUTED"
    assert fake.orders == {} and fake.test_orders == []

    fake.inject("/api/v3/account", "500", times=5)
    failed = dg.materialize([QRL_ASSETS[1]], partition_key=KEY, resources=resources, raise_on_error=False)
    assert not failed.success
    failure = failed.get_step_failure_events()[0].step_failure_data.error.to_string()
    assert "MEXC GET /api/v3/account: gave up after 2 attempts; last problem: server error HTTP 503" in failure


def _all_text(result, instance, caplog, capfd) -> str:
    records = instance.all_logs(result.run_id)
    captured = capfd.readouterr()
    return "\n".join(
        [
            *(dg.serialize_value(record) for record in records),
            *(record.getMessage() for record in caplog.records),
            captured.out,
            captured.err,
        ]
    )


def test_api_secrets_never_appear_in_logs_events_or_metadata(clean_env, monkeypatch, fake, qrl_home, caplog, capfd):
    live_env(monkeypatch, fake, execute=True)
    caplog.set_level(logging.DEBUG)
    key = just_finished_quarter_hour(dt.datetime.now(dt.UTC))
    # The key and secret bound the way a deployment binds secrets in resource config: dg.EnvVar,
    # resolved when each run starts.
    mexc = mexc_resource(settings(), api_key=dg.EnvVar("MEXC_API_KEY"), api_secret=dg.EnvVar("MEXC_API_SECRET"), **FAST)
    resources = {
        "mexc": mexc,
        "warehouse": configured_resources()["warehouse"],
        "redis": configured_resources()["redis"],
    }
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize(resources, key=key, instance=instance)
        assert result.success and metadata_of(result, "rebalance_plan")["order_status"] == "PLACED"
        text = _all_text(result, instance, caplog, capfd)
        assert "QRLUSDT" in text and "rebalance_plan" in text  # the capture did capture the run
        for secret in (fake.api_key, fake.api_secret):
            assert secret not in text
        for asset in ("qrl_position", "rebalance_plan"):
            assert all(
                secret not in json.dumps(metadata_of(result, asset), default=str)
                for secret in (fake.api_key, fake.api_secret)
            )

        # A failing run (the exchange rejects the signature) must not leak them either; the changed
        # variable reaches the resource because dg.EnvVar is resolved when the run starts.
        monkeypatch.setenv("MEXC_API_SECRET", "WRONGSECRET0a1b2c3d")
        failed = materialize(resources, key=key, instance=instance, raise_on_error=False)
        assert not failed.success
        text = _all_text(failed, instance, caplog, capfd)
        assert "signature rejected: check MEXC_API_SECRET" in text
        for secret in (fake.api_key, fake.api_secret, "WRONGSECRET0a1b2c3d"):
            assert secret not in text


def test_schedules_target_the_just_finished_quarter_hour():
    assert just_finished_quarter_hour(dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC)) == "2026-11-22-07:45"
    assert just_finished_quarter_hour(dt.datetime(2026, 11, 22, 8, 14, 59, tzinfo=dt.UTC)) == "2026-11-22-07:45"
    assert just_finished_quarter_hour(dt.datetime(2026, 11, 23, 0, 5, tzinfo=dt.UTC)) == "2026-11-22-23:45"
    at = dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC)
    window = quarter_hour.time_window_for_partition_key(just_finished_quarter_hour(at))
    assert window.end == at  # the partition's window has just ended
    schedules = {schedule.name: schedule for schedule in QRL_SCHEDULES}
    every_15 = schedules["qrl_15min_schedule"]
    assert every_15.cron_schedule == "*/15 * * * *"
    assert every_15.default_status == dg.DefaultScheduleStatus.RUNNING
    request = every_15(dg.build_schedule_context(scheduled_execution_time=at))
    assert request.partition_key == "2026-11-22-07:45" and request.run_key == "2026-11-22-07:45"
    daily = schedules["qrl_rebalance_daily_schedule"]
    assert daily.default_status == dg.DefaultScheduleStatus.STOPPED
    assert daily.job_name == "qrl_rebalance_job"
    midnight = dt.datetime(2026, 11, 23, 0, 5, tzinfo=dt.UTC)
    assert daily(dg.build_schedule_context(scheduled_execution_time=midnight)).partition_key == "2026-11-22-23:45"


def test_definitions_load_with_the_shared_resource_keys():
    defs = dg.Definitions(
        assets=QRL_ASSETS,
        asset_checks=QRL_CHECKS,
        jobs=QRL_JOBS,
        schedules=QRL_SCHEDULES,
        resources={
            **QRL_RESOURCES,
            "warehouse": configured_resources()["warehouse"],
            "redis": configured_resources()["redis"],
        },
    )
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    for name in ("qrl_position", "rebalance_plan"):
        node = graph.get(dg.AssetKey(name))
        assert node.partitions_def == quarter_hour and node.group_name == "treasury" and node.description
    assert set(QRL_RESOURCES) == {"mexc"}
    job = defs.resolve_job_def("qrl_15min_job")
    assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == {"qrl_position", "rebalance_plan"}
    assert {
        key.to_user_string() for key in defs.resolve_job_def("qrl_rebalance_job").asset_layer.executable_asset_keys
    } == {"rebalance_plan"}


def test_the_code_locations_exchange_resource_is_built_from_the_settings_with_no_config(
    qrl_home, clean_env, monkeypatch
):
    """The bound `mexc` resource has no Dagster config (nothing for the UI to show) and builds
    MexcResource from the settings; a printed resource never shows the key or secret."""
    bound = QRL_RESOURCES["mexc"]
    assert isinstance(bound, dg.ResourceDefinition) and not isinstance(bound, MexcResource)
    monkeypatch.setenv("QRL_MEXC_MODE", "paper")
    monkeypatch.setenv("MEXC_API_KEY", "mx0vglKEYvalue")
    monkeypatch.setenv("MEXC_API_SECRET", "SECRETvalue123")
    monkeypatch.setenv("QRL_KILL_SWITCH_RESET_AT", "2026-12-01T09:30:00")
    with dg.build_resources({"mexc": bound}) as built:
        resource = built.mexc
    assert isinstance(resource, MexcResource)
    assert (resource.mode, resource.api_key, resource.paper_account_dir) == (
        "paper",
        "mx0vglKEYvalue",
        str(qrl_home / "qrl"),
    )
    config = resource.treasury_config()
    assert config.limits.kill_switch_reset_at == dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
    assert "mx0vglKEYvalue" not in repr(resource) and "SECRETvalue123" not in repr(resource)
    assert "mx0vglKEYvalue" not in repr(config) and "SECRETvalue123" not in repr(config)


def _spy_on_charts(monkeypatch) -> dict[str, list]:
    from qrl_platform import charts

    drawn: dict[str, list] = {}
    for name in ("position_chart", "rebalance_chart"):
        real = getattr(charts, name)

        def spy(frame, _real=real, _name=name):
            drawn[_name] = frame
            return _real(frame)

        monkeypatch.setattr(charts, name, spy)
    return drawn


# 15:45 UTC is 23:45-24:00 Taipei: the day's last quarter hour, run by the 00:00 Taipei tick.
CHARTED_KEY = "2026-11-20-15:45"


def test_position_and_plan_charts_show_the_last_three_days_of_stored_rows(
    qrl_home, clean_env, warehouse_url, monkeypatch
):
    from qrl_platform_tests.test_charts import WIDE_PIXELS, png_image

    drawn = _spy_on_charts(monkeypatch)
    resources = {
        **QRL_RESOURCES,
        "warehouse": WarehouseResource(url=warehouse_url),
        "redis": configured_resources()["redis"],
    }
    for key in ("2026-11-10-15:00", "2026-11-20-17:00", "2026-11-20-15:00", "2026-11-20-15:15", "2026-11-20-15:30"):
        materialize(resources, key=key)
    assert drawn == {}  # none of those quarter hours ends a Taipei day
    result = materialize(resources, key=CHARTED_KEY)  # its window ends 16:00 UTC, Taipei midnight

    # Simulated mode stamps both rows with the partition's end; 11-10 is older than 3 days, 17:00 is later.
    ends = [dt.datetime(2026, 11, 20, 15, 15) + dt.timedelta(minutes=15 * i) for i in range(4)]
    for name, column in (("position_chart", "as_of"), ("rebalance_chart", "timestamp")):
        stamps = sorted(
            t if t.tzinfo is None else t.astimezone(dt.UTC).replace(tzinfo=None) for t in drawn[name][column]
        )
        assert stamps == ends, name
    for asset, name in (("qrl_position", "position_chart"), ("rebalance_plan", "rebalance_chart")):
        markdown = metadata_of(result, asset)[name]
        png = base64.b64decode(markdown.split("data:image/png;base64,", 1)[1][:-1])
        assert png_image(png).size == WIDE_PIXELS


def test_charts_are_attached_once_per_taipei_day_and_other_runs_name_where_they_are(
    qrl_home, clean_env, warehouse_url, monkeypatch
):
    from qrl_platform.dashboard import latest_charted_quarter_hour, treasury_charts_due

    # The rule itself: only a quarter hour ending at Taipei midnight (16:00 UTC) is charted.
    day_ends = [
        dt.datetime(2026, 11, 20, 0, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=15 * i)
        for i in range(1, 97)
        if treasury_charts_due(dt.datetime(2026, 11, 20, 0, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=15 * i))
    ]
    assert day_ends == [dt.datetime(2026, 11, 20, 16, 0, tzinfo=dt.UTC)]
    assert latest_charted_quarter_hour(dt.datetime(2026, 11, 20, 16, 0, tzinfo=dt.UTC)) == CHARTED_KEY
    assert latest_charted_quarter_hour(dt.datetime(2026, 11, 21, 15, 45, tzinfo=dt.UTC)) == CHARTED_KEY
    assert latest_charted_quarter_hour(dt.datetime(2026, 11, 20, 15, 45, tzinfo=dt.UTC)) == "2026-11-19-15:45"

    drawn = _spy_on_charts(monkeypatch)
    resources = {
        **QRL_RESOURCES,
        "warehouse": WarehouseResource(url=warehouse_url),
        "redis": configured_resources()["redis"],
    }
    plain = materialize(resources, key="2026-11-21-03:00")
    assert drawn == {}  # not even drawn: the charts cost render time too
    for asset in ("qrl_position", "rebalance_plan"):
        metadata = metadata_of(plain, asset)
        assert not {"position_chart", "rebalance_chart"} & set(metadata), asset
        assert metadata["charts_at_partition"] == CHARTED_KEY, asset
    charted = materialize(resources, key=CHARTED_KEY)
    assert "position_chart" in metadata_of(charted, "qrl_position")
    assert "rebalance_chart" in metadata_of(charted, "rebalance_plan")
    assert "charts_at_partition" not in metadata_of(charted, "qrl_position")
