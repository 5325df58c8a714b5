"""Factor IC, quantile returns and turnover against alphalens-reloaded on the same frame (float precision)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import polars as pl
import pytest
from alphalens import performance, utils

from qrl_platform.evaluation.factor_ic import DECAY_HORIZONS, factor_evaluation, forward_returns

STOCKS = 60
DAYS = 70


@pytest.fixture(scope="module")
def market():
    rng = np.random.default_rng(20)
    dates = pd.bdate_range("2024-01-01", periods=DAYS)
    assets = [f"{1100 + i}" for i in range(STOCKS)]
    returns = rng.normal(0.0005, 0.02, size=(DAYS, STOCKS))
    prices = pd.DataFrame(50 * np.cumprod(1 + returns, axis=0), index=dates, columns=assets)
    # A factor that partly predicts the next 5 days, plus noise, and a second of pure noise.
    ahead = prices.shift(-5) / prices - 1
    signal = (ahead.fillna(0) + rng.normal(0, 0.05, size=(DAYS, STOCKS))).stack()
    noise = pd.DataFrame(rng.normal(size=(DAYS, STOCKS)), index=dates, columns=assets).stack()
    return dates, prices, {"signal": signal, "noise": noise}


def polars_inputs(dates, prices, factors):
    quotes = pl.from_pandas(prices.rename_axis("trade_date").reset_index()).unpivot(
        index="trade_date", variable_name="stock_id", value_name="close"
    )
    quotes = quotes.with_columns(pl.col("trade_date").cast(pl.Date))
    wide = None
    for name, series in factors.items():
        frame = pl.from_pandas(series.rename(name).rename_axis(["trade_date", "stock_id"]).reset_index()).with_columns(
            pl.col("trade_date").cast(pl.Date)
        )
        wide = frame if wide is None else wide.join(frame, on=["trade_date", "stock_id"])
    open_days = [d.date() for d in dates]
    return quotes, wide, open_days


def alphalens_frame(factor: pd.Series, prices: pd.DataFrame) -> pd.DataFrame:
    return utils.get_clean_factor_and_forward_returns(
        factor, prices, periods=DECAY_HORIZONS, quantiles=5, filter_zscore=None, max_loss=1.0
    )


@pytest.mark.parametrize("name", ["signal", "noise"])
def test_ic_quantile_returns_and_turnover_equal_alphalens(market, name):
    dates, prices, factors = market
    quotes, wide, open_days = polars_inputs(dates, prices, factors)
    returns = forward_returns(quotes, pl.DataFrame(), open_days, open_days, DECAY_HORIZONS)
    ics, quantile_returns, turnover = factor_evaluation(
        wide, returns, ["signal", "noise"], open_days, turnover_days=open_days
    )
    oracle = alphalens_frame(factors[name], prices)
    oracle_dates = sorted({d.date() for d in oracle.index.get_level_values("date")})
    assert len(oracle_dates) == DAYS - max(DECAY_HORIZONS)

    # Spearman IC per date and horizon.
    oracle_ic = performance.factor_information_coefficient(oracle)
    for horizon in DECAY_HORIZONS:
        ours = ics.filter((pl.col("factor_id") == name) & (pl.col("horizon") == horizon)).filter(
            pl.col("trade_date").is_in(oracle_dates)
        )
        assert ours["rank_ic"].to_numpy() == pytest.approx(oracle_ic[f"{horizon}D"].to_numpy(), abs=1e-12)
        assert (ours["n_stocks"] == STOCKS).all()
        # Pearson IC against numpy on the same pairs.
        day = ours.row(3, named=True)
        when = pd.Timestamp(day["trade_date"])
        sample = oracle.xs(when, level="date")
        expected = np.corrcoef(sample["factor"], sample[f"{horizon}D"])[0, 1]
        assert day["pearson_ic"] == pytest.approx(expected, abs=1e-12)
        # The row is filed on the day the return became known: h trading days later.
        assert day["known_on"] == open_days[open_days.index(day["trade_date"]) + horizon]

    # Mean forward return of each quantile per date.
    oracle_q, _ = performance.mean_return_by_quantile(oracle, by_date=True, demeaned=False)
    for horizon in DECAY_HORIZONS:
        ours = (
            quantile_returns.filter((pl.col("factor_id") == name) & (pl.col("horizon") == horizon))
            .filter(pl.col("trade_date").is_in(oracle_dates))
            .sort("trade_date", "quantile")
        )
        expected = oracle_q[f"{horizon}D"].reset_index().sort_values(["date", "factor_quantile"])
        assert ours["quantile"].to_list() == expected["factor_quantile"].astype(int).tolist()
        assert ours["mean_return"].to_numpy() == pytest.approx(expected[f"{horizon}D"].to_numpy(), abs=1e-12)

    # Turnover of the top and bottom quantiles and rank autocorrelation, day over day.
    mine = turnover.filter(pl.col("factor_id") == name).filter(pl.col("trade_date").is_in(oracle_dates[1:]))
    for column, oracle_series in (
        ("top_turnover", performance.quantile_turnover(oracle["factor_quantile"], 5, 1)),
        ("bottom_turnover", performance.quantile_turnover(oracle["factor_quantile"], 1, 1)),
    ):
        expected = oracle_series.loc[pd.Timestamp(oracle_dates[1]) :]
        assert mine[column].to_numpy() == pytest.approx(expected.to_numpy(), abs=1e-12)
    # alphalens ranks only the rows it kept, which here are every stock on each kept day.
    autocorrelation = performance.factor_rank_autocorrelation(oracle, 1).loc[pd.Timestamp(oracle_dates[1]) :]
    assert mine["rank_autocorrelation"].to_numpy() == pytest.approx(autocorrelation.to_numpy(), abs=1e-12)


def test_forward_returns_are_adjusted_as_of_the_day_they_become_known():
    """A 2:1 split with ex_date inside the horizon does not show up as a -50 % return; an event published
    only after E does not change E's row (what the live run saw)."""
    days = [dt.date(2024, 3, d) for d in (4, 5, 6, 7, 8)]
    quotes = pl.DataFrame({"stock_id": ["2330"] * 5, "trade_date": days, "close": [100.0, 101.0, 51.0, 52.0, 53.0]})
    actions = pl.DataFrame(
        {
            "stock_id": ["2330"],
            "ex_date": [days[2]],
            "market": ["TWSE"],
            "kind": ["split"],
            "prior_close": [101.0],
            "reference_price": [50.5],
            "cash_per_share": [None],
            "stock_per_share": [1.0],
            "published_on": [days[1]],
        },
        schema_overrides={"cash_per_share": pl.Float64, "stock_per_share": pl.Float64},
    )
    returns = forward_returns(quotes, actions, days, days[1:], (1,))
    by_day = dict(zip(returns["trade_date"].to_list(), returns["forward_return"].to_list(), strict=True))
    assert by_day[days[1]] == pytest.approx(51.0 / 50.5 - 1)
    assert by_day[days[0]] == pytest.approx(101.0 / 100.0 - 1)
    late = actions.with_columns(pl.lit(days[4]).alias("published_on"))
    unseen = forward_returns(quotes, late, days, [days[2]], (1,))
    assert unseen["forward_return"][0] == pytest.approx(51.0 / 101.0 - 1)


