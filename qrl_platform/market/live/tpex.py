"""TPEx payload parsers: one JSON answer (+ the requested date) → a canonical frame, or "no data".

TPEx's dated endpoints answer `{"tables": [{"title", "date", "fields", "data", …}], "date", "stat": "ok"}`.
Two traps shape this module:

* For dates it no longer keeps, TPEx silently answers the *latest* day with `stat: ok`. Both the
  payload's `date` and each table's (ROC) `date` must equal the requested date, otherwise we raise.
* A closed or not-yet-published day is `stat: ok` with empty tables, i.e. "no data", not an error.

Units (the canonical tables want shares for volumes/flows, lots for margin):
* quotes: the volume unit is read from the header. The dailyQuotes JSON in use since 2023 labels it
  成交股數 and it is in shares (成交金額 / 成交股數 equals 均價); only 最後買量/最後賣量 are in 千股. A
  header announcing thousands (成交股數(千股), 成交量(仟股), 成交張數) is multiplied by 1,000. Either
  way turnover / volume must land in the day's price range, so a mislabelled unit fails loudly.
* institutional flows: shares (買進股數 …), as published.
* margin: lots (張), as published, like TWSE.

Warrants (six-character codes starting with 7) are dropped: TWSE is queried with ALLBUT0999
(everything but warrants), and TPEx mixes them into the same table on some dates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from qrl_platform.market.live.twse import (
    NULL_TOKENS,
    Endpoint,
    Parsed,
    Where,
    check_date,
    check_volume_units,
    field_list,
    frame,
    has_cjk,
    margin_rows,
    no_data_or_ok,
    norm,
    number,
    positions,
    quote_record,
    require_code,
    rows_of,
    text,
    valuation_records,
)
from qrl_platform.market.schema import DAILY_QUOTES, INSTITUTIONAL_FLOWS, MARGIN_BALANCES, VALUATIONS

QUOTES = Endpoint("TPEx", "dailyQuotes", "/www/zh-tw/afterTrading/dailyQuotes", {"type": "EW"})
INSTITUTIONAL = Endpoint("TPEx", "dailyTrade", "/www/zh-tw/insti/dailyTrade", {"type": "Daily", "sect": "EW"})
MARGIN = Endpoint("TPEx", "margin/balance", "/www/zh-tw/margin/balance")
# Not in the reference document: peQryDate (個股本益比、殖利率、股價淨值比 by date) is the TPEx page
# behind 「本益比、殖利率及股價淨值比」; its field names are checked by name so a change fails loudly.
VALUATION = Endpoint("TPEx", "peQryDate", "/www/zh-tw/afterTrading/peQryDate")


def query(endpoint: Endpoint, date: dt.date) -> dict[str, str]:
    return {"date": date.strftime("%Y/%m/%d"), "response": "json", **endpoint.params}


def _is_warrant(code: str) -> bool:
    return len(code) == 6 and code.startswith("7")


def _tables(payload: object, where: Where, has_field: str) -> list[dict]:
    """The payload's tables carrying `has_field`, after checking stat and that every date is the one asked."""
    no_data_or_ok(payload, where, lambda s: s.lower() == "ok", None)
    check_date(payload.get("date"), where)
    tables = payload.get("tables")
    if not isinstance(tables, list):
        raise where.bad(f"field 'tables' is missing or not a list (keys: {sorted(payload)})")
    picked = []
    for i, table in enumerate(tables):
        if not isinstance(table, dict) or not table.get("fields"):
            continue  # TPEx pads `tables` with {} on some endpoints
        if table.get("date") not in (None, ""):
            check_date(table["date"], where, f"tables[{i}].date")
        if has_field in field_list(table["fields"], where):
            picked.append(table)
    if not picked:
        titles = [text(t.get("title")) for t in tables if isinstance(t, dict)]
        raise where.bad(f"field 'tables' has no table with a {has_field!r} field (titles: {titles})")
    return picked


def _no_rows(tables: list[dict]) -> bool:
    return all(not t.get("data") for t in tables)


NO_ROWS = "TPEx answered ok with no rows"


# ---------------------------------------------------------------------------------------------- quotes

QUOTE_FIELDS = ["代號", "名稱", "收盤", "漲跌", "開盤", "最高", "最低", "成交金額(元)", "成交筆數"]
VOLUME_UNITS = {  # header → shares per unit
    "成交股數": 1,
    "成交股數(股)": 1,
    "成交股數(千股)": 1000,
    "成交股數(仟股)": 1000,
    "成交量(千股)": 1000,
    "成交量(仟股)": 1000,
    "成交張數": 1000,
}


