"""Strategy stats: a hit-rate case worked out by hand, then the same through the warehouse (both backends)."""

import datetime as dt

import polars as pl
import pytest

from qrl_platform.calendar import trading_days
from qrl_platform.storage.frames import FrameStore
from qrl_platform.strategies import stats as stats_module
from qrl_platform.strategies.stats import compute_stats, signal_outcomes, update_strategy_stats
from qrl_platform.warehouse.schema import strategies, strategy_executions, strategy_signals


def d(day: int) -> dt.date:
    return dt.date(2024, 3, day)


# Strategy STG_S_001, horizon 2 trading days. March 2024 trading days: 4 5 6 7 8 11 12 ...
# So the exit of a signal on the 4th is the 6th, on the 5th the 7th, on the 7th the 11th.
SIGNALS = [
    # stock, date, signal, confidence
    ("X", 4, "BUY", 0.8),  # 100 → 103 (6th): +3 %  → hit
    ("Y", 4, "SELL", 0.6),  # 50 → 49 (6th):   −2 %  → hit
    ("Z", 4, "HOLD", 0.7),  # never judged
    ("X", 5, "BUY", 0.9),  # 102 → 101 (7th): −1 %  → miss
    ("Y", 5, "BUY", 0.5),  # 50 → 50 (7th):    0 %  → miss (zero is not a gain)
    ("W", 5, "BUY", 0.7),  # no close on the 7th   → not evaluated
    ("X", 7, "SELL", 1.0),  # 101 → 99 (11th): −2 %  → hit, but only once the 11th has passed
]
CLOSES = {
    "X": {4: 100.0, 5: 102.0, 6: 103.0, 7: 101.0, 8: 100.0, 11: 99.0},
    "Y": {4: 50.0, 5: 50.0, 6: 49.0, 7: 50.0},
    "W": {5: 20.0},
    "Z": {4: 10.0},
}


def _signals() -> pl.DataFrame:
    return pl.DataFrame(
        [("STG_S_001", stock, d(day), signal, confidence) for stock, day, signal, confidence in SIGNALS],
        schema=["strategy_id", "stock_id", "trade_date", "signal", "confidence"],
        orient="row",
    )


def _closes() -> pl.DataFrame:
    return pl.DataFrame(
        [(stock, d(day), close) for stock, days in CLOSES.items() for day, close in days.items()],
        schema=["stock_id", "trade_date", "close"],
        orient="row",
    )


def _daily(signals: pl.DataFrame) -> pl.DataFrame:
    return signals.group_by("strategy_id", "trade_date", "signal").agg(
        pl.len().cast(pl.Int64).alias("n"), pl.col("confidence").sum().alias("confidence_sum")
    )


def test_signal_outcomes_by_hand():
    outcomes = signal_outcomes(_signals(), _closes(), {"STG_S_001": 2}, trading_days(d(1), d(15)))
    rows = {(r["stock_id"], r["trade_date"].day): r for r in outcomes.iter_rows(named=True)}
    assert len(rows) == 6  # the HOLD row is not judged
    assert rows[("X", 4)]["exit_date"] == d(6) and rows[("X", 4)]["forward_return"] == pytest.approx(0.03)
    assert rows[("X", 4)]["hit"] is True and rows[("Y", 4)]["hit"] is True
    assert rows[("X", 5)]["hit"] is False and rows[("Y", 5)]["hit"] is False
    assert rows[("W", 5)]["forward_return"] is None and rows[("W", 5)]["hit"] is None
    assert rows[("X", 7)]["exit_date"] == d(11) and rows[("X", 7)]["hit"] is True


