"""M07 technical indicators, vectorised over every stock at once with polars (no Dagster here).

`compute(bars)` takes a long frame of daily bars for many stocks and returns one Float64 column per
factor of `TECHNICAL_FACTORS` (ids in `FACTOR_IDS`), row-aligned with the input sorted by
(stock_id, trade_date). Definitions are TA-Lib's, seeding and warm-up included; the tests use TA-Lib
as the oracle.

How it stays vectorised and fast
--------------------------------
* **Whole columns, no per-stock windows.** Rows are sorted by (stock_id, trade_date), so a rolling
  window or shift computed over the whole column is correct for every row whose window lies inside
  its own stock, i.e. whose position in the stock `_idx` is at least the window's warm-up. Rows with
  a smaller `_idx` are exactly TA-Lib's warm-up rows and are set to null. `_idx` comes from a
  forward fill of the row number at each stock's first row (`_start`), so no `.over("stock_id")`
  group-by is needed anywhere (it measured several times slower).
* **Recursive indicators (EMA, Wilder RSI/ATR, MACD, KD) as one global `ewm_mean` plus a
  correction.** Each is the linear recurrence  y[t] = r·y[t-1] + a·x[t]  (r = 1-a) started from a
  seed s at a fixed position t0 of each stock (TA-Lib: the SMA of the first N inputs; KD: 50).
  `g = ewm_mean(x, adjust=False)` over the concatenation of all stocks obeys the same recurrence
  after t0, only from the wrong state (whatever leaked in from the previous stock). The difference
  of two solutions of the recurrence decays geometrically, so inside each stock
      y[t] = g[t] + r^(t-t0) · (s - g[t0])        for t >= t0,
  with (s - g[t0]) read at row `_start + t0` by a gather. This is exact algebra; numerically it costs
  ~1e-15 relative (see the tests). r^k comes from a small lookup table (exactly 0 once it drops
  below 1e-30, which keeps denormals out of the arithmetic; null before t0, which is the warm-up
  mask).
* **Rolling max/min by doubling.** max over 2w bars = max(max over w, the same shifted by w):
  9 and 240 bars take 4 and 8 cheap element-wise steps instead of a `rolling_max` each.
* **Explicit stages.** Expensive expressions are materialised in successive `with_columns` stages
  and referenced by name afterwards (no reliance on common-subexpression elimination, which is
  switched off), intermediates are dropped as soon as nothing reads them, and plans run on the
  in-memory engine (the streaming engine is far slower for these order-dependent kernels and
  returns many small chunks).
* **Batches of whole stocks.** The sorted frame is cut at stock boundaries into batches of about
  `BATCH_ROWS` rows, run on a few threads (polars releases the GIL). A batch's intermediates stay in
  CPU cache and its memory is reused by the next batch (one pass over 1.8M rows measured ~2.5x
  slower).
* **Suspended days.** A stock's series is its *traded* bars only: rows with a missing close, high
  or low (suspended / no trade) are dropped before computing and get null factors when the result
  is put back. A suspension therefore neither blanks rolling windows for the next N days nor
  restarts the warm-up; e.g. `ret_1` after a suspension is the return since the last traded close.
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

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

# Rows per batch of whole stocks (see the module docstring): big enough to amortise the ~5 ms
# fixed cost of running a plan, small enough to stay mostly in cache; 150k-250k measured best.
BATCH_ROWS = 200_000

# TA-Lib's TA_IS_ZERO / TA_IS_ZERO_OR_NEG threshold: RSI is 0 when avg gain + avg loss is below it,
# and the Bollinger variance is taken as 0 below it.
_TA_EPSILON = 1e-14

# Smoothing factors and the bar (position in the stock) each recurrence is seeded at.
_A_EMA12, _A_EMA26, _A_SIGNAL = 2 / 13, 2 / 27, 2 / 10  # EMA alpha = 2/(N+1)
_A_WILDER = 1 / 14  # RSI 14 and ATR 14
_A_KD = 1 / 3  # Taiwan KD: K = 2/3 K' + 1/3 RSV
_T0_EMA12, _T0_EMA26, _T0_WILDER, _T0_KD, _T0_SIGNAL = 11, 25, 14, 7, 33

# The plans name every intermediate explicitly, so common-subexpression elimination only costs time.
_OPTIMIZATIONS = pl.QueryOptFlags(comm_subexpr_elim=False, comm_subplan_elim=False)

_idx = pl.col("_idx")  # position of the row within its stock
_start = pl.col("_start")  # row number (in the batch) of the stock's first row
_c, _h, _l = pl.col("close"), pl.col("high"), pl.col("low")
_TRADED = _c.is_not_null() & _h.is_not_null() & _l.is_not_null()


def _mean(x: pl.Expr, n: int) -> pl.Expr:
    """Mean of the last n values: the window sum divided by n, as TA-Lib computes it (and a little
    cheaper than `rolling_mean`)."""
    return x.rolling_sum(n) / n


def _valid_from(first: int, expr: pl.Expr) -> pl.Expr:
    """`expr` where the bar's position in its stock is >= `first` (TA-Lib's lookback), else null."""
    return pl.when(_idx >= first).then(expr)


def _max(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    return pl.when(a >= b).then(a).otherwise(b)


def _min(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    return pl.when(a <= b).then(a).otherwise(b)


def _ewm(x: pl.Expr, alpha: float, *, has_nulls: bool = False) -> pl.Expr:
    """Global exponential average y[t] = (1-alpha)·y[t-1] + alpha·x[t] (seeds applied later).

    Some inputs are null on warm-up rows (e.g. the first 8 rows of a batch for RSV), whose values the
    seed correction discards; filling them keeps g[t0] defined even when a stock opens the batch.
    """
    return (x.fill_null(0.0) if has_nulls else x).ewm_mean(alpha=alpha, adjust=False)


def _decay(alpha: float, t0: int) -> pl.Expr:
    """(1-alpha)^(_idx - t0) for _idx >= t0 and null before (which also masks the warm-up of
    whatever it multiplies), from a lookup table; exactly 0 once below 1e-30."""
    r = 1.0 - alpha
    size = math.ceil(math.log(1e-30) / math.log(r))
    table = pl.Series([None, *(r ** np.arange(size, dtype=np.float64)), 0.0], dtype=pl.Float64)
    return pl.lit(table).gather((_idx - (t0 - 1)).clip(0, size + 1))


# Bars whose value is read for every row of the stock (`_at_bar`): seeds and OBV's start.
_READ_BARS = (0, _T0_KD, _T0_EMA12, _T0_WILDER, _T0_EMA26, _T0_SIGNAL)


def _at_bar(expr: pl.Expr, t0: int) -> pl.Expr:
    """The value of `expr` at bar t0 of each row's stock (garbage for stocks shorter than t0+1)."""
    return expr.gather(pl.col(f"_row_of_bar_{t0}"))


