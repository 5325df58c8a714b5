"""TWSE payload parsers: one JSON answer (+ the requested date) → a canonical frame, or "no data".

Pure functions: no HTTP, no cache, no clock. Everything that does not look exactly like what TWSE
publishes (see shared/reference/exchange-payloads.md) raises `BadMarketData` naming the endpoint, the
date and the field *before* anything is returned, so a caller never stores a partial frame.

The first half of this module holds the helpers the TPEx parsers share (number parsing, field-list
checks, ROC dates), because both exchanges have the same ugly habits.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import polars as pl

from qrl_platform.market.schema import DAILY_QUOTES, INSTITUTIONAL_FLOWS, MARGIN_BALANCES, VALUATIONS, BadMarketData

# ---------------------------------------------------------------------------------------------- shared


@dataclass(frozen=True)
class Endpoint:
    market: str  # "TWSE" | "TPEx"
    name: str  # short name used in messages, e.g. "MI_INDEX"
    path: str  # path below the exchange's base URL
    params: dict[str, str] = field(default_factory=dict)  # fixed query parameters besides date/response

    @property
    def label(self) -> str:
        return f"{self.market} {self.name}"


@dataclass
class Parsed:
    """A parser's answer: a frame in the table's canonical schema, or no data for the date."""

    frame: pl.DataFrame | None
    no_data: bool = False
    reason: str = ""  # the exchange's own words when it has no data


class NotPublishedYet(BadMarketData):
    """A table has no data yet for a day the exchange traded (e.g. margin before ~21:00): retry later."""


@dataclass(frozen=True)
class Where:
    """Endpoint + date, so every error message says where it comes from."""

    endpoint: Endpoint
    date: dt.date

    def bad(self, message: str) -> BadMarketData:
        return BadMarketData(f"{self.endpoint.label} {self.date}: {message}")


# Placeholders the exchanges print instead of a number: no trade (--, ---), negative earnings (-, N/A).
NULL_TOKENS = frozenset({"", "-", "--", "---", "----", "N/A", "n/a", "NA"})
_TAG = re.compile(r"<[^>]*>")
_CJK = re.compile(r"[\u3400-\u9fff]")


def norm(name: object) -> str:
    """A field name without any whitespace: TPEx writes "次日 參考價", "收盤 " and the like."""
    return "".join(str(name).split())


def text(value: object) -> str:
    """Codes and names arrive padded with spaces (and the margin total's code is U+3000, also stripped)."""
    return "" if value is None else str(value).strip()


def number(value: object, where: Where, field_name: str, code: str, *, integer: bool = False, required: bool = False):
    """A number from a JSON number or a string with thousands separators; placeholders become None.

    `required` fields (volumes, flows, margin counts) must carry a number: an empty one is an error
    rather than a silent null or 0.
    """
    if isinstance(value, bool):
        raise where.bad(f"field {field_name!r} is not a number ({value!r}) for stock {code}")
    if isinstance(value, (int, float)):
        raw = value
    elif value is None or isinstance(value, str):
        cleaned = (value or "").strip().replace(",", "")
        if cleaned in NULL_TOKENS:
            if required:
                raise where.bad(f"field {field_name!r} is empty ({value!r}) for stock {code}")
            return None
        try:
            raw = float(cleaned)
        except ValueError:
            raise where.bad(f"field {field_name!r} is not a number ({value!r}) for stock {code}") from None
    else:
        raise where.bad(f"field {field_name!r} is not a number ({value!r}) for stock {code}")
    if not math.isfinite(raw):
        raise where.bad(f"field {field_name!r} is not a finite number ({value!r}) for stock {code}")
    if integer:
        if float(raw) != int(raw):
            raise where.bad(f"field {field_name!r} should be a whole number, got {value!r} for stock {code}")
        return int(raw)
    return float(raw)


def parse_any_date(value: object) -> dt.date | None:
    """Dates as the exchanges print them: 20260907, 2026/09/07, 2026-09-07, ROC 115/09/07 or 1150907."""
    raw = text(value)
    try:
        if raw.isdigit() and len(raw) == 8:
            return dt.date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))
        if raw.isdigit() and len(raw) == 7:  # ROC yyyMMdd
            return dt.date(int(raw[:3]) + 1911, int(raw[3:5]), int(raw[5:]))
        parts = re.split(r"[/\-.]", raw)
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            year = int(parts[0])
            return dt.date(year if year > 1911 else year + 1911, int(parts[1]), int(parts[2]))
    except ValueError:
        return None
    return None