def test_period_stats_by_hand():
    signals = _signals()
    outcomes = signal_outcomes(signals, _closes(), {"STG_S_001": 2}, trading_days(d(1), d(15)))
    executions = pl.DataFrame(
        {
            "strategy_id": ["STG_S_001"] * 3,
            "execution_date": [d(4), d(5), d(7)],
            "n": [1, 2, 1],
            "last_started_at": [dt.datetime(2024, 3, day, 8, 35, tzinfo=dt.UTC) for day in (4, 5, 7)],
        },
    )
    stats = compute_stats(
        [d(7), d(11)], ["STG_S_001", "STG_IDLE_001"], _daily(signals), outcomes, executions, periods=(7, 30)
    )
    got = {(r["strategy_id"], r["as_of_date"].day, r["period_days"]): r for r in stats.iter_rows(named=True)}

    # As of the 7th, 7-day window (29 Feb, 7 Mar]: all 7 rows; BUY 4, SELL 2;
    # avg confidence of BUY/SELL = (0.8 + 0.6 + 0.9 + 0.5 + 0.7 + 1.0)/6 = 0.75.
    # Judged: exits on or before the 7th with both closes → X4 hit, Y4 hit, X5 miss, Y5 miss → 2/4.
    row = got[("STG_S_001", 7, 7)]
    assert (row["signal_count"], row["buy_count"], row["sell_count"]) == (7, 4, 2)
    assert row["avg_confidence"] == pytest.approx(0.75)
    assert (row["evaluated_signals"], row["hit_rate"]) == (4, 0.5)
    assert (row["total_executions"], row["total_signals"]) == (4, 7)
    assert row["last_execution_at"] == dt.datetime(2024, 3, 7, 8, 35, tzinfo=dt.UTC)

    # As of the 11th, 7-day window (4th, 11th] drops the 4th: X5 miss, Y5 miss, X7 hit (exit 11th) → 1/3.
    row = got[("STG_S_001", 11, 7)]
    assert row["signal_count"] == 4 and (row["evaluated_signals"], row["hit_rate"]) == (
        3,
        pytest.approx(1 / 3, abs=1e-6),
    )
    # 30-day window keeps everything: 3 hits out of 5 judged.
    row = got[("STG_S_001", 11, 30)]
    assert (row["evaluated_signals"], row["hit_rate"]) == (5, 0.6)

    idle = got[("STG_IDLE_001", 11, 30)]
    assert idle["signal_count"] == 0 and idle["hit_rate"] is None and idle["avg_confidence"] is None
    assert idle["total_executions"] == 0 and idle["last_execution_at"] is None


def _insert_strategy(conn, strategy_id: str, horizon_days: int, now: dt.datetime) -> None:
    conn.execute(
        strategies.insert().values(
            strategy_id=strategy_id,
            name=strategy_id,
            status="ACTIVE",
            version=1,
            horizon_days=horizon_days,
            definition="{}",
            created_at=now,
            updated_at=now,
        )
    )


# The stats read the warehouse's rows a part at a time; parts of two rows split every query's result.
@pytest.mark.parametrize("part_rows", [100_000, 2], ids=["rows in one part", "rows in parts of two"])
def test_update_strategy_stats_through_the_warehouse(warehouse, tmp_path, monkeypatch, part_rows):
    monkeypatch.setattr(stats_module, "FRAME_PART_ROWS", part_rows)
    frames = FrameStore(str(tmp_path / "frames"))
    closes = _closes()
    for day in sorted(set(closes["trade_date"].to_list())):
        frames.write("daily_quotes", day.isoformat(), closes.filter(pl.col("trade_date") == day))
    now = dt.datetime(2024, 3, 11, 9, 0, tzinfo=dt.UTC)
    with warehouse.begin() as conn:
        for strategy_id, horizon in (("STG_S_001", 2), ("STG_IDLE_001", 5)):
            _insert_strategy(conn, strategy_id, horizon, now)
        executions = [
            {
                "execution_id": f"E{day}",
                "strategy_id": "STG_S_001",
                "execution_date": d(day),
                "started_at": dt.datetime(2024, 3, day, 8, 35, tzinfo=dt.UTC),
                "status": "SUCCESS",
            }
            for day in (4, 5, 7)
        ]
        conn.execute(strategy_executions.insert(), executions)
        conn.execute(
            strategy_signals.insert(),
            [
                {
                    "signal_id": f"STG_S_001-{d(day):%Y%m%d}-{stock}",
                    "strategy_id": "STG_S_001",
                    "stock_id": stock,
                    "trade_date": d(day),
                    "execution_id": f"E{day}",
                    "signal": signal,
                    "confidence": confidence,
                    "score": 0.5,
                    "created_at": now,
                }
                for stock, day, signal, confidence in SIGNALS
            ],
        )

    result = update_strategy_stats(warehouse, frames, [d(7), d(11)], now=now)
    assert result.rows_written == 2 * 2 * 3  # strategies × as-of days × periods
    # The acting signals come back from the day's packed BUY and SELL lists, one outcome each.
    acting = sorted((stock, d(day), signal) for stock, day, signal, _ in SIGNALS if signal != "HOLD")
    assert sorted(result.outcomes.select("stock_id", "trade_date", "signal").iter_rows()) == acting
    stored = warehouse.read_table("strategy_stats")
    row = stored.filter(
        (pl.col("strategy_id") == "STG_S_001") & (pl.col("as_of_date") == d(11)) & (pl.col("period_days") == 30)
    )
    assert row["hit_rate"][0] == 0.6 and row["evaluated_signals"][0] == 5 and row["signal_count"][0] == 7
    assert row["total_executions"][0] == 3

    # Idempotent: recomputing replaces the same rows.
    update_strategy_stats(warehouse, frames, [d(11)], now=now)
    assert warehouse.read_table("strategy_stats").height == 12

    # The strategies summary columns (the source's SQL).
    summary = {r["strategy_id"]: r for r in warehouse.read_table("strategies").iter_rows(named=True)}
    assert summary["STG_S_001"]["total_executions"] == 3 and summary["STG_S_001"]["total_signals"] == 7
    last = summary["STG_S_001"]["last_execution_at"]
    assert last.replace(tzinfo=None) == dt.datetime(2024, 3, 7, 8, 35) or last == dt.datetime(
        2024, 3, 7, 8, 35, tzinfo=dt.UTC
    )
    assert summary["STG_IDLE_001"]["total_signals"] == 0 and summary["STG_IDLE_001"]["last_execution_at"] is None


