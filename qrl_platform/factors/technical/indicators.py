"""Technical indicators for every stock at once: TA-Lib over batches of whole stocks (no Dagster here).

`compute(bars)` takes a long frame of daily bars for many stocks and returns one Float64 column per
factor of `TECHNICAL_FACTORS` (ids in `FACTOR_IDS`), row-aligned with the input sorted by
(stock_id, trade_date). Definitions are TA-Lib's, seeding and warm-up included; the tests use TA-Lib
as the oracle.

How it is computed
------------------
A per-stock loop pays a Python call per stock and indicator (1,800 stocks x ~20 calls); here TA-Lib
runs over a whole batch of stocks at once, and the batch's stock boundaries are handled by numpy.
`benchmarks/indicators.py` compares it with such a loop and with the bare TA-Lib calls alone:

* **Batches of whole stocks.** The sorted rows are cut at stock boundaries into batches of about
  `BATCH_ROWS` rows, computed on a few threads (TA-Lib and numpy release the GIL). Each batch holds only the *traded* bars, one stock after another, behind a
  short pad (`_PAD` copies of the first bar, an extra stock whose results are discarded) that absorbs
  TA-Lib's own warm-up at the start of the array.
* **Window indicators (SMA, Bollinger, MAX/MIN, returns) over the concatenation.** A window that
  lies inside one stock is that stock's window, i.e. every row whose position in its stock `idx`
  is at least the lookback; rows with a smaller `idx` are exactly TA-Lib's warm-up rows and are set
  to null.
* **Recursive indicators (EMA, Wilder RSI/ATR, MACD, KD) as one batch-wide TA-Lib EMA plus a
  correction.** Each is the linear recurrence  y[t] = r·y[t-1] + a·x[t]  (r = 1-a) started from a
  seed s at bar t0 of each stock (TA-Lib: the mean of the first N inputs; KD: 50). TA-Lib's EMA `g`
  over the concatenation obeys the same recurrence after t0, only from the wrong state (whatever
  leaked in from the previous stock). The difference of two solutions decays geometrically, so
  inside each stock
      y[t] = g[t] + r^(t-t0) · (s - g[t0])        for t >= t0,
  which is exact algebra (~1e-15 relative in floating point). The correction is added only while
  r^(t-t0) >= 1e-18 (below a double's resolution of the corrected value), on each stock's rows from
  t0; the rows before t0 keep g (warm-up: nulled at the end, finite for the EMAs that read them).
  Wilder's 1/14 and KD's 1/3 are TA-Lib EMAs of period 27 and 5 (alpha = 2/(N+1)).
* **OBV** is TA-Lib's running sum over the batch minus its value entering each stock.
* **Output in one gather.** Each factor's rows are gathered once into one block of the batch (an
  unbuffered `np.take`, which also puts the untraded rows back as nulls); each row of the block
  becomes an arrow column as it is (its validity bitmap from the NaNs), one chunk per batch, and
  polars takes the chunks over.
* **Suspended days.** A stock's series is its *traded* bars only: rows with a missing close, high
  or low (suspended / no trade) are left out before computing and get null factors when the result
  is put back. A suspension therefore neither blanks rolling windows for the next N days nor
  restarts the warm-up; e.g. `ret_1` after a suspension is the return since the last traded close.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
import pyarrow as pa
import talib

KEYS = ("stock_id", "trade_date")

SMA_WINDOWS = (5, 10, 20, 60, 120, 240)
RETURN_HORIZONS = (1, 5, 20, 60)
# 52 trading weeks ~ 240 Taiwan trading days (about 245-250 per calendar year); the same 240-bar
# window as sma_240, so one year of history makes both valid.
WINDOW_52W = 240

FACTOR_IDS: tuple[str, ...] = (
    *(f"sma_{n}" for n in SMA_WINDOWS),
    "ema_12",
    "ema_26",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "atr_14",
    "obv",
    "kd_k",
    "kd_d",
    "kd_j",
    "vol_ratio_5",
    *(f"ret_{n}" for n in RETURN_HORIZONS),
    "dist_52w_high",
    "dist_52w_low",
)

# Rows per batch of whole stocks: enough batches to keep every thread busy, each large enough to
# amortise the ~30 TA-Lib calls it makes (5k-80k rows measured within 10% of each other).
BATCH_ROWS = 40_000

# A stock whose RSI average move (avg gain + avg loss) falls below this share of its price has not
# moved for months (a penny stock resting at its floor): its RSI is taken from TA-Lib over its own
# series (see `_rsi`).
_RESTING_MOVE = 1e-6

# Smoothing factors, as TA-Lib EMA periods (alpha = 2/(period+1)), and the bar each recurrence is seeded at.
_EMA12, _EMA26, _SIGNAL9, _WILDER, _KD = 12, 26, 9, 27, 5  # Wilder 1/14 = 2/28; KD 1/3 = 2/6
_T0_KD, _T0_EMA12, _T0_WILDER, _T0_EMA26, _T0_SIGNAL = 7, 11, 14, 25, 33

# Rows of the leading pad stock: more than any TA-Lib lookback before a recurrence's first value
# (the MACD signal's 33), so every real stock's rows are past TA-Lib's own warm-up.
_PAD = 64


# A seed's correction r^(t-t0)·(s - g[t0]) is applied while r^(t-t0) >= 1e-18: below that it is far
# under a double's resolution of the value it corrects (both have the scale of the series).
_NEGLIGIBLE = 1e-18


@functools.cache
def _decay(period: int) -> np.ndarray:
    """r^0, r^1, ... while above `_NEGLIGIBLE`, for the TA-Lib EMA of `period` (alpha = 2/(period+1))."""
    r = 1.0 - 2.0 / (period + 1)
    return r ** np.arange(math.ceil(math.log(_NEGLIGIBLE) / math.log(r)), dtype=np.float64)


class _Batch:
    """One batch of traded bars: stocks one after another behind the pad stock."""

    def __init__(self, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, lengths: np.ndarray):
        self.n = _PAD + len(close)
        self.lengths = np.concatenate(([_PAD], lengths))
        self.starts = np.concatenate(([0], np.cumsum(self.lengths)[:-1]))
        self.ends = self.starts + self.lengths
        self.h, self.low, self.c, self.v = (self._padded(x) for x in (high, low, close, volume))
        self._rows: dict[tuple[int, int], np.ndarray] = {}

    def _padded(self, values: np.ndarray) -> np.ndarray:
        out = np.empty(self.n)
        out[_PAD:] = values
        out[:_PAD] = values[0] if len(values) else 1.0
        return out

    def rows(self, first: int, count: int) -> np.ndarray:
        """(stocks, count) row numbers of bars first..first+count-1 of each stock; a bar past the
        stock's end points at row 0 (the pad's first row, NaN in every recurrence and never read)."""
        key = (first, count)
        rows = self._rows.get(key)
        if rows is None:
            rows = self.starts[:, None] + np.arange(first, first + count)
            rows[rows >= self.ends[:, None]] = 0
            self._rows[key] = rows
        return rows

    def at_bar(self, x: np.ndarray, bar: int) -> np.ndarray:
        """x at bar `bar` of each stock (clipped: garbage for stocks shorter than that, all warm-up)."""
        return x[np.minimum(self.starts + bar, self.n - 1)]

    def bar_mean(self, x: np.ndarray, first: int, last: int) -> np.ndarray:
        """Mean of x over bars first..last of each stock, summed in order as TA-Lib's SMA seeds are."""
        rows = np.minimum(self.starts[:, None] + np.arange(first, last + 1), self.n - 1)
        return x[rows].sum(axis=1) / (last - first + 1)

    def seeded(self, g: np.ndarray, period: int, seed: np.ndarray | float, t0: int) -> np.ndarray:
        """The per-stock recurrence seeded with `seed` at bar t0, from the batch-wide EMA `g`, in
        place (before t0 it stays g: warm-up, finite for the EMAs that read it)."""
        decay = _decay(period)
        rows = self.rows(t0, len(decay))
        g[rows] += (seed - self.at_bar(g, t0))[:, None] * decay  # rows are unique but for row 0 (NaN)
        return g

    def null_warm_up(self, x: np.ndarray, lookback: int) -> np.ndarray:
        """x with NaN (null later) on each stock's bars before bar `lookback`."""
        if lookback > 0:
            x[self.rows(0, lookback)] = np.nan
        return x


