"""Evaluation assets: is a factor or a strategy any good? Thin wiring over
`qrl_platform.evaluation` (pure polars maths, frames in the frame store).

* `factor_ic` — per known day E, every factor's rank/Pearson IC against the 1/5/10/20-day forward total
  return that became known on E (with quantile returns and turnover).
* `factor_report` — per day, the rolling 60/250-day report per factor, with its charts.
* `strategy_backtest` — per day, each ACTIVE strategy's book after trading its signals: NAV, positions,
  trades, costs, turnover; performance figures since the first backtest day, NAV/drawdown chart.

All three take single-run backfills; a range run and day-by-day runs store the same rows. An input
partition counts as stored when Dagster's event log holds a materialisation of it (`defs/stored.py`);
the frames are read from the frame store.
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import math

import dagster as dg
import polars as pl
from pydantic import Field

from qrl_platform.charts import markdown_image
from qrl_platform.defs.partitions import partition_dates, trading_day
from qrl_platform.defs.resources import FrameStoreResource, WarehouseResource
from qrl_platform.defs.stored import stored_partitions
from qrl_platform.evaluation import tearsheet
from qrl_platform.evaluation.factor_ic import DECAY_HORIZONS
from qrl_platform.evaluation.factor_report import RANKING_COLUMNS, WINDOWS, best_and_worst
from qrl_platform.evaluation.inputs import EvaluationInputsMissing, stored_range
from qrl_platform.evaluation.pipeline import (
    FACTOR_IC,
    FACTOR_QUANTILE_RETURNS,
    STRATEGY_BACKTEST,
    WRITTEN_BY,
    BacktestStateMissing,
    EvaluationRun,
    backtest_strategies,
    evaluate_factors,
    report_factors,
    stored_performance,
)
from qrl_platform.factors.compute_range import StoredKeys
from qrl_platform.factors.registry import MODULE_ASSETS

GROUP = "evaluation"
TAGS = {"module": "M11"}
INDICATORS = list(MODULE_ASSETS.values())


def _missing_inputs_fail(run):
    """Missing inputs cannot be fixed by retrying: fail at once, naming what is missing."""
    try:
        return run()
    except (EvaluationInputsMissing, BacktestStateMissing) as missing:
        raise dg.Failure(description=str(missing), allow_retries=False) from missing


def _stored_keys(context: dg.AssetExecutionContext) -> StoredKeys:
    """The core's "which partitions are stored" question, answered by the instance's materialisations;
    a frame an evaluation asset writes besides its own (quantile returns, positions) is stored for the
    days that asset is."""
    return lambda table, keys: stored_partitions(context.instance, WRITTEN_BY.get(table, table), keys)


def _also_written(stored_keys: StoredKeys, table: str, written: set[str]) -> StoredKeys:
    """`stored_keys` plus this run's own `written` partitions of `table`: their materialisation is
    recorded only when the step returns, yet the metadata it returns summarises them."""

    def stored(asked: str, keys: list[str] | None) -> set[str]:
        found = stored_keys(asked, keys)
        if asked != table:
            return found
        return found | (written if keys is None else written & set(keys))

    return stored


def _day_metadata(run: EvaluationRun, count: int) -> dict:
    meta: dict = {"dagster/row_count": count, "trading_days": len(run.open_days), "closed_days": len(run.closed_days)}
    meta.update({f"seconds_{k}": round(v, 3) for k, v in run.seconds.items()})
    return meta


def _table(frame: pl.DataFrame, digits: int = 4) -> dg.TableMetadataValue:
    kinds = {pl.Float64: "float", pl.Int64: "int", pl.Int32: "int"}
    columns = [dg.TableColumn(c, kinds.get(t, "string")) for c, t in frame.schema.items()]
    records = [
        dg.TableRecord({k: _json_value(v, digits) for k, v in row.items()}) for row in frame.iter_rows(named=True)
    ]
    return dg.TableMetadataValue(records=records, schema=dg.TableSchema(columns=columns))


def _json_value(value, digits: int):
    """A table cell the UI can parse: finite rounded floats, ints, strings; NaN and infinities as empty."""
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


# ------------------------------------------------------------------------------------- factor_ic
@dg.asset(
    group_name=GROUP,
    partitions_def=trading_day,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[
        *[
            dg.AssetDep(name, partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-max(DECAY_HORIZONS)))
            for name in ("daily_quotes", "corporate_actions")  # total returns: prices adjusted as of E
        ],
        *[
            dg.AssetDep(name, partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-max(DECAY_HORIZONS) - 1))
            for name in INDICATORS
        ],
    ],
    kinds={"polars", "parquet"},
    tags=TAGS,
    description="Factor information coefficients. The partition for day E holds the ICs that became known on E: "
    "for every factor and horizon h in 1/5/10/20 trading days (10 only for the decay chart), the factor on "
    "D = E − h against the forward total return from D to E (adjusted close ratio, corporate actions published "
    "by E) — rank (Spearman) IC, Pearson IC and the number of stocks with both. Also each of 5 factor quantiles' "
    "mean forward return (frame `factor_quantile_returns`) and, for factor day E, top/bottom quantile turnover "
    "and rank autocorrelation against the previous trading day (frame `factor_turnover`). A backfill and the "
    "live run store the same rows.",
)
def factor_ic(context: dg.AssetExecutionContext, frames: FrameStoreResource) -> dg.MaterializeResult:
    dates = partition_dates(context)
    stored_keys = _stored_keys(context)
    run = _missing_inputs_fail(lambda: evaluate_factors(frames.get(), dates, stored_keys=stored_keys))
    ics = run.frames.get(FACTOR_IC, pl.DataFrame())
    for day in run.open_days:  # one Plots graph per horizon: the day's mean rank IC across factors
        rows = ics.filter(pl.col("known_on") == day)
        figures = {
            f"mean_abs_rank_ic_{h}d": round(float(rows.filter(pl.col("horizon") == h)["rank_ic"].abs().mean() or 0), 5)
            for h in (1, 5, 20)
        }
        figures["stocks"] = int(rows["n_stocks"].max() or 0)
        context.add_asset_metadata(figures, partition_key=day.isoformat())
    meta = _day_metadata(run, ics.height)
    meta["factors"] = int(ics["factor_id"].n_unique()) if ics.height else 0
    return dg.MaterializeResult(metadata=meta)


# ------------------------------------------------------------------------------------- factor_report
class FactorReportConfig(dg.Config):
    chart_factors: list[str] = Field(
        default=[], description="Factors drawn in the charts; empty = the 3 best by 5-day ICIR over 250 days."
    )


@dg.asset(
    group_name=GROUP,
    partitions_def=trading_day,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[dg.AssetDep("factor_ic", partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-max(WINDOWS) + 1))],
    kinds={"polars", "parquet"},
    tags=TAGS,
    description="Rolling factor report as of each day, over the ICs known in the last 60 and 250 trading days: per "
    "factor and horizon (1/5/20) mean rank IC, its std, ICIR, t-statistic, share of positive days, mean Pearson "
    "IC, mean forward return of each of 5 quantiles and the top-minus-bottom spread; per factor the IC decay "
    "(1/5/10/20 days), quantile turnover, rank autocorrelation and which way is good (sign of the 20-day IC). "
    "Charts (last partition of a run): IC time series, decay bars, quantile bars.",
)
def factor_report(
    context: dg.AssetExecutionContext, config: FactorReportConfig, frames: FrameStoreResource
) -> dg.MaterializeResult:
    store = frames.get()
    dates = partition_dates(context)
    stored_keys = _stored_keys(context)
    run = _missing_inputs_fail(lambda: report_factors(store, dates, stored_keys=stored_keys))
    report = run.frames.get("factor_report", pl.DataFrame())
    meta = _day_metadata(run, report.height)
    if not run.open_days:
        return dg.MaterializeResult(metadata=meta)
    last = run.open_days[-1]
    latest = report.filter(pl.col("as_of") == last)
    ranked = best_and_worst(latest, window=max(WINDOWS), horizon=5)
    meta["best_and_worst_icir_5d_250"] = _table(ranked.select(RANKING_COLUMNS))
    lines = dg.MetadataValue.md("```\n" + tearsheet.factor_lines(latest, window=max(WINDOWS)) + "\n```")
    meta["factors"] = lines
    # The same lines on factor_metadata (an observation; the registry table stays the code's): a reader of
    # a factor's description sees which way is good and since when there is evidence.
    context.log_event(
        dg.AssetObservation(
            asset_key="factor_metadata", metadata={"evaluation_as_of": str(last), "which_way_is_good": lines}
        )
    )
    chosen = list(config.chart_factors) or ranked.filter(pl.col("rank_group") == "best")["factor_id"].head(3).to_list()
    if chosen:
        start = min(latest["window_start"]) if latest.height else last
        ics = stored_range(store, FACTOR_IC, start, last, stored_keys)
        quantiles = stored_range(store, FACTOR_QUANTILE_RETURNS, start, last, stored_keys)
        charts = tearsheet.factor_charts(ics, quantiles, chosen)
        context.add_asset_metadata(
            {name: dg.MetadataValue.md(markdown_image(png, name)) for name, png in charts.items()},
            partition_key=last.isoformat(),
        )
        meta["chart_factors"] = ", ".join(chosen)
    return dg.MaterializeResult(metadata=meta)


# ------------------------------------------------------------------------------------- strategy_backtest
@dg.asset(
    group_name=GROUP,
    partitions_def=trading_day,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[
        dg.AssetDep(
            "strategy_signals", partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
        ),
        *[
            dg.AssetDep(name, partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1))
            for name in ("daily_quotes", "corporate_actions", "tradability")  # fills, limits, dividends
        ],
        "strategies",
    ],
    kinds={"polars", "parquet"},
    tags=TAGS,
    description="Strategy backtest, incremental: each ACTIVE strategy trades the previous trading day's signals at "
    "this day's open (default rule: equal-weight BUY basket, at most 10 positions, held horizon_days or until "
    "a SELL, NT$10 M; a `backtest:` block in the strategy YAML overrides it) with Taiwan costs (commission "
    "0.1425 % per side × broker discount, NT$20 minimum; tax on sells 0.3 %, ETFs 0.1 %), 1,000-share lots, no "
    "BUY at limit-up, no SELL at limit-down or while suspended. Per strategy and day: NAV, positions, trades, "
    "costs, turnover (frames strategy_backtest / strategy_positions / strategy_trades). Day D continues from "
    "D−1's stored book. Metadata: annual return, volatility, Sharpe, Sortino, maximum drawdown, hit rate, "
    "turnover and unfilled share since the first backtest day; NAV/drawdown chart.",
)
def strategy_backtest(
    context: dg.AssetExecutionContext, frames: FrameStoreResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    store = frames.get()
    dates = partition_dates(context)
    stored_keys = _stored_keys(context)
    run = _missing_inputs_fail(lambda: backtest_strategies(store, warehouse.get(), dates, stored_keys=stored_keys))
    nav = run.frames.get("strategy_backtest", pl.DataFrame())
    meta = _day_metadata(run, nav.height)
    if not run.open_days:
        return dg.MaterializeResult(metadata=meta)
    for (day,), rows in nav.group_by(["trade_date"]):  # a Plots graph per strategy: NAV and the day's return
        figures = {}
        for row in rows.iter_rows(named=True):
            figures[f"nav/{row['strategy_id']}"] = round(row["nav"], 0)
            figures[f"return_pct/{row['strategy_id']}"] = round(100 * (row["daily_return"] or 0.0), 4)
        context.add_asset_metadata(figures, partition_key=day.isoformat())
    written = {day.isoformat() for day in run.open_days}
    history, figures = stored_performance(
        store, run.open_days[-1], stored_keys=_also_written(stored_keys, STRATEGY_BACKTEST, written)
    )
    if figures.height:
        meta["performance"] = _table(figures)
        meta["since"] = str(history["trade_date"].min())
        context.add_asset_metadata(
            {"nav_chart": dg.MetadataValue.md(markdown_image(tearsheet.nav_chart(history), "nav_chart"))},
            partition_key=run.open_days[-1].isoformat(),
        )
    return dg.MaterializeResult(metadata=meta)


EVALUATION_ASSETS = [factor_ic, factor_report, strategy_backtest]
