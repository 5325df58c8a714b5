"""The UI charts and plot figures from small hand-made frames: each chart is a real PNG of the declared
pixel size under 200 KB, shows what it claims, and the per-strategy figures have the exact values."""

import base64
import datetime as dt
import io

import numpy as np
import polars as pl
import pytest
from PIL import Image

from qrl_platform import charts, dashboard
from qrl_platform.strategies.runner import StrategyRunSummary

MAX_BYTES = 200_000
WIDE_PIXELS = (640, 256)  # charts.WIDE × charts.DPI
DARK_RED = (103, 0, 13)  # matplotlib's "Reds" at 1.0: the colour of a factor missing everywhere
D = [dt.date(2024, 3, d) for d in (4, 5, 6, 7, 8)]


def png_image(png: bytes) -> Image.Image:
    """Assert what every chart must be, and return it decoded."""
    assert png[:8] == charts.PNG_MAGIC
    assert len(png) < MAX_BYTES
    image = Image.open(io.BytesIO(png))
    image.load()  # decodes every pixel: a truncated or corrupt PNG raises here
    assert image.format == "PNG" and image.mode == "P"  # the 64-colour palette that keeps it small
    return image


def pixels_of(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 3) -> int:
    rgb = np.asarray(image.convert("RGB")).astype(int)
    return int((np.abs(rgb - np.array(colour)).max(axis=2) <= tolerance).sum())


def test_markdown_image_is_a_base64_png_data_uri_that_decodes_to_the_same_bytes():
    png = charts.basket_return_chart(
        pl.DataFrame(schema=dict.fromkeys(["strategy_id", "signal"], pl.Utf8)).with_columns(
            pl.lit(None, pl.Float64).alias("mean_forward_return"), pl.lit(None, pl.Int64).alias("signals")
        )
    )
    markdown = charts.markdown_image(png, "alt text")
    prefix = "![alt text](data:image/png;base64,"
    assert markdown.startswith(prefix) and markdown.endswith(")")
    assert base64.b64decode(markdown[len(prefix) : -1]) == png


def test_hit_rate_chart():
    stats = pl.DataFrame(
        {
            "strategy_id": ["STG_A"] * 5 + ["STG_B"] * 5,
            "as_of_date": D * 2,
            "hit_rate": [0.4, 0.5, None, 0.6, 0.7, 0.2, 0.3, 0.3, 0.35, 0.5],
        }
    )
    image = png_image(charts.hit_rate_chart(stats))
    assert image.size == WIDE_PIXELS
    # tab10's first two colours are the two strategy lines.
    assert pixels_of(image, (31, 119, 180)) > 50 and pixels_of(image, (255, 127, 14)) > 50
    empty = png_image(charts.hit_rate_chart(stats.clear()))
    assert empty.size == WIDE_PIXELS and pixels_of(empty, (31, 119, 180)) == 0


def test_basket_return_chart_draws_a_buy_and_a_sell_bar_per_strategy():
    baskets = pl.DataFrame(
        {
            "strategy_id": ["STG_A", "STG_A", "STG_B", "STG_B"],
            "signal": ["BUY", "SELL", "BUY", "SELL"],
            "mean_forward_return": [0.03, -0.01, 0.005, 0.02],
            "signals": [10, 8, 4, 3],
        }
    )
    image = png_image(charts.basket_return_chart(baskets))
    assert image.size == WIDE_PIXELS
    buy, sell = (
        pixels_of(image, tuple(int(charts.SIGNAL_COLOURS[s][i : i + 2], 16) for i in (1, 3, 5)))
        for s in ("BUY", "SELL")
    )
    assert buy > 100 and sell > 100
    only_buy = png_image(charts.basket_return_chart(baskets.filter(pl.col("signal") == "BUY")))
    assert pixels_of(only_buy, (198, 40, 40)) == 0


def test_missing_rate_heatmap_colours_a_fully_missing_factor_dark_red_and_leaves_unstored_days_blank():
    factors = ["atr_14", "rsi_14", "sma_5"]
    rates = pl.DataFrame(
        {
            "trade_date": [d for d in D[:2] for _ in factors],
            "factor": factors * 2,
            "missing_rate": [1.0, 0.0, 0.1, 1.0, 0.0, 0.1],
        }
    )
    one_day = pixels_of(
        png_image(charts.missing_rate_heatmap(rates.filter(pl.col("trade_date") == D[0]), factors=factors, days=D[:2])),
        DARK_RED,
    )
    image = png_image(charts.missing_rate_heatmap(rates, factors=factors, days=D[:2]))
    assert image.size == (640, 96 + 10 * 3)
    two_days = pixels_of(image, DARK_RED)
    assert one_day > 200 and two_days == pytest.approx(2 * one_day, rel=0.1)  # the unstored day's cell is blank
    none_missing = rates.with_columns(pl.lit(0.0).alias("missing_rate"))
    assert pixels_of(png_image(charts.missing_rate_heatmap(none_missing, factors=factors)), DARK_RED) == 0
    with pytest.raises(ValueError, match=r"missing_rate_heatmap: the frame lacks column\(s\) \['missing_rate'\]"):
        charts.missing_rate_heatmap(rates.drop("missing_rate"))