def _rsi(b: _Batch, avg_gain: np.ndarray, avg_loss: np.ndarray) -> np.ndarray:
    """100 · avg gain / (avg gain + avg loss), TA-Lib's RSI, from the batch's Wilder averages.

    The batch averages are exact to rounding at the scale of the stock's neighbours' moves, and the
    seed correction stops after ~560 bars; both are negligible while the stock moves. A stock that
    stops moving has averages that decay geometrically (TA-Lib keeps their ratio, and gives 0 only
    to a series that never moved): once they are below `_RESTING_MOVE` of its price, its RSI is
    TA-Lib's own over its series. Such stocks are rare, so this is a few extra TA-Lib calls."""
    total = avg_gain + avg_loss
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = np.multiply(avg_gain, 100.0)
        rsi /= total
        resting = np.flatnonzero(total[_PAD:] < _RESTING_MOVE * b.c[_PAD:]) + _PAD
    for stock in np.unique(np.searchsorted(b.ends, resting, side="right")):
        first, end = b.starts[stock], b.ends[stock]
        rsi[first:end] = talib.RSI(b.c[first:end], 14)
    return rsi


def _factors(b: _Batch) -> dict[str, np.ndarray]:
    """Every factor over the batch (pad rows included), NaN where null."""
    c, h, low, v = b.c, b.h, b.low, b.v
    out: dict[str, np.ndarray] = {}
    for n in SMA_WINDOWS:
        if n != 20:
            out[f"sma_{n}"] = b.null_warm_up(talib.SMA(c, n), n - 1)
    upper, middle, lower = talib.BBANDS(c, 20, 2.0, 2.0, 0)
    out["sma_20"] = b.null_warm_up(middle, 19)

    # EMA N seeded at bar N-1 with the mean of the first N closes; TA-Lib MACD seeds its fast EMA at
    # the slow one's first bar (25) with the mean of the 12 closes ending there.
    g12, g26 = talib.EMA(c, _EMA12), talib.EMA(c, _EMA26)
    ema12 = b.seeded(g12.copy(), _EMA12, b.bar_mean(c, 0, 11), _T0_EMA12)
    macd_fast = b.seeded(g12, _EMA12, b.bar_mean(c, 14, 25), _T0_EMA26)
    ema26 = b.seeded(g26, _EMA26, b.bar_mean(c, 0, 25), _T0_EMA26)
    line = macd_fast - ema26  # valid from bar 25
    # The signal: EMA 9 of the line seeded with the mean of its first 9 values (bars 25..33).
    signal = b.seeded(talib.EMA(line, _SIGNAL9), _SIGNAL9, b.bar_mean(line, 25, 33), _T0_SIGNAL)
    out["ema_12"] = b.null_warm_up(ema12, _T0_EMA12)
    out["ema_26"] = b.null_warm_up(ema26, _T0_EMA26)
    out["macd_hist"] = b.null_warm_up(line - signal, _T0_SIGNAL)
    out["macd"] = b.null_warm_up(line, _T0_SIGNAL)  # TA-Lib reports the line from bar 33, with its signal
    out["macd_signal"] = b.null_warm_up(signal, _T0_SIGNAL)

    # Wilder smoothing (alpha 1/14) seeded at bar 14 with the plain mean of the first 14 changes / true
    # ranges (bars 1..14), as TA-Lib RSI and ATR do. Bar 0 of each stock reads the previous stock's
    # close, but no seed or value uses it.
    prev_close = np.empty_like(c)
    prev_close[0], prev_close[1:] = c[0], c[:-1]
    change = c - prev_close
    gain = np.maximum(change, 0.0)
    loss = np.maximum(np.negative(change, out=change), 0.0, out=change)  # `change` is not read again
    # TA-Lib TRANGE, max(h-l, |h-prev_c|, |l-prev_c|), is max(h, prev_c) - min(l, prev_c) as high >= low
    # (which the market schema enforces).
    true_range = np.maximum(h, prev_close)
    true_range -= np.minimum(low, prev_close, out=prev_close)  # `prev_close` is not read again
    avg_gain = b.seeded(talib.EMA(gain, _WILDER), _WILDER, b.bar_mean(gain, 1, 14), _T0_WILDER)
    avg_loss = b.seeded(talib.EMA(loss, _WILDER), _WILDER, b.bar_mean(loss, 1, 14), _T0_WILDER)
    atr = b.seeded(talib.EMA(true_range, _WILDER), _WILDER, b.bar_mean(true_range, 1, 14), _T0_WILDER)
    rsi = _rsi(b, avg_gain, avg_loss)
    # RSI, K, D and ATR are clipped to their natural ranges only to remove rounding-level excursions of
    # the seed correction (an exact 0 can come out as -1e-17), which the range checks would flag. K/D
    # could only leave [0, 100] with a close outside [low, high], which dist_52w_high / dist_52w_low
    # (not clipped) still expose once their window is full.
    out["rsi_14"] = b.null_warm_up(np.clip(rsi, 0.0, 100.0, out=rsi), _T0_WILDER)
    upper_band, lower_band = upper, lower
    out["bb_upper"], out["bb_middle"], out["bb_lower"] = (
        b.null_warm_up(upper_band, 19),
        out["sma_20"],
        b.null_warm_up(lower_band, 19),
    )
    out["atr_14"] = b.null_warm_up(np.maximum(atr, 0.0, out=atr), _T0_WILDER)

    # OBV: TA-Lib starts at +volume[0], then adds/subtracts the volume on up/down closes. The batch-wide
    # running sum (whole shares in float64: exact) minus its value entering each stock.
    obv = talib.OBV(c, v)
    obv -= np.repeat(b.at_bar(obv, 0) - b.at_bar(v, 0), b.lengths)
    out["obv"] = obv

    # Taiwan KD: raw stochastic over 9 bars; a flat 9-bar range (H9 == L9) puts the close nowhere inside
    # it, so RSV is the neutral 50 rather than 0/0. K = 2/3 K' + 1/3 RSV and D = 2/3 D' + 1/3 K, both 50
    # on the bar before the first RSV (bar 8), so seeded at bar 7; reported from bar 8.
    hh9, ll9 = talib.MAX(h, 9), talib.MIN(low, 9)
    span = hh9 - ll9
    rsv = np.subtract(c, ll9, out=ll9)  # `ll9` is not read again
    with np.errstate(divide="ignore", invalid="ignore"):
        rsv /= span
    rsv *= 100.0
    rsv[span == 0.0] = 50.0
    k = b.seeded(talib.EMA(rsv, _KD), _KD, 50.0, _T0_KD)
    d = b.seeded(talib.EMA(k, _KD), _KD, 50.0, _T0_KD)
    kd_k = b.null_warm_up(np.clip(k, 0.0, 100.0, out=k), _T0_KD + 1)
    kd_d = b.null_warm_up(np.clip(d, 0.0, 100.0, out=d), _T0_KD + 1)
    kd_j = 3.0 * kd_k
    kd_j -= 2.0 * kd_d
    out["kd_k"], out["kd_d"], out["kd_j"] = kd_k, kd_d, kd_j

    # Volume against the mean of the 5 previous traded bars (today excluded); no shares traded in
    # those 5 bars gives null rather than infinity.
    mean5 = talib.SMA(v, 5)
    ratio = np.full_like(v, np.nan)
    np.divide(v[1:], mean5[:-1], out=ratio[1:], where=mean5[:-1] > 0)
    out["vol_ratio_5"] = b.null_warm_up(ratio, 5)

    for n in RETURN_HORIZONS:
        ret = np.empty_like(c)
        ret[:n] = np.nan  # the batch's first rows: the pad's, discarded
        np.divide(c[n:], c[:-n], out=ret[n:])
        ret[n:] -= 1.0
        out[f"ret_{n}"] = b.null_warm_up(ret, n)
    high_52w = c / talib.MAX(h, WINDOW_52W)
    high_52w -= 1.0
    low_52w = c / talib.MIN(low, WINDOW_52W)
    low_52w -= 1.0
    out["dist_52w_high"] = b.null_warm_up(high_52w, WINDOW_52W - 1)
    out["dist_52w_low"] = b.null_warm_up(low_52w, WINDOW_52W - 1)
    return out


