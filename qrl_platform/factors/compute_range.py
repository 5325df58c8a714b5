"""Compute an indicator asset for a set of partition dates in one pass, reading only the history it needs.

This is what makes a one-day run cheap and a one-year backfill a single pass:

* daily raw tables are read for the open days of the range plus the module's lookback before the
  first one — `previous_trading_days(first, lookback + 1 + slack)` — never the whole store; a table
  used with a publication lag (margin: `Factor.lag_days`) is required for the days before, not the day;
* monthly revenue, quarterly financials and weekly shareholding are read for the periods the range
  can use (`fundamental.history_window`, `chip.history_window`);
* the module's pure `compute` runs once over that history, and the result is sliced per date:
  one row per stock in the day's daily_quotes, factor columns Float64, an empty typed frame for a
  closed day.

Plain functions over a FrameStore, so a notebook or the CLI computes exactly what the assets store.
Which partitions count as stored is the wiring's answer (Dagster's materialisations, `defs/stored.py`),
handed in as a plain function `stored_keys(table, keys)`; without one (a notebook with no Dagster
instance) the partitions the FrameStore holds count.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from qrl_platform.calendar import day_status, previous_trading_days, trading_days
from qrl_platform.factors import Factor, chip, families, fundamental, registry, technical
from qrl_platform.market import schema, tables
from qrl_platform.market.adjustment import adjust_prices
from qrl_platform.storage.frames import FrameStore

KEYS = ("stock_id", "trade_date")

# (table, the keys asked about or None for all) -> the stored keys among them
StoredKeys = Callable[[str, "list[str] | None"], set[str]]


class MissingUpstream(RuntimeError):
    """A raw partition the requested days cannot do without has not been materialised."""


@dataclass
class RangeResult:
    asset: str
    factors: tuple[Factor, ...]
    frames: dict[dt.date, pl.DataFrame]  # every requested date; closed days map to an empty typed frame
    closed: dict[dt.date, str]  # closed date -> reason
    # daily_quotes rows (stock_id, trade_date, is_suspended) of the requested dates: the universe the
    # quality rules measure coverage and missing rates against.
    quotes: pl.DataFrame = field(default_factory=pl.DataFrame)
    # raw table -> (first key, last key, partitions read); daily table -> lookback keys not stored
    history: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    history_missing: dict[str, list[str]] = field(default_factory=dict)
    read_seconds: float = 0.0
    compute_seconds: float = 0.0

    @property
    def factor_ids(self) -> list[str]:
        return [f.factor_id for f in self.factors]

    @property
    def open_dates(self) -> list[dt.date]:
        return sorted(d for d in self.frames if d not in self.closed)

    @property
    def rows(self) -> int:
        return sum(f.height for f in self.frames.values())


def empty_frame(factor_ids: list[str]) -> pl.DataFrame:
    """The schema of every indicator partition, with no rows (closed days)."""
    return pl.DataFrame(schema={"stock_id": pl.Utf8, "trade_date": pl.Date, **dict.fromkeys(factor_ids, pl.Float64)})


# ---------------------------------------------------------------- reading
class _Reader:
    """Reads raw partitions for one range and remembers what it read (for metadata and tests)."""

    def __init__(self, store: FrameStore, asset: str, stored_keys: StoredKeys | None = None):
        self.store, self.asset = store, asset
        self.stored_keys = stored_or_files(store, stored_keys)
        self.history: dict[str, tuple[str, str, int]] = {}
        self.missing: dict[str, list[str]] = {}
        self.seconds = 0.0

    def stored(self, table: str, keys: list[str] | None = None) -> set[str]:
        return self.stored_keys(table, keys)

    def daily(self, table: str, days: list[dt.date], required: list[dt.date], columns: list[str]) -> pl.DataFrame:
        """`days` of a daily table; each of `required` must be stored, the rest is lookback (may be absent)."""
        keys = [d.isoformat() for d in days]
        stored = self.stored(table, keys + [d.isoformat() for d in required])
        absent_required = [d.isoformat() for d in required if d.isoformat() not in stored]
        if absent_required:
            unrecorded = [k for k in absent_required if self.store.exists(table, k)]
            raise MissingUpstream(
                f"{self.asset}: upstream {table} partition(s) {', '.join(absent_required[:5])}"
                f"{' …' if len(absent_required) > 5 else ''} not materialised; materialise {table} for those days first"
                + (
                    f" ({len(unrecorded)} have a frame file that no materialisation records: not stored until"
                    " one is reported or the day is re-ingested)"
                    if unrecorded
                    else ""
                )
            )
        self.missing[table] = [k for k in keys if k not in stored]
        started = time.perf_counter()
        frame = self.store.read_many(table, [k for k in keys if k in stored], columns=columns)
        self.seconds += time.perf_counter() - started
        if keys:
            self.history[table] = (keys[0], keys[-1], len(keys) - len(self.missing[table]))
        return frame

    def periodic(self, table: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        started = time.perf_counter()
        keys = sorted(k for k in self.stored(table) if start.isoformat() <= k[:10] <= end.isoformat())
        frame = self.store.read_many(table, keys)
        self.seconds += time.perf_counter() - started
        self.history[table] = (start.isoformat(), end.isoformat(), len(keys))
        return frame


def _daily_inputs(family: families.IndicatorFamily) -> tuple[str, ...]:
    """daily_quotes (every family's universe) and the daily raw tables its factors' columns come from."""
    read = {"daily_quotes"} | {table for factor in family.factors for table in factor.source_tables}
    return tuple(table for table in tables.names(cadence="daily") if table in read)


# The daily raw tables each indicator asset reads for a day and its lookback, from its factors' declarations.
DAILY_INPUTS: dict[str, tuple[str, ...]] = {family.asset: _daily_inputs(family) for family in families.FAMILIES}


def lookback_trading_days(asset: str) -> int:
    """Trading days before a day that `asset` reads from its daily raw tables: its longest factor's
    lookback plus the family's slack (technical: 239 + 10)."""
    family = families.BY_ASSET[asset]
    return registry.module_lookback(family.module) + family.lookback_slack


def inputs_of_day(asset: str, day: dt.date) -> list[tuple[str, dt.date]]:
    """The (daily raw table, partition day) an indicator of `day` cannot be computed without: each input
    on the day itself, or `lag_days` trading days before it for a table whose factors read it lagged
    (margin_balances: the day before)."""
    lag = {table: 0 for table in DAILY_INPUTS[asset]}
    for factor in families.BY_ASSET[asset].factors:
        for table in factor.source_tables:
            if table in lag:
                lag[table] = max(lag[table], factor.lag_days)
    return [(table, previous_trading_days(day, 1 + days)[0] if days else day) for table, days in lag.items()]


def lookback_weekdays(asset: str) -> int:
    """Weekday partitions that always span `lookback_trading_days(asset)` trading days: exchange holidays
    add up to ~10% over a year, and the Lunar New Year closes a whole week (checked against the calendar
    for every trading day since 2021 in the tests)."""
    days = lookback_trading_days(asset)
    return days + math.ceil(days * 0.1) + 8 if days else 0


def history_needed(asset: str, dates: list[dt.date]) -> dict[str, list[dt.date]]:
    """Per daily raw table, the open days before the first open day of `dates` that `compute_range`
    reads for `asset` (its lookback); empty when `dates` has no open day."""
    days, required = _window(sorted(set(dates)), lookback_trading_days(asset))
    before = [d for d in days if required and d < required[0]]
    return {table: before for table in DAILY_INPUTS[asset]}


def missing_history(
    store: FrameStore, asset: str, dates: list[dt.date], stored: dict[str, set[str]] | None = None
) -> dict[str, list[dt.date]]:
    """The lookback days of `history_needed` that are not stored, per table (tables with none left out).
    `stored` (table -> stored keys) saves listing the store again when asking day by day."""
    missing = {}
    for table, days in history_needed(asset, dates).items():
        keys = stored[table] if stored is not None and table in stored else files_stored(store, table)
        absent = [d for d in days if d.isoformat() not in keys]
        if absent:
            missing[table] = absent
    return missing


def describe_missing_history(missing: dict[str, list[dt.date]], fix: tuple[dt.date, dt.date]) -> str:
    """One line naming the cause and the command that fixes it, e.g. "249 lookback partitions of daily_quotes
    not stored (2023-06-21…2024-06-28) — materialise them with `qrl backfill 2024-07-01 2024-12-31`"
    (`qrl backfill` stores the missing lookback first, in the same run)."""
    by_days: dict[tuple[dt.date, ...], list[str]] = {}
    for table, days in missing.items():
        by_days.setdefault(tuple(days), []).append(table)
    causes = [
        f"{len(days)} lookback partition{'s' if len(days) != 1 else ''} of {', '.join(tables)} not stored "
        f"({days[0]}…{days[-1]})"
        for days, tables in by_days.items()
    ]
    return f"{'; '.join(causes)} — materialise them with `qrl backfill {fix[0]} {fix[1]}`"


def _window(dates: list[dt.date], lookback_days: int) -> tuple[list[dt.date], list[dt.date]]:
    """(all open days to read, the open days among `dates`): `lookback_days` open days before the first."""
    open_dates = [d for d in dates if day_status(d).is_open]
    if not open_dates:
        return [], []
    first, last = open_dates[0], open_dates[-1]
    history = previous_trading_days(first, lookback_days + 1)
    return sorted(set(history) | set(trading_days(first, last))), open_dates


def _or_empty(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    # read_many of nothing stored has no columns at all; give it the table's schema.
    return frame if frame.width else schema.empty(table)


# ---------------------------------------------------------------- per module
def _technical(reader: _Reader, dates: list[dt.date]) -> tuple[pl.DataFrame, pl.DataFrame]:
    days, required = _window(dates, lookback_trading_days("technical_indicators"))
    quotes = _or_empty(
        reader.daily(
            "daily_quotes",
            days,
            required,
            ["stock_id", "trade_date", "open", "high", "low", "close", "volume", "is_suspended"],
        ),
        "daily_quotes",
    )
    # Corporate actions of the window, for the adjusted bars (partition key = ex_date); none stored: raw.
    actions = reader.periodic("corporate_actions", days[0], required[-1])
    bars = adjusted_bars(quotes, actions, required[-1])
    # Only the requested days' rows come back (the lookback is read for the warm-up alone), so the
    # joins below and the result hold the days that are stored, not the whole window.
    computed = trailing_obv(bars, technical.compute(bars, rows_from=required[0]))
    return quotes, on_own_day_basis(computed, bars)


# Technical factors read adjusted prices: an ex-dividend drop or a capital reduction is not a
# price move, so returns, 52-week distances, moving-average crosses and oscillators see none. The maths
# in `factors/technical` are untouched; only their input bars are prepared here.
PRICE_LEVEL_UNIT = "TWD"


def adjusted_bars(quotes: pl.DataFrame, actions: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """`quotes` with high/low/close (and open when present) adjusted backward for the corporate actions
    known by `as_of` (`market.adjustment.adjust_prices`), plus `adj_factor` (1.0 when none).

    Point in time: a range run adjusts as of its last day L; a day D < L of the range differs from a
    run of D alone only by the events with ex_date in (D, L], which scale every bar up to D by the same
    constant. Ratios (returns, distances, crosses, RSI, KD, OBV's direction) do not see a constant;
    price-level factors are divided by D's own factor (`on_own_day_basis`), which is exactly that
    constant — so each day stores what a run of that day alone stores. (This relies on an event being
    published by its ex_date, as exchange announcements are.)"""
    if actions.is_empty() or quotes.is_empty():
        return quotes.with_columns(pl.lit(1.0).alias("adj_factor"))
    adjusted = adjust_prices(quotes, actions, as_of)
    prices = [c for c in ("open", "high", "low", "close") if c in quotes.columns]
    return adjusted.with_columns([pl.col(f"adj_{c}").alias(c) for c in prices]).drop([f"adj_{c}" for c in prices])


def on_own_day_basis(computed: pl.DataFrame, bars: pl.DataFrame) -> pl.DataFrame:
    """Price-level factors (unit TWD: SMA, EMA, MACD, Bollinger, ATR — homogeneous in prices) of each row
    divided by that row's adjustment factor, so they are on the basis of the day's own close (which
    strategies compare them with: `close > sma_20`)."""
    levels = [
        f.factor_id for f in registry.factors("M07") if f.unit == PRICE_LEVEL_UNIT and f.factor_id in computed.columns
    ]
    if not levels or bars.get_column("adj_factor").eq(1.0).all():
        return computed
    factors = bars.select(*KEYS, "adj_factor")
    return (
        computed.join(factors, on=list(KEYS), how="left")
        .with_columns([(pl.col(c) / pl.col("adj_factor").fill_null(1.0)).alias(c) for c in levels])
        .select(computed.columns)
    )


# OBV is a running sum from the first bar read, so a one-day run and a backfill would store different
# values for the same day. Stored OBV is therefore TA-Lib's OBV over the trailing OBV_WINDOW traded
# bars — the same value however far back a run reads — and null before a stock has that many bars
# (like sma_240, whose window it shares so a one-day run reads no extra history).
OBV_WINDOW = 240


def trailing_obv(quotes: pl.DataFrame, factors: pl.DataFrame) -> pl.DataFrame:
    traded = quotes.filter(pl.col("close").is_not_null()).sort("stock_id", "trade_date")
    bar = pl.int_range(pl.len()).over("stock_id")
    step = (
        pl.when(bar == 0)
        .then(pl.col("volume"))
        .otherwise(pl.col("close").diff().sign().cast(pl.Int64) * pl.col("volume"))
    )
    window = traded.with_columns(step.over("stock_id").alias("_step"), bar.alias("_bar")).with_columns(
        pl.when(pl.col("_bar") >= OBV_WINDOW - 1)
        .then(
            pl.col("_step").rolling_sum(OBV_WINDOW - 1).over("stock_id")
            + pl.col("volume").shift(OBV_WINDOW - 1).over("stock_id")
        )
        .cast(pl.Float64)
        .alias("obv")
    )
    return factors.drop("obv").join(window.select(*KEYS, "obv"), on=list(KEYS), how="left").select(factors.columns)


def _fundamental(reader: _Reader, dates: list[dt.date]) -> tuple[pl.DataFrame, pl.DataFrame]:
    days, required = _window(dates, lookback_trading_days("fundamental_indicators"))
    quotes = _or_empty(
        reader.daily("daily_quotes", days, required, ["stock_id", "trade_date", "is_suspended"]), "daily_quotes"
    )
    valuations = _or_empty(
        reader.daily("valuations", days, required, ["stock_id", "trade_date", "pe", "pb", "dividend_yield"]),
        "valuations",
    )
    windows = fundamental.history_window(required[0], required[-1])
    revenue = reader.periodic("monthly_revenue", *windows["monthly_revenue"])
    statements = reader.periodic("financials", *windows["financials"])
    base = quotes.select(*KEYS).join(valuations, on=list(KEYS), how="left")
    return quotes, fundamental.compute(base, revenue, statements)


def _chip(reader: _Reader, dates: list[dt.date]) -> tuple[pl.DataFrame, pl.DataFrame]:
    days, required = _window(dates, lookback_trading_days("chip_indicators"))
    quotes = _or_empty(
        reader.daily("daily_quotes", days, required, ["stock_id", "trade_date", "volume", "is_suspended"]),
        "daily_quotes",
    )
    flows = reader.daily(
        "institutional_flows", days, required, ["stock_id", "trade_date", "foreign_net", "trust_net", "dealer_net"]
    )
    # Point in time within the day: D's margin (out ~21:00) feeds D+1, so day D needs the margin of the
    # trading day before it and never its own — a 16:35 run and a later backfill read the same rows.
    margin_required = [previous_trading_days(d, 1 + chip.MARGIN_LAG_DAYS)[0] for d in required]
    margin_days = [d for d in days if d < required[-1]]
    margin = reader.daily(
        "margin_balances",
        margin_days,
        margin_required,
        ["stock_id", "trade_date", "margin_balance", "margin_limit", "short_balance"],
    )
    start, end = chip.history_window(required[0], required[-1])["shareholding_distribution"]
    holders = reader.periodic("shareholding_distribution", start, end)
    return quotes, chip.compute(quotes, flows, margin, holders)


# Each family's maths over a range: (quotes of the days read, computed factor columns).
COMPUTE: dict[str, Callable[[_Reader, list[dt.date]], tuple[pl.DataFrame, pl.DataFrame]]] = {
    "technical_indicators": _technical,
    "fundamental_indicators": _fundamental,
    "chip_indicators": _chip,
}
if set(COMPUTE) != set(families.ASSETS):
    raise RuntimeError(
        f"indicator families without maths, or maths without a family: {set(COMPUTE) ^ set(families.ASSETS)}"
    )


# ---------------------------------------------------------------- public
def files_stored(store: FrameStore, table: str, keys: list[str] | None = None) -> set[str]:
    """The partitions of `table` whose frame file the store holds (among `keys` if given): what counts
    as stored when no Dagster instance is at hand."""
    held = set(store.partitions(table))
    return held if keys is None else held & set(keys)


def stored_or_files(store: FrameStore, stored_keys: StoredKeys | None) -> StoredKeys:
    """`stored_keys` (the Dagster instance's answer, handed in by the wiring), or the store's own file
    list when none was handed in (a notebook, a benchmark)."""
    return stored_keys or (lambda table, keys: files_stored(store, table, keys))


def compute_range(
    store: FrameStore, asset: str, dates: list[dt.date], stored_keys: StoredKeys | None = None
) -> RangeResult:
    """Compute `asset` ("technical_indicators" | "fundamental_indicators" | "chip_indicators") for
    `dates` (any set of partition dates) in one pass; nothing is written. `stored_keys` answers which
    partitions are stored (default: the store's files)."""
    if asset not in COMPUTE:
        raise KeyError(f"unknown indicator asset {asset!r}; known: {sorted(COMPUTE)}")
    compute = COMPUTE[asset]
    factors = families.BY_ASSET[asset].factors
    ids = [f.factor_id for f in factors]
    dates = sorted(set(dates))
    reader = _Reader(store, asset, stored_keys)
    started = time.perf_counter()
    if any(day_status(d).is_open for d in dates):
        quotes, computed = compute(reader, dates)
    else:  # only closed days: nothing to read or compute
        quotes = _or_empty(pl.DataFrame(), "daily_quotes")
        computed = empty_frame(ids)
    compute_seconds = time.perf_counter() - started - reader.seconds

    closed: dict[dt.date, str] = {}
    frames: dict[dt.date, pl.DataFrame] = {}
    # One row per stock in the day's daily_quotes, in a fixed column order whatever `compute` returns.
    wanted = quotes.filter(pl.col("trade_date").is_in(dates)).select(*KEYS)
    values = wanted.join(computed.select(*KEYS, *ids), on=list(KEYS), how="left").select(
        pl.col("stock_id").cast(pl.Utf8), pl.col("trade_date").cast(pl.Date), *[pl.col(c).cast(pl.Float64) for c in ids]
    )
    per_day = {key[0]: part.sort("stock_id") for key, part in values.partition_by("trade_date", as_dict=True).items()}
    for date in dates:
        status = day_status(date)
        if not status.is_open:
            closed[date] = status.reason
        elif date not in per_day:
            # The calendar says open but daily_quotes stored no rows: the source reported no data.
            closed[date] = "no daily_quotes rows for the day (the source reported no data)"
        frames[date] = per_day.get(date, empty_frame(ids)) if date not in closed else empty_frame(ids)
    universe = quotes.filter(pl.col("trade_date").is_in(dates)).select(*KEYS, "is_suspended")
    return RangeResult(
        asset, factors, frames, closed, universe, reader.history, reader.missing, reader.seconds, compute_seconds
    )


def lag_metadata(result: RangeResult, date: dt.date) -> dict:
    """For a partition's metadata: each lagged factor's `lag_days`, and the day each lagged source table's
    rows come from (margin_balances → the previous trading day). Empty for modules without lagged factors
    and for closed days."""
    lagged = [f for f in result.factors if f.lag_days]
    if not lagged or date in result.closed:
        return {}
    source_days: dict[str, str] = {}
    for factor in lagged:
        source = previous_trading_days(date, factor.lag_days + 1)[0].isoformat()
        for table in sorted(factor.source_tables - {"daily_quotes"}):
            source_days[table] = source
    return {"factor_lag_days": {f.factor_id: f.lag_days for f in lagged}, "lagged_source_days": source_days}


def write_range(store: FrameStore, result: RangeResult) -> None:
    """Store one atomic Parquet file per partition (closed days too: an empty, typed frame)."""
    for date, frame in sorted(result.frames.items()):
        store.write(result.asset, date.isoformat(), frame)


def materialize_range(
    store: FrameStore, asset: str, dates: list[dt.date], stored_keys: StoredKeys | None = None
) -> RangeResult:
    result = compute_range(store, asset, dates, stored_keys)
    write_range(store, result)
    return result
