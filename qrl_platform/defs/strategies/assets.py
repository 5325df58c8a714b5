"""Strategy assets: thin Dagster wiring over `runner`, `store` and `stats`.

* `strategies` — validates the YAML definitions shipped in the repo and seeds the warehouse table.
* `strategy_signals` — JOB-M11-001 on trading-day partitions (one run for a whole backfill range):
  every ACTIVE strategy over the day's universe, written with its executions in one transaction.
* `strategy_stats` — JOB-M11-003: counts, confidence and hit rates per strategy for 7/30/90 days.
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

from collections.abc import Sequence
from pathlib import Path

import dagster as dg
from pydantic import Field

from qrl_platform import dashboard
from qrl_platform.defs.daily_flow.conditions import STATS_CONDITION, STRATEGIES_CONDITION
from qrl_platform.defs.gating import blocking_check_statuses_of_assets, check_names_of
from qrl_platform.defs.outages import naming_outages
from qrl_platform.defs.partitions import partition_dates, trading_day
from qrl_platform.defs.resources import FrameStoreResource, WarehouseResource
from qrl_platform.strategies import isolation
from qrl_platform.strategies.definition import BUILTIN_DIR
from qrl_platform.strategies.engine import RunOptions, UniverseOverride
from qrl_platform.strategies.runner import (
    INDICATOR_ASSETS,
    StrategyInputsMissing,
    StrategyRunSettings,
    StrategyRunSummary,
    run_strategy_days,
)
from qrl_platform.strategies.stats import PERIODS, update_strategy_stats
from qrl_platform.strategies.store import seed_strategies

GROUP = "strategies"
TAGS = {"module": "M11"}


# ------------------------------------------------------------------------------------- strategies
class StrategiesConfig(dg.Config):
    directory: str = Field(
        default="",
        description="Folder of strategy YAML files; empty = the built-ins shipped in qrl_platform/strategies/builtin.",
    )


@dg.asset(
    group_name=GROUP,
    kinds={"yaml", "sql"},
    tags=TAGS,
    description="M11 strategy definitions: the YAML files in the repo, validated (unknown factor, bad operator, "
    "senseless weights are rejected naming the file and field) and upserted into the `strategies` table by "
    "strategy_id/version.",
)
def strategies(
    context: dg.AssetExecutionContext, config: StrategiesConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    directory = Path(config.directory) if config.directory else BUILTIN_DIR
    result = seed_strategies(warehouse.get(), directory)
    context.log.info(
        f"strategies: {len(result.inserted)} inserted, {len(result.updated)} updated, {len(result.unchanged)} unchanged"
    )
    table = dg.TableMetadataValue(
        records=[
            dg.TableRecord(
                {
                    "strategy_id": d.strategy_id,
                    "name": d.name,
                    "status": d.status,
                    "version": d.version,
                    "horizon_days": d.horizon_days,
                    "rules": "; ".join(r.describe() for r in d.rules),
                }
            )
            for d in result.definitions
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("strategy_id", "string"),
                dg.TableColumn("name", "string"),
                dg.TableColumn("status", "string"),
                dg.TableColumn("version", "int"),
                dg.TableColumn("horizon_days", "int"),
                dg.TableColumn("rules", "string"),
            ]
        ),
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(result.definitions),
            "active": sum(d.is_active for d in result.definitions),
            "inserted": ", ".join(result.inserted) or "-",
            "updated": ", ".join(result.updated) or "-",
            "source": str(directory),
            "strategies": table,
        }
    )


# ------------------------------------------------------------------------------------- signals
class StrategyRunConfig(dg.Config):
    """JOB-M11-001's parameters. Universe options left empty keep each strategy's own universe
    (the built-ins use the job defaults: market_type ALL, min_volume 500 lots, no ETFs, no suspended)."""

    strategy_ids: list[str] = Field(default=[], description="Run only these strategies (empty: every ACTIVE one).")
    save_results: bool = Field(
        default=True, description="false = dry run: compute and report in metadata, write nothing."
    )
    include_factor_values: bool = Field(default=True, description="Store the factor values each signal used (JSON).")
    include_diagnostics: bool = Field(
        default=True, description="Store per-execution diagnostics (universe, rules, scores)."
    )
    save_all_signals: bool = Field(default=True, description="false = store BUY/SELL only, not HOLD.")
    batch_size: int = Field(
        default=25,
        description="Trading days evaluated in one vectorised pass and written in one transaction. (The source "
        "batched 100 stocks; evaluation here is vectorised over all stocks, so batching is by day.) 25 days of "
        "1,800 stocks and 10 strategies are 0.45 M signal rows; a chunk is written while the next is evaluated, "
        "so two are in memory at once (a year's run peaks about 0.2 GiB lower than with 50 days).",
    )
    timeout_minutes: float = Field(
        default=30,
        description="Time limit per strategy (and chunk of days): a strategy still running is stopped and "
        "recorded as TIMEOUT; the others still run. Fractions are fine (0.5 = 30 s).",
    )
    market_type: str | None = Field(default=None, description="Override: ALL | TWSE | TPEx.")
    min_volume: float | None = Field(default=None, description="Override: minimum day volume in lots (1,000 shares).")
    exclude_etf: bool | None = Field(default=None, description="Override: drop ETFs.")
    exclude_suspended: bool | None = Field(default=None, description="Override: drop suspended stocks.")

    def settings(self) -> StrategyRunSettings:
        universe = UniverseOverride(
            market_type=self.market_type,
            min_volume_lots=self.min_volume,
            exclude_etf=self.exclude_etf,
            exclude_suspended=self.exclude_suspended,
        )
        options = RunOptions(
            include_factor_values=self.include_factor_values,
            include_diagnostics=self.include_diagnostics,
            save_all_signals=self.save_all_signals,
            universe=universe,
        )
        return StrategyRunSettings(
            strategy_ids=tuple(self.strategy_ids),
            save_results=self.save_results,
            options=options,
            batch_size=self.batch_size,
            timeout_minutes=self.timeout_minutes,
        )


class IndicatorChecksFailed(dg.Failure):
    """A blocking check of an indicator partition failed; strategies must not run on that data.
    Raised with `allow_retries=False`, so the step's retry policy does not retry it: only fixing the day helps."""