def _seeded(g: str, seed: pl.Expr, t0: int, decay: str) -> pl.Expr:
    """The per-stock recurrence seeded with `seed` at bar t0, from the global ewm column `g`
    (null before t0, through the decay column)."""
    return pl.col(g) + pl.col(decay) * _at_bar(seed - pl.col(g), t0)


@functools.cache
def _plan() -> tuple[tuple[tuple[tuple[pl.Expr, ...], tuple[str, ...]], ...], tuple[pl.Expr, ...]]:
    """The stages (`with_columns` expressions, intermediates to drop afterwards) and the final
    projection, built once (expressions are immutable)."""
    stages: list[tuple[tuple[pl.Expr, ...], tuple[str, ...]]] = []

    def stage(*exprs: pl.Expr, drop: tuple[str, ...] = ()) -> None:
        # Dropping intermediates as soon as no later stage reads them lets the next stage reuse
        # their memory while it is still in cache.
        stages.append((exprs, drop))

    row = pl.int_range(pl.len(), dtype=pl.Int64)
    first_row = pl.col("stock_id").ne_missing(pl.col("stock_id").shift(1))
    stage(pl.when(first_row).then(row).forward_fill().alias("_start"), _h.alias("_hh1"), _l.alias("_ll1"))
    stage(
        (row - _start).alias("_idx"),
        *((_start + t0).clip(0, pl.len() - 1).alias(f"_row_of_bar_{t0}") for t0 in _READ_BARS),
    )

    # Highest high / lowest low by doubling: _hh{2w} = max(_hh{w}, _hh{w} shifted by w).
    width = 1
    while width < 128:
        hh, ll = pl.col(f"_hh{width}"), pl.col(f"_ll{width}")
        stage(_max(hh, hh.shift(width)).alias(f"_hh{2 * width}"), _min(ll, ll.shift(width)).alias(f"_ll{2 * width}"))
        width *= 2
    hh128, ll128 = pl.col("_hh128"), pl.col("_ll128")
    stage(
        _max(pl.col("_hh8"), _h.shift(8)).alias("_hh9"),
        _min(pl.col("_ll8"), _l.shift(8)).alias("_ll9"),
        _max(hh128, hh128.shift(WINDOW_52W - 128)).alias("_hh240"),
        _min(ll128, ll128.shift(WINDOW_52W - 128)).alias("_ll240"),
        drop=tuple(f"_{hl}{w}" for hl in ("hh", "ll") for w in (1, 2, 4, 8, 16, 32, 64, 128)),
    )

    # Inputs of rolling windows and ewms are kept null-free (polars' null-aware kernels are ~10-15%
    # slower): the batch's first row has no previous close, and it is a warm-up row anyway.
    prev_close = _c.shift(1).fill_null(_c)
    change = _c - prev_close
    volume = pl.col("volume")
    hh9, ll9 = pl.col("_hh9"), pl.col("_ll9")
    # Stage 1: windows, shifts, the inputs of the recurrences and their global ewms.
    stage(
        *(_valid_from(n - 1, _mean(_c, n)).alias(f"sma_{n}") for n in SMA_WINDOWS),
        # EMA seeds: SMA of the first 12 / 26 closes. TA-Lib MACD seeds its fast EMA with the SMA of
        # the 12 closes ending at bar 25 (both of its EMAs start at the slow one's first bar): the
        # same `_sma_12` column, read at bar 25.
        _mean(_c, 12).alias("_sma_12"),
        _mean(_c, 26).alias("_sma_26"),
        # Bollinger: TA-Lib's population variance is mean(x^2) - mean(x)^2 over the 20 bars.
        _mean(_c * _c, 20).alias("_sq_mean_20"),
        change.clip(lower_bound=0.0).alias("_gain"),
        (-change).clip(lower_bound=0.0).alias("_loss"),
        # TA-Lib TRANGE, max(h-l, |h-prev_c|, |l-prev_c|) from bar 1, is max(h, prev_c) - min(l, prev_c)
        # as high >= low (which the market schema enforces).
        (_max(_h, prev_close) - _min(_l, prev_close)).alias("_tr"),
        # Taiwan KD raw stochastic over 9 bars. A flat 9-bar range (H9 == L9) puts the close nowhere
        # inside it, so RSV is defined as the neutral 50 rather than 0/0.
        pl.when(hh9 == ll9).then(50.0).otherwise((_c - ll9) / (hh9 - ll9) * 100.0).alias("_rsv"),
        # OBV: TA-Lib starts at +volume[0], then adds/subtracts the volume on up/down closes. Summed
        # in Int64 (shares), so it is exact; each stock's offset is removed in stage 2.
        pl.when(_idx == 0).then(volume).otherwise(change.sign().cast(pl.Int64) * volume).alias("_obv_step"),
        # Mean volume of the 5 previous traded bars (today excluded).
        _valid_from(5, _mean(volume.cast(pl.Float64), 5).shift(1)).alias("_vol_mean_5"),
        *(_valid_from(n, _c / _c.shift(n) - 1.0).alias(f"ret_{n}") for n in RETURN_HORIZONS),
        _valid_from(WINDOW_52W - 1, _c / pl.col("_hh240") - 1.0).alias("dist_52w_high"),
        _valid_from(WINDOW_52W - 1, _c / pl.col("_ll240") - 1.0).alias("dist_52w_low"),
        _ewm(_c, _A_EMA12).alias("_g_ema12"),
        _ewm(_c, _A_EMA26).alias("_g_ema26"),
        # Decay tables r^(t - t0), one per (alpha, t0).
        _decay(_A_EMA12, _T0_EMA12).alias("_r_ema12"),
        _decay(_A_EMA12, _T0_EMA26).alias("_r_macd_fast"),
        _decay(_A_EMA26, _T0_EMA26).alias("_r_ema26"),
        _decay(_A_WILDER, _T0_WILDER).alias("_r_wilder"),
        _decay(_A_KD, _T0_KD).alias("_r_kd"),
        _decay(_A_SIGNAL, _T0_SIGNAL).alias("_r_signal"),
        drop=("_hh9", "_ll9", "_hh240", "_ll240"),
    )

    # Stage 2: seeded EMAs; global Wilder / KD averages and their seeds; OBV.
    stage(
        # EMA N: seeded at bar N-1 with the SMA of the first N closes.
        _seeded("_g_ema12", pl.col("_sma_12"), _T0_EMA12, "_r_ema12").alias("ema_12"),
        _seeded("_g_ema26", pl.col("_sma_26"), _T0_EMA26, "_r_ema26").alias("ema_26"),
        _seeded("_g_ema12", pl.col("_sma_12"), _T0_EMA26, "_r_macd_fast").alias("_macd_fast"),
        # Wilder smoothing (alpha 1/14) seeded at bar 14 with the plain mean of the first 14 changes /
        # true ranges (bars 1..14), as TA-Lib RSI and ATR do.
        _mean(pl.col("_gain"), 14).alias("_seed_gain"),
        _mean(pl.col("_loss"), 14).alias("_seed_loss"),
        _mean(pl.col("_tr"), 14).alias("_seed_tr"),
        _ewm(pl.col("_gain"), _A_WILDER).alias("_g_gain"),
        _ewm(pl.col("_loss"), _A_WILDER).alias("_g_loss"),
        _ewm(pl.col("_tr"), _A_WILDER).alias("_g_tr"),
        _ewm(pl.col("_rsv"), _A_KD, has_nulls=True).alias("_g_k"),
        pl.col("_obv_step").cum_sum().alias("_obv_sum"),
        (pl.col("_sq_mean_20") - pl.col("sma_20") * pl.col("sma_20")).alias("_var_20"),
        drop=("_g_ema12", "_g_ema26", "_r_ema12", "_r_macd_fast", "_r_ema26", "_sma_12", "_sma_26", "_gain")
        + ("_loss", "_tr", "_rsv", "_sq_mean_20"),
    )

    # Stage 3: apply the Wilder / KD seeds; the MACD line.
    stage(
        _seeded("_g_gain", pl.col("_seed_gain"), _T0_WILDER, "_r_wilder").alias("_avg_gain"),
        _seeded("_g_loss", pl.col("_seed_loss"), _T0_WILDER, "_r_wilder").alias("_avg_loss"),
        _seeded("_g_tr", pl.col("_seed_tr"), _T0_WILDER, "_r_wilder").alias("atr_14"),
        # K[t] = 2/3·K[t-1] + 1/3·RSV[t] with K = 50 on the bar before the first RSV (bar 8), so the
        # seed sits at bar 7; K is kept at bar 7 (masked at the end) so that D starts there too.
        _seeded("_g_k", pl.lit(50.0), _T0_KD, "_r_kd").alias("_k"),
        (pl.col("_macd_fast") - pl.col("ema_26")).alias("_macd_line"),  # valid from bar 25
        (pl.col("_obv_sum") - _at_bar(pl.col("_obv_sum") - pl.col("_obv_step"), 0)).alias("_obv"),
        drop=("_g_gain", "_g_loss", "_g_tr", "_g_k", "_seed_gain", "_seed_loss", "_seed_tr", "_r_wilder", "_macd_fast")
        + ("_obv_step", "_obv_sum"),
    )

    # Stage 4: EMAs of stage-3 results. The MACD signal is an EMA 9 of the MACD line seeded with the
    # mean of its first 9 values (bars 25..33); D = 2/3·D' + 1/3·K seeded with 50 at bar 7.
    stage(
        _mean(pl.col("_macd_line").fill_null(0.0), 9).alias("_seed_signal"),
        _ewm(pl.col("_macd_line"), _A_SIGNAL, has_nulls=True).alias("_g_signal"),
        _ewm(pl.col("_k"), _A_KD, has_nulls=True).alias("_g_d"),
    )
    stage(
        _seeded("_g_signal", pl.col("_seed_signal"), _T0_SIGNAL, "_r_signal").alias("macd_signal"),
        _seeded("_g_d", pl.lit(50.0), _T0_KD, "_r_kd").alias("_d"),
        drop=("_g_signal", "_g_d", "_seed_signal", "_r_signal", "_r_kd"),
    )
    # RSI, K, D and ATR are clipped to their natural ranges only to remove rounding-level excursions
    # of the seed correction (an exact 0 can come out as -1e-17), which the range checks would
    # flag. RSI and ATR are inside exactly for any input; K/D could only leave [0, 100] with a close
    # outside [low, high], which dist_52w_high / dist_52w_low (not clipped) still expose once their
    # window is full.
    stage(
        _valid_from(_T0_KD + 1, pl.col("_k").clip(0.0, 100.0)).alias("kd_k"),
        _valid_from(_T0_KD + 1, pl.col("_d").clip(0.0, 100.0)).alias("kd_d"),
    )

    avg_up_down = pl.col("_avg_gain") + pl.col("_avg_loss")
    var_20 = pl.col("_var_20")
    std_20 = pl.when(var_20 < _TA_EPSILON).then(0.0).otherwise(var_20.sqrt())  # TA-Lib clamps at 0
    vol_mean_5 = pl.col("_vol_mean_5")
    final = (
        *(pl.col(f"sma_{n}") for n in SMA_WINDOWS),
        pl.col("ema_12"),
        pl.col("ema_26"),
        pl.when(avg_up_down < _TA_EPSILON)
        .then(0.0)
        .otherwise((100.0 * pl.col("_avg_gain") / avg_up_down).clip(0.0, 100.0))
        .alias("rsi_14"),
        # TA-Lib reports the MACD line only from bar 33, where its signal starts.
        _valid_from(_T0_SIGNAL, pl.col("_macd_line")).alias("macd"),
        pl.col("macd_signal"),
        (pl.col("_macd_line") - pl.col("macd_signal")).alias("macd_hist"),
        (pl.col("sma_20") + 2.0 * std_20).alias("bb_upper"),
        pl.col("sma_20").alias("bb_middle"),
        (pl.col("sma_20") - 2.0 * std_20).alias("bb_lower"),
        pl.col("atr_14").clip(lower_bound=0.0),
        pl.col("_obv").cast(pl.Float64).alias("obv"),
        pl.col("kd_k"),
        pl.col("kd_d"),
        (3.0 * pl.col("kd_k") - 2.0 * pl.col("kd_d")).alias("kd_j"),
        # A zero mean (no shares traded in the previous 5 bars) gives null rather than infinity.
        pl.when(vol_mean_5 > 0).then(volume / vol_mean_5).alias("vol_ratio_5"),
        *(pl.col(f"ret_{n}") for n in RETURN_HORIZONS),
        pl.col("dist_52w_high"),
        pl.col("dist_52w_low"),
    )
    return tuple(stages), final


