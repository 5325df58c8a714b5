"""Technical indicators against TA-Lib (the oracle), plain-Python KD and plain numpy.

Synthetic bars: several stocks with different lengths (up to 2,600 bars) and start dates, random
suspended days plus a long suspension (null prices, zero volume), a stock shorter than most
warm-ups, and one that starts perfectly flat (RSI 0, zero Bollinger width, flat KD range). TA-Lib
equivalence is judged per stock on its traded-bar series, as the module documents.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
import talib

from qrl_platform.factors import Factor
from qrl_platform.factors.technical import FACTOR_IDS, TECHNICAL_FACTORS, compute
from qrl_platform.factors.technical.indicators import KEYS

# stock_id -> (number of rows, first trade date, share of randomly suspended rows)
STOCKS = {
    "1101": (2600, dt.date(2014, 1, 6), 0.03),
    "2330": (2200, dt.date(2015, 6, 1), 0.01),
    "2454": (2000, dt.date(2016, 3, 1), 0.0),
    "6488": (700, dt.date(2022, 9, 1), 0.02),
    "8888": (260, dt.date(2024, 1, 2), 0.0),
    "9999": (30, dt.date(2025, 5, 5), 0.0),
    "1234": (400, dt.date(2023, 2, 1), 0.0),  # starts flat
}


def _business_days(start: dt.date, n: int) -> list[dt.date]:
    days, day = [], start
    while len(days) < n:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def _synthetic_bars(seed: int = 20240607) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for sid, (n, start, suspended) in STOCKS.items():
        close = rng.uniform(8, 900) * np.exp(np.cumsum(rng.normal(0.0002, 0.022, n)))
        close = np.round(close, 2)
        open_ = np.round(close * np.exp(rng.normal(0, 0.01, n)), 2)
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.012, n)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.012, n)))
        volume = rng.integers(1, 40_000, n).astype(np.int64) * 1000
        if sid == "1234":
            # 20 identical bars, then 6 traded bars with no volume at all.
            open_[:20] = high[:20] = low[:20] = close[:20] = 25.0
            volume[20:26] = 0
        off = rng.random(n) < suspended
        if sid == "1101":
            off[1200:1260] = True  # a three-month suspension
        for a in (open_, high, low, close):
            a[off] = np.nan
        volume[off] = 0
        frames.append(
            pl.DataFrame(
                {
                    "stock_id": sid,
                    "trade_date": _business_days(start, n),
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                    "volume": volume,
                    "turnover": volume * 10,  # an extra column the indicators ignore
                },
                nan_to_null=True,
            )
        )
    bars = pl.concat(frames)
    assert bars.height >= 8000 and (bars.group_by("stock_id").len()["len"] >= 2000).sum() >= 3
    # Shuffled: compute() must sort.
    return bars.sample(fraction=1.0, shuffle=True, seed=seed)


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    return _synthetic_bars()


@pytest.fixture(scope="module")
def factors(bars) -> pl.DataFrame:
    # Small batches so that several batches (and threads) and stock boundaries inside them are used.
    return compute(bars, batch_rows=1500, threads=2)


def _per_stock(bars: pl.DataFrame, factors: pl.DataFrame):
    """(stock_id, traded input rows, their factor rows) per stock, in date order."""
    sorted_bars = bars.sort(KEYS)
    for sid in STOCKS:
        b = sorted_bars.filter(pl.col("stock_id") == sid)
        f = factors.filter(pl.col("stock_id") == sid)
        traded = b["close"].is_not_null()
        yield sid, b.filter(traded), f.filter(traded)


def _talib_reference(b: pl.DataFrame) -> dict[str, np.ndarray]:
    h, lo, c = (b[x].to_numpy() for x in ("high", "low", "close"))
    v = b["volume"].to_numpy().astype(np.float64)
    ref = {f"sma_{n}": talib.SMA(c, n) for n in (5, 10, 20, 60, 120, 240)}
    ref["ema_12"], ref["ema_26"] = talib.EMA(c, 12), talib.EMA(c, 26)
    ref["rsi_14"] = talib.RSI(c, 14)
    ref["macd"], ref["macd_signal"], ref["macd_hist"] = talib.MACD(c, 12, 26, 9)
    ref["bb_upper"], ref["bb_middle"], ref["bb_lower"] = talib.BBANDS(c, 20, 2.0, 2.0, talib.MA_Type.SMA)
    ref["atr_14"] = talib.ATR(h, lo, c, 14)
    ref["obv"] = talib.OBV(c, v)
    for n in (1, 5, 20, 60):
        ref[f"ret_{n}"] = talib.ROCR(c, n) - 1.0
    ref["dist_52w_high"] = c / talib.MAX(h, 240) - 1.0
    ref["dist_52w_low"] = c / talib.MIN(lo, 240) - 1.0
    return ref


# Near-zero series (MACD, returns, distances) need an absolute floor for the comparison.
_ATOL = {"macd": 1e-9, "macd_signal": 1e-9, "macd_hist": 1e-9} | {
    name: 1e-12 for name in ("ret_1", "ret_5", "ret_20", "ret_60", "dist_52w_high", "dist_52w_low")
}


def _assert_same(ours: pl.Series, ref: np.ndarray, *, name: str, rtol: float = 1e-6, atol: float = 0.0) -> None:
    """Null exactly where the reference is NaN; equal within tolerance elsewhere."""
    values = ours.to_numpy()  # nulls -> NaN
    assert ours.null_count() == int(np.isnan(values).sum()), f"{name}: NaN in output (should be null)"
    np.testing.assert_array_equal(np.isnan(values), np.isnan(ref), err_msg=f"{name}: null pattern differs")
    ok = ~np.isnan(ref)
    np.testing.assert_allclose(values[ok], ref[ok], rtol=rtol, atol=atol, err_msg=name)


def test_talib_equivalence(bars, factors):
    checked = 0
    for sid, b, f in _per_stock(bars, factors):
        for name, ref in _talib_reference(b).items():
            _assert_same(f[name], ref, name=f"{sid} {name}", atol=_ATOL.get(name, 0.0))
            checked += int((~np.isnan(ref)).sum())
    assert checked > 100_000


def test_flat_start_matches_talib_conventions(bars, factors):
    """A perfectly flat start: TA-Lib's RSI is 0 (not NaN), the Bollinger width 0, KD's RSV 50."""
    f = factors.filter(pl.col("stock_id") == "1234")
    assert f["rsi_14"][14] == 0.0
    assert f["bb_upper"][19] == f["bb_middle"][19] == f["bb_lower"][19] == 25.0
    assert f["kd_k"][8] == pytest.approx(50.0) and f["kd_d"][8] == pytest.approx(50.0)


def _kd_loop(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Taiwan KD written as the plain recurrence, one bar at a time."""
    n = len(close)
    k_out, d_out = np.full(n, np.nan), np.full(n, np.nan)
    k = d = 50.0
    for t in range(8, n):
        h9, l9 = max(high[t - 8 : t + 1]), min(low[t - 8 : t + 1])
        rsv = 50.0 if h9 == l9 else (close[t] - l9) / (h9 - l9) * 100.0
        k = 2.0 / 3.0 * k + rsv / 3.0
        d = 2.0 / 3.0 * d + k / 3.0
        k_out[t], d_out[t] = k, d
    return k_out, d_out, 3.0 * k_out - 2.0 * d_out