def _columns(factors: dict[str, np.ndarray], source_rows: np.ndarray) -> list[pa.Array]:
    """One Float64 arrow column per id of `FACTOR_IDS`, null where NaN: row i of a column is row
    `source_rows[i]` of the factor's batch array (row 0, the pad's first row, is NaN in each)."""
    stacked = np.empty((len(FACTOR_IDS), len(source_rows)))
    for i, name in enumerate(FACTOR_IDS):
        values = factors[name]
        values[0] = np.nan  # a pad row, discarded: it stands for every row without a traded bar
        np.take(values, source_rows, out=stacked[i], mode="clip")  # "clip": no buffering (rows are in range)
    validity = np.packbits(np.isnan(stacked), axis=1, bitorder="little")
    np.invert(validity, out=validity)
    # Each column keeps its row of `stacked` (not copied); arrow holds the buffers alive.
    return [
        pa.Array.from_buffers(pa.float64(), len(source_rows), [pa.py_buffer(validity[i]), pa.py_buffer(stacked[i])])
        for i in range(len(FACTOR_IDS))
    ]


def _compute_batch(
    columns: dict[str, np.ndarray], traded: np.ndarray, stock_lengths: np.ndarray, kept: np.ndarray | None = None
) -> list[pa.Array]:
    """Factors for a batch of whole stocks (sorted rows), one arrow column per factor, row-aligned
    with the batch's rows (those marked in `kept` only, when given). `columns` holds the traded rows
    only; `traded` marks them among the batch's rows."""
    high, low, close, volume = (columns[name] for name in ("high", "low", "close", "volume"))
    if len(close) == len(traded):
        lengths = stock_lengths
        source_rows = np.arange(_PAD, _PAD + len(traded))
    else:
        lengths = np.add.reduceat(traded, np.concatenate(([0], np.cumsum(stock_lengths)[:-1])))
        source_rows = np.cumsum(traded)
        source_rows += _PAD - 1
        source_rows[~traded] = 0  # untraded rows read the pad's NaN row: null factors
    if kept is not None:
        source_rows = source_rows[kept]
    return _columns(_factors(_Batch(high, low, close, volume, lengths)), source_rows)


