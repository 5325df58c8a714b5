"""The partitions of every asset: trading-day weekdays in Asia/Taipei for the equity side,
monthly / quarterly / weekly for the slower raw tables, UTC quarter hours for the QRL side.

Which weekdays are closed is the calendar's business (`qrl_platform.calendar`); a closed day keeps
its partition and materialises as empty with `market_closed=true`.
"""

import datetime as dt

import dagster as dg

from qrl_platform.calendar import DATE_FMT, QUARTER_HOUR_FMT, TAIPEI_NAME, TRADING_DAY_START, parse_date

# Weekday partitions; end_offset=1 keeps today's (and over the weekend, Friday's) partition visible so
# the 16:00 run and the availability sensor can target the current day.
trading_day = dg.TimeWindowPartitionsDefinition(
    cron_schedule="0 0 * * 1-5",
    timezone=TAIPEI_NAME,
    fmt=DATE_FMT,
    start=TRADING_DAY_START,
    end_offset=1,
)

# Monthly revenue is partitioned by the month it describes (key = first day of that month).
revenue_month = dg.MonthlyPartitionsDefinition(start_date="2019-01-01", timezone=TAIPEI_NAME)

# Quarterly financials, key = first day of the fiscal quarter (2024-04-01 is 2024Q2).
fiscal_quarter = dg.TimeWindowPartitionsDefinition(
    cron_schedule="0 0 1 1,4,7,10 *", timezone=TAIPEI_NAME, fmt=DATE_FMT, start="2019-01-01"
)

# TDCC shareholding distribution is published weekly for the Friday data date.
shareholding_week = dg.TimeWindowPartitionsDefinition(
    cron_schedule="0 0 * * 5", timezone=TAIPEI_NAME, fmt=DATE_FMT, start="2020-01-03", end_offset=1
)

# The raw tables' partitions by the name their declarations give (qrl_platform/market/tables.py).
PARTITIONS = {
    "trading_day": trading_day,
    "revenue_month": revenue_month,
    "fiscal_quarter": fiscal_quarter,
    "shareholding_week": shareholding_week,
}

# QRL side: UTC quarter hours, keys like 2026-11-22-07:45.
quarter_hour = dg.TimeWindowPartitionsDefinition(
    cron_schedule="*/15 * * * *", timezone="UTC", fmt=QUARTER_HOUR_FMT, start="2026-01-01-00:00"
)


def partition_dates(context: dg.AssetExecutionContext) -> list[dt.date]:
    """Every partition date a (possibly ranged, single-run backfill) run covers, oldest first."""
    return sorted(parse_date(key, field="partition") for key in context.partition_keys)
