"""Weighted-average cost and PnL by hand, incremental application, and incremental trade sync."""

import datetime as dt
import time
from decimal import Decimal as D

import pytest

from qrl_platform.treasury.cost import CostState, Trade, apply_trades, load_trades, position_at, sync_trades
from qrl_platform.treasury.mexc_client import ClientSettings, MexcClient, parse_trades


def trade(trade_id, side, price, qty, *, fee="0", fee_asset="USDT", time_ms=None):
    return Trade(
        trade_id=str(trade_id),
        symbol="QRLUSDT",
        order_id=None,
        price=D(price),
        qty=D(qty),
        quote_qty=D(price) * D(qty),
        commission=D(fee),
        commission_asset=fee_asset,
        time_ms=time_ms if time_ms is not None else int(trade_id) * 1000,
        is_buyer=side == "BUY",
    )


def test_weighted_average_cost_with_usdt_commissions():
    state = apply_trades(
        CostState(),
        [
            trade(1, "BUY", "0.50", "100", fee="0.10"),  # cost 50.10
            trade(2, "BUY", "0.80", "100", fee="0.16"),  # cost 80.16 → 200 QRL for 130.26
        ],
    )
    assert state.position_qty == D("200") and state.invested == D("130.26")
    assert state.avg_cost == D("0.6513")
    state = apply_trades(state, [trade(3, "SELL", "1.00", "50", fee="0.10")])  # proceeds 49.90, cost 32.565
    assert state.position_qty == D("150")
    assert state.invested == D("97.695")
    assert state.realized_pnl == D("17.335")
    assert state.fees_usdt == D("0.36")
    assert state.unrealized_pnl(D("1.0")) == D("52.305")  # 150 − 97.695
    assert state.avg_cost == D("0.6513")  # selling does not change the average cost


def test_commission_in_qrl_reduces_the_quantity_received():
    state = apply_trades(CostState(), [trade(1, "BUY", "0.50", "100", fee="0.2", fee_asset="QRL")])
    assert state.position_qty == D("99.8") and state.invested == D("50.00")
    assert state.fees_usdt == D("0.100")


def test_commission_in_a_third_asset_is_counted_but_not_valued():
    state = apply_trades(CostState(), [trade(1, "BUY", "0.50", "100", fee="0.01", fee_asset="MX")])
    assert state.invested == D("50.00") and state.unvalued_fee_trades == 1


def test_selling_everything_leaves_no_dust_cost_and_selling_more_is_tracked_separately():
    state = apply_trades(CostState(), [trade(1, "BUY", "0.3", "10"), trade(2, "SELL", "0.6", "10")])
    assert state.position_qty == 0 and state.invested == 0 and state.avg_cost is None
    assert state.realized_pnl == D("3.0")
    # 5 more QRL sold than the trades ever bought (a deposit): no PnL invented for them.
    state = apply_trades(state, [trade(3, "BUY", "1", "5"), trade(4, "SELL", "2", "10")])
    assert state.position_qty == 0 and state.untracked_sold_qty == D("5")
    assert state.realized_pnl == D("3.0") + D("5")  # (10 − 5) on the tracked half only


def test_incremental_equals_all_at_once_and_repeated_trades_are_ignored():
    trades = [trade(i, "BUY" if i % 3 else "SELL", f"0.{40 + i}", str(10 + i), fee="0.01") for i in range(1, 13)]
    at_once = apply_trades(CostState(), trades)
    stepwise = CostState()
    for start in range(0, 12, 5):
        stepwise = apply_trades(stepwise, trades[start : start + 5])
    assert stepwise == at_once
    assert apply_trades(at_once, trades[-3:]) == at_once  # already counted: no double counting
    assert apply_trades(CostState(), list(reversed(trades))) == at_once  # order of arrival does not matter


def test_position_at_a_partition_end_and_the_daily_roll_up():
    day = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
    ms = lambda moment: int(moment.timestamp() * 1000)  # noqa: E731
    trades = [
        trade(1, "BUY", "0.5", "100", time_ms=ms(day - dt.timedelta(hours=3))),
        trade(2, "SELL", "0.7", "50", time_ms=ms(day + dt.timedelta(hours=1))),
        trade(3, "SELL", "0.9", "50", time_ms=ms(day + dt.timedelta(hours=9))),  # after the partition
    ]
    position = position_at(
        trades,
        partition_key="2026-11-22-07:45",
        symbol="QRLUSDT",
        mode="simulated",
        as_of=day + dt.timedelta(hours=8),
        day_start=day,
        price=D("0.8"),
    )
    assert position.state.position_qty == D("50") and position.trades_today == 1
    assert position.realized_pnl_today == D("10.0")
    row = position.row()
    assert row["unrealized_pnl"] == pytest.approx(15.0) and row["avg_cost"] == pytest.approx(0.5)


def test_parse_trades_reads_mexc_strings_and_names_bad_fields():
    rows = [
        {
            "symbol": "QRLUSDT",
            "id": "7",
            "orderId": "o",
            "price": "0.51",
            "qty": "12.5",
            "quoteQty": "6.375",
            "commission": "0.01",
            "commissionAsset": "USDT",
            "time": 1764000000000,
            "isBuyer": True,
            "isMaker": False,
        }
    ]
    parsed = parse_trades(rows, "QRLUSDT")
    assert parsed[0].qty == D("12.5") and parsed[0].is_buyer is True
    with pytest.raises(ValueError, match=r"myTrades\[0\] QRLUSDT: field 'price' is not a number"):
        parse_trades([{**rows[0], "price": "--"}], "QRLUSDT")
    with pytest.raises(ValueError, match="field 'time' is missing"):
        parse_trades([{k: v for k, v in rows[0].items() if k != "time"}], "QRLUSDT")


def test_incremental_trade_sync_has_no_duplicates_across_runs(fake, warehouse):
    client = MexcClient(
        ClientSettings(base_url=fake.url, min_request_interval_seconds=0),
        api_key=fake.api_key,
        api_secret=fake.api_secret,
    )
    base = int(time.time() * 1000) - 3_600_000
    for i in range(130):  # more than one page of 100
        fake.add_trade(price="0.5", qty="1", is_buyer=True, time_ms=base + i * 1000, commission="0.001")
    fake.add_trade(price="0.5", qty="1", is_buyer=False, time_ms=base + 129 * 1000)  # same ms as the last

    first = sync_trades(client, warehouse, account="live", symbol="QRLUSDT", since_ms=base)
    assert first.inserted == 131 and first.requests == 2
    again = sync_trades(client, warehouse, account="live", symbol="QRLUSDT")
    assert again.inserted == 0 and again.start_time_ms == base + 129 * 1000  # resumes from the newest stored
    assert "startTime=" + str(base + 129 * 1000) in fake.calls("/api/v3/myTrades")[-1]["query"]

    fake.add_trade(price="0.6", qty="2", is_buyer=True, time_ms=base + 200 * 1000)
    later = sync_trades(client, warehouse, account="live", symbol="QRLUSDT")
    assert later.inserted == 1
    stored = load_trades(warehouse, account="live", symbol="QRLUSDT")
    assert len(stored) == 132 == len({t.trade_id for t in stored})
    # Another account's ledger (e.g. the simulated one) is separate.
    assert load_trades(warehouse, account="simulated", symbol="QRLUSDT") == []
