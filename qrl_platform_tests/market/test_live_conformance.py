"""The parsers against the recorded payload shapes (shared/reference/exchange-payloads.md, the sections
checked against recordings): renamed columns that are accepted, layouts that are not, closed-day envelopes."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from qrl_platform.market.live import tpex, twse
from qrl_platform.market.live.twse import NotPublishedYet
from qrl_platform.market.schema import BadMarketData
from qrl_platform_tests.market import fake_exchanges as fx

DAY = dt.date(2026, 9, 7)


def by_stock(parsed: twse.Parsed) -> dict[str, dict]:
    return {row["stock_id"]: row for row in parsed.frame.iter_rows(named=True)}


def test_bwibbu_d_is_requested_at_the_rwd_after_trading_path():
    assert twse.VALUATION.path == "/rwd/zh/afterTrading/BWIBBU_d"


def test_mi_margn_accepts_the_older_limit_name_and_reads_the_same_values():
    recorded = twse.parse_margin(fx.mi_margn(DAY), DAY)
    older = copy.deepcopy(fx.mi_margn(DAY))  # the builders share their row lists
    older["tables"][1]["fields"] = [("次一營業日限額" if f == "限額" else f) for f in older["tables"][1]["fields"]]
    renamed = twse.parse_margin(older, DAY)
    assert renamed.frame.equals(recorded.frame)
    assert by_stock(recorded)["2330"]["margin_limit"] == 6_483_000
    assert by_stock(recorded)["2330"]["short_limit"] == 6_483_000


def test_mi_margn_without_the_total_row_reads_the_same_stocks():
    payload = copy.deepcopy(fx.mi_margn(DAY))  # the builders share their row lists
    payload["tables"][1]["data"] = [row for row in payload["tables"][1]["data"] if row[1] != "合計"]
    assert twse.parse_margin(payload, DAY).frame.equals(twse.parse_margin(fx.mi_margn(DAY), DAY).frame)
    assert sorted(by_stock(twse.parse_margin(payload, DAY))) == ["0050", "1101", "2330"]


def test_mi_margn_error_names_the_spelling_the_answer_uses():
    payload = copy.deepcopy(fx.mi_margn(DAY))  # the builders share their row lists
    payload["tables"][1]["data"][3][7] = "--"  # 2330's margin limit
    with pytest.raises(BadMarketData, match=r"TWSE MI_MARGN 2026-09-07: field '限額 \(margin_limit\)' is empty"):
        twse.parse_margin(payload, DAY)


def test_bwibbu_d_with_and_without_the_close_price_column_gives_the_same_ratios():
    recorded = twse.parse_valuations(fx.bwibbu_d(DAY), DAY)
    later = copy.deepcopy(fx.bwibbu_d(DAY))  # the builders share their row lists
    fx.with_close_price(later)
    assert later["fields"][2] == "收盤價" and later["data"][0][3] == "3.31"  # every ratio moved one place
    assert twse.parse_valuations(later, DAY).frame.equals(recorded.frame)
    assert {k: (v["pe"], v["pb"], v["dividend_yield"]) for k, v in by_stock(recorded).items()} == {
        "1101": (None, 0.95, 3.31),
        "2002": (None, 1.02, 0.0),
        "2317": (14.37, 1.85, 2.6),
        "2330": (22.15, 6.8, 1.65),
    }


def test_an_old_t86_layout_fails_naming_endpoint_date_and_field():
    payload = copy.deepcopy(fx.t86(DAY))  # the builders share their row lists
    # 2014-era answers have 16 fields: no separate foreign-dealer columns.
    dropped = {"外資自營商買進股數", "外資自營商賣出股數", "外資自營商買賣超股數"}
    keep = [i for i, f in enumerate(payload["fields"]) if f not in dropped]
    payload["fields"] = [payload["fields"][i] for i in keep]
    payload["data"] = [[row[i] for i in keep] for row in payload["data"]]
    assert len(payload["fields"]) == 16
    with pytest.raises(BadMarketData, match=r"TWSE T86 2026-09-07: field '外資自營商買進股數' is missing"):
        twse.parse_institutional(payload, DAY)


TWSE_CLOSED = {
    "daily_quotes": (twse.parse_quotes, fx.MI_INDEX, "很抱歉，沒有符合條件的資料!"),
    "institutional_flows": (twse.parse_institutional, fx.T86, "很抱歉，沒有符合條件的資料!"),
    "margin_balances": (twse.parse_margin, fx.MI_MARGN, "很抱歉，沒有符合條件的資料"),
    "valuations": (twse.parse_valuations, fx.BWIBBU_D, "很抱歉，沒有符合條件的資料!"),
}


@pytest.mark.parametrize("table", sorted(TWSE_CLOSED))
def test_twse_closed_day_envelopes_are_no_data_with_the_exchanges_words(table):
    parse, path, stat = TWSE_CLOSED[table]
    envelope = fx.closed_payload(path, DAY)
    assert envelope["stat"] == stat
    parsed = parse(envelope, DAY)
    assert parsed.no_data and parsed.frame is None and parsed.reason == stat


def test_the_closed_mi_index_envelope_is_ten_empty_tables_and_params():
    envelope = fx.closed_payload(fx.MI_INDEX, DAY)
    assert envelope["tables"] == [{}] * 10 and set(envelope) == {"tables", "params", "stat"}
    assert twse.parse_quotes(envelope, DAY).no_data


@pytest.mark.parametrize("parse", [twse.parse_quotes, twse.parse_institutional, twse.parse_valuations])
def test_a_date_after_twses_today_is_not_published_yet(parse):
    with pytest.raises(NotPublishedYet, match="查詢日期大於今日"):
        parse(dict(fx.TWSE_FUTURE_DATE), DAY)


TPEX_CLOSED = {
    "daily_quotes": (tpex.parse_quotes, fx.daily_quotes),
    "institutional_flows": (tpex.parse_institutional, fx.daily_trade),
    "margin_balances": (tpex.parse_margin, fx.margin_balance),
    "valuations": (tpex.parse_valuations, fx.pe_qry_date),
}


@pytest.mark.parametrize("table", sorted(TPEX_CLOSED))
def test_tpex_closed_day_is_lowercase_ok_with_no_rows(table):
    parse, build = TPEX_CLOSED[table]
    envelope = build(DAY, empty=True)
    assert envelope["stat"] == "ok"
    tables = [t for t in envelope["tables"] if t]
    assert all(t["data"] == [] and t["totalCount"] == 0 and t["fields"] for t in tables)
    parsed = parse(envelope, DAY)
    assert parsed.no_data and parsed.reason == tpex.NO_ROWS


def test_tpex_json_integers_and_padded_names_parse():
    parsed = by_stock(tpex.parse_valuations(fx.pe_qry_date(DAY), DAY))
    assert isinstance(fx.PE_QRY_ROWS[0][4], int)  # 股利年度 is a JSON integer in the recording
    assert (parsed["6488"]["pe"], parsed["6488"]["pb"], parsed["6488"]["dividend_yield"]) == (18.52, 2.1, 1.77)
    quotes = by_stock(tpex.parse_quotes(fx.daily_quotes(DAY), DAY))
    assert quotes["3105"]["name"] == "穩懋"  # "穩懋    " in the payload
    assert quotes["6488"]["volume"] == 1_234_567  # 成交股數 is in shares


def test_tpex_margin_summary_rows_are_not_stocks():
    payload = fx.margin_balance(DAY)
    assert payload["tables"][0]["summary"][0][1] == "合計(張)"
    assert sorted(by_stock(tpex.parse_margin(payload, DAY))) == ["3105", "6488"]