def _run_plan(bars: pl.DataFrame) -> pl.DataFrame:
    stages, final = _plan()
    lf = bars.lazy()
    for exprs, drop in stages:
        lf = lf.with_columns(*exprs).drop(drop)
    return lf.select(*final).collect(engine="in-memory", optimizations=_OPTIMIZATIONS)


def _compute_batch(batch: pl.DataFrame) -> pl.DataFrame:
    """Factors for a batch of whole stocks (sorted), keys included, row-aligned with `batch`."""
    mask = batch.select(_TRADED).to_series()
    n_traded = int(mask.sum())
    if n_traded == batch.height:
        factors = _run_plan(batch)
    else:
        # Compute on the traded bars plus one extra row that the plan sees as a one-bar stock (null
        # stock_id): at position 0 every factor is still in warm-up, hence null, except OBV. Input
        # row i then takes traded row position[i], or that extra row when it was not traded: one
        # plain gather. The extra row holds numbers, not nulls, to keep the inputs null-free.
        extra = pl.DataFrame({"high": [1.0], "low": [1.0], "close": [1.0], "volume": [0]}).with_columns(
            pl.lit(None, dtype).alias(key) for key, dtype in batch.select(KEYS).schema.items()
        )
        factors = _run_plan(pl.concat([batch.filter(mask), extra.select(batch.columns)]).rechunk())
        position = pl.select(pl.when(mask).then(mask.cast(pl.Int64).cum_sum() - 1).otherwise(n_traded)).to_series()
        factors = factors[position].with_columns(pl.when(mask).then(pl.col("obv")).alias("obv"))
    return pl.concat([batch.select(KEYS), factors], how="horizontal")


