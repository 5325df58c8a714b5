"""Corporate-action payload parsers (TWSE TWT49U/TWT49UDetail/TWTAUU/TWTB8U, TPEx exDailyQ/revivt/pvChgRslt).

Pure functions: one JSON answer + the requested range → event records in the `corporate_actions` schema,
or `BadMarketData` naming the endpoint, the range, the stock and the field. Shapes are those of the real
answers recorded in qrl_platform_tests/market/recordings/corporate_actions/ (SOURCES.md says where from).

Checks beyond the field names:
* every event's date lies inside the requested range — TPEx's exDailyQ, asked with the wrong method or a
  date without slashes, silently answers with *today's* events; its `date` field ("YYYYMMDD~YYYYMMDD")
  must also be the range asked for;
* where the answer carries the terms of an event (TPEx: cash, free shares, rights issue; revivt: new shares
  per 1,000 and cash returned; pvChgRslt: the exchange ratio), the published reference price must follow
  from them to the tick (`corporate_actions.within_a_tick`), so a misread column fails loudly.

TWT49U gives only 權值+息值 (= prior close − reference price) and 減除股利參考價 (= (prior close − cash) /
(1 + free shares per share), which leaves out a rights issue). A 息 row's cash is 權值+息值; a 權 row's free
shares follow from 減除股利參考價 (none when it equals the prior close: a pure rights issue); a 權息 row
needs TWT49UDetail for its cash, and the free shares then follow from 減除股利參考價.

`published_on` is the ex-date: the lists carry no announcement date, and the reference price needs the
prior close, so the ex-date is the first day a live run can be sure to have seen the event.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import dataclass

from qrl_platform.market.corporate_actions import (
    dividend_reference_price,
    reduction_reference_price,
    within_a_tick,
)
from qrl_platform.market.live.twse import Endpoint, number, positions, rows_of, text
from qrl_platform.market.schema import BadMarketData

TWT49U = Endpoint("TWSE", "TWT49U", "/rwd/zh/exRight/TWT49U")
TWT49U_DETAIL = Endpoint("TWSE", "TWT49UDetail", "/rwd/zh/exRight/TWT49UDetail")
TWTAUU = Endpoint("TWSE", "TWTAUU", "/rwd/zh/reducation/TWTAUU")
# The par-value list lives under change/, not reducation/ (reducation/TWTB8U is a 404 page).
TWTB8U = Endpoint("TWSE", "TWTB8U", "/rwd/zh/change/TWTB8U")
EX_DAILY = Endpoint("TPEx", "exDailyQ", "/www/zh-tw/bulletin/exDailyQ")
REVIVT = Endpoint("TPEx", "revivt", "/www/zh-tw/bulletin/revivt")
PV_CHANGE = Endpoint("TPEx", "pvChgRslt", "/www/zh-tw/bulletin/pvChgRslt")

NO_DATA_STAT = "沒有符合條件的資料"


@dataclass(frozen=True)
class RangeWhere:
    """Endpoint + requested range, so every error names where it comes from."""

    endpoint: Endpoint
    start: dt.date
    end: dt.date

    def bad(self, message: str) -> BadMarketData:
        return BadMarketData(f"{self.endpoint.label} {self.start}..{self.end}: {message}")


def twse_query(start: dt.date, end: dt.date) -> dict[str, str]:
    return {"startDate": start.strftime("%Y%m%d"), "endDate": end.strftime("%Y%m%d"), "response": "json"}


def tpex_query(start: dt.date, end: dt.date) -> dict[str, str]:
    # With a date without slashes (or a POST) exDailyQ answers today's events instead: slashes, GET.
    return {"startDate": start.strftime("%Y/%m/%d"), "endDate": end.strftime("%Y/%m/%d"), "response": "json"}


def detail_query(stock_id: str, ex_date: dt.date) -> dict[str, str]:
    return {"STK_NO": stock_id, "T": ex_date.strftime("%Y%m%d"), "response": "json"}


_ROC_CJK = re.compile(r"^(\d{2,3})年(\d{1,2})月(\d{1,2})日$")
_ROC_SLASH = re.compile(r"^(\d{2,3})/(\d{1,2})/(\d{1,2})$")
_ROC_DIGITS = re.compile(r"^(\d{3})(\d{2})(\d{2})$")


def roc_date(value: object, where: RangeWhere, field_name: str, code: str = "?") -> dt.date:
    """115年06月11日 (TWT49U), 115/01/12 (TWTAUU, TWTB8U, exDailyQ) or 1150112 (revivt, pvChgRslt)."""
    raw = text(value)
    for pattern in (_ROC_CJK, _ROC_SLASH, _ROC_DIGITS):
        hit = pattern.match(raw)
        if hit:
            year, month, day = (int(g) for g in hit.groups())
            try:
                return dt.date(year + 1911, month, day)
            except ValueError:
                break
    raise where.bad(f"field {field_name!r} is not an ROC date ({value!r}) for stock {code}")


def _in_range(day: dt.date, where: RangeWhere, field_name: str, code: str) -> dt.date:
    if not where.start <= day <= where.end:
        raise where.bad(
            f"field {field_name!r} is {day} for stock {code}, outside the requested range (the exchange answered "
            f"another range)"
        )
    return day


def _price(row: list, at: dict[str, int], key: str, where: RangeWhere, code: str) -> float:
    value = number(row[at[key]], where, key, code, required=True)
    if value <= 0:
        raise where.bad(f"field {key!r} is not a positive price ({row[at[key]]!r}) for stock {code}")
    return value


@dataclass(frozen=True)
class PricedRow:
    """One list row with what every list has: stock, event date (checked against the range), prior close
    and reference price."""

    row: list
    at: dict[str, int]
    code: str
    day: dt.date
    prior: float
    reference: float


def _priced_rows(table: dict, fields: dict, where: RangeWhere, date_field: str):
    at = positions(table.get("fields"), fields, where)
    for row in rows_of(table, where):
        code = text(row[at["code"]])
        day = _in_range(roc_date(row[at["date"]], where, date_field, code), where, date_field, code)
        yield PricedRow(
            row, at, code, day, _price(row, at, "prior", where, code), _price(row, at, "reference", where, code)
        )


def _check_reference(published: float, ours: float, where: RangeWhere, field_name: str, code: str, day) -> None:
    if not within_a_tick(ours, published):
        raise where.bad(
            f"field {field_name!r} is {published} for stock {code} on {day}, but its published terms give "
            f"{ours:.4f} (more than a tick apart: a column was misread or the formula changed)"
        )


def _event(code: str, day: dt.date, market: str, kind: str, prior: float, reference: float, cash, stock) -> dict:
    return {
        "stock_id": code,
        "ex_date": day,
        "market": market,
        "kind": kind,
        "prior_close": prior,
        "reference_price": reference,
        "cash_per_share": cash if cash else None,
        "stock_per_share": stock if stock else None,
        "published_on": day,
    }


def _dividend_kind(cash: float | None, free_shares: float | None) -> str:
    """A rights issue without free shares or cash (a 權 row of a cash capital increase) is stored as
    stock_dividend with stock_per_share null: the factor is right, its terms are not in our columns."""
    if cash and free_shares:
        return "cash_and_stock"
    if cash:
        return "cash_dividend"
    return "stock_dividend"


# ------------------------------------------------------------------------------------------------ TWSE


def _twse_table(payload: object, where: RangeWhere) -> dict | None:
    """The payload when stat is OK; None for TWSE's "no data" answer (no events in the range)."""
    if not isinstance(payload, dict):
        raise where.bad(f"payload is a JSON {type(payload).__name__}, not an object")
    stat = text(payload.get("stat"))
    if NO_DATA_STAT in stat:
        return None
    if stat.upper() != "OK":
        raise where.bad(f"field 'stat' is {stat!r}, neither OK nor a 'no data' answer")
    if not payload.get("data"):
        return None  # TWTB8U answers an event-free range with stat OK and data []
    return payload


