"""The evaluation's signal reader on both warehouses (SQLite stores dates as text, PostgreSQL as dates),
and its stored-frame readers asking the handed-in "which partitions are stored" answer."""

import datetime as dt

import polars as pl
import pytest

from qrl_platform.evaluation.inputs import SIGNAL_SCHEMA, EvaluationInputsMissing, require, signals, stored_range
from qrl_platform.storage.frames import FrameStore
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


def test_the_readers_take_the_handed_in_stored_days_and_read_the_frames_from_the_store(tmp_path):
    store = FrameStore(str(tmp_path))
    for key in ("2024-03-04", "2024-03-05", "2024-03-06"):
        store.write("factor_ic", key, pl.DataFrame({"known_on": [dt.date.fromisoformat(key)], "rank_ic": [0.1]}))
    # 03-06 has a file but no materialisation; 03-07 was materialised as a closed day (no file).
    materialised = {"2024-03-04", "2024-03-05", "2024-03-07"}

    def stored_keys(table, keys):
        assert table == "factor_ic"
        return materialised if keys is None else materialised & set(keys)

    frame = stored_range(store, "factor_ic", "2024-03-01", "2024-03-31", stored_keys)
    assert frame["known_on"].to_list() == [dt.date(2024, 3, 4), dt.date(2024, 3, 5)]
    assert stored_range(store, "factor_ic", None, "2024-03-31")["known_on"].len() == 3  # no answer: the files

    days = [dt.date(2024, 3, 5), dt.date(2024, 3, 6)]
    require(store, "factor_ic", days, "a test", None)  # the files alone satisfy a notebook
    with pytest.raises(EvaluationInputsMissing, match=r"^factor_ic is not materialised for 2024-03-06 \(a test\)"):
        require(store, "factor_ic", days, "a test", stored_keys)