def test_sixty_days_of_forty_factors_stay_small():
    factors = [f"factor_{i:02d}" for i in range(40)]
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(60)]
    rng = np.random.default_rng(0)
    rates = pl.DataFrame(
        {
            "trade_date": [d for d in days for _ in factors],
            "factor": factors * 60,
            "missing_rate": rng.uniform(0, 1, 2400),
        }
    )
    image = png_image(charts.missing_rate_heatmap(rates, factors=factors, days=days))
    assert image.size == (640, 96 + 10 * 40)


def _utc(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, 20, hour, minute, tzinfo=dt.UTC)


def test_position_chart():
    positions = pl.DataFrame(
        {
            "as_of": [_utc(7, 15 * i) for i in range(4)],
            "price": [2.0, 2.1, None, 2.3],
            "position_qty": [100.0, 100.0, 100.0, 120.0],
            "realized_pnl": [0.0, 0.0, 1.0, 1.0],
            "unrealized_pnl": [-1.0, 9.0, None, 25.0],
        }
    )
    image = png_image(charts.position_chart(positions))
    assert image.size == WIDE_PIXELS
    assert pixels_of(image, (21, 101, 192)) > 30 and pixels_of(image, (239, 108, 0)) > 30  # value and PnL lines
    naive = positions.with_columns(pl.col("as_of").dt.replace_time_zone(None))  # SQLite hands back naive UTC
    assert png_image(charts.position_chart(naive)).size == WIDE_PIXELS


def test_rebalance_chart_marks_buys_and_sells():
    plans = pl.DataFrame(
        {
            "timestamp": [_utc(7, 15 * i) for i in range(4)],
            "current_ratio": [0.5, 0.62, 0.5, 0.41],
            "target_ratio": [0.5] * 4,
            "action": ["HOLD", "SELL", "HOLD", "BUY"],
            "notional_usdt": [0.0, 12.0, 0.0, 9.0],
        }
    )
    image = png_image(charts.rebalance_chart(plans))
    assert image.size == WIDE_PIXELS
    assert pixels_of(image, (46, 125, 50)) > 10 and pixels_of(image, (198, 40, 40)) > 10
    holds_only = png_image(charts.rebalance_chart(plans.with_columns(pl.lit("HOLD").alias("action"))))
    assert pixels_of(holds_only, (46, 125, 50)) == 0 and pixels_of(holds_only, (198, 40, 40)) == 0


# ------------------------------------------------------------------------------------- plot figures
def test_signal_plot_figures_are_each_days_own_counts_per_strategy():
    summary = StrategyRunSummary(dates=D[:2])
    summary.daily = [
        {"strategy_id": "STG_A", "execution_date": D[0], "status": "SUCCESS", "buy_signals": 3, "sell_signals": 1,
         "hold_signals": 96, "duration_ms": 12.5},
        {"strategy_id": "STG_A", "execution_date": D[1], "status": "SUCCESS", "buy_signals": 0, "sell_signals": 2,
         "hold_signals": 98, "duration_ms": 12.5},
        {"strategy_id": "STG_B", "execution_date": D[0], "status": "SUCCESS", "buy_signals": 5, "sell_signals": 5,
         "hold_signals": 0, "duration_ms": 1500.0},
    ]  # fmt: skip
    assert dashboard.signal_plot_metadata(summary) == {
        "2024-03-04": {
            "buy/STG_A": 3, "sell/STG_A": 1, "hold/STG_A": 96, "seconds/STG_A": 0.0125,
            "buy/STG_B": 5, "sell/STG_B": 5, "hold/STG_B": 0, "seconds/STG_B": 1.5,
        },
        "2024-03-05": {"buy/STG_A": 0, "sell/STG_A": 2, "hold/STG_A": 98, "seconds/STG_A": 0.0125},
    }  # fmt: skip