def test_a_stock_id_holding_the_list_separator_is_an_error_not_two_signals(warehouse, tmp_path):
    now = dt.datetime(2024, 3, 11, 9, 0, tzinfo=dt.UTC)
    with warehouse.begin() as conn:
        _insert_strategy(conn, "STG_S_001", 2, now)
        conn.execute(
            strategy_signals.insert(),
            {
                "signal_id": "STG_S_001-20240304-X,Y",
                "strategy_id": "STG_S_001",
                "stock_id": "X,Y",
                "trade_date": d(4),
                "execution_id": "E4",
                "signal": "BUY",
                "confidence": 0.5,
                "score": 0.5,
                "created_at": now,
            },
        )
    with pytest.raises(ValueError, match="strategy_signals: 2 acting stock ids unpacked, 1 counted"):
        update_strategy_stats(warehouse, FrameStore(str(tmp_path / "frames")), [d(7)], now=now)


def test_the_confidence_sum_is_the_same_whether_postgresql_sums_in_parallel_or_not(postgres_url):
    """PostgreSQL sums a large table in parallel workers whose partial sums meet in no fixed order; the
    stats' confidence sum must not depend on that (the year's strategy_stats differed between runs)."""
    import sqlalchemy as sa

    from qrl_platform.strategies.stats import _reproducible_sum

    engine = sa.create_engine(postgres_url)
    values = sa.table("confidences", sa.column("x", sa.Float))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE confidences (x float8)"))
        # Values of very different magnitudes, so the order of the additions shows in the last bits.
        conn.execute(
            sa.text("INSERT INTO confidences SELECT random() * power(10, (i % 7)) FROM generate_series(1, 400000) i")
        )
        conn.execute(sa.text("ANALYZE confidences"))

    def total(parallel: bool) -> tuple[float, str]:
        with engine.connect() as conn:
            workers = 4 if parallel else 0
            for setting in (
                f"SET max_parallel_workers_per_gather = {workers}",
                "SET parallel_setup_cost = 0",
                "SET parallel_tuple_cost = 0",
                "SET min_parallel_table_scan_size = 0",
            ):
                conn.execute(sa.text(setting))
            query = sa.select(_reproducible_sum(conn, values.c.x))
            plan = "\n".join(row[0] for row in conn.execute(sa.text("EXPLAIN " + str(query.compile(conn)))))
            return conn.execute(query).scalar(), plan

    sequential, sequential_plan = total(parallel=False)
    parallel, parallel_plan = total(parallel=True)
    engine.dispose()
    assert "Gather" in parallel_plan and "Gather" not in sequential_plan  # the two plans really differ
    assert parallel == sequential  # bit for bit