TWT49U_FIELDS = {
    "date": ("資料日期",),
    "code": ("股票代號",),
    "prior": ("除權息前收盤價",),
    "reference": ("除權息參考價",),
    "value": ("權值+息值",),
    "kind": ("權/息",),
    "dividend_reference": ("減除股利參考價",),
}


@dataclass(frozen=True)
class PendingDetail:
    """A 權息 row whose cash must come from TWT49UDetail."""

    stock_id: str
    ex_date: dt.date
    record: dict
    dividend_reference: float


def parse_twt49u(payload: object, start: dt.date, end: dt.date) -> tuple[list[dict], list[PendingDetail]]:
    """Events of TWT49U (除權除息計算結果表); 權息 rows come back pending their TWT49UDetail."""
    where = RangeWhere(TWT49U, start, end)
    table = _twse_table(payload, where)
    if table is None:
        return [], []
    events, pending = [], []
    for item in _priced_rows(table, TWT49U_FIELDS, where, "資料日期"):
        row, at, code, day, prior, reference = item.row, item.at, item.code, item.day, item.prior, item.reference
        dividend_reference = _price(row, at, "dividend_reference", where, code)
        value = number(row[at["value"]], where, "權值+息值", code, required=True)
        if abs(prior - reference - value) > 0.011:
            raise where.bad(
                f"field '權值+息值' is {value} for stock {code} on {day}, but 除權息前收盤價 − 除權息參考價 is "
                f"{prior - reference:.4f}"
            )
        kind = text(row[at["kind"]])
        if kind == "息":
            cash, free = value, None
            _check_reference(reference, dividend_reference_price(prior, cash), where, "除權息參考價", code, day)
        elif kind == "權":
            cash, free = None, round(prior / dividend_reference - 1, 6)
        elif kind == "權息":
            record = _event(code, day, "TWSE", "cash_and_stock", prior, reference, None, None)
            pending.append(PendingDetail(code, day, record, dividend_reference))
            continue
        else:
            raise where.bad(f"field '權/息' is {kind!r} for stock {code} on {day} (expected 權, 息 or 權息)")
        events.append(_event(code, day, "TWSE", _dividend_kind(cash, free), prior, reference, cash, free))
    return events, pending


