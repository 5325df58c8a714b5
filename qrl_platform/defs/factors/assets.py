"""The technical, fundamental and chip indicator assets and `factor_metadata`: thin Dagster wiring over
`compute_range` and the registry."""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import datetime as dt
import math

import dagster as dg
import polars as pl

from qrl_platform import dashboard
from qrl_platform.defs.gating import latest_materializations
from qrl_platform.defs.partitions import partition_dates, trading_day
from qrl_platform.defs.resources import FrameStoreResource, WarehouseResource
from qrl_platform.defs.stored import stored_partitions
from qrl_platform.factors import compute_range as ranges
from qrl_platform.factors import families, quality, registry


def _weekdays_back(calendar_days: float) -> int:
    # TimeWindowPartitionMapping offsets count *downstream* (weekday) partitions, not upstream periods.
    return math.ceil(calendar_days * 5 / 7)


def _periodic_dep(table: str, calendar_days: float) -> dg.AssetDep:
    # Honest lineage for the slower tables: day D reads the revenue months / fiscal quarters / TDCC weeks
    # of roughly this window before it. Different partitions definitions can never share a run anyway, and
    # allow_nonexistent_upstream_partitions keeps early days (and the current, not yet closed period) from
    # erroring when the window reaches outside the upstream partitions.
    return dg.AssetDep(
        table,
        partition_mapping=dg.TimeWindowPartitionMapping(
            start_offset=-_weekdays_back(calendar_days), allow_nonexistent_upstream_partitions=True
        ),
    )


def _lookback_dep(table: str, asset: str) -> dg.AssetDep:
    # Day D reads the previous `lookback_trading_days` trading days of its daily raw tables (compute_range).
    # Declaring them as a window of weekday partitions makes the lineage say so, and a UI launch "with
    # upstream" (or an asset backfill) materialises that history before the indicators. Reading is
    # unchanged: compute_range reads the stored frames itself, these are deps, not IO-manager inputs.
    weekdays = ranges.lookback_weekdays(asset)
    if not weekdays:
        return dg.AssetDep(table)
    return dg.AssetDep(
        table,
        partition_mapping=dg.TimeWindowPartitionMapping(
            start_offset=-weekdays, allow_nonexistent_upstream_partitions=True
        ),
    )


def _deps(family: families.IndicatorFamily) -> list[dg.AssetDep]:
    """The family's daily raw tables over its lookback (required, then read when stored), then the
    slower tables over their windows."""
    return [
        *(_lookback_dep(table, family.asset) for table in ranges.DAILY_INPUTS[family.asset]),
        *(_lookback_dep(table, family.asset) for table in family.reads_when_stored),
        *(_periodic_dep(table, days) for table, days in family.periodic_windows.items()),
    ]


def _description(family: families.IndicatorFamily) -> str:
    return family.description.format(lookback=ranges.lookback_trading_days(family.asset))


def _missing_rates(result: ranges.RangeResult) -> pl.DataFrame:
    """trade_date, factor, missing_rate over every open day of the run, computed once."""
    frames = [result.frames[d] for d in result.open_dates]
    return quality.missing_rates(pl.concat(frames) if frames else pl.DataFrame(), result.quotes, result.factors)


def _partition_metadata(result: ranges.RangeResult, date, rates: pl.DataFrame) -> dict:
    frame = result.frames[date]
    meta: dict = {"dagster/row_count": frame.height, "stocks": frame.height, "market_closed": date in result.closed}
    if date in result.closed:
        meta["closed_reason"] = result.closed[date]
        return meta
    day = rates.filter(pl.col("trade_date") == date)
    by_factor = dict(zip(day["factor"], day["missing_rate"], strict=True))
    meta["missing_rates"] = {f: round(by_factor.get(f, 0.0), 4) for f in result.factor_ids}  # registry order
    meta.update(ranges.lag_metadata(result, date))  # point in time: margin factors use the day before
    return meta


def _missing_rate_table(result: ranges.RangeResult, rates: pl.DataFrame) -> dg.TableMetadataValue:
    """Per factor over the run's open days: declared threshold, mean and worst missing rate."""
    summary = {
        factor: (mean, worst)
        for factor, mean, worst in rates.group_by("factor")
        .agg(pl.col("missing_rate").mean(), pl.col("missing_rate").max().alias("worst"))
        .iter_rows()
    }
    records = [
        dg.TableRecord(
            {
                "factor": f.factor_id,
                "max_missing_rate": f.max_missing_rate,
                "mean_missing_rate": round(summary.get(f.factor_id, (0.0, 0.0))[0], 4),
                "worst_missing_rate": round(summary.get(f.factor_id, (0.0, 0.0))[1], 4),
            }
        )
        for f in result.factors
    ]
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn("factor", "string"),
            dg.TableColumn("max_missing_rate", "float"),
            dg.TableColumn("mean_missing_rate", "float"),
            dg.TableColumn("worst_missing_rate", "float"),
        ]
    )
    return dg.MetadataValue.table(records, schema=schema)