def indicator_check_status(
    instance: dg.DagsterInstance, dates: Sequence[str], assets: Sequence[str] = INDICATOR_ASSETS
) -> tuple[list[str], list[str]]:
    """(failures, unchecked) for the indicator partitions `dates`, by the daily flow's one rule
    (`qrl_platform.defs.gating`): the blocking checks logged in the run of each partition's latest
    materialisation. Partitions without a Dagster materialisation (frames written by a notebook or the
    CLI) or without check evaluations are `unchecked` — reported, not refused."""
    from qrl_platform.defs.factors.checks import INDICATOR_CHECKS

    failures: list[str] = []
    unchecked: list[str] = []
    names = {asset: check_names_of(INDICATOR_CHECKS, asset) for asset in assets}
    for asset, statuses in blocking_check_statuses_of_assets(instance, names, dates).items():
        for date, status in statuses.items():
            failures += [f"{date} {failure}" for failure in status.failures]
            if not status.materialized or status.unchecked:
                unchecked.append(f"{asset} {date}")
    return failures, unchecked


@dg.asset(
    group_name=GROUP,
    partitions_def=trading_day,
    backfill_policy=dg.BackfillPolicy.single_run(),
    # tradability: universes may exclude limit-locked, disposition or full-cash-delivery stocks.
    deps=[*INDICATOR_ASSETS, "daily_quotes", "tradability", "strategies"],
    automation_condition=STRATEGIES_CONDITION,
    kinds={"polars", "sql"},
    tags=TAGS,
    description="M11 EXEC_ALL_STRATEGIES (JOB-M11-001): every ACTIVE strategy over the day's universe → BUY/SELL/HOLD "
    "with confidence in `strategy_signals`, one `strategy_executions` row per strategy and day (new execution_id "
    "per run), failures in `job_execution_details`. A day's signals are replaced in one transaction; signal_id is "
    "deterministic. Runs only when M07/M08/M09 are materialised for the day and their blocking checks passed.",
)
def strategy_signals(
    context: dg.AssetExecutionContext,
    config: StrategyRunConfig,
    warehouse: WarehouseResource,
    frames: FrameStoreResource,
) -> dg.MaterializeResult:
    dates = partition_dates(context)
    settings = config.settings()
    # The strategies' worker processes fork from a server that takes about a second to start in a new
    # process: it starts now, while the gate reads the event log, instead of after it.
    isolation.start_server_early()
    failures, unchecked = indicator_check_status(context.instance, [d.isoformat() for d in dates])
    if failures:
        raise IndicatorChecksFailed(
            description="strategies refused: the indicators they read failed blocking checks — " + "; ".join(failures),
            allow_retries=False,
        )
    if unchecked:
        context.log.warning(f"indicator partitions without check evaluations (not gated): {', '.join(unchecked[:10])}")
    wh = warehouse.get()
    try:
        with naming_outages(f"strategy_signals {dates[0]}..{dates[-1]}", warehouse_url=wh.url):
            summary = run_strategy_days(wh, frames.get(), dates, settings, run_id=context.run_id, log=context.log)
    except StrategyInputsMissing as missing:
        # Retrying cannot help (only materialising the indicators does): fail now, not after the step
        # retry policy's 20 + 60 + 140 s of waits.
        raise dg.Failure(description=str(missing), allow_retries=False) from missing
    metadata = signals_metadata(summary)
    metadata["indicator_partitions_unchecked"] = len(unchecked)
    for key, figures in dashboard.signal_plot_metadata(summary).items():  # a Plots graph per strategy and figure
        context.add_asset_metadata(figures, partition_key=key)
    return dg.MaterializeResult(metadata=metadata)