def test_signals_outside_the_windows_count_in_the_totals_only(warehouse, tmp_path):
    """Signals older than the longest period before the first as-of day, and signals after the last,
    are read as counts per strategy; the totals as of a day and the all-time summary include them."""
    now = dt.datetime(2024, 3, 11, 9, 0, tzinfo=dt.UTC)
    long_before, inside, after = dt.date(2023, 6, 1), d(5), d(20)
    with warehouse.begin() as conn:
        _insert_strategy(conn, "STG_S_001", 2, now)
        conn.execute(
            strategy_signals.insert(),
            [
                {
                    "signal_id": f"STG_S_001-{day:%Y%m%d}-{stock}",
                    "strategy_id": "STG_S_001",
                    "stock_id": stock,
                    "trade_date": day,
                    "execution_id": f"E{day}",
                    "signal": signal,
                    "confidence": 0.5,
                    "score": 0.5,
                    "created_at": now,
                }
                for day, stock, signal in [
                    (long_before, "X", "BUY"),
                    (long_before, "Y", "HOLD"),
                    (inside, "X", "SELL"),
                    (after, "X", "BUY"),
                    (after, "Y", "BUY"),
                    (after, "Z", "HOLD"),
                ]
            ],
        )
    result = update_strategy_stats(warehouse, FrameStore(str(tmp_path / "frames")), [d(7)], now=now)
    rows = {r["period_days"]: r for r in result.stats.iter_rows(named=True)}
    assert {r["total_signals"] for r in rows.values()} == {3}  # the two of June 2023 and the 5th
    assert rows[90]["signal_count"] == 1 and rows[90]["sell_count"] == 1 and rows[90]["avg_confidence"] == 0.5
    summary = warehouse.read_table("strategies").row(0, named=True)
    assert summary["total_signals"] == 6  # all time, the 20th included


def _stats_window_by_window(as_of_dates, strategy_ids, daily, periods):
    """The stats' counts and average confidence computed one (as-of day, period) window at a time: the
    definition the all-windows-at-once computation must reproduce to the bit."""
    acting = pl.col("signal").is_in(["BUY", "SELL"])
    rows = []
    for as_of in as_of_dates:
        for strategy_id in strategy_ids:
            for period in periods:
                window = daily.filter(
                    (pl.col("strategy_id") == strategy_id)
                    & (pl.col("trade_date") > as_of - dt.timedelta(days=period))
                    & (pl.col("trade_date") <= as_of)
                )
                sums = window.group_by("strategy_id").agg(
                    pl.col("n").sum().alias("signal_count"),
                    pl.col("confidence_sum").filter(acting).sum().alias("confidence_sum"),
                    pl.col("n").filter(acting).sum().alias("acting"),
                )
                row = sums.row(0, named=True) if sums.height else {"signal_count": 0, "acting": 0}
                average = round(row["confidence_sum"] / row["acting"], 6) if row["acting"] else None
                rows.append((strategy_id, as_of, period, row["signal_count"], average))
    return rows


def test_all_windows_at_once_give_the_window_by_window_figures_to_the_bit():
    """Daily confidence sums of very different sizes make a float sum depend on its order (1e16 + 1 −
    1e16 is 0 one way and 1 the other): the windows computed together must add each window's days in
    the order a window computed alone does, and keep the periods in the order they were given."""
    days = trading_days(d(1), d(29))
    strategy_ids = ["STG_B_001", "STG_A_001"]
    magnitudes = [1e16, 1.0, -1e16, 0.3, 2.5e15, -2.5e15, 0.7]
    daily = pl.DataFrame(
        [
            (strategy_id, day, signal, 1 + (i + j) % 3, magnitudes[(i * 3 + j + k) % len(magnitudes)])
            for j, strategy_id in enumerate(strategy_ids)
            for i, day in enumerate(days)
            for k, signal in enumerate(("BUY", "SELL"))
        ],
        schema={
            "strategy_id": pl.Utf8,
            "trade_date": pl.Date,
            "signal": pl.Utf8,
            "n": pl.Int64,
            "confidence_sum": pl.Float64,
        },
        orient="row",
    )
    as_of_dates, periods = days[5:], (30, 7)
    no_outcomes = pl.DataFrame(
        schema={
            "strategy_id": pl.Utf8,
            "trade_date": pl.Date,
            "exit_date": pl.Date,
            "hit": pl.Boolean,
            "unfilled": pl.Boolean,
        }
    )
    no_executions = pl.DataFrame(
        schema={
            "strategy_id": pl.Utf8,
            "execution_date": pl.Date,
            "n": pl.Int64,
            "last_started_at": pl.Datetime("us", "UTC"),
        }
    )
    stats = compute_stats(as_of_dates, strategy_ids, daily, no_outcomes, no_executions, periods=periods)
    got = stats.select("strategy_id", "as_of_date", "period_days", "signal_count", "avg_confidence").rows()
    expected = _stats_window_by_window(as_of_dates, strategy_ids, daily, periods)
    assert [row[:3] for row in got] == [row[:3] for row in expected]  # as-of day, strategy, period as given
    assert got == expected
    assert len({row[4] for row in expected}) > 3  # the averages differ from window to window