def check_date(value: object, where: Where, field_name: str = "date") -> None:
    """The payload must say it is for the requested day (TPEx silently answers the latest day instead)."""
    if value is None or text(value) == "":
        raise where.bad(f"field {field_name!r} is missing, so the payload cannot be tied to the requested date")
    got = parse_any_date(value)
    if got is None:
        raise where.bad(f"field {field_name!r} is not a date ({value!r})")
    if got != where.date:
        raise where.bad(
            f"field {field_name!r} says {got}, not the requested {where.date} (the exchange answered another day)"
        )


def positions(fields: object, wanted: Iterable[str] | dict[str, tuple[str, ...]], where: Where) -> dict[str, int]:
    """Column index of each wanted field, by name; for tables whose field names are unique.

    `wanted` is a list of names, or {key: accepted names} when the exchange has spelled a column more
    than one way over the years (the first accepted name present wins; the result is keyed by `key`)."""
    got = field_list(fields, where)
    accepted = wanted if isinstance(wanted, dict) else {name: (name,) for name in wanted}
    out = {}
    for key, names in accepted.items():
        for name in names:
            hits = [i for i, g in enumerate(got) if g == name]
            if len(hits) > 1:
                raise where.bad(f"field {name!r} appears more than once in the field list {got}")
            if hits:
                out[key] = hits[0]
                break
        else:
            raise where.bad(f"field {_spelled(names)} is missing from the field list {got}")
    return out


def _spelled(names: tuple[str, ...]) -> str:
    return " or ".join(repr(n) for n in names)


def expect_layout(fields: object, expected: list[tuple[str, ...]], where: Where) -> None:
    """For tables with repeated field names we map by position, so the whole header must match; each
    position accepts a short list of names (the exchanges rename a column now and then)."""
    got = field_list(fields, where)
    if len(got) != len(expected):
        flat = [names[0] for names in expected]
        raise where.bad(f"field list changed: expected {len(expected)} fields {flat}, got {len(got)}: {got}")
    for i, (have, names) in enumerate(zip(got, expected, strict=True)):
        if have not in names:
            raise where.bad(f"field {_spelled(names)} expected at position {i}, got {have!r} (field list changed)")


def field_list(fields: object, where: Where) -> list[str]:
    if not isinstance(fields, list) or not fields:
        raise where.bad(f"field 'fields' is missing or empty ({fields!r})")
    return [norm(f) for f in fields]


def rows_of(table: dict, where: Where) -> list[list]:
    """The table's rows, each with exactly one value per field (otherwise positions would shift)."""
    n_fields = len(field_list(table.get("fields"), where))
    data = table.get("data")
    if not isinstance(data, list):
        raise where.bad(f"field 'data' is missing or not a list ({type(data).__name__})")
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != n_fields:
            code = text(row[0]) if isinstance(row, list) and row else "?"
            size = len(row) if isinstance(row, list) else type(row).__name__
            raise where.bad(
                f"row {i} (stock {code}) has {size} values, expected {n_fields} (one per field in 'fields')"
            )
    return data


def is_total_row(code: str, name: str) -> bool:
    """The margin tables open with a 合計 row whose code is a full-width space (stripped to "")."""
    return code == "" and "合計" in name


def require_code(code: str, row_index: int, where: Where) -> str:
    if not code:
        raise where.bad(f"row {row_index} has an empty stock code (field 'code')")
    return code


def has_cjk(value: str) -> bool:
    """A status word such as 除息 where a number would be (TPEx's 漲跌 column)."""
    return bool(_CJK.search(value))


def is_etf(code: str) -> bool:
    return code.startswith("00")


def frame(records: list[dict], schema: dict) -> pl.DataFrame:
    return pl.DataFrame(records, schema=schema) if records else pl.DataFrame(schema=schema)


def quote_record(
    where: Where, code: str, name: str, *, open_, high, low, close, volume, turnover, trades, change
) -> dict:
    """One daily_quotes row; no trade (all prices missing and volume 0) is a suspension."""
    prices = (open_, high, low, close)
    return {
        "stock_id": code,
        "trade_date": where.date,
        "market": where.endpoint.market,
        "name": name,
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "turnover": turnover,
        "trades": trades,
        # No close, no change: a 0 would claim the price stood still.
        "change": change if close is not None else None,
        "is_etf": is_etf(code),
        "is_suspended": all(p is None for p in prices) and volume == 0,
    }


