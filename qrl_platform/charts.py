"""Small PNG charts for the Dagster UI: plain functions from polars frames to PNG bytes (no Dagster).

Why PNG in metadata: Dagster's UI renders a markdown metadata value with `react-markdown` +
`rehype-sanitize`, and its sanitize schema adds `data` to the allowed `src` protocols
(`ui-core/src/ui/MarkdownWithPlugins.tsx` in dagster-webserver 1.13), so
`![chart](data:image/png;base64,…)` shows as an image on the asset's materialisation — no file
server, no extra service. The browser test (`qrl_platform_tests/test_ui_browser.py`) checks it.

Every chart is rendered with matplotlib's Agg canvas through the object API (`Figure`, never pyplot),
so there is no global figure state and no display is needed. Sizes are fixed in inches × `DPI`, so
each PNG is exactly its figure size × `DPI` pixels; a 64-colour palette keeps them far below the
200 KB budget (each materialisation event stores its charts in the event log).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 80
WIDE = (8.0, 3.2)  # inches → 640 × 256 px
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SIGNAL_COLOURS = {"BUY": "#2e7d32", "SELL": "#c62828", "HOLD": "#9e9e9e"}


def markdown_image(png: bytes, alt: str = "chart") -> str:
    """The markdown Dagster renders as an <img>: a base64 data URI."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def _require(frame: pl.DataFrame, chart: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{chart}: the frame lacks column(s) {missing}; it has {frame.columns}")


def _figure(size: tuple[float, float] = WIDE) -> Figure:
    # Imported on first use: matplotlib takes ~1 s to import, and every Dagster run process and `qrl`
    # command loads the asset modules, most of them without drawing anything.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    from PIL import Image

    # The Agg buffer is exactly figure size × DPI pixels (what callers and tests rely on), then it is
    # reduced to a 64-colour palette: line charts use a handful of colours, and the palette PNG is 3-4×
    # smaller than the RGBA one — it matters because every materialisation stores its charts in the event log.
    canvas = figure.canvas
    canvas.draw()
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buffer = io.BytesIO()
    image.convert("RGB").quantize(colors=64, method=Image.Quantize.FASTOCTREE).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _no_data(axes, what: str) -> None:
    axes.text(0.5, 0.5, f"no {what} yet", ha="center", va="center", transform=axes.transAxes, color="#757575")
    axes.set_xticks([])
    axes.set_yticks([])


def _small_legend(axes) -> None:
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)


def hit_rate_chart(stats: pl.DataFrame, *, period_days: int = 30) -> bytes:
    """Hit rate over time, one line per strategy.

    `stats`: strategy_id, as_of_date, hit_rate. A null hit rate (no signal's horizon elapsed yet) is
    not drawn, so a strategy with none at all has no line.
    """
    _require(stats, "hit_rate_chart", ["strategy_id", "as_of_date", "hit_rate"])
    figure = _figure()
    axes = figure.add_subplot()
    rows = stats.filter(pl.col("hit_rate").is_not_null()).sort("strategy_id", "as_of_date")
    if rows.is_empty():
        _no_data(axes, "evaluated signals")
    for (strategy_id,), group in rows.group_by("strategy_id", maintain_order=True):
        axes.plot(group["as_of_date"].to_list(), group["hit_rate"].to_list(), marker=".", lw=1.2, label=strategy_id)
    axes.set_title(f"hit rate ({period_days}-day window) by as-of day", fontsize=9)
    axes.set_ylim(0, 1)
    axes.axhline(0.5, color="#bdbdbd", lw=0.8, ls="--")
    axes.tick_params(labelsize=7)
    _whole_days(axes)
    figure.autofmt_xdate()
    _small_legend(axes)
    return _png(figure)


