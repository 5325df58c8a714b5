"""`tradability`: price limits and trading restrictions per stock and day, thin wiring over
`market.tradability` (the maths) and `market.notices` (disposition / full-cash-delivery lists)."""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import dagster as dg
import polars as pl

from qrl_platform.calendar import previous_trading_days
from qrl_platform.defs.market.assets import GROUP
from qrl_platform.defs.partitions import partition_dates, trading_day
from qrl_platform.defs.resources import FrameStoreResource, MarketSourceResource
from qrl_platform.market.notices import notices_for
from qrl_platform.market.tradability import TRADABILITY_SCHEMA, tradability

# The previous close of day D is the last traded close before D; a stock halted for a while needs
# more than one day back. Longer halts (restructurings) resume through a capital reduction, whose
# reference price comes from corporate_actions.
PREVIOUS_CLOSE_DAYS = 20

QUOTE_COLUMNS = ["stock_id", "trade_date", "close", "is_suspended", "is_etf"]


@dg.asset(
    name="tradability",
    group_name=GROUP,
    partitions_def=trading_day,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[
        dg.AssetDep(
            "daily_quotes",
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-PREVIOUS_CLOSE_DAYS, allow_nonexistent_upstream_partitions=True
            ),
        ),
        dg.AssetDep("corporate_actions"),
    ],
    description="Per stock and trading day: limit-up / limit-down (±10 % of the reference price — the "
    "exchange's reference price on an ex-date, else the previous close — rounded inwards to the Taiwan tick), "
    "whether the close sits at a limit, suspension, disposition (處置股) and full-cash delivery (全額交割). "
    "Strategy universes can exclude these stocks; the stats count a BUY at limit-up / SELL at limit-down as "
    "unfilled.",
    kinds={"polars", "parquet"},
    tags={"module": "market"},
)
def tradability_asset(
    context: dg.AssetExecutionContext, market_source: MarketSourceResource, frames: FrameStoreResource
) -> dg.MaterializeResult:
    dates = partition_dates(context)
    store = frames.get()
    history_from = previous_trading_days(dates[0], PREVIOUS_CLOSE_DAYS + 1)[0]
    quotes = store.read_range("daily_quotes", history_from, dates[-1], columns=QUOTE_COLUMNS)
    actions = store.read_range("corporate_actions", dates[0], dates[-1])
    notices, notices_note = notices_for(market_source.get(), dates[0], dates[-1])
    if quotes.is_empty():  # nothing stored (closed days only): an empty, typed partition per day
        table = pl.DataFrame(schema=TRADABILITY_SCHEMA)
    else:
        in_range = pl.col("trade_date") >= dates[0]
        table = tradability(quotes.filter(in_range), actions, quotes.filter(~in_range), notices)
    totals = {"at_limit_up": 0, "at_limit_down": 0, "is_suspended": 0, "is_disposition": 0, "is_full_cash_delivery": 0}
    rows = 0
    for day in dates:
        day_rows = table.filter(pl.col("trade_date") == day)
        store.write("tradability", day.isoformat(), day_rows)
        rows += day_rows.height
        for flag in totals:
            totals[flag] += int(day_rows.get_column(flag).sum() or 0)
    context.log.info(f"tradability: {rows} rows over {len(dates)} partition(s); {totals}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "partitions": len(dates),
            **{f"{flag}_rows": count for flag, count in totals.items()},
            "corporate_action_rows": actions.height,
            "disposition_and_full_cash_source": notices_note,
        }
    )