def check_volume_units(records: list[dict], where: Where, volume_field: str) -> None:
    """turnover / volume is the average price; far outside the day's range means the volume unit is wrong
    (e.g. thousands of shares read as shares) — fail instead of storing volumes off by 1,000."""
    for r in records:
        if r["volume"] and r["turnover"] and r["high"] is not None and r["low"] is not None:
            average = r["turnover"] / r["volume"]
            if not r["low"] * 0.5 <= average <= r["high"] * 2:
                raise where.bad(
                    f"field {volume_field!r} has the wrong unit for stock {r['stock_id']}: turnover/volume = "
                    f"{average:.6g} TWD per share, outside the day's range {r['low']}–{r['high']}"
                )


def no_data_or_ok(
    payload: object, where: Where, ok: Callable[[str], bool], no_data_marker: str | None
) -> Parsed | None:
    """None when the payload is an OK answer; Parsed(no_data) for the exchange's "no data" answer;
    anything else (throttling notices, "query later", HTML parsed as something else) is an error."""
    if not isinstance(payload, dict):
        raise where.bad(f"payload is a JSON {type(payload).__name__}, not an object")
    stat = text(payload.get("stat"))
    if ok(stat):
        return None
    if no_data_marker and no_data_marker in stat:
        return Parsed(None, no_data=True, reason=stat)
    raise where.bad(f"field 'stat' is {stat!r}, neither OK nor a 'no data' answer")


# ------------------------------------------------------------------------------------------------ TWSE

QUOTES = Endpoint("TWSE", "MI_INDEX", "/rwd/zh/afterTrading/MI_INDEX", {"type": "ALLBUT0999"})
INSTITUTIONAL = Endpoint("TWSE", "T86", "/rwd/zh/fund/T86", {"selectType": "ALLBUT0999"})
MARGIN = Endpoint("TWSE", "MI_MARGN", "/rwd/zh/marginTrading/MI_MARGN", {"selectType": "STOCK"})
# Under rwd/zh/ the valuations live in afterTrading/ (exchangeReport/BWIBBU_d is the pre-rwd path).
VALUATION = Endpoint("TWSE", "BWIBBU_d", "/rwd/zh/afterTrading/BWIBBU_d", {"selectType": "ALL"})

# TWSE's closed-day answer: {"stat": "很抱歉，沒有符合條件的資料!"} (MI_MARGN drops the final 「!」, so
# the marker is matched without it).
NO_DATA_STAT = "沒有符合條件的資料"
# A date after the exchange's today: {"stat": "查詢日期大於今日，請重新查詢!", "total": 0}.
FUTURE_DATE_STAT = "查詢日期大於"
STOCK_TABLE_TITLE = "每日收盤行情"


def query(endpoint: Endpoint, date: dt.date) -> dict[str, str]:
    return {"response": "json", "date": date.strftime("%Y%m%d"), **endpoint.params}


def _open(payload: object, where: Where) -> Parsed | None:
    if isinstance(payload, dict) and FUTURE_DATE_STAT in text(payload.get("stat")):
        raise NotPublishedYet(
            f"{where.endpoint.label} {where.date}: TWSE says {text(payload['stat'])!r}; try again later"
        )
    closed = no_data_or_ok(payload, where, lambda s: s.upper() == "OK", NO_DATA_STAT)
    if closed is None:
        check_date(payload.get("date"), where)
    return closed


def _flat_table(payload: dict, where: Where) -> dict:
    """T86 and BWIBBU_d put fields/data at the top level."""
    if "fields" not in payload:
        raise where.bad(f"field 'fields' is missing (keys: {sorted(payload)})")
    return payload


def _tables(payload: dict, where: Where) -> list[dict]:
    tables = payload.get("tables")
    if not isinstance(tables, list):
        raise where.bad(f"field 'tables' is missing or not a list (keys: {sorted(payload)})")
    return [t for t in tables if isinstance(t, dict)]


QUOTE_FIELDS = [
    "證券代號",
    "證券名稱",
    "成交股數",
    "成交筆數",
    "成交金額",
    "開盤價",
    "最高價",
    "最低價",
    "收盤價",
    "漲跌(+/-)",
    "漲跌價差",
]


def _sign(value: object, where: Where, code: str) -> str:
    """'<p style= color:red>+</p>' → '+', '<p style= color:green>-</p>' → '-', '<p>X</p>' → 'X', '<p> </p>' → ''."""
    sign = _TAG.sub("", text(value)).replace("&nbsp;", "").strip().upper()
    if sign not in {"+", "-", "X", ""}:
        raise where.bad(f"field '漲跌(+/-)' has an unknown sign {value!r} for stock {code}")
    return sign