def test_kd_matches_plain_recurrence(bars, factors):
    for sid, b, f in _per_stock(bars, factors):
        k, d, j = _kd_loop(*(b[x].to_numpy() for x in ("high", "low", "close")))
        _assert_same(f["kd_k"], k, name=f"{sid} kd_k", rtol=1e-9)
        _assert_same(f["kd_d"], d, name=f"{sid} kd_d", rtol=1e-9)
        _assert_same(f["kd_j"], j, name=f"{sid} kd_j", rtol=1e-9, atol=1e-9)


def test_volume_ratio_and_returns_match_numpy(bars, factors):
    for sid, b, f in _per_stock(bars, factors):
        c = b["close"].to_numpy()
        v = b["volume"].to_numpy().astype(np.float64)
        ratio = np.full(len(v), np.nan)
        for t in range(5, len(v)):
            prev = v[t - 5 : t].mean()  # the 5 previous traded bars, today excluded
            ratio[t] = v[t] / prev if prev > 0 else np.nan
        _assert_same(f["vol_ratio_5"], ratio, name=f"{sid} vol_ratio_5", rtol=1e-12)
        for n in (1, 5, 20, 60):
            ret = np.full(len(c), np.nan)
            ret[n:] = c[n:] / c[:-n] - 1.0
            _assert_same(f[f"ret_{n}"], ret, name=f"{sid} ret_{n}", rtol=1e-12, atol=1e-15)
    # The zero-volume stretch of 1234 gives null (not inf) ratios.
    flat = factors.filter(pl.col("stock_id") == "1234")["vol_ratio_5"]
    assert flat[25] is None and flat[26] is None