def _sorted_stock_lengths(frame: pl.DataFrame) -> np.ndarray | None:
    """Rows per stock if `frame` is sorted by (stock_id, trade_date) with no duplicate, else None."""
    runs = frame["stock_id"].rle()
    ids = runs.struct.field("value")
    if len(ids) > 1 and not bool((ids.slice(1) > ids.slice(0, len(ids) - 1)).all()):
        return None
    lengths = runs.struct.field("len").to_numpy().astype(np.int64)
    days = frame["trade_date"]
    step = np.diff(days.to_physical().to_numpy())
    step[np.cumsum(lengths)[:-1] - 1] = 1  # across a stock boundary any date may follow
    return lengths if bool((step > 0).all()) else None


def _batches(lengths: np.ndarray, rows: int) -> list[tuple[int, int, int, int]]:
    """(first stock, end stock, first row, end row) of batches of about `rows` rows of whole stocks."""
    ends = np.cumsum(lengths)
    bounds, first = [], 0
    while first < len(lengths):
        start_row = int(ends[first - 1]) if first else 0
        end = max(first + 1, int(np.searchsorted(ends, start_row + rows, side="right")))
        bounds.append((first, end, start_row, int(ends[end - 1])))
        first = end
    return bounds


def compute(
    bars: pl.DataFrame | pl.LazyFrame,
    *,
    rows_from: dt.date | None = None,
    batch_rows: int = BATCH_ROWS,
    threads: int | None = None,
) -> pl.DataFrame:
    """Every technical factor for every (stock_id, trade_date) row of `bars`.

    `bars` needs `stock_id` (Utf8), `trade_date` (Date), `high`, `low`, `close` (Float64, null on a
    suspended day) and `volume` (Int64 shares); other columns are ignored. Returns the same rows
    sorted by (stock_id, trade_date): the key columns, then one Float64 column per id in
    `FACTOR_IDS`, null during each indicator's warm-up and on rows without a traded bar. The result
    has one chunk per batch of stocks (`rechunk()` it if one contiguous chunk is needed).
    `rows_from`: return only the rows from that trade_date on (the earlier rows are history read for
    the warm-up; their factors are computed as needed but not returned).
    `threads` batches run at once (default: polars' thread pool size).
    Raises ValueError on duplicate (stock_id, trade_date) rows.
    """
    lf = bars.lazy() if isinstance(bars, pl.DataFrame) else bars
    frame = lf.select(
        pl.col("stock_id").cast(pl.Utf8),
        pl.col("trade_date").cast(pl.Date),
        # NaN is treated as missing, like null: a NaN price is never a traded bar. Nulls become NaN here,
        # in one parallel pass, so that each batch's columns are numpy views rather than copies.
        *(pl.col(c).cast(pl.Float64).fill_null(np.nan) for c in ("high", "low", "close")),
        pl.col("volume").cast(pl.Float64).fill_null(0.0),
    ).collect(engine="in-memory")
    if frame.height == 0:
        return frame.select(*KEYS, *(pl.lit(None, pl.Float64).alias(f) for f in FACTOR_IDS))
    for key in KEYS:
        if frame[key].null_count():
            raise ValueError(f"bars has {frame[key].null_count()} row(s) without a {key}")
    # Upstream frames normally arrive sorted; checking is much cheaper than sorting again.
    lengths = _sorted_stock_lengths(frame)
    if lengths is None:
        frame = frame.sort(KEYS)
        lengths = _sorted_stock_lengths(frame)
        if lengths is None:
            raise ValueError("bars has duplicate (stock_id, trade_date) rows")

    def run(bounds: tuple[int, int, int, int]) -> list[pa.Array]:
        first, end, a, z = bounds
        rows = frame.slice(a, z - a)
        kept = None if rows_from is None else (rows["trade_date"] >= rows_from).to_numpy()
        # Views of the batch's rows when the frame is one chunk (no nulls are left to convert)
        columns = {name: rows[name].to_numpy() for name in ("high", "low", "close", "volume")}
        # A traded bar has a high, a low and a close (null or NaN marks a suspended day).
        traded = ~(np.isnan(columns["high"]) | np.isnan(columns["low"]) | np.isnan(columns["close"]))
        if not traded.all():
            columns = {name: values[traded] for name, values in columns.items()}
        return _compute_batch(columns, traded, lengths[first:end], kept)

    batches = _batches(lengths, batch_rows)
    workers = min(threads or pl.thread_pool_size(), len(batches))
    if workers <= 1:
        parts = [run(bounds) for bounds in batches]
    else:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(run, batches))
    # One chunk per batch and factor, handed to polars without copying.
    table = pa.Table.from_arrays(
        [pa.chunked_array([part[i] for part in parts], pa.float64()) for i in range(len(FACTOR_IDS))],
        names=list(FACTOR_IDS),
    )
    keys = frame.select(KEYS) if rows_from is None else frame.select(KEYS).filter(pl.col("trade_date") >= rows_from)
    return pl.concat([keys, pl.from_arrow(table, rechunk=False)], how="horizontal")
