"""NOTIFY_M13_SIGNALS through Dagster: one event per day with the source's payload, idempotent,
forced re-notification, no event without unconsumed signals, Redis relay, and the lag sensor."""

import datetime as dt
import json
import logging

import dagster as dg
import pytest
import sqlalchemy as sa

from qrl_platform.defs.notify.assets import m13_notification
from qrl_platform.defs.resources import WarehouseResource, alerts_resource
from qrl_platform.settings import settings
from qrl_platform.warehouse import Warehouse
from qrl_platform.warehouse.schema import strategy_executions, strategy_signals
from qrl_platform_tests.conftest import configured_resources

DAY = dt.date(2024, 12, 24)
NOW = dt.datetime(2024, 12, 24, 8, 40, tzinfo=dt.UTC)


def _seed_signals(wh: Warehouse, signals: dict[str, str], strategies=("STG_A", "STG_B")) -> None:
    with wh.begin() as conn:
        conn.execute(
            strategy_signals.insert(),
            [
                dict(
                    signal_id=f"{sid}-{i}",
                    strategy_id=strategies[i % len(strategies)],
                    stock_id=sid,
                    trade_date=DAY,
                    execution_id="ex",
                    signal=signal,
                    confidence=0.7,
                    score=1.0,
                    created_at=NOW,
                )
                for i, (sid, signal) in enumerate(signals.items())
            ],
        )
        conn.execute(
            strategy_executions.insert(),
            [
                dict(execution_id=f"ex-{s}", strategy_id=s, execution_date=DAY, started_at=NOW, status="SUCCESS")
                for s in strategies
            ],
        )


def _resources(url: str, backend: str = "outbox") -> dict:
    return {
        "warehouse": WarehouseResource(url=url),
        "event_bus": configured_resources(event_bus=backend)["event_bus"],
        "redis": configured_resources()["redis"],
    }


def _materialize(url: str, backend: str = "outbox", force: bool = False) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [m13_notification],
        partition_key=DAY.isoformat(),
        resources=_resources(url, backend),
        run_config={"ops": {"m13_notification": {"config": {"force": force}}}},
    )


def test_publishes_the_source_payload_once_per_day(warehouse_url):
    wh = Warehouse(warehouse_url)
    _seed_signals(wh, {"2330": "BUY", "2317": "BUY", "2454": "SELL", "1101": "HOLD"})
    first = _materialize(warehouse_url)
    meta = first.asset_materializations_for_node("m13_notification")[0].metadata
    assert meta["events_published"].value == 1
    rows = wh.read_table("event_outbox")
    assert rows.height == 1
    payload = json.loads(rows["payload"][0])
    assert payload["event_type"] == "STRATEGY_SIGNALS_READY" and payload["trade_date"] == "2024-12-24"
    assert payload["summary"] == {
        "total_signals": 4,
        "buy_signals": 2,
        "sell_signals": 1,
        "hold_signals": 1,
        "strategies_executed": 2,
    }
    assert payload["timestamp"].endswith("+08:00")
    again = _materialize(warehouse_url)
    assert again.asset_materializations_for_node("m13_notification")[0].metadata["events_already_published"].value == 1
    assert wh.read_table("event_outbox").height == 1
    forced = _materialize(warehouse_url, force=True)
    assert forced.asset_materializations_for_node("m13_notification")[0].metadata["events_published"].value == 1
    assert wh.read_table("event_outbox").height == 2


def test_no_event_when_every_signal_is_consumed(warehouse_url):
    wh = Warehouse(warehouse_url)
    _seed_signals(wh, {"2330": "BUY"})
    with wh.begin() as conn:
        conn.execute(sa.update(strategy_signals).values(consumed_at=NOW))
    result = _materialize(warehouse_url)
    meta = result.asset_materializations_for_node("m13_notification")[0].metadata
    assert meta["dagster/row_count"].value == 0 and "no unconsumed signals" in meta["skipped"].value
    assert wh.read_table("event_outbox").height == 0


@pytest.mark.redis
def test_redis_backend_relays_to_the_stream_and_the_lag_sensor_warns(tmp_path, redis_url, monkeypatch, caplog):
    import redis

    from qrl_platform.definitions import defs
    from qrl_platform.defs import clock as sensors  # the clock every sensor reads

    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    monkeypatch.setenv("QRL_REDIS_URL", redis_url)
    monkeypatch.setenv("QRL_ALERT_CHANNELS", "log")
    wh = Warehouse(url)
    _seed_signals(wh, {"2330": "BUY", "2454": "SELL"})
    _materialize(url, backend="redis")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    entries = client.xrange("qrl:events:m13")
    assert len(entries) == 1 and json.loads(entries[0][1]["payload"])["summary"]["total_signals"] == 2
    assert wh.read_table("event_outbox")["stream_id"][0] == entries[0][0]

    # 31 minutes later the order module still has not read it: the sensor sends a WARNING alert.
    published = dt.datetime.fromtimestamp(int(entries[0][0].split("-")[0]) / 1000, dt.UTC)
    monkeypatch.setattr(sensors, "current_time", lambda: published + dt.timedelta(minutes=31))
    caplog.set_level(logging.INFO, logger="qrl_platform.alerts")
    resources = {**_resources(url, "redis"), "alerts": alerts_resource(settings(), dedupe_state_path="memory")}
    with dg.instance_for_test() as instance:
        # A context manager: the event bus holds nested resources, which Dagster opens in a scope.
        with dg.build_sensor_context(instance=instance, resources=resources, definitions=defs) as context:
            defs.get_sensor_def("m13_consumption_lag_sensor").evaluate_tick(context)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("M13 has not consumed signals of 2024-12-24" in m for m in warnings)