def test_suspension_bridged_by_traded_bars(bars, factors):
    """After the long suspension, indicators continue from the last traded bars (no new warm-up)."""
    f = factors.filter(pl.col("stock_id") == "1101")
    assert f[1200:1260].drop(KEYS).null_count().sum_horizontal().item() == 60 * len(FACTOR_IDS)
    after = f.row(1260, named=True)
    assert all(after[name] is not None for name in FACTOR_IDS)


def test_output_rows_columns_and_nulls(bars, factors):
    expected_keys = bars.select(KEYS).sort(KEYS)
    assert factors.select(KEYS).equals(expected_keys)
    assert factors.columns == [*KEYS, *FACTOR_IDS]
    assert all(factors.schema[name] == pl.Float64 for name in FACTOR_IDS)
    # Suspended rows: every factor null.
    suspended = bars.sort(KEYS)["close"].is_null()
    assert suspended.sum() > 100
    nulls_on_suspended = factors.filter(suspended).drop(KEYS).null_count().sum_horizontal().item()
    assert nulls_on_suspended == suspended.sum() * len(FACTOR_IDS)
    # No NaN or infinity anywhere.
    numbers = factors.select(FACTOR_IDS)
    assert not numbers.select(pl.any_horizontal(pl.all().is_nan() | pl.all().is_infinite()).any()).item()


def test_batching_and_lazy_input_do_not_change_results(bars, factors):
    one_pass = compute(bars.lazy(), batch_rows=10**9, threads=1)
    assert one_pass.select(KEYS).equals(factors.select(KEYS))
    # Not bit-identical: the batch-wide EMA state entering each stock differs, and the seed correction
    # removes it only up to rounding; TA-Lib's running window sums (Bollinger's sum of squares) carry
    # a rounding residue from the stocks before in the same batch (measured up to ~2e-12 relative).
    for name in FACTOR_IDS:
        _assert_same(one_pass[name], factors[name].to_numpy(), name=name, rtol=1e-11, atol=1e-12)


def test_a_nan_price_is_a_suspended_day_like_a_null_one(bars, factors):
    """Prices may arrive as NaN instead of null (a float column read without null handling): the same
    rows are untraded, with null factors, and every other factor is the same to the bit."""
    as_nan = bars.with_columns(pl.col(c).fill_null(float("nan")) for c in ("high", "low", "close"))
    assert as_nan["close"].null_count() == 0 and as_nan["close"].is_nan().sum() == bars["close"].null_count() > 0
    out = compute(as_nan, batch_rows=1500, threads=2)
    assert out.equals(factors)  # nulls where the null-priced rows have them, no NaN, the same values
    suspended = out.join(bars.filter(pl.col("close").is_null()).select(KEYS), on=list(KEYS))
    assert suspended.height and suspended.drop(KEYS).null_count().sum_horizontal().sum() == suspended.height * len(
        FACTOR_IDS
    )


def test_stock_without_any_traded_bar(bars):
    """A stock suspended throughout, alone in its batch and next to others: all factors null."""
    ghost = bars.filter(pl.col("stock_id") == "9999").with_columns(
        pl.lit("0001").alias("stock_id"), *(pl.lit(None, pl.Float64).alias(c) for c in ("open", "high", "low", "close"))
    )
    for frame in (ghost, pl.concat([ghost, bars])):
        out = compute(frame, batch_rows=20).filter(pl.col("stock_id") == "0001")
        assert out.height == ghost.height
        assert out.drop(KEYS).null_count().sum_horizontal().item() == ghost.height * len(FACTOR_IDS)