def _change(value: object, where: Where, code: str) -> float | None:
    """漲跌 is a signed string ("+0.64", "-0.23 "), "---" without a trade, or a word such as 除息."""
    raw = text(value)
    if raw in NULL_TOKENS or has_cjk(raw):
        return None
    return number(raw, where, "漲跌", code)


def parse_quotes(payload: object, date: dt.date) -> Parsed:
    """dailyQuotes: 上櫃股票行情 plus 管理股票 (same fields), both kept."""
    where = Where(QUOTES, date)
    tables = _tables(payload, where, "收盤")
    if _no_rows(tables):
        return Parsed(None, no_data=True, reason=NO_ROWS)
    records = []
    volume_names = set()
    for table in tables:
        at = positions(table["fields"], QUOTE_FIELDS, where)
        volume_fields = [f for f in field_list(table["fields"], where) if f in VOLUME_UNITS]
        if len(volume_fields) != 1:
            raise where.bad(
                f"field for the traded volume not found: expected one of {sorted(VOLUME_UNITS)}, got {volume_fields}"
            )
        volume_field = volume_fields[0]
        volume_names.add(volume_field)
        unit = VOLUME_UNITS[volume_field]
        volume_at = positions(table["fields"], [volume_field], where)[volume_field]
        for i, row in enumerate(rows_of(table, where)):
            code = require_code(text(row[at["代號"]]), i, where)
            if _is_warrant(code):
                continue

            def num(name: str, integer: bool = False, required: bool = False, row=row, code=code, at=at):
                return number(row[at[name]], where, name, code, integer=integer, required=required)

            records.append(
                quote_record(
                    where,
                    code,
                    text(row[at["名稱"]]),
                    open_=num("開盤"),
                    high=num("最高"),
                    low=num("最低"),
                    close=num("收盤"),
                    volume=number(row[volume_at], where, volume_field, code, integer=True, required=True) * unit,
                    turnover=num("成交金額(元)", integer=True, required=True),
                    trades=num("成交筆數", integer=True, required=True),
                    change=_change(row[at["漲跌"]], where, code),
                )
            )
    check_volume_units(records, where, "/".join(sorted(volume_names)))
    return Parsed(frame(records, DAILY_QUOTES))


# ------------------------------------------------------------------------------------ institutional

# 三大法人買賣明細: 代號, 名稱, then seven groups of (買進股數, 賣出股數, 買賣超股數), then the total.
# The JSON repeats the bare names, so columns are mapped by position and the header is checked position
# by position (a prefixed name such as "投信-買進股數", as in the CSV export, must name the right group).
INSTI_GROUPS = [
    "外資及陸資(不含外資自營商)",  # 0 → foreign_*
    "外資自營商",  # 1 → foreign_dealer_*
    "外資及陸資",  # 2 (sum of 0 and 1, unused)
    "投信",  # 3 → trust_*
    "自營商(自行買賣)",  # 4 ┐ dealer_buy/sell = proprietary + hedging
    "自營商(避險)",  # 5 ┘
    "自營商",  # 6 → dealer_net
]
INSTI_SUFFIXES = ["買進股數", "賣出股數", "買賣超股數"]
INSTI_TOTAL = "三大法人買賣超股數合計"
INSTI_WIDTH = 2 + 3 * len(INSTI_GROUPS) + 1  # 24


def _check_insti_header(fields: object, where: Where) -> None:
    got = field_list(fields, where)
    if len(got) != INSTI_WIDTH:
        raise where.bad(f"field list changed: expected {INSTI_WIDTH} fields, got {len(got)}: {got}")
    if got[0] != "代號" or got[1] != "名稱" or got[-1] != INSTI_TOTAL:
        raise where.bad(f"fields '代號', '名稱' … {INSTI_TOTAL!r} expected at positions 0, 1 and 23, got {got}")
    for g, group in enumerate(INSTI_GROUPS):
        for s, suffix in enumerate(INSTI_SUFFIXES):
            position = 2 + 3 * g + s
            if got[position] not in (suffix, f"{group}-{suffix}", f"{group}{suffix}"):
                raise where.bad(f"field {group + suffix!r} expected at position {position}, got {got[position]!r}")