def basket_return_chart(baskets: pl.DataFrame, *, window_days: int = 90) -> bytes:
    """Mean forward return of each strategy's BUY basket against its SELL basket (horizontal bars).

    `baskets`: strategy_id, signal (BUY/SELL), mean_forward_return, signals. A strategy works when its
    BUY bar is right of its SELL bar.
    """
    _require(baskets, "basket_return_chart", ["strategy_id", "signal", "mean_forward_return", "signals"])
    figure = _figure()
    axes = figure.add_subplot()
    strategy_ids = sorted(baskets["strategy_id"].unique().to_list())
    if not strategy_ids:
        _no_data(axes, "signals with an elapsed horizon")
    positions = {s: i for i, s in enumerate(strategy_ids)}
    for offset, signal in ((-0.2, "BUY"), (0.2, "SELL")):
        rows = baskets.filter(pl.col("signal") == signal)
        axes.barh(
            [positions[s] + offset for s in rows["strategy_id"]],
            [100 * r for r in rows["mean_forward_return"]],
            height=0.4,
            color=SIGNAL_COLOURS[signal],
            label=f"{signal} basket",
        )
    axes.set_yticks(range(len(strategy_ids)), strategy_ids, fontsize=7)
    axes.set_ylim(
        max(len(strategy_ids), 4) - 0.5, -0.5
    )  # first strategy on top; room for 4 rows so one strategy is not a block
    axes.axvline(0, color="#616161", lw=0.8)
    axes.set_xlabel("mean forward return over the strategy's horizon, %", fontsize=8)
    axes.set_title(f"BUY vs SELL basket, signals of the last {window_days} days", fontsize=9)
    axes.tick_params(axis="x", labelsize=7)
    _small_legend(axes)
    return _png(figure)