def test_rank_ic_on_days_with_missing_factor_values_and_missing_returns_equals_scipy(market):
    """Suspended stocks (no close) and stocks without a factor value: the IC ranks the pairs only."""
    from scipy import stats

    dates, prices, factors = market
    prices = prices.copy()
    prices.iloc[30:34, 3] = np.nan  # stock 3 suspended for four days: returns into and out of them are unknown
    prices.iloc[50, 7] = np.nan
    quotes, wide, open_days = polars_inputs(dates, prices, factors)
    wide = wide.with_columns(
        pl.when((pl.col("stock_id") == "1105") & (pl.col("trade_date") >= open_days[25]))
        .then(None)
        .otherwise(pl.col("signal"))
        .alias("signal")
    )
    returns = forward_returns(quotes.drop_nulls("close"), pl.DataFrame(), open_days, open_days, DECAY_HORIZONS)
    ics, _, _ = factor_evaluation(wide, returns, ["signal"], open_days)
    checked = 0
    for row in ics.filter(pl.col("trade_date").is_in(open_days[20:50])).iter_rows(named=True):
        day = (
            wide.filter(pl.col("trade_date") == row["trade_date"])
            .join(
                returns.filter((pl.col("trade_date") == row["trade_date"]) & (pl.col("horizon") == row["horizon"])),
                on=["stock_id", "trade_date"],
                how="left",
            )
            .drop_nulls(["signal", "forward_return"])
        )
        assert row["n_stocks"] == day.height
        expected = stats.spearmanr(day["signal"].to_numpy(), day["forward_return"].to_numpy())[0]
        assert row["rank_ic"] == pytest.approx(expected, abs=1e-12)
        checked += day.height < STOCKS
    assert checked > 10  # days where the pairs are fewer than the stocks were among them
