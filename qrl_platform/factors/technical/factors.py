"""Registry of the technical factors computed by `qrl_platform.factors.technical.indicators.compute`.

`lookback` is the number of a stock's traded bars before the first valid value (TA-Lib's
lookback), i.e. the 0-based position of the first non-null value.

Missing-rate tolerance (`max_missing_rate`, share of the day's stocks without a value): suspended
stocks miss every factor (typically 1-2% of the market), and a stock listed fewer than `lookback`
bars ago misses the factor. Taiwan lists roughly 50-80 new stocks a year on a ~1,800-stock market
(3-5% per year), so the default 0.2 leaves ample room for windows up to 60 bars. Windows of 120 and
240 bars are missed by about 2% / 4-6% of stocks from young listings alone plus stocks back from long
suspensions, so they get 0.25 / 0.3: loose enough not to block strategies on a normal day, still
tight enough to catch a broken upstream (a real outage drops most stocks, far above 0.3).
"""

from __future__ import annotations

from dataclasses import replace

from qrl_platform.factors import Factor

_M = "M07"
_OHLC = ("high", "low", "close")
_PRICE = "TWD"


def _missing_rate(lookback: int) -> float:
    if lookback >= 200:
        return 0.3
    if lookback >= 100:
        return 0.25
    return 0.2


def _sma(n: int) -> Factor:
    return Factor(
        factor_id=f"sma_{n}",
        module=_M,
        name=f"SMA {n}",
        description=f"Simple moving average of the close over the last {n} traded bars (TA-Lib SMA).",
        unit=_PRICE,
        lookback=n - 1,
        source_columns=("close",),
        min_value=0.0,
        max_missing_rate=_missing_rate(n - 1),
        tags=("trend", "moving_average"),
    )


def _ema(n: int) -> Factor:
    return Factor(
        factor_id=f"ema_{n}",
        module=_M,
        name=f"EMA {n}",
        description=(
            f"Exponential moving average of the close, alpha = 2/({n}+1), seeded at bar {n - 1} with the "
            f"SMA of the first {n} closes (TA-Lib EMA)."
        ),
        unit=_PRICE,
        lookback=n - 1,
        source_columns=("close",),
        min_value=0.0,
        max_missing_rate=_missing_rate(n - 1),
        tags=("trend", "moving_average"),
    )


def _ret(n: int) -> Factor:
    return Factor(
        factor_id=f"ret_{n}",
        module=_M,
        name=f"Return {n}",
        description=f"Close / close {n} traded bars earlier - 1 on adjusted prices: a total return (TA-Lib ROCR - 1).",
        unit="fraction",
        lookback=n,
        source_columns=("close",),
        min_value=-1.0,  # a positive price cannot lose more than everything
        max_missing_rate=_missing_rate(n),
        tags=("momentum", "return"),
    )


_MACD_DESC = (
    "TA-Lib MACD 12/26/9: fast and slow EMAs both start at bar 25 (slow seeded with the SMA of the first "
    "26 closes, fast with the SMA of the 12 closes ending at bar 25); the signal is an EMA 9 of the MACD "
    "line seeded with the mean of its first 9 values, so all three start at bar 33."
)