def parse_institutional(payload: object, date: dt.date) -> Parsed:
    where = Where(INSTITUTIONAL, date)
    tables = _tables(payload, where, "代號")
    if _no_rows(tables):
        return Parsed(None, no_data=True, reason=NO_ROWS)
    if len(tables) != 1:
        raise where.bad(f"field 'tables' has {len(tables)} tables with a '代號' field, expected 1")
    table = tables[0]
    _check_insti_header(table["fields"], where)
    # Messages name the group too, since the bare field names repeat.
    labels = [f"{INSTI_GROUPS[(p - 2) // 3]} {norm(name)}" for p, name in enumerate(table["fields"][2:-1], start=2)]
    labels.append(INSTI_TOTAL)
    records = []
    for i, row in enumerate(rows_of(table, where)):
        code = require_code(text(row[0]), i, where)
        if _is_warrant(code):
            continue
        values = [
            number(v, where, label, code, integer=True, required=True) for v, label in zip(row[2:], labels, strict=True)
        ]
        groups = [values[3 * g : 3 * g + 3] for g in range(len(INSTI_GROUPS))]
        for g, (buy, sell, net) in enumerate(groups):
            # Position mapping is only safe while the layout is what we think: net must be buy − sell.
            if net != buy - sell:
                raise where.bad(
                    f"field {INSTI_GROUPS[g] + '買賣超股數'!r} ({net}) is not buy − sell ({buy} − {sell}) for stock "
                    f"{code}: the column layout has changed"
                )
        foreign, foreign_dealer, _, trust, proprietary, hedging, dealers = groups
        records.append(
            {
                "stock_id": code,
                "trade_date": date,
                "foreign_buy": foreign[0],
                "foreign_sell": foreign[1],
                "foreign_net": foreign[2],
                "foreign_dealer_buy": foreign_dealer[0],
                "foreign_dealer_sell": foreign_dealer[1],
                "foreign_dealer_net": foreign_dealer[2],
                "trust_buy": trust[0],
                "trust_sell": trust[1],
                "trust_net": trust[2],
                "dealer_buy": proprietary[0] + hedging[0],
                "dealer_sell": proprietary[1] + hedging[1],
                "dealer_net": dealers[2],
                "total_net": values[-1],
            }
        )
    return Parsed(frame(records, INSTITUTIONAL_FLOWS))


# ------------------------------------------------------------------------------------------- margin

# 上櫃股票融資融券餘額, in lots (張). Note 券賣 comes before 券買 here, unlike TWSE.
MARGIN_LAYOUT: list[tuple[str | tuple[str, ...], str | None]] = [
    ("代號", None),
    ("名稱", None),
    ("前資餘額(張)", "margin_prev_balance"),
    ("資買", "margin_buy"),
    ("資賣", "margin_sell"),
    ("現償", "margin_cash_repay"),
    ("資餘額", "margin_balance"),
    ("資屬證金", None),
    ("資使用率(%)", None),
    ("資限額", "margin_limit"),
    ("前券餘額(張)", "short_prev_balance"),
    ("券賣", "short_sell"),
    ("券買", "short_cover"),
    ("券償", "short_stock_repay"),
    ("券餘額", "short_balance"),
    ("券屬證金", None),
    ("券使用率(%)", None),
    ("券限額", "short_limit"),
    ("資券相抵(張)", "offset"),
    ("備註", None),
]


def parse_margin(payload: object, date: dt.date) -> Parsed:
    where = Where(MARGIN, date)
    tables = _tables(payload, where, "代號")
    if _no_rows(tables):
        return Parsed(None, no_data=True, reason=NO_ROWS)
    if len(tables) != 1:
        raise where.bad(f"field 'tables' has {len(tables)} tables with a '代號' field, expected 1")
    records = [r for r in margin_rows(tables[0], where, MARGIN_LAYOUT) if not _is_warrant(r["stock_id"])]
    return Parsed(frame(records, MARGIN_BALANCES))


# --------------------------------------------------------------------------------------- valuations


def parse_valuations(payload: object, date: dt.date) -> Parsed:
    """peQryDate, by name (財報年/季 only exists since 2025); 本益比 "N/A" (losses) → null."""
    where = Where(VALUATION, date)
    tables = _tables(payload, where, "股票代號")
    if _no_rows(tables):
        return Parsed(None, no_data=True, reason=NO_ROWS)
    records = [
        record for table in tables for record in valuation_records(table, where, date, "股票代號", skip=_is_warrant)
    ]
    return Parsed(frame(records, VALUATIONS))


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
