"""One declaration per raw market table : the single place a raw table is described.

Each `RawTable` is data, not code: its canonical columns (types and units), natural key, columns that
may never be negative, cadence and partitions, how a source fetches it, the exchange host group
(concurrency pool) it calls, when it is normally published and by which rule, its live endpoints as
text for the docs, whether the 16:00 backstop job ingests it, and a slower cadence's own schedule
(the names and words the publication rule cannot give). Everything else is derived from
`RAW`: the canonical schemas and validation (`schema`), the source protocol's table groups
(`sources`), the publication timetable (`timetable`), the `QRL_PUBLISH_<TABLE>` settings, and in the
wiring the assets' partitions and pools, the ingestion jobs, the availability sensor, the slower
tables' schedules (cron and partition from the publication rule), the CLI's history and `qrl status`.
Adding a raw table means one entry here, its fetch code in the sources, and nothing else listed.

Units are fixed here: volumes and institutional flows in shares, turnover in TWD, margin in lots
(1,000 shares) as published, revenue in thousand TWD. Missing prices are null, never 0.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

import polars as pl

Cadence = Literal["daily", "monthly", "quarterly", "weekly"]
# per_day: `source.fetch_day(table, date)`, one trading date at a time (TWSE/TPEx publish so);
# per_period: `source.<table>(partition_date)`, one month/quarter/week;
# per_range: `source.<table>(start, end)`, events over a date range, stored per partition day.
Fetched = Literal["per_day", "per_period", "per_range"]
# same_day: on the partition day D; after_revenue_deadline: the day after the 10th of the next month;
# after_statutory_deadline: the day after the quarter's filing deadline; next_day: the Saturday after
# TDCC's Friday data date.
PublishRule = Literal["same_day", "after_revenue_deadline", "after_statutory_deadline", "next_day"]


@dataclass(frozen=True)
class OwnSchedule:
    """How a slower-cadence table's own schedule is named and worded. Its cron and the partition each
    run ingests follow from the table's publication rule (`timetable.SCHEDULED_RULES`); a trading-day
    table has none (the availability sensor ingests it once the timetable says it is out)."""

    stem: str  # names its job `<stem>_job`, its schedule `<stem>_schedule` and its run keys `<stem>:<partition>`
    subject: str  # what a run ingests, in words, for the schedule's description
    at: dt.time | None = None  # Taipei time of day it runs on the day its partition falls due; None: publish_at


@dataclass(frozen=True)
class RawTable:
    name: str
    columns: dict[str, pl.DataType]  # canonical schema, in order
    key: tuple[str, ...]  # natural key: duplicates on it are bad input
    non_negative: tuple[str, ...]
    cadence: Cadence
    partitions: str  # name of the partitions definition (qrl_platform/defs/partitions.py)
    fetched: Fetched
    pool: str  # Dagster concurrency pool: the exchange host group the table's step calls
    publish_at: dt.time  # default Taipei time of day its data is out (QRL_PUBLISH_<TABLE> overrides)
    publish_rule: PublishRule
    publish_why: str  # why that time, for the docs
    endpoints: str  # live endpoints, for the docs
    endpoint_notes: str  # how the live answers are read, for the docs
    in_backstop: bool  # ingested by the 16:00 daily_market_job (out by 16:00 on the day)
    description: str  # the asset's description
    schedule: OwnSchedule | None = None  # every slower cadence has its own schedule; a daily table has none

    def __post_init__(self):
        if (self.cadence == "daily") != (self.schedule is None):
            raise ValueError(
                f"raw table {self.name}: schedule must be given for a {self.cadence} table exactly when it is not "
                "daily (trading-day tables are ingested by the availability sensor, the others by their schedule)"
            )

    @property
    def publish_variable(self) -> str:
        return f"QRL_PUBLISH_{self.name.upper()}"

    @property
    def schedule_time(self) -> dt.time:
        """The Taipei time of day a slower table's schedule runs: its own `at`, else its publication time."""
        if self.schedule is None:
            raise ValueError(f"raw table {self.name}: a {self.cadence} table has no schedule of its own")
        return self.schedule.at or self.publish_at