def signals_metadata(summary: StrategyRunSummary) -> dict:
    """The per-partition dashboard: run/succeeded/failed, BUY/SELL/HOLD, per-strategy table, slowest."""
    meta: dict = {
        "dagster/row_count": summary.signals_written if summary.saved else summary.total["signals"],
        "dry_run": not summary.saved,
        "trading_days": len(summary.open_dates),
        "closed_days": len(summary.closed),
    }
    if len(summary.dates) == 1:
        meta["market_closed"] = bool(summary.closed)
        if summary.closed:
            meta["closed_reason"] = next(iter(summary.closed.values()))
    elif summary.closed:
        meta["closed_dates"] = "\n".join(f"{d}: {r}" for d, r in sorted(summary.closed.items()))
    if not summary.strategies:
        if summary.notes:
            meta["note"] = "; ".join(summary.notes)
        return meta
    total = summary.total
    failed = summary.failed
    meta.update(
        {
            "strategies_run": len(summary.strategies),
            "strategies_succeeded": len(summary.strategies) - len(failed),
            "strategies_failed": len(failed),
            "total_signals": total["signals"],
            "buy_signals": total["buy"],
            "sell_signals": total["sell"],
            "hold_signals": total["hold"],
            "compute_ms": round(summary.compute_ms, 1),
            "write_ms": round(summary.write_ms, 1),
            "strategy_results": dg.TableMetadataValue(
                records=[
                    dg.TableRecord(
                        {
                            "strategy_id": s.strategy_id,
                            "status": s.status,
                            "stocks": s.stocks_evaluated,
                            "signals": s.signals,
                            "buy": s.buy,
                            "sell": s.sell,
                            "hold": s.hold,
                            "buy_sell_ratio": round(s.buy / s.sell, 3) if s.sell else None,
                            "duration_ms": round(s.duration_ms, 1),
                            "error": (s.error_message or "")[:300],
                        }
                    )
                    for s in sorted(summary.strategies.values(), key=lambda s: s.strategy_id)
                ],
                schema=dg.TableSchema(
                    columns=[
                        dg.TableColumn("strategy_id", "string"),
                        dg.TableColumn("status", "string"),
                        dg.TableColumn("stocks", "int"),
                        dg.TableColumn("signals", "int"),
                        dg.TableColumn("buy", "int"),
                        dg.TableColumn("sell", "int"),
                        dg.TableColumn("hold", "int"),
                        dg.TableColumn("buy_sell_ratio", "float"),
                        dg.TableColumn("duration_ms", "float"),
                        dg.TableColumn("error", "string"),
                    ]
                ),
            ),
        }
    )
    slowest = summary.slowest()
    if slowest is not None:
        meta["slowest_strategy"] = f"{slowest.strategy_id} ({slowest.duration_ms:.1f} ms)"
    if failed:
        meta["failed_strategies"] = "\n".join(
            f"{s}: {summary.strategies[s].status} — {(summary.strategies[s].error_message or '')[:300]}" for s in failed
        )
    if summary.saved:
        ids = summary.execution_ids
        meta["execution_ids"] = "\n".join(ids) if len(ids) <= 40 else f"{len(ids)} executions (see strategy_executions)"
    return meta