def _is_strictly_sorted(frame: pl.DataFrame) -> bool:
    if frame.height < 2:
        return True
    sid, day = pl.col("stock_id"), pl.col("trade_date")
    ordered = (sid > sid.shift(1)) | ((sid == sid.shift(1)) & (day > day.shift(1)))
    return bool(frame.select(ordered.slice(1).all()).item())


def _batch_bounds(frame: pl.DataFrame, rows: int) -> list[tuple[int, int]]:
    """(offset, length) slices of about `rows` rows that never split a stock."""
    sid = frame["stock_id"]
    starts = np.flatnonzero(sid.ne_missing(sid.shift(1)).to_numpy())
    first_at_or_after = np.searchsorted(starts, np.arange(0, frame.height, rows))  # cut at stock starts
    cuts = np.unique(starts[first_at_or_after[first_at_or_after < len(starts)]])
    ends = np.append(cuts[1:], frame.height)
    return [(int(a), int(b - a)) for a, b in zip(cuts, ends, strict=True)]


def compute(
    bars: pl.DataFrame | pl.LazyFrame, *, batch_rows: int = BATCH_ROWS, threads: int | None = None
) -> pl.DataFrame:
    """Every M07 factor for every (stock_id, trade_date) row of `bars`.

    `bars` needs `stock_id` (Utf8), `trade_date` (Date), `high`, `low`, `close` (Float64, null on a
    suspended day) and `volume` (Int64 shares); other columns are ignored. Returns the same rows
    sorted by (stock_id, trade_date): the key columns, then one Float64 column per id in
    `FACTOR_IDS`, null during each indicator's warm-up and on rows without a traded bar. The result
    has one chunk per batch of stocks (`rechunk()` it if one contiguous chunk is needed).
    `threads` batches run at once (default: polars' thread pool size).
    Raises ValueError on duplicate (stock_id, trade_date) rows.
    """
    lf = bars.lazy() if isinstance(bars, pl.DataFrame) else bars
    frame = (
        lf.select(
            pl.col("stock_id").cast(pl.Utf8),
            pl.col("trade_date").cast(pl.Date),
            # NaN is treated as missing, like null: a NaN price is never a traded bar.
            *(pl.col(c).cast(pl.Float64).fill_nan(None) for c in ("high", "low", "close")),
            pl.col("volume").cast(pl.Int64),
        )
        .collect(engine="in-memory")
        .rechunk()  # rolling / ewm kernels are much slower across many chunks
    )
    # Upstream frames normally arrive sorted; checking is much cheaper than sorting again.
    if not _is_strictly_sorted(frame):
        frame = frame.sort(KEYS)
        if not _is_strictly_sorted(frame):
            raise ValueError("bars has duplicate (stock_id, trade_date) rows")
    if frame.height == 0:
        return frame.select(*KEYS, *(pl.lit(None, pl.Float64).alias(f) for f in FACTOR_IDS))

    batches = [frame.slice(offset, length) for offset, length in _batch_bounds(frame, batch_rows)]
    workers = min(threads or pl.thread_pool_size(), len(batches))
    if workers <= 1:
        parts = [_compute_batch(b) for b in batches]
    else:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(_compute_batch, batches))
    return pl.concat(parts, how="vertical", rechunk=False)