def parse_quotes(payload: object, date: dt.date) -> Parsed:
    """MI_INDEX: the stock table is the one titled 「每日收盤行情」 — its position has changed over the years."""
    where = Where(QUOTES, date)
    closed = _open(payload, where)
    if closed:
        return closed
    titled = [t for t in _tables(payload, where) if STOCK_TABLE_TITLE in text(t.get("title"))]
    if len(titled) != 1:
        titles = [text(t.get("title")) for t in _tables(payload, where)]
        raise where.bad(f"field 'tables' has {len(titled)} tables titled {STOCK_TABLE_TITLE!r} (titles: {titles})")
    table = titled[0]
    at = positions(table.get("fields"), QUOTE_FIELDS, where)
    records = []
    for i, row in enumerate(rows_of(table, where)):
        code = require_code(text(row[at["證券代號"]]), i, where)

        def num(name: str, integer: bool = False, required: bool = False, row=row, code=code):
            return number(row[at[name]], where, name, code, integer=integer, required=required)

        sign = _sign(row[at["漲跌(+/-)"]], where, code)
        difference = num("漲跌價差")
        if sign == "X" or difference is None:
            change = None  # "X": not comparable with the previous close (ex-rights, new listing, ...)
        elif sign == "":
            if difference != 0:
                raise where.bad(f"field '漲跌(+/-)' has no sign for a change of {difference} for stock {code}")
            change = 0.0
        else:
            change = difference if sign == "+" else -difference
        records.append(
            quote_record(
                where,
                code,
                text(row[at["證券名稱"]]),
                open_=num("開盤價"),
                high=num("最高價"),
                low=num("最低價"),
                close=num("收盤價"),
                volume=num("成交股數", integer=True, required=True),  # shares
                turnover=num("成交金額", integer=True, required=True),  # TWD
                trades=num("成交筆數", integer=True, required=True),
                change=change,
            )
        )
    if not records:
        raise where.bad(f"table {STOCK_TABLE_TITLE!r} has no rows (field 'data') on a day TWSE answered OK")
    check_volume_units(records, where, "成交股數")
    return Parsed(frame(records, DAILY_QUOTES))


T86_FIELDS = [
    "證券代號",
    "證券名稱",
    "外陸資買進股數(不含外資自營商)",
    "外陸資賣出股數(不含外資自營商)",
    "外陸資買賣超股數(不含外資自營商)",
    "外資自營商買進股數",
    "外資自營商賣出股數",
    "外資自營商買賣超股數",
    "投信買進股數",
    "投信賣出股數",
    "投信買賣超股數",
    "自營商買賣超股數",
    "自營商買進股數(自行買賣)",
    "自營商賣出股數(自行買賣)",
    "自營商買賣超股數(自行買賣)",
    "自營商買進股數(避險)",
    "自營商賣出股數(避險)",
    "自營商買賣超股數(避險)",
    "三大法人買賣超股數",
]


def parse_institutional(payload: object, date: dt.date) -> Parsed:
    """T86, all in shares. Dealers = proprietary (自行買賣) + hedging (避險)."""
    where = Where(INSTITUTIONAL, date)
    closed = _open(payload, where)
    if closed:
        return closed
    table = _flat_table(payload, where)
    at = positions(table.get("fields"), T86_FIELDS, where)
    records = []
    for i, row in enumerate(rows_of(table, where)):
        code = require_code(text(row[at["證券代號"]]), i, where)

        def shares(name: str, row=row, code=code) -> int:
            return number(row[at[name]], where, name, code, integer=True, required=True)

        records.append(
            {
                "stock_id": code,
                "trade_date": date,
                "foreign_buy": shares("外陸資買進股數(不含外資自營商)"),
                "foreign_sell": shares("外陸資賣出股數(不含外資自營商)"),
                "foreign_net": shares("外陸資買賣超股數(不含外資自營商)"),
                "foreign_dealer_buy": shares("外資自營商買進股數"),
                "foreign_dealer_sell": shares("外資自營商賣出股數"),
                "foreign_dealer_net": shares("外資自營商買賣超股數"),
                "trust_buy": shares("投信買進股數"),
                "trust_sell": shares("投信賣出股數"),
                "trust_net": shares("投信買賣超股數"),
                "dealer_buy": shares("自營商買進股數(自行買賣)") + shares("自營商買進股數(避險)"),
                "dealer_sell": shares("自營商賣出股數(自行買賣)") + shares("自營商賣出股數(避險)"),
                "dealer_net": shares("自營商買賣超股數"),
                "total_net": shares("三大法人買賣超股數"),
            }
        )
    return Parsed(frame(records, INSTITUTIONAL_FLOWS))