def missing_rate_heatmap(
    rates: pl.DataFrame,
    *,
    factors: Sequence[str] | None = None,
    days: Sequence[dt.date] | None = None,
    title: str = "",
) -> bytes:
    """Factor × day heatmap of missing rates (0 = complete, 1 = all missing, dark red).

    `rates`: trade_date, factor, missing_rate. `factors` fixes the rows (default: sorted), `days` the
    columns (default: the days in `rates`); a cell without a rate — a day never stored — stays blank.
    """
    _require(rates, "missing_rate_heatmap", ["trade_date", "factor", "missing_rate"])
    factor_ids = list(factors) if factors is not None else sorted(rates["factor"].unique().to_list())
    days = sorted(days) if days is not None else sorted(rates["trade_date"].unique().to_list())
    # 10 px per factor row plus 96 px of title and axis, in whole pixels so the PNG's size is exact.
    height_pixels = min(640, 96 + 10 * max(len(factor_ids), 1))
    figure = _figure((8.0, height_pixels / DPI))
    axes = figure.add_subplot()
    if not days or not factor_ids:
        _no_data(axes, "missing rates")
        return _png(figure)
    matrix = np.full((len(factor_ids), len(days)), np.nan)
    row_of = {f: i for i, f in enumerate(factor_ids)}
    col_of = {d: j for j, d in enumerate(days)}
    for day, factor, rate in rates.select("trade_date", "factor", "missing_rate").iter_rows():
        if factor in row_of and day in col_of and rate is not None:
            matrix[row_of[factor], col_of[day]] = rate
    image = axes.imshow(matrix, aspect="auto", cmap="Reds", vmin=0.0, vmax=1.0, interpolation="nearest")
    axes.set_yticks(range(len(factor_ids)), factor_ids, fontsize=6)
    step = max(1, len(days) // 8)
    axes.set_xticks(range(0, len(days), step), [days[j].isoformat() for j in range(0, len(days), step)], fontsize=6)
    axes.set_title(title or f"missing rate by factor and day ({days[0]} … {days[-1]})", fontsize=9)
    figure.colorbar(image, ax=axes, fraction=0.03, pad=0.01).ax.tick_params(labelsize=6)
    return _png(figure)


def position_chart(positions: pl.DataFrame) -> bytes:
    """QRL position value and PnL over time.

    `positions`: as_of, price, position_qty, realized_pnl, unrealized_pnl (nulls when no price).
    """
    _require(positions, "position_chart", ["as_of", "price", "position_qty", "realized_pnl", "unrealized_pnl"])
    figure = _figure()
    value_axes = figure.add_subplot()
    rows = positions.sort("as_of")
    if rows.is_empty():
        _no_data(value_axes, "positions")
        return _png(figure)
    times = _times(rows["as_of"])
    value = (rows["price"] * rows["position_qty"]).to_list()
    pnl = (rows["realized_pnl"] + rows["unrealized_pnl"].fill_null(0.0)).to_list()
    value_axes.plot(times, value, color="#1565c0", lw=1.4, label="position value (USDT)")
    value_axes.set_ylabel("value, USDT", fontsize=8)
    pnl_axes = value_axes.twinx()
    pnl_axes.plot(times, pnl, color="#ef6c00", lw=1.2, label="PnL, realized + unrealized (USDT)")
    pnl_axes.plot(times, rows["realized_pnl"].to_list(), color="#ef6c00", lw=0.8, ls="--", label="realized PnL")
    pnl_axes.set_ylabel("PnL, USDT", fontsize=8)
    for axes in (value_axes, pnl_axes):
        axes.tick_params(labelsize=7)
    handles = value_axes.get_legend_handles_labels()[0] + pnl_axes.get_legend_handles_labels()[0]
    value_axes.legend(handles=handles, loc="upper left", fontsize=7, frameon=False)
    value_axes.set_title("QRL position value and PnL", fontsize=9)
    figure.autofmt_xdate()
    return _png(figure)


def rebalance_chart(plans: pl.DataFrame) -> bytes:
    """QRL share of the portfolio against its target, with each plan's action marked.

    `plans`: timestamp, current_ratio, target_ratio, action (BUY/SELL/HOLD), notional_usdt.
    """
    _require(plans, "rebalance_chart", ["timestamp", "current_ratio", "target_ratio", "action", "notional_usdt"])
    figure = _figure()
    axes = figure.add_subplot()
    rows = plans.sort("timestamp")
    if rows.is_empty():
        _no_data(axes, "rebalance plans")
        return _png(figure)
    times = _times(rows["timestamp"])
    axes.plot(times, rows["current_ratio"].to_list(), color="#1565c0", lw=1.2, label="QRL share")
    axes.plot(times, rows["target_ratio"].to_list(), color="#616161", lw=0.8, ls="--", label="target")
    for action, marker in (("BUY", "^"), ("SELL", "v"), ("HOLD", ".")):
        picked = [(t, r) for t, r, a in zip(times, rows["current_ratio"], rows["action"], strict=True) if a == action]
        if picked:
            axes.scatter(*zip(*picked, strict=True), marker=marker, s=28, color=SIGNAL_COLOURS[action], label=action)
    axes.set_ylim(0, 1)
    axes.tick_params(labelsize=7)
    axes.set_title("rebalance plans: QRL share vs target, actions", fontsize=9)
    figure.autofmt_xdate()
    _small_legend(axes)
    return _png(figure)


def ic_series_chart(ics: pl.DataFrame, *, horizon: int, smooth_days: int = 20) -> bytes:
    """Daily rank IC of one or more factors at one horizon, with its `smooth_days` rolling mean.

    `ics`: factor_id, trade_date, rank_ic (already filtered to the horizon). Positive = the factor's high
    values were followed by high total returns.
    """
    _require(ics, "ic_series_chart", ["factor_id", "trade_date", "rank_ic"])
    figure = _figure()
    axes = figure.add_subplot()
    rows = ics.filter(pl.col("rank_ic").is_not_null()).sort("factor_id", "trade_date")
    if rows.is_empty():
        _no_data(axes, "ICs")
    for index, ((factor_id,), group) in enumerate(rows.group_by("factor_id", maintain_order=True)):
        colour = f"C{index % 10}"
        days = group["trade_date"].to_list()
        if len(rows["factor_id"].unique()) == 1:
            axes.bar(days, group["rank_ic"].to_list(), color="#90caf9", width=1.0, label="daily rank IC")
        rolling = group["rank_ic"].rolling_mean(smooth_days, min_samples=1).to_list()
        axes.plot(days, rolling, color=colour, lw=1.4, label=f"{factor_id} ({smooth_days}-day mean)")
    axes.axhline(0, color="#616161", lw=0.8)
    axes.set_title(f"rank IC, {horizon}-day forward total return, by factor day", fontsize=9)
    axes.tick_params(labelsize=7)
    _whole_days(axes)
    figure.autofmt_xdate()
    _small_legend(axes)
    return _png(figure)


def ic_decay_chart(decay: pl.DataFrame) -> bytes:
    """Mean rank IC by horizon (bars per factor): how fast the factor's information fades.

    `decay`: factor_id, horizon, mean_ic.
    """
    _require(decay, "ic_decay_chart", ["factor_id", "horizon", "mean_ic"])
    figure = _figure()
    axes = figure.add_subplot()
    factor_ids = sorted(decay["factor_id"].unique().to_list())
    horizons = sorted(decay["horizon"].unique().to_list())
    if not factor_ids:
        _no_data(axes, "ICs")
    width = 0.8 / max(len(factor_ids), 1)
    for index, factor_id in enumerate(factor_ids):
        rows = decay.filter(pl.col("factor_id") == factor_id).sort("horizon")
        places = [horizons.index(h) + (index - (len(factor_ids) - 1) / 2) * width for h in rows["horizon"]]
        axes.bar(places, rows["mean_ic"].fill_null(0.0).to_list(), width=width, label=factor_id)
    axes.set_xticks(range(len(horizons)), [f"{h} d" for h in horizons], fontsize=7)
    axes.axhline(0, color="#616161", lw=0.8)
    axes.set_title("IC decay: mean rank IC by forward horizon", fontsize=9)
    axes.tick_params(labelsize=7)
    _small_legend(axes)
    return _png(figure)


def quantile_returns_chart(quantiles: pl.DataFrame, *, horizon: int) -> bytes:
    """Mean forward return of each factor quantile (q1 = lowest values … q5 = highest), bars per factor.

    `quantiles`: factor_id, quantile, mean_return.
    """
    _require(quantiles, "quantile_returns_chart", ["factor_id", "quantile", "mean_return"])
    figure = _figure()
    axes = figure.add_subplot()
    factor_ids = sorted(quantiles["factor_id"].unique().to_list())
    if not factor_ids:
        _no_data(axes, "quantile returns")
    levels = sorted(quantiles["quantile"].unique().to_list())
    width = 0.8 / max(len(factor_ids), 1)
    for index, factor_id in enumerate(factor_ids):
        rows = quantiles.filter(pl.col("factor_id") == factor_id).sort("quantile")
        places = [levels.index(q) + (index - (len(factor_ids) - 1) / 2) * width for q in rows["quantile"]]
        axes.bar(places, [100 * (r or 0.0) for r in rows["mean_return"]], width=width, label=factor_id)
    axes.set_xticks(range(len(levels)), [f"q{q}" for q in levels], fontsize=7)
    axes.axhline(0, color="#616161", lw=0.8)
    axes.set_ylabel(f"mean {horizon}-day return, %", fontsize=8)
    axes.set_title(f"mean {horizon}-day forward total return by factor quantile", fontsize=9)
    axes.tick_params(labelsize=7)
    _small_legend(axes)
    return _png(figure)


def nav_chart(nav: pl.DataFrame, *, capital: dict[str, float] | None = None) -> bytes:
    """Each strategy's NAV (after costs, as a multiple of its starting capital) and, below, its drawdown.

    `nav`: strategy_id, trade_date, nav. `capital`: starting capital per strategy (default: first NAV).
    """
    _require(nav, "nav_chart", ["strategy_id", "trade_date", "nav"])
    figure = _figure((8.0, 4.4))
    growth_axes, drawdown_axes = figure.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    rows = nav.sort("strategy_id", "trade_date")
    if rows.is_empty():
        _no_data(growth_axes, "backtest days")
    for index, ((strategy_id,), group) in enumerate(rows.group_by("strategy_id", maintain_order=True)):
        start = (capital or {}).get(strategy_id) or group["nav"][0]
        growth = group["nav"] / start
        peak = growth.cum_max().clip(lower_bound=1.0)
        days = group["trade_date"].to_list()
        colour = f"C{index % 10}"
        growth_axes.plot(days, growth.to_list(), color=colour, lw=1.2, label=strategy_id)
        drawdown_axes.plot(days, (100 * (growth / peak - 1)).to_list(), color=colour, lw=0.9)
    growth_axes.axhline(1.0, color="#616161", lw=0.8, ls="--")
    growth_axes.set_ylabel("NAV / capital", fontsize=8)
    drawdown_axes.set_ylabel("drawdown, %", fontsize=8)
    growth_axes.set_title("strategy NAV after costs, and drawdown", fontsize=9)
    for axes in (growth_axes, drawdown_axes):
        axes.tick_params(labelsize=7)
    _whole_days(drawdown_axes)
    figure.autofmt_xdate()
    _small_legend(growth_axes)
    return _png(figure)


def _whole_days(axes) -> None:
    # Daily data: ticks on whole days only (matplotlib would otherwise add 12:00 ticks on short spans).
    from matplotlib.dates import DateFormatter
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True, min_n_ticks=1))
    axes.xaxis.set_major_formatter(DateFormatter("%Y-%m-%d"))


def _times(column: pl.Series) -> list[dt.datetime]:
    # matplotlib wants naive datetimes; every timestamp here is UTC.
    if isinstance(column.dtype, pl.Datetime) and column.dtype.time_zone is not None:
        column = column.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return column.to_list()