# ------------------------------------------------------------------------------------- stats
@dg.asset(
    group_name=GROUP,
    partitions_def=trading_day,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["strategy_signals", "daily_quotes", "corporate_actions"],
    automation_condition=STATS_CONDITION,
    kinds={"polars", "sql"},
    tags=TAGS,
    description="M11 UPDATE_STRATEGY_STATS (JOB-M11-003): per strategy and as-of day — total executions/signals, "
    "last execution, and for 7/30/90 days signal counts, average BUY/SELL confidence and hit rate over the "
    "strategy's horizon (only signals whose horizon has elapsed), judged on total return (prices adjusted for "
    "dividends and capital changes as of the exit date). A BUY at limit-up or a SELL at limit-down is unfilled: "
    "counted in `unfilled`, not in the hit rate. Also refreshes the `strategies` summary columns.",
)
def strategy_stats(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, frames: FrameStoreResource
) -> dg.MaterializeResult:
    from qrl_platform.calendar import day_status

    dates = partition_dates(context)
    open_dates = [d for d in dates if day_status(d).is_open]
    closed = {d: day_status(d).reason for d in dates if d not in open_dates}
    wh = warehouse.get()
    with naming_outages(f"strategy_stats {dates[0]}..{dates[-1]}", warehouse_url=wh.url):
        result = update_strategy_stats(wh, frames.get(), open_dates)
    for key, figures in dashboard.stats_plot_metadata(result.stats).items():  # a Plots graph per strategy and figure
        context.add_asset_metadata(figures, partition_key=key)
    if open_dates:  # charts of the trailing window, on the run's last day only
        charts = dashboard.strategy_stats_charts(wh, result, open_dates[-1])
        context.add_asset_metadata(
            {k: dg.MetadataValue.md(v) for k, v in charts.items()}, partition_key=str(open_dates[-1])
        )
    meta: dict = {"dagster/row_count": result.rows_written, "as_of_days": len(open_dates), "periods": list(PERIODS)}
    if len(dates) == 1:
        meta["market_closed"] = bool(closed)
        if closed:
            meta["closed_reason"] = next(iter(closed.values()))
    if result.stats.height:
        last = result.stats.filter(result.stats["as_of_date"] == result.stats["as_of_date"].max())
        meta["as_of"] = str(last["as_of_date"][0])
        meta["stats"] = dg.TableMetadataValue(
            records=[
                dg.TableRecord(
                    {
                        "strategy_id": r["strategy_id"],
                        "period_days": r["period_days"],
                        "signals": r["signal_count"],
                        "buy": r["buy_count"],
                        "sell": r["sell_count"],
                        "avg_confidence": r["avg_confidence"],
                        "evaluated": r["evaluated_signals"],
                        "hit_rate": r["hit_rate"],
                        "unfilled": r["unfilled_signals"],
                    }
                )
                for r in last.sort("strategy_id", "period_days").iter_rows(named=True)
            ],
            schema=dg.TableSchema(
                columns=[
                    dg.TableColumn("strategy_id", "string"),
                    dg.TableColumn("period_days", "int"),
                    dg.TableColumn("signals", "int"),
                    dg.TableColumn("buy", "int"),
                    dg.TableColumn("sell", "int"),
                    dg.TableColumn("avg_confidence", "float"),
                    dg.TableColumn("evaluated", "int"),
                    dg.TableColumn("hit_rate", "float"),
                    dg.TableColumn(
                        "unfilled", "int", description="BUY at limit-up / SELL at limit-down: not in the hit rate"
                    ),
                ]
            ),
        )
    return dg.MaterializeResult(metadata=meta)


STRATEGY_ASSETS = [strategies, strategy_signals, strategy_stats]