# One row per event that changes a stock's price basis (ex-rights/dividend, capital reduction, par-value
# change, split). The backward adjustment factor of an event is reference_price / prior_close.
CORPORATE_ACTION_KINDS = (
    "cash_dividend",
    "stock_dividend",
    "cash_and_stock",
    "capital_reduction",
    "par_value_change",
    "split",
)

RAW: tuple[RawTable, ...] = (
    RawTable(
        name="daily_quotes",
        columns={
            "stock_id": pl.Utf8,
            "trade_date": pl.Date,
            "market": pl.Utf8,  # TWSE | TPEx
            "name": pl.Utf8,
            "open": pl.Float64,
            "high": pl.Float64,
            "low": pl.Float64,
            "close": pl.Float64,
            "volume": pl.Int64,  # shares
            "turnover": pl.Int64,  # TWD
            "trades": pl.Int64,
            "change": pl.Float64,  # TWD vs previous close, signed
            "is_etf": pl.Boolean,
            "is_suspended": pl.Boolean,
        },
        key=("stock_id", "trade_date"),
        non_negative=("open", "high", "low", "close", "volume", "turnover", "trades"),
        cadence="daily",
        partitions="trading_day",
        fetched="per_day",
        pool="twse-tpex",
        publish_at=dt.time(14, 30),
        publish_rule="same_day",
        publish_why="TWSE/TPEx closing quotes are out after 14:30",
        endpoints="TWSE `rwd/zh/afterTrading/MI_INDEX?type=ALLBUT0999` + TPEx `afterTrading/dailyQuotes`",
        endpoint_notes="stock table picked by its title 每日收盤行情",
        in_backstop=True,
        description="Daily OHLCV of every TWSE and TPEx stock (volume in shares, turnover in TWD; "
        "missing prices are null). Closed days materialise empty with market_closed=true.",
    ),
    RawTable(
        name="institutional_flows",
        columns={
            "stock_id": pl.Utf8,
            "trade_date": pl.Date,
            "foreign_buy": pl.Int64,  # foreign & mainland investors excl. foreign dealers, shares
            "foreign_sell": pl.Int64,
            "foreign_net": pl.Int64,
            "foreign_dealer_buy": pl.Int64,
            "foreign_dealer_sell": pl.Int64,
            "foreign_dealer_net": pl.Int64,
            "trust_buy": pl.Int64,  # investment trusts (投信)
            "trust_sell": pl.Int64,
            "trust_net": pl.Int64,
            "dealer_buy": pl.Int64,  # dealers, proprietary + hedging
            "dealer_sell": pl.Int64,
            "dealer_net": pl.Int64,
            "total_net": pl.Int64,
        },
        key=("stock_id", "trade_date"),
        non_negative=("foreign_buy", "foreign_sell", "trust_buy", "trust_sell", "dealer_buy", "dealer_sell"),
        cadence="daily",
        partitions="trading_day",
        fetched="per_day",
        pool="twse-tpex",
        publish_at=dt.time(15, 30),
        publish_rule="same_day",
        publish_why="T86 / TPEx 三大法人 come mid-afternoon (≈15:00); half an hour of margin",
        endpoints="TWSE `rwd/zh/fund/T86` + TPEx `insti/dailyTrade`",
        endpoint_notes="TPEx mapped by position",
        in_backstop=True,
        description="Foreign, investment-trust and dealer buy/sell/net per stock per day, in shares "
        "(TWSE T86, TPEx 三大法人).",
    ),
    RawTable(
        name="margin_balances",
        columns={
            "stock_id": pl.Utf8,
            "trade_date": pl.Date,
            "margin_buy": pl.Int64,  # lots (張 = 1,000 shares)
            "margin_sell": pl.Int64,
            "margin_cash_repay": pl.Int64,
            "margin_prev_balance": pl.Int64,
            "margin_balance": pl.Int64,
            "margin_limit": pl.Int64,
            "short_cover": pl.Int64,  # 融券買進
            "short_sell": pl.Int64,  # 融券賣出
            "short_stock_repay": pl.Int64,
            "short_prev_balance": pl.Int64,
            "short_balance": pl.Int64,
            "short_limit": pl.Int64,
            "offset": pl.Int64,  # 資券互抵
        },
        key=("stock_id", "trade_date"),
        non_negative=("margin_balance", "margin_limit", "short_balance"),
        cadence="daily",
        partitions="trading_day",
        fetched="per_day",
        pool="twse-tpex",
        publish_at=dt.time(21, 0),
        publish_rule="same_day",
        publish_why="MI_MARGN and TPEx margin balances are published around 21:00 (TWSE and TPEx alike)",
        endpoints="TWSE `rwd/zh/marginTrading/MI_MARGN` + TPEx `margin/balance`",
        # Never out at 16:00; the chip indicators of D read the margin of D-1, stored by the sensor the evening before.
        endpoint_notes="by position; limit column `限額` or `次一營業日限額`",
        in_backstop=False,
        description="Margin purchase and short sale activity and balances per stock per day, in lots of "
        "1,000 shares as published (TWSE MI_MARGN, TPEx margin balance).",
    ),
    RawTable(
        name="valuations",
        columns={
            "stock_id": pl.Utf8,
            "trade_date": pl.Date,
            "pe": pl.Float64,  # null when earnings are negative ("-")
            "pb": pl.Float64,
            "dividend_yield": pl.Float64,  # percent
        },
        key=("stock_id", "trade_date"),
        non_negative=("pb", "dividend_yield"),
        cadence="daily",
        partitions="trading_day",
        fetched="per_day",
        pool="twse-tpex",
        publish_at=dt.time(15, 30),
        publish_rule="same_day",
        publish_why="BWIBBU_d / peQryDate appear with or after T86 in practice",
        endpoints="TWSE `rwd/zh/afterTrading/BWIBBU_d` + TPEx `afterTrading/peQryDate`",
        endpoint_notes="by name, with or without `收盤價`",
        in_backstop=True,
        description="PE, PB and dividend yield per stock per day (TWSE BWIBBU).",
    ),
    RawTable(
        name="monthly_revenue",
        columns={
            "stock_id": pl.Utf8,
            "year_month": pl.Utf8,  # YYYY-MM the revenue describes
            "revenue": pl.Int64,  # thousand TWD
            "published_on": pl.Date,  # point in time: first day the figure was public
        },
        key=("stock_id", "year_month"),
        non_negative=(),
        cadence="monthly",
        partitions="revenue_month",
        fetched="per_period",
        pool="mops",
        publish_at=dt.time(0, 0),
        publish_rule="after_revenue_deadline",
        publish_why="revenue is filed by the 10th",
        endpoints="MOPS `GET /nas/t21/{sii,otc}/t21sc03_{ROC year}_{month}_0.html`",
        endpoint_notes="cp950 pages, per-industry 合計 rows dropped, thousand TWD",
        in_backstop=False,
        # due from midnight on the 11th; the schedule asks in the morning
        schedule=OwnSchedule(stem="monthly_revenue", subject="revenue", at=dt.time(8, 0)),
        description="Monthly revenue per stock (thousand TWD), partitioned by the month it describes; published_on "
        "is the first day it was public (by the 10th of the next month) — the fundamental indicators read it point in time.",
    ),
    RawTable(
        name="financials",
        columns={
            "stock_id": pl.Utf8,
            "fiscal_quarter": pl.Utf8,  # YYYYQn
            "eps": pl.Float64,  # TWD, for the quarter
            "net_income": pl.Int64,  # thousand TWD, for the quarter
            "equity": pl.Int64,  # thousand TWD, at quarter end
            "revenue": pl.Int64,  # thousand TWD, for the quarter
            "published_on": pl.Date,
        },
        key=("stock_id", "fiscal_quarter"),
        non_negative=(),
        cadence="quarterly",
        partitions="fiscal_quarter",
        fetched="per_period",
        pool="mops",
        publish_at=dt.time(0, 0),
        publish_rule="after_statutory_deadline",
        publish_why="Q1 May 15, Q2 Aug 14, Q3 Nov 14, annual Mar 31",
        endpoints="MOPS `POST /mops/web/t163sb04` (EPS, net income, revenue) + `POST /mops/web/t163sb05` (equity)",
        endpoint_notes="see [MOPS](#mops)",
        in_backstop=False,
        # due from midnight the day after the deadline; the schedule asks in the morning
        schedule=OwnSchedule(stem="financials", subject="results", at=dt.time(8, 0)),
        description="Quarterly EPS, net income, equity and revenue per stock; partition key is the first day of "
        "the fiscal quarter; published_on bounded by the statutory deadlines (Q1 May 15, Q2 Aug 14, Q3 Nov 14, "
        "Q4 Mar 31).",
    ),
    RawTable(
        name="shareholding_distribution",
        columns={
            "stock_id": pl.Utf8,
            "week": pl.Date,  # TDCC data date (Friday)
            "level": pl.Int8,  # 1–15 holding bands, 16 adjustment, 17 total (TDCC numbering)
            "holders": pl.Int64,
            "shares": pl.Int64,
            "pct": pl.Float64,  # percent of outstanding shares
            "published_on": pl.Date,
        },
        key=("stock_id", "week", "level"),
        non_negative=("holders", "shares", "pct"),
        cadence="weekly",
        partitions="shareholding_week",
        fetched="per_period",
        pool="tdcc",
        publish_at=dt.time(10, 0),
        publish_rule="next_day",
        publish_why="TDCC posts Friday's distribution on Saturday",
        endpoints="TDCC open data 1-5",
        endpoint_notes="latest week only: archived every Saturday",
        in_backstop=False,
        schedule=OwnSchedule(stem="shareholding", subject="TDCC shareholding distribution"),
        description="TDCC shareholding distribution (levels 1–15, 17 = total) per stock for the Friday data "
        "date. TDCC only serves the latest week, so this asset archives every week from day one.",
    ),
    RawTable(
        name="corporate_actions",
        columns={
            "stock_id": pl.Utf8,
            "ex_date": pl.Date,  # first trading day on the new basis (ex-date / resumption date)
            "market": pl.Utf8,  # TWSE | TPEx
            "kind": pl.Utf8,  # one of CORPORATE_ACTION_KINDS
            "prior_close": pl.Float64,  # TWD, the exchange's close before the event
            "reference_price": pl.Float64,  # TWD, the exchange's reference price on ex_date
            "cash_per_share": pl.Float64,  # TWD per share, null when none
            "stock_per_share": pl.Float64,  # new shares per existing share, null when none
            "published_on": pl.Date,  # point in time: first day the event was public
        },
        key=("stock_id", "ex_date", "kind"),
        non_negative=("prior_close", "reference_price", "cash_per_share", "stock_per_share"),
        cadence="daily",
        partitions="trading_day",
        fetched="per_range",
        pool="twse-tpex",
        publish_at=dt.time(8, 0),
        publish_rule="same_day",
        publish_why="TWT49U / exDailyQ list D's reference prices after D-1's close; 08:00 is an hour before "
        "the 09:00 open, so a strategy run on D can already adjust",
        endpoints="TWSE `TWT49U` (+ `TWT49UDetail`), `TWTAUU`, `TWTB8U` + TPEx `exDailyQ`, `revivt`, `pvChgRslt`, "
        "one range request per list for the whole run",
        endpoint_notes="events outside the requested range are refused; a reference price must follow from the event's terms to the tick",
        in_backstop=True,
        description="One row per event that changes a stock's price basis (cash/stock dividend, capital "
        "reduction, par-value change): prior close, the exchange's reference price, cash and stock per share, "
        "published_on. Partition D holds the events whose ex-date is D (TWSE TWT49U/TWTAUU/TWTB8U, TPEx "
        "exDailyQ/revivt/pvChgRslt; one range request per list for the whole run).",
    ),
)

BY_NAME: dict[str, RawTable] = {table.name: table for table in RAW}
NAMES: tuple[str, ...] = tuple(BY_NAME)


def names(*, cadence: Cadence | None = None, fetched: Fetched | None = None, in_backstop: bool | None = None):
    """The names of the raw tables matching every given attribute, in declaration order."""
    return tuple(
        table.name
        for table in RAW
        if (cadence is None or table.cadence == cadence)
        and (fetched is None or table.fetched == fetched)
        and (in_backstop is None or table.in_backstop == in_backstop)
    )


def endpoints_markdown() -> str:
    """The live endpoints of every raw table as the Markdown table of docs/market-sources.md."""
    lines = ["| table | endpoint (live) | notes |", "|---|---|---|"]
    lines += [f"| `{table.name}` | {table.endpoints} | {table.endpoint_notes} |" for table in RAW]
    return "\n".join(lines)
