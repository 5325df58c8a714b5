"""Raw market assets: thin Dagster wiring over `ingest` and the market sources."""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import datetime as dt

import dagster as dg
import polars as pl

from qrl_platform import progress
from qrl_platform.calendar import parse_date
from qrl_platform.defs.partitions import PARTITIONS, partition_dates
from qrl_platform.defs.resources import FrameStoreResource, MarketSourceResource
from qrl_platform.market import tables
from qrl_platform.market.adjustment import adjustment_factors
from qrl_platform.market.corporate_actions import by_partition
from qrl_platform.market.ingest import ingest_days, store_frame
from qrl_platform.market.live.twse import NotPublishedYet
from qrl_platform.market.schema import BadMarketData

GROUP = "market"

# Dagster concurrency pools, one per exchange host group, each limited to 1 by the instance
# (`concurrency: pools: default_limit: 1` in dagster.yaml and deploy/dagster.yaml): at most one step
# talks to a host at a time across runs and pods, so the in-process politeness gap
# (QRL_HTTP_MIN_INTERVAL_SECONDS) holds for the whole deployment. A step holds exactly one pool slot,
# and each daily table asks TWSE and then TPEx in the same step, so the two hosts share one pool
# ("twse-tpex"): two separate pools could not both be held by one step. Each table's pool is part of
# its declaration (qrl_platform/market/tables.py).
POOLS = {table.name: table.pool for table in tables.RAW}


def _raw_asset_declaration(table: str) -> dict:
    """What every raw asset declares alike: its table's partitions, one single-run backfill, its exchange pool."""
    return {
        "name": table,
        "group_name": GROUP,
        "partitions_def": PARTITIONS[tables.BY_NAME[table].partitions],
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "kinds": {"polars", "parquet"},
        "tags": {"module": "market"},
        "pool": POOLS[table],
    }


NOT_PUBLISHED_YET_NOTE = (
    " A day the exchange has not published yet (NotPublishedYet) ends the run green without a "
    "materialisation; the availability sensor asks again later."
)


def _record_not_published_yet(context: dg.AssetExecutionContext, table: str, late: NotPublishedYet) -> None:
    """Late data is not an error: the step succeeds without a materialisation (the run stays green and
    never counts toward the 3-failures pause), the reason is logged and recorded as an observation, and
    market_data_available_sensor asks again on its next tick."""
    context.log.warning(f"{table}: not published yet, nothing materialised: {late}")
    context.log_event(
        dg.AssetObservation(asset_key=table, partition=context.partition_key, metadata={"not_published_yet": str(late)})
    )


def _daily_raw_asset(table: str) -> dg.AssetsDefinition:
    @dg.asset(
        **_raw_asset_declaration(table),
        description=tables.BY_NAME[table].description + NOT_PUBLISHED_YET_NOTE,
        # Data the exchange has not published yet is "no materialisation", not a failure (_record_not_published_yet).
        output_required=False,
    )
    def _asset(
        context: dg.AssetExecutionContext,
        market_source: MarketSourceResource,
        frames: FrameStoreResource,
    ):
        dates = partition_dates(context)
        source, store = market_source.get(), frames.get()
        try:
            with progress.stage(f"{table} {dates[0]}..{dates[-1]}", len(dates)) as stage:
                summary = ingest_days(source, store, table, dates, log=context.log, on_day=stage.advance)
        except NotPublishedYet as late:
            if len(dates) > 1:
                raise  # a backfill range reaching unpublished data is a mistake worth a failed run
            _record_not_published_yet(context, table, late)
            return
        context.log.info(f"{table}: {summary.rows} rows over {len(dates)} partition(s) from {summary.source}")
        yield dg.MaterializeResult(metadata=summary.metadata())

    return _asset


CORPORATE_ACTIONS_CHECK = "factors_plausible"