def _stored_missing_rates(instance: dg.DagsterInstance, asset_name: str, days: list) -> dict[str, dict[str, float]]:
    """partition key → the `missing_rates` of its latest materialisation (the heatmap's earlier days)."""
    latest = latest_materializations(instance, asset_name, [d.isoformat() for d in days])
    found: dict[str, dict[str, float]] = {}
    for key, record in latest.items():
        entry = record.asset_materialization.metadata.get("missing_rates")
        if entry is not None:
            found[key] = entry.value
    return found


def _indicator_asset(family: families.IndicatorFamily) -> dg.AssetsDefinition:
    asset_name = family.asset

    @dg.asset(
        name=asset_name,
        group_name=family.group,
        partitions_def=trading_day,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=_deps(family),
        description=_description(family),
        kinds={"polars", "parquet"},
        tags={"module": family.module},
        metadata={"factors": ", ".join(f.factor_id for f in family.factors)},
    )
    def _asset(context: dg.AssetExecutionContext, frames: FrameStoreResource) -> dg.MaterializeResult:
        dates = partition_dates(context)
        try:
            result = ranges.materialize_range(
                frames.get(), asset_name, dates, lambda table, keys: stored_partitions(context.instance, table, keys)
            )
        except ranges.MissingUpstream as missing:
            # Retrying cannot help (only materialising the upstream days does): fail now, not after the
            # step retry policy's 20 + 40 + 80 s of waits, as the strategies do for missing indicators.
            raise dg.Failure(description=str(missing), allow_retries=False) from missing
        rates = _missing_rates(result)
        for date in dates:
            context.add_asset_metadata(_partition_metadata(result, date, rates), partition_key=date.isoformat())
        if result.open_dates:  # the heatmap of the trailing window, on the run's last open day only
            last = result.open_dates[-1]
            stored = _stored_missing_rates(context.instance, asset_name, dashboard.missing_rate_days(last))
            charts = dashboard.indicator_charts(asset_name, result.factor_ids, last, rates, stored)
            context.add_asset_metadata({k: dg.MetadataValue.md(v) for k, v in charts.items()}, partition_key=str(last))
        missing = {t: [dt.date.fromisoformat(k) for k in keys] for t, keys in result.history_missing.items() if keys}
        if missing:
            context.log.warning(
                f"{asset_name}: {ranges.describe_missing_history(missing, (dates[0], dates[-1]))}; "
                "affected factors stay in warm-up"
            )
        context.log.info(
            f"{asset_name}: {result.rows} rows over {len(dates)} partition(s) "
            f"({len(result.closed)} closed) in {result.compute_seconds:.2f}s compute + {result.read_seconds:.2f}s read"
        )
        metadata = {
            "days": len(dates),
            "open_days": len(result.open_dates),
            "closed_days": len(result.closed),
            "stocks": result.quotes["stock_id"].n_unique() if result.quotes.height else 0,
            "compute_seconds": round(result.compute_seconds, 3),
            "read_seconds": round(result.read_seconds, 3),
            "history_read": {
                table: {"from": a, "to": b, "partitions": n} for table, (a, b, n) in result.history.items()
            },
            "factor_missing_rates": _missing_rate_table(result, rates),
        }
        return dg.MaterializeResult(metadata=metadata)

    return _asset


# One asset per declared indicator family (qrl_platform/factors/families.py).
FAMILY_ASSETS: dict[str, dg.AssetsDefinition] = {family.asset: _indicator_asset(family) for family in families.FAMILIES}
technical_indicators = FAMILY_ASSETS["technical_indicators"]
fundamental_indicators = FAMILY_ASSETS["fundamental_indicators"]
chip_indicators = FAMILY_ASSETS["chip_indicators"]


@dg.asset(
    name="factor_metadata",
    group_name="factors",
    description="The factor registry of M07 technical, M08 fundamental and M09 chip indicators (id, module, "
    "description, unit, lookback, source columns, bounds, max missing rate, version), synced from the factor "
    "definitions in code into the warehouse table factor_metadata (REFRESH_FACTOR_METADATA, JOB-M11-005).",
    kinds={"sql"},
    tags={"module": "M11"},
)
def factor_metadata(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    written = registry.sync_factor_metadata(warehouse.get())
    per_module = {module: len(registry.factor_ids(module)) for module in registry.MODULE_ASSETS}
    context.log.info(f"factor_metadata: {written} factors written ({per_module})")
    return dg.MaterializeResult(metadata={"dagster/row_count": written, "factors_per_module": per_module})


INDICATOR_ASSETS = [*FAMILY_ASSETS.values(), factor_metadata]