_DECLARED: tuple[Factor, ...] = (
    *(_sma(n) for n in (5, 10, 20, 60, 120, 240)),
    _ema(12),
    _ema(26),
    Factor(
        factor_id="rsi_14",
        module=_M,
        name="RSI 14",
        description=(
            "Wilder RSI 14 (TA-Lib): average gain / (average gain + average loss) x 100, averages seeded "
            "with the plain mean of the first 14 changes and then smoothed with alpha 1/14; 0 when there "
            "was no change at all (TA-Lib convention)."
        ),
        unit="index 0-100",
        lookback=14,
        source_columns=("close",),
        min_value=0.0,
        max_value=100.0,
        tags=("momentum", "oscillator"),
    ),
    Factor(
        factor_id="macd",
        module=_M,
        name="MACD line",
        description="EMA 12 - EMA 26 of the close. " + _MACD_DESC,
        unit=_PRICE,
        lookback=33,
        source_columns=("close",),
        tags=("trend", "macd"),
    ),
    Factor(
        factor_id="macd_signal",
        module=_M,
        name="MACD signal",
        description="EMA 9 of the MACD line. " + _MACD_DESC,
        unit=_PRICE,
        lookback=33,
        source_columns=("close",),
        tags=("trend", "macd"),
    ),
    Factor(
        factor_id="macd_hist",
        module=_M,
        name="MACD histogram",
        description="MACD line - signal line. " + _MACD_DESC,
        unit=_PRICE,
        lookback=33,
        source_columns=("close",),
        tags=("trend", "macd"),
    ),
    Factor(
        factor_id="bb_upper",
        module=_M,
        name="Bollinger upper 20/2",
        description="SMA 20 of the close + 2 population standard deviations of the last 20 closes (TA-Lib BBANDS).",
        unit=_PRICE,
        lookback=19,
        source_columns=("close",),
        min_value=0.0,
        tags=("volatility", "bollinger"),
    ),
    Factor(
        factor_id="bb_middle",
        module=_M,
        name="Bollinger middle 20",
        description="SMA 20 of the close (TA-Lib BBANDS middle band).",
        unit=_PRICE,
        lookback=19,
        source_columns=("close",),
        min_value=0.0,
        tags=("volatility", "bollinger"),
    ),
    Factor(
        factor_id="bb_lower",
        module=_M,
        name="Bollinger lower 20/2",
        # No lower bound: one spike in 20 bars can put mean - 2 sd below zero.
        description="SMA 20 of the close - 2 population standard deviations of the last 20 closes (TA-Lib BBANDS).",
        unit=_PRICE,
        lookback=19,
        source_columns=("close",),
        tags=("volatility", "bollinger"),
    ),
    Factor(
        factor_id="atr_14",
        module=_M,
        name="ATR 14",
        description=(
            "Wilder average true range 14 (TA-Lib ATR): true range from bar 1, seeded at bar 14 with the "
            "mean of the first 14 true ranges, then smoothed with alpha 1/14."
        ),
        unit=_PRICE,
        lookback=14,
        source_columns=_OHLC,
        min_value=0.0,
        tags=("volatility",),
    ),
    Factor(
        factor_id="obv",
        module=_M,
        name="On-balance volume",
        description=(
            "TA-Lib OBV: starts at the first traded bar's volume, then adds the volume on an up close and "
            "subtracts it on a down close. `technical.compute` accumulates from the first bar of its input; "
            "the stored technical_indicators column is TA-Lib OBV over the trailing 240 traded bars (null "
            "before a stock's 240th bar), so a day's value does not depend on how much history a run read."
        ),
        unit="shares",
        lookback=0,
        source_columns=("close", "volume"),
        # Stored values need 240 bars, like sma_240 (see compute_range.trailing_obv).
        max_missing_rate=_missing_rate(239),
        tags=("volume",),
    ),
    Factor(
        factor_id="kd_k",
        module=_M,
        name="KD K (Taiwan)",
        description=(
            "Taiwan stochastic K: RSV9 = (C - L9) / (H9 - L9) x 100 over the last 9 bars (RSV = 50 when "
            "H9 == L9), K = 2/3 K' + 1/3 RSV with K' = 50 before the first RSV."
        ),
        unit="index 0-100",
        lookback=8,
        source_columns=_OHLC,
        min_value=0.0,
        max_value=100.0,
        tags=("momentum", "oscillator", "kd"),
    ),
    Factor(
        factor_id="kd_d",
        module=_M,
        name="KD D (Taiwan)",
        description="Taiwan stochastic D: D = 2/3 D' + 1/3 K with D' = 50 before the first K.",
        unit="index 0-100",
        lookback=8,
        source_columns=_OHLC,
        min_value=0.0,
        max_value=100.0,
        tags=("momentum", "oscillator", "kd"),
    ),
    Factor(
        factor_id="kd_j",
        module=_M,
        name="KD J (Taiwan)",
        # K and D lie in [0, 100], so 3K - 2D lies in [-200, 300].
        description="J = 3K - 2D of the Taiwan KD.",
        unit="index",
        lookback=8,
        source_columns=_OHLC,
        min_value=-200.0,
        max_value=300.0,
        tags=("momentum", "oscillator", "kd"),
    ),
    Factor(
        factor_id="vol_ratio_5",
        module=_M,
        name="Volume ratio 5",
        description=(
            "Volume / mean volume of the previous 5 traded bars (today excluded); null when those 5 bars "
            "traded no shares."
        ),
        unit="ratio",
        lookback=5,
        source_columns=("volume",),
        min_value=0.0,
        tags=("volume",),
    ),
    *(_ret(n) for n in (1, 5, 20, 60)),
    Factor(
        factor_id="dist_52w_high",
        module=_M,
        name="Distance to 52-week high",
        description=(
            "Close / highest high of the last 240 traded bars (about 52 trading weeks, today included) - 1; "
            "<= 0 because today's high is in the window."
        ),
        unit="fraction",
        lookback=239,
        source_columns=("high", "close"),
        min_value=-1.0,
        max_value=0.0,
        max_missing_rate=_missing_rate(239),
        tags=("trend", "range"),
    ),
    Factor(
        factor_id="dist_52w_low",
        module=_M,
        name="Distance to 52-week low",
        description=(
            "Close / lowest low of the last 240 traded bars (about 52 trading weeks, today included) - 1; "
            ">= 0 because today's low is in the window."
        ),
        unit="fraction",
        lookback=239,
        source_columns=("low", "close"),
        min_value=0.0,
        max_missing_rate=_missing_rate(239),
        tags=("trend", "range"),
    ),
)


# Every technical price input is adjusted for corporate actions as of the factor's day (compute_range prepares
# the bars; the maths above are unchanged): a factor reading any price is "adjusted", volume alone "none".
TECHNICAL_FACTORS: tuple[Factor, ...] = tuple(
    replace(f, price_basis="adjusted" if set(f.source_columns) & {"open", "high", "low", "close"} else "none")
    for f in _DECLARED
)