def test_duplicate_rows_rejected(bars):
    with pytest.raises(ValueError, match="duplicate"):
        compute(pl.concat([bars, bars.head(3)]))


def test_empty_input():
    empty = _synthetic_bars().head(0)
    out = compute(empty)
    assert out.height == 0 and out.columns == [*KEYS, *FACTOR_IDS]


def test_registry_matches_output(bars, factors):
    ids = [f.factor_id for f in TECHNICAL_FACTORS]
    assert len(ids) == len(set(ids))
    assert tuple(ids) == FACTOR_IDS
    for factor in TECHNICAL_FACTORS:
        assert isinstance(factor, Factor) and factor.module == "M07"
        assert factor.description and factor.unit and factor.source_columns
        assert set(factor.source_columns) <= {"open", "high", "low", "close", "volume"}
        assert 0.0 < factor.max_missing_rate < 1.0


def test_registry_lookback_is_first_valid_bar(bars, factors):
    """`lookback` = position of the first value on a stock without suspensions."""
    f = factors.filter(pl.col("stock_id") == "2454")
    for factor in TECHNICAL_FACTORS:
        column = f[factor.factor_id]
        assert column.is_not_null().arg_max() == factor.lookback, factor.factor_id
        assert column[factor.lookback :].null_count() == 0, factor.factor_id


def test_values_within_declared_bounds(bars, factors):
    for factor in TECHNICAL_FACTORS:
        column = factors[factor.factor_id].drop_nulls()
        if factor.min_value is not None:
            assert column.min() >= factor.min_value, factor.factor_id
        if factor.max_value is not None:
            assert column.max() <= factor.max_value, factor.factor_id


def test_rows_without_keys_are_rejected_by_name(bars):
    with pytest.raises(ValueError, match="1 row\\(s\\) without a trade_date"):
        compute(
            bars.with_columns(
                pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col("trade_date")).alias("trade_date")
            )
        )


@pytest.mark.parametrize("rows_from", [dt.date(2024, 6, 3), dt.date(2025, 5, 7), dt.date(2030, 1, 1)])
def test_rows_from_returns_exactly_the_later_rows(bars, factors, rows_from):
    # The history before `rows_from` is read for the warm-up only: the rows returned are the same
    # rows, with the same bits, as those of the whole computation.
    later = compute(bars, rows_from=rows_from, batch_rows=1500, threads=2)
    expected = factors.filter(pl.col("trade_date") >= rows_from)
    assert later.height == expected.height
    assert later.rechunk().equals(expected.rechunk(), null_equal=True)


def test_rsi_of_a_price_resting_at_its_floor_matches_talib():
    """A stock that stops moving (a penny stock resting at 1.00) keeps TA-Lib's RSI: its average gain
    and loss decay together and their ratio stays; only a series that never moved has RSI 0. Its
    neighbours in the batch trade at hundreds, so their recurrence state is far larger than its own."""
    rng = np.random.default_rng(5014)
    n = 900
    moving = np.round(np.concatenate([1.0 + np.abs(np.cumsum(rng.normal(0, 0.02, 80))), np.ones(n - 80)]), 2)
    series = {
        "1000": np.round(800 * np.exp(np.cumsum(rng.normal(0, 0.02, n))), 1),
        "5014": moving,
        "5015": np.ones(n),  # never moved
        "6000": np.round(600 * np.exp(np.cumsum(rng.normal(0, 0.02, n))), 1),
    }
    days = _business_days(dt.date(2021, 1, 4), n)
    bars = pl.concat(
        pl.DataFrame({"stock_id": sid, "trade_date": days, "high": c, "low": c, "close": c, "volume": np.full(n, 1000)})
        for sid, c in series.items()
    )
    factors = compute(bars, batch_rows=10_000, threads=1)
    for sid, c in series.items():
        ours = factors.filter(pl.col("stock_id") == sid)["rsi_14"]
        _assert_same(ours, talib.RSI(c, 14), name=f"{sid} rsi_14", rtol=1e-9)
    assert factors.filter(pl.col("stock_id") == "5015")["rsi_14"].drop_nulls().unique().to_list() == [0.0]