_CASH = re.compile(r"([-+]?\d[\d,]*(?:\.\d+)?)")


def parse_twt49u_detail(payload: object, pending: PendingDetail) -> dict:
    """Complete a 權息 row with its cash dividend from TWT49UDetail; free shares then follow from
    減除股利參考價 = (prior close − cash) / (1 + free shares per share)."""
    where = RangeWhere(TWT49U_DETAIL, pending.ex_date, pending.ex_date)
    table = _twse_table(payload, where)
    if table is None:
        raise where.bad(f"no detail for stock {pending.stock_id} (a 權息 row of TWT49U needs it)")
    at = positions(table.get("fields"), {"code": ("股票代號",), "cash": ("(每股配發現金股利)除息",)}, where)
    rows = [row for row in rows_of(table, where) if text(row[at["code"]]) == pending.stock_id]
    if len(rows) != 1:
        raise where.bad(f"expected one row for stock {pending.stock_id}, got {len(rows)}")
    raw = text(rows[0][at["cash"]])
    hit = _CASH.search(raw)
    if not hit:
        raise where.bad(f"field '(每股配發現金股利)除息' is not an amount ({raw!r}) for stock {pending.stock_id}")
    cash = float(hit.group(1).replace(",", ""))
    record = dict(pending.record)
    free = round((record["prior_close"] - cash) / pending.dividend_reference - 1, 6)
    if free < 0:
        raise where.bad(
            f"field '(每股配發現金股利)除息' is {cash} for stock {pending.stock_id}, more than 除權息前收盤價 − "
            f"減除股利參考價 allows"
        )
    record.update(kind=_dividend_kind(cash, free), cash_per_share=cash or None, stock_per_share=free or None)
    return record