def test_stats_plot_figures_take_the_30_day_window_and_leave_out_unknown_hit_rates():
    rows = [
        {"strategy_id": s, "as_of_date": D[0], "period_days": p, "signal_count": n, "hit_rate": h}
        for s, p, n, h in [
            ("STG_A", 7, 4, 0.25),
            ("STG_A", 30, 40, 0.55),
            ("STG_B", 30, 12, None),
            ("STG_B", 90, 99, 0.1),
        ]
    ]
    stats = pl.DataFrame(rows).with_columns(pl.col("hit_rate").cast(pl.Float64)).cast({"period_days": pl.Int64})
    assert dashboard.stats_plot_metadata(stats) == {
        "2024-03-04": {"hit_rate_30d/STG_A": 0.55, "signals_30d/STG_A": 40, "signals_30d/STG_B": 12}
    }


def test_basket_returns_average_judged_signals_of_the_window_only():
    as_of = dt.date(2024, 6, 28)
    outcomes = pl.DataFrame(
        {
            "strategy_id": ["A", "A", "A", "A", "A", "A"],
            "signal": ["BUY", "BUY", "SELL", "BUY", "BUY", "SELL"],
            "trade_date": [dt.date(2024, 6, 3)] * 3 + [dt.date(2024, 3, 1), dt.date(2024, 6, 20), dt.date(2024, 6, 3)],
            "exit_date": [dt.date(2024, 6, 10)] * 3 + [dt.date(2024, 3, 8), dt.date(2024, 7, 5), dt.date(2024, 6, 10)],
            "forward_return": [0.02, 0.04, -0.01, 0.5, 0.9, None],
        }
    )
    # Out: traded before the 90-day window, exit after as_of (horizon not elapsed), no close known.
    assert dashboard.basket_returns(outcomes, as_of).to_dicts() == [
        {"strategy_id": "A", "signal": "BUY", "mean_forward_return": pytest.approx(0.03), "signals": 2},
        {"strategy_id": "A", "signal": "SELL", "mean_forward_return": pytest.approx(-0.01), "signals": 1},
    ]


def test_missing_rate_window_takes_this_runs_rates_and_earlier_recorded_ones():
    last = dt.date(2024, 3, 8)
    assert len(dashboard.missing_rate_days(last)) == 60 and dashboard.missing_rate_days(last)[-1] == last
    window = dashboard.missing_rate_days(last, days=3)
    assert window == [dt.date(2024, 3, 6), dt.date(2024, 3, 7), last]
    known = pl.DataFrame({"trade_date": [last, last], "factor": ["pb", "pe"], "missing_rate": [0.5, 0.0]})
    stored = {
        "2024-03-07": {"pb": 0.25, "pe": 1.0},
        "2024-03-08": {"pb": 0.9, "pe": 0.9},  # an earlier run of this day: this run's numbers win
        "2024-03-01": {"pb": 0.1},  # outside the window
    }
    frame = dashboard.missing_rate_window(known, stored, last, days=3)
    assert frame.rows() == [
        (dt.date(2024, 3, 7), "pb", 0.25),
        (dt.date(2024, 3, 7), "pe", 1.0),
        (last, "pb", 0.5),
        (last, "pe", 0.0),
    ]


def test_hit_rate_history_is_the_30_day_rows_of_the_last_90_days(warehouse):
    from qrl_platform.warehouse.schema import strategy_stats

    as_of = dt.date(2024, 6, 28)
    stamp = dt.datetime(2024, 6, 28, 9, tzinfo=dt.UTC)
    rows = [
        {
            "strategy_id": "STG_A",
            "as_of_date": day,
            "period_days": period,
            "total_executions": 1,
            "total_signals": 1,
            "last_execution_at": stamp,
            "signal_count": 1,
            "buy_count": 1,
            "sell_count": 0,
            "avg_confidence": 0.5,
            "evaluated_signals": 1,
            "hit_rate": 1.0,
            "computed_at": stamp,
        }
        for day, period in [
            (as_of, 30),
            (as_of, 7),  # another period
            (as_of - dt.timedelta(days=89), 30),
            (as_of - dt.timedelta(days=90), 30),  # just outside the 90 days
            (as_of + dt.timedelta(days=3), 30),  # after the as-of day
        ]
    ]
    with warehouse.begin() as connection:
        connection.execute(strategy_stats.insert(), rows)
    history = dashboard.hit_rate_history(warehouse, as_of)
    assert sorted(zip(history["as_of_date"], history["period_days"], strict=True)) == [
        (as_of - dt.timedelta(days=89), 30),
        (as_of, 30),
    ]
