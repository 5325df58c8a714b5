"""The evaluation's signal reader on both warehouses (SQLite stores dates as text, PostgreSQL as dates)."""

import datetime as dt

import polars as pl

from qrl_platform.evaluation.inputs import SIGNAL_SCHEMA, signals
from qrl_platform.warehouse.schema import strategy_signals


def test_signals_reads_buy_and_sell_rows_of_the_range_and_strategies(warehouse):
    now = dt.datetime(2024, 3, 5, 8, tzinfo=dt.UTC)
    rows = [
        ("STG_A_001", "2330", dt.date(2024, 3, 4), "BUY", 0.9, 0.95),
        ("STG_A_001", "2317", dt.date(2024, 3, 4), "HOLD", 0.0, 0.5),
        ("STG_A_001", "2454", dt.date(2024, 3, 5), "SELL", 0.7, 0.1),
        ("STG_A_001", "2330", dt.date(2024, 3, 6), "BUY", 0.8, 0.9),  # after the range
        ("STG_B_001", "2330", dt.date(2024, 3, 4), "BUY", 0.6, 0.8),  # another strategy
    ]
    with warehouse.begin() as connection:
        connection.execute(
            strategy_signals.insert(),
            [
                {
                    "signal_id": f"{s}-{stock}-{day}",
                    "strategy_id": s,
                    "stock_id": stock,
                    "trade_date": day,
                    "execution_id": "e1",
                    "signal": signal,
                    "confidence": confidence,
                    "score": score,
                    "created_at": now,
                }
                for s, stock, day, signal, confidence, score in rows
            ],
        )
    frame = signals(warehouse, dt.date(2024, 3, 4), dt.date(2024, 3, 5), ["STG_A_001"]).sort("trade_date")
    assert frame.schema == pl.Schema(SIGNAL_SCHEMA)
    assert frame.rows() == [rows[0], rows[2]]
    assert signals(warehouse, dt.date(2024, 3, 4), dt.date(2024, 3, 5), []).is_empty()
