"""What a person reads: the factor and strategy figures as tables, charts and a self-contained HTML
tear sheet (`qrl report`), and the same figures for the assets' metadata.

Everything here reads the evaluation frames the assets stored (`pipeline`), so the CLI, the asset
metadata and the tear sheet show the same numbers.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from dataclasses import dataclass, field

import polars as pl

from qrl_platform import charts
from qrl_platform.calendar import trading_days
from qrl_platform.evaluation.factor_ic import DECAY_HORIZONS, HORIZONS
from qrl_platform.evaluation.factor_report import IC_FIGURES, factor_report
from qrl_platform.evaluation.metrics import performance
from qrl_platform.evaluation.pipeline import (
    FACTOR_IC,
    FACTOR_QUANTILE_RETURNS,
    FACTOR_TURNOVER,
    STRATEGY_BACKTEST,
    STRATEGY_TRADES,
)
from qrl_platform.factors.registry import FACTORS_BY_ID
from qrl_platform.storage.frames import FrameStore

CHART_HORIZON = 5  # the horizon of the IC series and quantile charts


@dataclass
class TearSheet:
    title: str
    summary: pl.DataFrame
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    charts: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        with pl.Config(tbl_rows=60, tbl_cols=30, tbl_width_chars=160, float_precision=4, tbl_hide_dataframe_shape=True):
            parts = [self.title, *self.notes, str(self.summary)]
            parts += [f"{name}\n{table}" for name, table in self.tables.items()]
        return "\n\n".join(parts)

    def html(self) -> str:
        """One HTML file, charts embedded as data URIs: it can be mailed or archived as it is."""
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        body += [f"<p>{html.escape(note)}</p>" for note in self.notes]
        body.append(_html_table(self.summary))
        for name, png in self.charts.items():
            encoded = base64.b64encode(png).decode("ascii")
            body.append(
                f'<h2>{html.escape(name)}</h2><img alt="{html.escape(name)}" src="data:image/png;base64,{encoded}">'
            )
        for name, table in self.tables.items():
            body.append(f"<h2>{html.escape(name)}</h2>{_html_table(table)}")
        style = (
            "body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;font-size:13px}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f5f5f5}"
        )
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>"
        )


def _html_table(frame: pl.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>" for row in frame.iter_rows()
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


# ------------------------------------------------------------------------------------- factors
def factor_sheet(store: FrameStore, factor_id: str, start: dt.date, end: dt.date) -> TearSheet:
    """The factor's figures over the ICs known in [start, end]."""
    if factor_id not in FACTORS_BY_ID:
        raise KeyError(f"unknown factor {factor_id!r}")
    days = trading_days(start, end)
    if not days:
        raise ValueError(f"no trading day between {start} and {end}")
    mine = pl.col("factor_id") == factor_id
    ics = store.read_range(FACTOR_IC, start, end)
    if ics.is_empty():
        raise ValueError(f"factor_ic has no stored day between {start} and {end}; materialise it first")
    ics = ics.filter(mine)
    quantiles = store.read_range(FACTOR_QUANTILE_RETURNS, start, end).filter(mine)
    turnover = store.read_range(FACTOR_TURNOVER, start, end).filter(mine)
    report = factor_report(ics, quantiles, turnover, days, days[-1], windows=(len(days),))
    factor = FACTORS_BY_ID[factor_id]
    direction = report["direction"][0] if report.height else None
    notes = [
        f"{factor.module} {factor.name}: {factor.description} ({factor.unit}).",
        f"Which way is good: {_direction_text(direction)} (sign of the mean 20-day rank IC over these days). "
        f"Known from the close of its day{' (uses the previous trading day’s margin data)' if factor.lag_days else ''}; "
        f"evidence since {ics['trade_date'].min()}.",
    ]
    summary = report.select("horizon", *IC_FIGURES, "mean_pearson_ic", "q1", "q2", "q3", "q4", "q5", "spread")
    extra = report.head(1).select(
        *[f"ic_decay_{h}" for h in DECAY_HORIZONS], "top_turnover", "bottom_turnover", "rank_autocorrelation"
    )
    sheet = TearSheet(
        f"Factor {factor_id}, {days[0]} to {days[-1]}", summary, {"decay and turnover": extra}, notes=notes
    )
    sheet.charts = factor_charts(ics, quantiles, [factor_id])
    return sheet