REDUCTION_FIELDS = {
    "date": ("恢復買賣日期",),
    "code": ("股票代號",),
    "prior": ("停止買賣前收盤價格",),
    "reference": ("恢復買賣參考價",),
}


def parse_twtauu(payload: object, start: dt.date, end: dt.date) -> list[dict]:
    """Capital reductions (股票減資恢復買賣參考價格); the list carries no exchange ratio, so
    stock_per_share and cash_per_share stay null."""
    return _twse_basis_changes(payload, RangeWhere(TWTAUU, start, end), "capital_reduction")


def parse_twtb8u(payload: object, start: dt.date, end: dt.date) -> list[dict]:
    """Par-value changes (變更股票面額恢復買賣參考價格)."""
    return _twse_basis_changes(payload, RangeWhere(TWTB8U, start, end), "par_value_change")


def _twse_basis_changes(payload: object, where: RangeWhere, kind: str) -> list[dict]:
    table = _twse_table(payload, where)
    if table is None:
        return []
    return [
        _event(item.code, item.day, "TWSE", kind, item.prior, item.reference, None, None)
        for item in _priced_rows(table, REDUCTION_FIELDS, where, "恢復買賣日期")
    ]


# ------------------------------------------------------------------------------------------------ TPEx


def _tpex_table(payload: object, where: RangeWhere) -> dict | None:
    """The one table of a bulletin answer, after checking stat and that `date` is the range asked."""
    if not isinstance(payload, dict):
        raise where.bad(f"payload is a JSON {type(payload).__name__}, not an object")
    stat = text(payload.get("stat"))
    if stat.lower() != "ok":
        raise where.bad(f"field 'stat' is {stat!r} (TPEx answers 參數錯誤 to a malformed query)")
    asked = f"{where.start:%Y%m%d}~{where.end:%Y%m%d}"
    if text(payload.get("date")) != asked:
        raise where.bad(
            f"field 'date' is {payload.get('date')!r}, not the requested {asked!r} (TPEx answered another range, "
            f"e.g. today's events for a malformed query)"
        )
    tables = payload.get("tables")
    if not isinstance(tables, list) or not tables or not isinstance(tables[0], dict):
        raise where.bad(f"field 'tables' is missing or empty (keys: {sorted(payload)})")
    table = tables[0]
    return table if table.get("data") else None


EX_DAILY_FIELDS = {
    "date": ("除權息日期",),
    "code": ("代號",),
    "prior": ("除權息前收盤價",),
    "reference": ("除權息參考價",),
    "cash": ("現金股利",),
    "free": ("每仟股無償配股",),
    "rights_shares": ("現金增資股數",),
    "rights_price": ("現金增資認購價",),
    "rights_existing": ("原股東認購股數",),
    "rights_per_thousand": ("按持股比例仟股認購",),
}


def parse_ex_daily(payload: object, start: dt.date, end: dt.date) -> list[dict]:
    """TPEx ex-rights/dividends (exDailyQ); capital reductions are not in it (see revivt)."""
    where = RangeWhere(EX_DAILY, start, end)
    table = _tpex_table(payload, where)
    if table is None:
        return []
    events = []
    for item in _priced_rows(table, EX_DAILY_FIELDS, where, "除權息日期"):
        code, day, prior, reference = item.code, item.day, item.prior, item.reference

        def amount(key: str, item=item) -> float:
            return number(item.row[item.at[key]], where, key, item.code) or 0.0

        cash, free = amount("cash"), amount("free") / 1000
        # 按持股比例仟股認購 counts only the shares offered to existing holders; the formula's rate is over
        # all new shares (public offering and employees included).
        existing = amount("rights_existing")
        rights = amount("rights_per_thousand") / 1000 * amount("rights_shares") / existing if existing else 0.0
        ours = dividend_reference_price(prior, cash, free, rights, amount("rights_price"))
        _check_reference(reference, ours, where, "除權息參考價", code, day)
        events.append(_event(code, day, "TPEx", _dividend_kind(cash, free), prior, reference, cash, round(free, 6)))
    return events