# Names repeat (融資 then 融券), so MI_MARGN is mapped by position and the whole header is checked. The
# limit column is 限額 in the recorded answers; 次一營業日限額 is the older spelling — both accepted.
LIMIT_NAMES = ("限額", "次一營業日限額")
MARGIN_LAYOUT: list[tuple[str | tuple[str, ...], str | None]] = [
    ("代號", None),
    ("名稱", None),
    ("買進", "margin_buy"),
    ("賣出", "margin_sell"),
    ("現金償還", "margin_cash_repay"),
    ("前日餘額", "margin_prev_balance"),
    ("今日餘額", "margin_balance"),
    (LIMIT_NAMES, "margin_limit"),
    ("買進", "short_cover"),
    ("賣出", "short_sell"),
    ("現券償還", "short_stock_repay"),
    ("前日餘額", "short_prev_balance"),
    ("今日餘額", "short_balance"),
    (LIMIT_NAMES, "short_limit"),
    ("資券互抵", "offset"),
    ("註記", None),
]


def accepted(names: str | tuple[str, ...]) -> tuple[str, ...]:
    return (names,) if isinstance(names, str) else names


def margin_rows(table: dict, where: Where, layout: list[tuple[str | tuple[str, ...], str | None]]) -> list[dict]:
    """Rows of a by-position margin table (TWSE and TPEx alike), in lots as published; 合計 row dropped."""
    expect_layout(table.get("fields"), [accepted(names) for names, _ in layout], where)
    records = []
    for i, row in enumerate(rows_of(table, where)):
        code, name = text(row[0]), text(row[1])
        if is_total_row(code, name):
            continue
        require_code(code, i, where)
        record: dict = {"stock_id": code, "trade_date": where.date}
        for position, (_names, column) in enumerate(layout):
            if column:
                field_name = norm(table["fields"][position])  # the spelling this answer uses
                record[column] = number(
                    row[position], where, f"{field_name} ({column})", code, integer=True, required=True
                )
        records.append(record)
    return records


def parse_margin(payload: object, date: dt.date) -> Parsed:
    """MI_MARGN?selectType=STOCK: `tables` = [credit summary, stock table]; the stock table starts with 代號."""
    where = Where(MARGIN, date)
    closed = _open(payload, where)
    if closed:
        return closed
    stock_tables = [
        t
        for t in _tables(payload, where)
        if isinstance(t.get("fields"), list) and t["fields"] and norm(t["fields"][0]) == "代號"
    ]
    if len(stock_tables) != 1:
        titles = [text(t.get("title")) for t in _tables(payload, where)]
        raise where.bad(f"field 'tables' has {len(stock_tables)} stock tables starting with '代號' (titles: {titles})")
    return Parsed(frame(margin_rows(stock_tables[0], where, MARGIN_LAYOUT), MARGIN_BALANCES))


# Found by name: BWIBBU_d has answered with and without 收盤價 after the name, so positions shift.
VALUATION_RATIOS = {"本益比": ("本益比",), "股價淨值比": ("股價淨值比",), "殖利率(%)": ("殖利率(%)",)}


def valuation_records(
    table: dict, where: Where, date: dt.date, code_field: str, skip: Callable[[str], bool] = lambda code: False
) -> list[dict]:
    """Valuation rows of one table, columns found by name (both exchanges publish the same three ratios)."""
    at = positions(table.get("fields"), {code_field: (code_field,), **VALUATION_RATIOS}, where)
    records = []
    for i, row in enumerate(rows_of(table, where)):
        code = require_code(text(row[at[code_field]]), i, where)
        if skip(code):
            continue
        records.append(
            {
                "stock_id": code,
                "trade_date": date,
                "pe": number(row[at["本益比"]], where, "本益比", code),
                "pb": number(row[at["股價淨值比"]], where, "股價淨值比", code),
                "dividend_yield": number(row[at["殖利率(%)"]], where, "殖利率(%)", code),
            }
        )
    return records


def parse_valuations(payload: object, date: dt.date) -> Parsed:
    """BWIBBU_d, mapped by name (older answers lack 收盤價); 本益比 "-" (negative earnings) → null."""
    where = Where(VALUATION, date)
    closed = _open(payload, where)
    if closed:
        return closed
    table = _flat_table(payload, where)
    return Parsed(frame(valuation_records(table, where, date, "證券代號"), VALUATIONS))


ENDPOINTS = {
    "daily_quotes": QUOTES,
    "institutional_flows": INSTITUTIONAL,
    "margin_balances": MARGIN,
    "valuations": VALUATION,
}
PARSERS: dict[str, Callable[[object, dt.date], Parsed]] = {
    "daily_quotes": parse_quotes,
    "institutional_flows": parse_institutional,
    "margin_balances": parse_margin,
    "valuations": parse_valuations,
}
