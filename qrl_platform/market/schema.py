"""Canonical raw market tables: their schemas, keys and validation.

The columns, types, units and keys are declared once per table in `qrl_platform.market.tables`.
Every source (demo or live) produces frames of exactly these schemas, so everything downstream is
source-agnostic.
"""

from __future__ import annotations

import polars as pl

from qrl_platform.market.tables import BY_NAME, CORPORATE_ACTION_KINDS

RAW_TABLES: dict[str, dict[str, pl.DataType]] = {name: table.columns for name, table in BY_NAME.items()}
# The natural key of each table: duplicates on it are bad input.
KEYS = {name: table.key for name, table in BY_NAME.items()}
NON_NEGATIVE = {name: table.non_negative for name, table in BY_NAME.items()}

# The canonical schemas by name, for the parsers that build frames of one table.
DAILY_QUOTES = RAW_TABLES["daily_quotes"]
INSTITUTIONAL_FLOWS = RAW_TABLES["institutional_flows"]
MARGIN_BALANCES = RAW_TABLES["margin_balances"]
VALUATIONS = RAW_TABLES["valuations"]
SHAREHOLDING_DISTRIBUTION = RAW_TABLES["shareholding_distribution"]
CORPORATE_ACTIONS = RAW_TABLES["corporate_actions"]


class BadMarketData(ValueError):
    """Input that does not match the canonical schema; the message names table, date and field."""


def empty(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=RAW_TABLES[table])


def conform(table: str, frame: pl.DataFrame, *, context: str = "") -> pl.DataFrame:
    """Cast to the canonical schema and reject bad input with an error naming table/date/field.

    Checks: every column present and castable, keys non-null and unique, no negative prices or
    volumes, high ≥ low. Returns the frame with columns in canonical order.
    """
    schema = RAW_TABLES[table]
    where = f"{table}{' ' + context if context else ''}"
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise BadMarketData(f"{where}: missing field(s) {missing}")
    try:
        out = frame.select([pl.col(c).cast(t, strict=True) for c, t in schema.items()])
    except Exception as exc:  # polars raises several types for bad casts
        bad = _first_uncastable(frame, schema)
        raise BadMarketData(f"{where}: field {bad!r} has values of the wrong type ({exc.__class__.__name__})") from exc
    keys = KEYS[table]
    for key in keys:
        if out[key].null_count():
            raise BadMarketData(f"{where}: field {key!r} is empty on {out[key].null_count()} row(s)")
    dupes = out.filter(out.select(keys).is_duplicated())
    if dupes.height:
        sample = dupes.select(keys).row(0)
        named = ", ".join(f"{key}={value}" for key, value in zip(keys, sample, strict=True))
        raise BadMarketData(f"{where}: duplicate rows for {named} (fields {', '.join(keys)})")
    for column in NON_NEGATIVE[table]:
        negative = out.filter(pl.col(column) < 0)
        if negative.height:
            row = negative.row(0, named=True)
            date = row.get("trade_date") or row.get("week") or row.get("year_month") or row.get("ex_date")
            raise BadMarketData(
                f"{where}: field {column!r} is negative ({row[column]}) for stock {row['stock_id']} on {date}"
            )
    if table == "daily_quotes":
        inverted = out.filter(pl.col("high") < pl.col("low"))
        if inverted.height:
            row = inverted.row(0, named=True)
            raise BadMarketData(
                f"{where}: field 'high' ({row['high']}) below 'low' ({row['low']}) for stock "
                f"{row['stock_id']} on {row['trade_date']}"
            )
    if table == "corporate_actions":
        unknown = out.filter(~pl.col("kind").is_in(CORPORATE_ACTION_KINDS))
        if unknown.height:
            row = unknown.row(0, named=True)
            raise BadMarketData(
                f"{where}: field 'kind' is {row['kind']!r} for stock {row['stock_id']} on {row['ex_date']} "
                f"(expected one of {', '.join(CORPORATE_ACTION_KINDS)})"
            )
    return out


def _first_uncastable(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> str:
    for column, dtype in schema.items():
        try:
            frame.get_column(column).cast(dtype, strict=True)
        except Exception:
            return column
    return "?"