@dg.asset(
    **_raw_asset_declaration("corporate_actions"),
    description=tables.BY_NAME["corporate_actions"].description + NOT_PUBLISHED_YET_NOTE,
    output_required=False,
    check_specs=[
        dg.AssetCheckSpec(
            CORPORATE_ACTIONS_CHECK,
            asset="corporate_actions",
            blocking=True,
            description="Every event's adjustment factor (reference price / prior close) is plausible: dividends "
            "0.05 < f <= 1.5, capital reductions 0.05 < f <= 10, par-value changes and splits 0.01 < f <= 100. "
            "A failure names the stock, ex-date and kind.",
        )
    ],
)
def corporate_actions(
    context: dg.AssetExecutionContext,
    market_source: MarketSourceResource,
    frames: FrameStoreResource,
):
    dates = partition_dates(context)
    source, store = market_source.get(), frames.get()
    if "corporate_actions" not in source.provides:
        raise NotImplementedError(f"corporate_actions: the {source.name} market source does not provide this table")
    try:
        events = source.corporate_actions(dates[0], dates[-1])
    except NotPublishedYet as late:
        if len(dates) > 1:
            raise
        _record_not_published_yet(context, "corporate_actions", late)
        return
    for day, frame in by_partition(events, dates).items():
        store.write("corporate_actions", day.isoformat(), frame)
    stored = events.filter(pl.col("ex_date").is_between(dates[0], dates[-1]))
    kinds = dict(stored.group_by("kind").len().iter_rows()) if stored.height else {}
    context.log.info(f"corporate_actions: {stored.height} events over {len(dates)} partition(s) from {source.name}")
    yield dg.MaterializeResult(
        metadata={"dagster/row_count": events.height, "source": source.name, "partitions": len(dates), "kinds": kinds}
    )
    yield _plausibility(events, dates[-1])


def _plausibility(events: pl.DataFrame, as_of: dt.date) -> dg.AssetCheckResult:
    try:
        factors = adjustment_factors(events, as_of)
    except BadMarketData as implausible:
        return dg.AssetCheckResult(
            check_name=CORPORATE_ACTIONS_CHECK, passed=False, severity=dg.AssetCheckSeverity.ERROR,
            metadata={"problem": str(implausible)},
        )  # fmt: skip
    metadata = {"events": factors.height}
    if factors.height:
        metadata |= {"min_factor": float(factors["factor"].min()), "max_factor": float(factors["factor"].max())}
    return dg.AssetCheckResult(check_name=CORPORATE_ACTIONS_CHECK, passed=True, metadata=metadata)


def _periodic_raw_asset(table: str) -> dg.AssetsDefinition:
    @dg.asset(**_raw_asset_declaration(table), description=tables.BY_NAME[table].description)
    def _asset(
        context: dg.AssetExecutionContext, market_source: MarketSourceResource, frames: FrameStoreResource
    ) -> dg.MaterializeResult:
        source = market_source.get()
        fetch = getattr(source, table, None) if table in source.provides else None
        if fetch is None:
            raise NotImplementedError(f"{table}: the {source.name} market source does not provide this table")
        rows = 0
        for key in context.partition_keys:
            rows += store_frame(frames.get(), table, key, fetch(parse_date(key)))["dagster/row_count"]
        metadata = {"dagster/row_count": rows, "partitions": len(context.partition_keys), "source": source.name}
        return dg.MaterializeResult(metadata=metadata)

    return _asset


# One asset per declared raw table: fetched per day, per period, or (corporate_actions, written above
# for its range fetch and factor check) per range.
RAW_ASSETS: dict[str, dg.AssetsDefinition] = {
    **{table: _daily_raw_asset(table) for table in tables.names(fetched="per_day")},
    "corporate_actions": corporate_actions,
    **{table: _periodic_raw_asset(table) for table in tables.names(fetched="per_period")},
}
if missing := set(tables.NAMES) - set(RAW_ASSETS):  # a per_range table needs its own asset, like corporate_actions
    raise RuntimeError(f"raw tables declared in market/tables.py without an asset: {sorted(missing)}")
MARKET_ASSETS = list(RAW_ASSETS.values())

# By name, for the modules and tests that import one raw asset.
daily_quotes = RAW_ASSETS["daily_quotes"]
institutional_flows = RAW_ASSETS["institutional_flows"]
margin_balances = RAW_ASSETS["margin_balances"]
valuations = RAW_ASSETS["valuations"]
monthly_revenue = RAW_ASSETS["monthly_revenue"]
financials = RAW_ASSETS["financials"]
shareholding_distribution = RAW_ASSETS["shareholding_distribution"]