_DETAIL_CELL = re.compile(r"<th>\s*([^<:：]+)[:：]?\s*</th>\s*<td>(.*?)</td>", re.S)


def _detail(cell: object) -> dict[str, str]:
    """revivt / pvChgRslt put an event's terms in an HTML table in 詳細資料."""
    out = {}
    for name, value in _DETAIL_CELL.findall(html.unescape(text(cell)).replace("&nbsp", " ")):
        out[name.strip()] = re.sub(r"<[^>]*>", "", value).strip()
    return out


def _detail_number(terms: dict[str, str], name: str, where: RangeWhere, code: str) -> float:
    if name not in terms:
        raise where.bad(f"field '詳細資料' has no {name!r} for stock {code} (has {sorted(terms)})")
    hit = _CASH.search(terms[name])
    if not hit:
        raise where.bad(f"field '詳細資料' {name!r} is not a number ({terms[name]!r}) for stock {code}")
    return float(hit.group(1).replace(",", ""))


REVIVT_FIELDS = {
    "date": ("恢復買賣日期",),
    "code": ("股票代號",),
    "prior": ("最後交易日之收盤價格",),
    "reference": ("減資恢復買賣開始日參考價格",),
    "detail": ("詳細資料",),
}


def parse_revivt(payload: object, start: dt.date, end: dt.date) -> list[dict]:
    """TPEx capital reductions: new shares per 1,000 and cash returned come from 詳細資料."""
    where = RangeWhere(REVIVT, start, end)
    table = _tpex_table(payload, where)
    if table is None:
        return []
    events = []
    for item in _priced_rows(table, REVIVT_FIELDS, where, "恢復買賣日期"):
        code, day, prior, reference = item.code, item.day, item.prior, item.reference
        terms = _detail(item.row[item.at["detail"]])
        new_shares = _detail_number(terms, "每壹仟股換發新股票", where, code) / 1000
        cash = _detail_number(terms, "每股退還股款", where, code)
        _check_reference(
            reference,
            reduction_reference_price(prior, new_shares, cash),
            where,
            "減資恢復買賣開始日參考價格",
            code,
            day,
        )
        events.append(_event(code, day, "TPEx", "capital_reduction", prior, reference, cash, round(new_shares, 8)))
    return events


PV_FIELDS = {
    "date": ("恢復買賣日期",),
    "code": ("證券代號", "股票代號"),
    "prior": ("最後交易日之收盤價格",),
    "reference": ("恢復買賣開始參考價", "恢復買賣開始日參考價"),
    "detail": ("詳細資料",),
}


def parse_pv_change(payload: object, start: dt.date, end: dt.date) -> list[dict]:
    """TPEx par-value changes: the exchange ratio (new shares per old share) comes from 詳細資料."""
    where = RangeWhere(PV_CHANGE, start, end)
    table = _tpex_table(payload, where)
    if table is None:
        return []
    events = []
    for item in _priced_rows(table, PV_FIELDS, where, "恢復買賣日期"):
        code, day, prior, reference = item.code, item.day, item.prior, item.reference
        ratio = _detail_number(_detail(item.row[item.at["detail"]]), "變更股票面額換股率", where, code)
        _check_reference(reference, reduction_reference_price(prior, ratio), where, "恢復買賣開始參考價", code, day)
        events.append(_event(code, day, "TPEx", "par_value_change", prior, reference, None, ratio))
    return events


TWSE_BASIS_CHANGES = ((TWTAUU, parse_twtauu), (TWTB8U, parse_twtb8u))
TPEX_LISTS = ((EX_DAILY, parse_ex_daily), (REVIVT, parse_revivt), (PV_CHANGE, parse_pv_change))