def _direction_text(direction: str | None) -> str:
    return {"higher": "higher values", "lower": "lower values"}.get(direction or "", "undecided (no IC yet)")


def factor_charts(ics: pl.DataFrame, quantiles: pl.DataFrame, factor_ids: list[str]) -> dict[str, bytes]:
    """The IC time series, the IC decay bars and the quantile bars of `factor_ids`."""
    chosen = pl.col("factor_id").is_in(factor_ids)
    series = ics.filter(chosen & (pl.col("horizon") == CHART_HORIZON))
    decay = (
        ics.filter(chosen & pl.col("horizon").is_in(list(DECAY_HORIZONS)))
        .group_by("factor_id", "horizon")
        .agg(pl.col("rank_ic").mean().alias("mean_ic"))
    )
    by_quantile = (
        quantiles.filter(chosen & (pl.col("horizon") == CHART_HORIZON))
        .group_by("factor_id", "quantile")
        .agg(pl.col("mean_return").mean())
    )
    return {
        "ic_chart": charts.ic_series_chart(series, horizon=CHART_HORIZON),
        "ic_decay_chart": charts.ic_decay_chart(decay),
        "quantile_chart": charts.quantile_returns_chart(by_quantile, horizon=CHART_HORIZON),
    }


def factor_lines(report: pl.DataFrame, *, window: int, horizon: int = HORIZONS[1]) -> str:
    """One line per factor for the asset metadata: which way is good and the 5-day ICIR."""
    rows = report.filter((pl.col("window_days") == window) & (pl.col("horizon") == horizon)).sort("factor_id")
    return "\n".join(
        f"{r['factor_id']}: {_direction_text(r['direction'])} are better; {horizon}-day ICIR "
        f"{_cell(r['icir'])}, mean IC {_cell(r['mean_ic'])} over {r['days']} days since {r['evidence_since']}"
        for r in rows.iter_rows(named=True)
    )


# ------------------------------------------------------------------------------------- strategies
def strategy_sheet(store: FrameStore, strategy_id: str, start: dt.date, end: dt.date) -> TearSheet:
    nav = store.read_range(STRATEGY_BACKTEST, start, end)
    if nav.is_empty() or not nav.filter(pl.col("strategy_id") == strategy_id).height:
        raise ValueError(
            f"strategy_backtest has no day of {strategy_id} between {start} and {end}; materialise it first"
        )
    nav = nav.filter(pl.col("strategy_id") == strategy_id)
    trades = store.read_range(STRATEGY_TRADES, start, end).filter(pl.col("strategy_id") == strategy_id)
    figures = performance(nav)
    sheet = TearSheet(f"Strategy {strategy_id}, {nav['trade_date'].min()} to {nav['trade_date'].max()}", figures)
    sheet.notes.append(
        "After costs: commission 0.1425 % per side (NT$20 minimum), transaction tax 0.3 % (ETFs 0.1 %) on sells."
    )
    if trades.height:
        sheet.tables["trades by reason"] = (
            trades.group_by("side", "status", "reason")
            .agg(pl.len().alias("orders"), pl.col("value").sum())
            .sort("side", "status", "reason")
        )
    sheet.charts = {"nav_chart": charts.nav_chart(nav, capital=_capital(nav))}
    return sheet


def _capital(nav: pl.DataFrame) -> dict[str, float]:
    """The NAV before the first shown day: first NAV / (1 + its daily return)."""
    first = nav.sort("trade_date").group_by("strategy_id", maintain_order=True).first()
    return {r["strategy_id"]: r["nav"] / (1 + (r["daily_return"] or 0.0)) for r in first.iter_rows(named=True)}


def nav_chart(nav: pl.DataFrame) -> bytes:
    return charts.nav_chart(nav, capital=_capital(nav))
