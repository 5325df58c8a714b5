"""Local stand-ins for www.twse.com.tw and www.tpex.org.tw, speaking the real payload shapes.

Two stdlib HTTP servers on 127.0.0.1 (one per exchange, so each is its own "host" for throttling),
serving invented rows in exactly the shapes of shared/reference/exchange-payloads.md (the sections
checked against recordings): HTML sign markup (two spellings: stock table and index tables), thousands
separators, `--` for no trade, padded names, MI_MARGN's summary table then the stock table with
`groups`/`notes`, repeated field names, the limit column named 限額 and a 合計 row whose code is U+3000,
BWIBBU_d's 2023 field list (no 收盤價) with 股利年度 as a JSON integer, ROC dates, TPEx's lowercase `ok`
and its table keys (`subtitle` with &nbsp;, `totalCount` as a JSON integer, `summary`/totals), T86 rows
sorted by total net buy. Closed days answer each endpoint's recorded envelope (see `closed_payload`).

Query parameters are checked like the real hosts need them (response=json, date=YYYYMMDD for TWSE,
date=YYYY/MM/DD for TPEx, type/selectType/sect); a wrong request gets HTTP 400.

Switches for the unhappy paths: `close_day`, `serve_html`, `serve_truncated`, `drop_stock_table`, `rename_field`,
`mutate` (any payload edit), `tpex_answers_date`, `fail_next` (429 with Retry-After, 5xx), and every
request is recorded with its arrival time. `storm(rate, seed=…)` answers each request, with
probability `rate`, with one of STORM_KINDS at random (429 + Retry-After, 503, a timeout, an HTML error
page, truncated JSON, TPEx data of another day); `storm_served` counts them. `publish_after` gates
each endpoint on a simulated clock: a day's data is served only from its publication time on;
before it the host answers its no-data envelope (TWSE) or empty tables (TPEx), as the real hosts do.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from qrl_platform_tests.local_http import LocalHttpServer, Reply, Request

TWSE_NO_DATA = {"stat": "很抱歉，沒有符合條件的資料!"}
MI_MARGN_NO_DATA = {"stat": "很抱歉，沒有符合條件的資料"}  # recorded without the final 「!」
BWIBBU_NO_DATA = {"stat": "很抱歉，沒有符合條件的資料!", "total": 0}
TWSE_FUTURE_DATE = {"stat": "查詢日期大於今日，請重新查詢!", "total": 0}

MI_INDEX = "/rwd/zh/afterTrading/MI_INDEX"
T86 = "/rwd/zh/fund/T86"
MI_MARGN = "/rwd/zh/marginTrading/MI_MARGN"
BWIBBU_D = "/rwd/zh/afterTrading/BWIBBU_d"
DAILY_QUOTES = "/www/zh-tw/afterTrading/dailyQuotes"
DAILY_TRADE = "/www/zh-tw/insti/dailyTrade"
MARGIN_BALANCE = "/www/zh-tw/margin/balance"
PE_QRY_DATE = "/www/zh-tw/afterTrading/peQryDate"

RED = "<p style= color:red>+</p>"  # the stock table's spelling
GREEN = "<p style= color:green>-</p>"
INDEX_RED = "<p style ='color:red'>+</p>"  # the index tables' spelling

# ------------------------------------------------------------------------------------------- TWSE rows

MI_INDEX_FIELDS = [
    "證券代號", "證券名稱", "成交股數", "成交筆數", "成交金額", "開盤價", "最高價", "最低價", "收盤價",
    "漲跌(+/-)", "漲跌價差", "最後揭示買價", "最後揭示買量", "最後揭示賣價", "最後揭示賣量", "本益比",
]  # fmt: skip
MI_INDEX_ROWS = [
    ["0050", "元大台灣50", "12,345,678", "8,901", "2,360,493,634", "190.00", "192.50", "189.10", "191.85", RED, "1.35", "191.80", "120", "191.85", "35", "0.00"],
    ["1101", "台泥", "8,001,000", "3,456", "241,630,200", "30.10", "30.50", "29.90", "30.20", "<p>X</p>", "0.00", "30.15", "50", "30.20", "12", "15.20"],
    ["2002", "中鋼", "20,000,000", "9,000", "400,500,000", "20.00", "20.10", "19.95", "20.00", "<p> </p>", "0.00", "19.95", "300", "20.00", "100", "--"],
    ["2317", "鴻海        ", "55,001,234", "30,123", "11,440,256,672", "210.50", "211.00", "205.50", "206.00", GREEN, "4.50", "205.50", "100", "206.00", "200", "14.37"],
    ["2330", "台積電", "40,033,236", "61,234", "43,556,160,768", "1,085.00", "1,095.00", "1,080.00", "1,090.00", RED, "10.00", "1,085.00", "1,234", "1,090.00", "567", "22.15"],
    ["9910", "豐泰", "0", "0", "0", "--", "--", "--", "--", "<p> </p>", "0.00", "--", "0", "--", "0", "--"],
]  # fmt: skip

T86_FIELDS = [
    "證券代號", "證券名稱", "外陸資買進股數(不含外資自營商)", "外陸資賣出股數(不含外資自營商)",
    "外陸資買賣超股數(不含外資自營商)", "外資自營商買進股數", "外資自營商賣出股數", "外資自營商買賣超股數",
    "投信買進股數", "投信賣出股數", "投信買賣超股數", "自營商買賣超股數", "自營商買進股數(自行買賣)",
    "自營商賣出股數(自行買賣)", "自營商買賣超股數(自行買賣)", "自營商買進股數(避險)", "自營商賣出股數(避險)",
    "自營商買賣超股數(避險)", "三大法人買賣超股數",
]  # fmt: skip
T86_ROWS = [  # sorted by 三大法人買賣超股數, as TWSE sorts them
    ["2330", "台積電          ", "25,123,456", "20,000,000", "5,123,456", "1,000", "2,000", "-1,000", "300,000", "100,000", "200,000", "450,000", "500,000", "100,000", "400,000", "150,000", "100,000", "50,000", "5,772,456"],
    ["0050", "元大台灣50      ", "1,200,000", "800,000", "400,000", "0", "0", "0", "50,000", "10,000", "40,000", "-150,000", "100,000", "200,000", "-100,000", "30,000", "80,000", "-50,000", "290,000"],
    ["1101", "台泥            ", "0", "0", "0", "0", "0", "0", "0", "0", "0", "12,000", "12,000", "0", "12,000", "0", "0", "0", "12,000"],
    ["2317", "鴻海            ", "10,000,000", "12,500,000", "-2,500,000", "0", "0", "0", "0", "600,000", "-600,000", "0", "0", "0", "0", "0", "0", "0", "-3,100,000"],
]  # fmt: skip

MI_MARGN_FIELDS = [
    "代號", "名稱", "買進", "賣出", "現金償還", "前日餘額", "今日餘額", "限額",
    "買進", "賣出", "現券償還", "前日餘額", "今日餘額", "限額", "資券互抵", "註記",
]  # fmt: skip
MI_MARGN_ROWS = [
    ["\u3000", "合計", "5,156", "3,945", "22", "75,000", "76,189", "", "253", "706", "7", "9,000", "9,446", "", "114", " "],
    ["0050", "元大台灣50", "1,200", "1,000", "10", "20,000", "20,190", "500,000", "30", "50", "0", "1,000", "1,020", "500,000", "5", "OX!"],
    ["1101", "台泥", "500", "600", "0", "30,000", "29,900", "2,500,000", "100", "200", "0", "5,000", "5,100", "2,500,000", "20", "X "],
    ["2330", "台積電", "3,456", "2,345", "12", "25,000", "26,099", "6,483,000", "123", "456", "7", "3,000", "3,326", "6,483,000", 89, "OX "],
]  # fmt: skip

# The recorded 2023 layout; later answers insert 收盤價 after the name (see `with_close_price`).
BWIBBU_FIELDS = ["證券代號", "證券名稱", "殖利率(%)", "股利年度", "本益比", "股價淨值比", "財報年/季"]
BWIBBU_ROWS = [
    ["1101", "台泥", "3.31", 114, "-", "0.95", "115/2"],
    ["2002", "中鋼", "0.00", 114, "-", "1.02", "115/2"],
    ["2317", "鴻海", "2.60", 114, "14.37", "1.85", "115/2"],
    ["2330", "台積電", "1.65", 114, "22.15", "6.80", "115/2"],
]
BWIBBU_CLOSES = {"1101": "30.20", "2002": "20.00", "2317": "206.00", "2330": "1,090.00"}


def with_close_price(payload: dict) -> None:
    """BWIBBU_d as some later answers lay it out: 收盤價 after 證券名稱 (every ratio shifts right)."""
    payload["fields"].insert(2, "收盤價")
    for row in payload["data"]:
        row.insert(2, BWIBBU_CLOSES[row[0]])


# ------------------------------------------------------------------------------------------- TPEx rows

DAILY_QUOTES_FIELDS = [
    "代號", "名稱", "收盤", "漲跌", "開盤", "最高", "最低", "均價", "成交股數", "成交金額(元)", "成交筆數",
    "最後買價", "最後買量(千股)", "最後賣價", "最後賣量(千股)", "發行股數", "次日 參考價", "次日 漲停價", "次日 跌停價",
]  # fmt: skip
DAILY_QUOTES_ROWS = [
    ["006201", "元大富櫃50", "16.97", "+0.64", "16.45", "16.97", "16.45", "16.87", "111,047", "1,872,949", "80", "16.92", "6", "16.98", "1", "21,446,000", "16.97", "18.66", "15.28"],
    ["3105", "穩懋    ", "150.00", "0.00 ", "151.00", "152.00", "149.00", "150.10", "2,000,000", "300,200,000", "1,500", "149.50", "12", "150.00", "30", "424,000,000", "150.00", "165.00", "135.00"],
    ["4111", "濟生", " ---", "--- ", "---", "---", "---", "25.10", "0", "0", "0", "25.05", "3", "25.10", "2", "100,000,000", "25.10", "27.60", "22.60"],
    ["6488", "環球晶", "452.50", "-12.50 ", "465.00", "466.00", "450.00", "456.00", "1,234,567", "562,962,552", "3,210", "452.00", "5", "452.50", "8", "478,000,000", "452.50", "497.50", "407.50"],
    ["8069", "元太", "250.00", "除息 ", "252.00", "253.00", "248.00", "250.50", "3,000,000", "751,500,000", "2,100", "249.50", "20", "250.00", "15", "1,140,000,000", "250.00", "275.00", "225.00"],
    ["712345", "凱基57購01", "1.23", "+0.05", "1.20", "1.25", "1.18", "1.23", "10,000", "12,300", "5", "1.22", "10", "1.23", "10", "5,000,000", "1.23", "2.50", "0.01"],
]  # fmt: skip
MANAGED_ROWS = [
    ["5349", "先豐", "12.30", "-0.10 ", "12.40", "12.45", "12.25", "12.35", "50,000", "617,500", "40", "12.25", "2", "12.30", "1", "80,000,000", "12.30", "13.50", "11.10"],
]  # fmt: skip

DAILY_TRADE_FIELDS = ["代號", "名稱"] + ["買進股數", "賣出股數", "買賣超股數"] * 7 + ["三大法人買賣超股數合計"]
DAILY_TRADE_ROWS = [
    ["006201", "元大富櫃50", "5,000", "1,000", "4,000", "0", "0", "0", "5,000", "1,000", "4,000", "0", "0", "0", "0", "0", "0", "21,000", "9,836", "11,164", "21,000", "9,836", "11,164", "15,164"],
    ["3105", "穩懋    ", "0", "250,000", "-250,000", "0", "0", "0", "0", "250,000", "-250,000", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "-250,000"],
    ["6488", "環球晶", "300,000", "100,000", "200,000", "1,000", "0", "1,000", "301,000", "100,000", "201,000", "50,000", "80,000", "-30,000", "10,000", "5,000", "5,000", "2,000", "7,000", "-5,000", "12,000", "12,000", "0", "171,000"],
]  # fmt: skip

MARGIN_BALANCE_FIELDS = [
    "代號", "名稱", "前資餘額(張)", "資買", "資賣", "現償", "資餘額", "資屬證金", "資使用率(%)", "資限額",
    "前券餘額(張)", "券賣", "券買", "券償", "券餘額", "券屬證金", "券使用率(%)", "券限額", "資券相抵(張)", "備註",
]  # fmt: skip
MARGIN_BALANCE_ROWS = [
    ["3105", "穩懋", "8,000", "100", "400", "0", "7,700", "0", "1.8", "420,000", "900", "0", "100", "0", "800", "0", "0.2", "420,000", "0", " "],
    ["6488", "環球晶", "5,000", "300", "200", "10", "5,090", "0", "2.0", "250,000", "400", "50", "30", "0", "420", "0", "0.1", "250,000", "12", "11OX   C"],
]  # fmt: skip
MARGIN_BALANCE_SUMMARY = [  # the 合計 rows live in `summary`, not in `data`
    ["", "合計(張)", "13,000", "400", "600", "10", "12,790", "0", "", "", "1,300", "50", "130", "0", "1,220", "0", "", "", "12", ""],
]  # fmt: skip

PE_QRY_FIELDS = ["股票代號", "公司名稱", "本益比", "每股股利", "股利年度", "殖利率(%)", "股價淨值比"]
PE_QRY_ROWS = [
    ["3105", "穩懋        ", "N/A", "0.00", 114, "0.00", "3.05"],
    ["6488", "環球晶      ", "18.52", "8.00", 114, "1.77", "2.10"],
    ["8069", "元太        ", "35.20", "3.50", 114, "1.40", "5.60"],
]


def roc(date: dt.date) -> str:
    return f"{date.year - 1911}/{date:%m/%d}"


def roc_title(date: dt.date) -> str:
    return f"{date.year - 1911}年{date:%m}月{date:%d}日"


# ---------------------------------------------------------------------------------------- payloads


def mi_index(date: dt.date) -> dict:
    # Nine tables then a trailing {}, as recorded; the stock table is not first: parsers pick it by title.
    filler = [
        {"title": f"{roc_title(date)} 價格指數(臺灣證券交易所)", "fields": ["指數", "收盤指數", "漲跌(+/-)", "漲跌點數", "漲跌百分比(%)", "特殊處理註記"],
         "data": [["發行量加權股價指數", "27,012.34", INDEX_RED, "123.45", "0.46", ""]]},
        {"title": f"{roc_title(date)} 價格指數(跨市場)", "fields": ["指數", "收盤指數", "漲跌(+/-)", "漲跌點數", "漲跌百分比(%)", "特殊處理註記"],
         "data": [["臺灣50指數", "20,001.00", INDEX_RED, "80.12", "0.40", ""]]},
        {"title": f"{roc_title(date)} 價格指數(臺灣指數公司)", "fields": ["指數", "收盤指數", "漲跌(+/-)", "漲跌點數", "漲跌百分比(%)", "特殊處理註記"],
         "data": [["臺灣高股息指數", "9,001.00", "<p style ='color:green'>-</p>", "10.00", "-0.11", ""]]},
        {"title": f"{roc_title(date)} 報酬指數(臺灣證券交易所)", "fields": ["報酬指數", "收盤指數", "漲跌(+/-)", "漲跌點數", "漲跌百分比(%)", "特殊處理註記"],
         "data": [["發行量加權股價報酬指數", "55,012.34", INDEX_RED, "250.00", "0.46", ""]]},
        {"title": f"{roc_title(date)} 報酬指數(跨市場)", "fields": ["報酬指數", "收盤指數", "漲跌(+/-)", "漲跌點數", "漲跌百分比(%)", "特殊處理註記"],
         "data": [["臺灣50報酬指數", "40,001.00", INDEX_RED, "160.00", "0.40", ""]]},
        {"title": f"{roc_title(date)} 報酬指數(臺灣指數公司)", "fields": ["報酬指數", "收盤指數", "漲跌(+/-)", "漲跌點數", "漲跌百分比(%)", "特殊處理註記"],
         "data": [["臺灣高股息報酬指數", "18,001.00", INDEX_RED, "20.00", "0.11", ""]]},
        {"title": f"{roc_title(date)} 大盤統計資訊", "fields": ["成交統計", "成交金額(元)", "成交股數(股)", "成交筆數"],
         "data": [["1.一般股票", "400,000,000,000", "5,000,000,000", "3,000,000"]]},
    ]  # fmt: skip
    stock = {
        "title": f"{roc_title(date)}每日收盤行情(全部(不含權證、牛熊證))",
        "fields": MI_INDEX_FIELDS,
        "data": MI_INDEX_ROWS,
        "groups": [{"start": 11, "span": 4, "title": "最後揭示買賣"}],
        "hints": "單位：元、股",
        "notes": ["漲跌(+/-)欄位符號說明:+/-/X表示漲/跌/不比價。"],
    }
    after = {
        "title": "漲跌證券數合計",
        "fields": ["類型", "整體市場", "股票"],
        "data": [["上漲(漲停)", "500(10)", "400(9)"]],
    }
    return {
        "tables": [*filler, stock, after, {}],
        "type": "ALLBUT0999",
        "params": {"response": "json", "date": f"{date:%Y%m%d}", "type": "ALLBUT0999"},
        "stat": "OK",
        "date": f"{date:%Y%m%d}",
    }


def t86(date: dt.date) -> dict:
    return {
        "stat": "OK",
        "date": f"{date:%Y%m%d}",
        "title": f"{roc_title(date)} 三大法人買賣超日報",
        "hints": "單位：股",
        "fields": T86_FIELDS,
        "data": T86_ROWS,
        "selectType": "ALLBUT0999",
        "notes": [],
        "total": len(T86_ROWS),
    }


def mi_margn(date: dt.date) -> dict:
    summary = {
        "title": f"{roc_title(date)} 信用交易統計",
        "fields": ["項目", "買進", "賣出", "現金(券)償還", "前日餘額", "今日餘額"],
        "data": [
            ["融資(交易單位)", "5,156", "3,945", "22", "75,000", "76,189"],
            ["融券(交易單位)", "253", "706", "7", "9,000", "9,446"],
            ["融資金額(仟元)", "123,456", "98,765", "543", "1,800,000", "1,824,148"],
        ],
    }
    stock = {
        "title": f"{roc_title(date)} 融資融券彙總 (全部)",
        "groups": [{"start": 0, "span": 2, "title": "股票"}, {"start": 2, "span": 6, "title": "融資"},
                   {"start": 8, "span": 6, "title": "融券"}],
        "fields": MI_MARGN_FIELDS,
        "data": MI_MARGN_ROWS,
        "notes": ["單位：交易單位", "註記說明：<br>O：停止融資<br>X：停止融券<br>!：停止買賣",
                  '詳見<a href="/zh/trading/margin/quota.html">信用額度</a>'],
    }  # fmt: skip
    return {"stat": "OK", "date": f"{date:%Y%m%d}", "tables": [summary, stock]}


def bwibbu_d(date: dt.date) -> dict:
    return {
        "stat": "OK",
        "date": f"{date:%Y%m%d}",
        "title": f"{roc_title(date)} 個股日本益比、殖利率及股價淨值比",
        "fields": BWIBBU_FIELDS,
        "data": BWIBBU_ROWS,
        "selectType": "ALL",
        "total": len(BWIBBU_ROWS),
    }


def closed_payload(path: str, date: dt.date) -> dict:
    """TWSE's recorded answer for a closed day, per endpoint."""
    if path == MI_INDEX:  # ten empty tables, the request's params and the stat; no "date"
        return {
            "tables": [{} for _ in range(10)],
            "params": {"response": "json", "date": f"{date:%Y%m%d}", "type": "ALLBUT0999"},
            "stat": TWSE_NO_DATA["stat"],
        }
    if path == MI_MARGN:
        return dict(MI_MARGN_NO_DATA)
    if path == BWIBBU_D:
        return dict(BWIBBU_NO_DATA)
    return dict(TWSE_NO_DATA)


def _tpex(date: dt.date, tables: list[dict], **top) -> dict:
    """TPEx's envelope: each table with title, subtitle (&nbsp;), ROC date, totalCount (JSON int), fields,
    data, notes; `stat` is lowercase "ok", also on closed days (then data [] and totalCount 0)."""
    full = [
        {"title": t["title"], "subtitle": f"{roc(date)}&nbsp;{t['title']}", "date": roc(date),
         "totalCount": len(t["data"]), "notes": ["本資訊自行公布"], **t}
        for t in tables
    ]  # fmt: skip
    return {**top, "date": f"{date:%Y%m%d}", "tables": full, "stat": "ok"}


def daily_quotes(date: dt.date, empty: bool = False) -> dict:
    totals = {"listedCompanies": "812", "totalTradingAmount": "45,678,901,234", "totalTradingShares": "567,890,123",
              "totalTranscations": "345,678"}  # fmt: skip
    return _tpex(date, [
        {"title": "上櫃股票行情", "fields": DAILY_QUOTES_FIELDS, "data": [] if empty else DAILY_QUOTES_ROWS, **totals},
        {"title": "管理股票", "fields": DAILY_QUOTES_FIELDS, "data": [] if empty else MANAGED_ROWS},
    ])  # fmt: skip


def daily_trade(date: dt.date, empty: bool = False) -> dict:
    payload = _tpex(
        date,
        [{"title": "三大法人買賣明細資訊", "fields": DAILY_TRADE_FIELDS, "data": [] if empty else DAILY_TRADE_ROWS}],
        columnNum=25,
    )
    payload["tables"].append({})  # recorded: [{…}, {}]
    return payload


def margin_balance(date: dt.date, empty: bool = False) -> dict:
    return _tpex(
        date,
        [
            {
                "title": "上櫃股票融資融券餘額",
                "fields": MARGIN_BALANCE_FIELDS,
                "data": [] if empty else MARGIN_BALANCE_ROWS,
                "summary": [] if empty else MARGIN_BALANCE_SUMMARY,
            }
        ],
    )


def pe_qry_date(date: dt.date, empty: bool = False) -> dict:
    return _tpex(
        date,
        [
            {
                "title": "上櫃股票個股本益比、殖利率、股價淨值比",
                "fields": PE_QRY_FIELDS,
                "data": [] if empty else PE_QRY_ROWS,
            }
        ],
    )


@dataclass(frozen=True)
class Route:
    build: Callable[..., dict]
    params: dict[str, str]  # required fixed parameters


TWSE_ROUTES = {
    MI_INDEX: Route(mi_index, {"type": "ALLBUT0999"}),
    T86: Route(t86, {"selectType": "ALLBUT0999"}),
    MI_MARGN: Route(mi_margn, {"selectType": "STOCK"}),
    BWIBBU_D: Route(bwibbu_d, {"selectType": "ALL"}),
}
TPEX_ROUTES = {
    DAILY_QUOTES: Route(daily_quotes, {"type": "EW"}),
    DAILY_TRADE: Route(daily_trade, {"type": "Daily", "sect": "EW"}),
    MARGIN_BALANCE: Route(margin_balance, {}),
    PE_QRY_DATE: Route(pe_qry_date, {}),
}

# The corporate-action lists (asked for a range, startDate/endDate): every range is event-free here, in each
# list's recorded empty shape (fake_corporate_actions.py serves the recorded events themselves).
EX_RIGHT_FIELDS = ["除權息日期", "代號", "名稱", "除權息前收盤價", "除權息參考價", "權值", "息值", "權值+息值", "權/息",
                   "漲停價", "跌停價", "開始交易基準價", "減除股利參考價", "現金股利", "每仟股無償配股", "現金增資股數",
                   "現金增資認購價", "公開承銷股數", "員工認購股數", "原股東認購股數", "按持股比例仟股認購"]  # fmt: skip
TWTB8U_FIELDS = ["恢復買賣日期", "股票代號", "名稱", "停止買賣前收盤價格", "恢復買賣參考價", "漲停價格", "跌停價格",
                 "開盤競價基準", "詳細資料"]  # fmt: skip


def _event_free_tpex(fields: list[str]) -> Callable[[str, str], dict]:
    def build(start: str, end: str) -> dict:
        table = {"title": "", "totalCount": 0, "fields": fields, "data": [], "summary": [], "notes": []}
        return {"date": f"{start.replace('/', '')}~{end.replace('/', '')}", "tables": [table], "stat": "ok"}

    return build


EVENT_LISTS: dict[str, tuple[str, Callable[[str, str], dict]]] = {
    "/rwd/zh/exRight/TWT49U": ("twse", lambda start, end: TWSE_NO_DATA),
    "/rwd/zh/reducation/TWTAUU": ("twse", lambda start, end: TWSE_NO_DATA),
    "/rwd/zh/change/TWTB8U": ("twse", lambda start, end: {"stat": "OK", "fields": TWTB8U_FIELDS, "data": []}),
    "/www/zh-tw/bulletin/exDailyQ": ("tpex", _event_free_tpex(EX_RIGHT_FIELDS)),
    "/www/zh-tw/bulletin/revivt": ("tpex", _event_free_tpex(["恢復買賣日期", "股票代號", "名稱", "最後交易日之收盤價格",
                                                             "減資恢復買賣開始日參考價格", "詳細資料"])),
    "/www/zh-tw/bulletin/pvChgRslt": ("tpex", _event_free_tpex(["恢復買賣日期", "證券代號", "證券名稱", "最後交易日之收盤價格",
                                                                "恢復買賣開始參考價", "詳細資料"])),
}  # fmt: skip

HTML_PAGE = b"<!DOCTYPE html><html><head><title>TWSE</title></head><body>Page not found / please retry</body></html>"


@dataclass(frozen=True)
class Seen:
    market: str  # "twse" | "tpex"
    path: str
    params: dict[str, str]
    at: float  # time.time() on arrival


STORM_KINDS = ("429", "503", "timeout", "html", "truncated", "another_date")
STORM_RETRY_AFTER = "0.02"  # seconds; honoured by the client, small so storms stay fast
STORM_TIMEOUT_SECONDS = 0.5  # longer than the client timeout the storm test sets


class _Host(LocalHttpServer):
    """One host of the fake (TWSE or TPEx); both answer from the shared state of FakeExchanges."""

    def __init__(self, exchange: FakeExchanges, market: str, routes: dict[str, Route]):
        super().__init__()
        self.exchange, self.market, self.routes = exchange, market, routes

    def answer(self, request: Request) -> Reply:
        with self.exchange._lock:
            self.exchange.requests.append(Seen(self.market, request.path, request.query, request.at))
        status, headers, body = self.exchange._answer(self.market, self.routes, request.path, request.query)
        content_type = headers.pop("Content-Type", "text/plain")
        return Reply(status, body, headers, content_type)


class FakeExchanges:
    def __init__(self):
        self.requests: list[Seen] = []
        self.closed: set[dt.date] = set()
        self.html: set[str] = set()
        self.truncated: set[str] = set()
        self.mutations: dict[str, list[Callable[[dict], dict]]] = {}
        self.failures: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.tpex_date: dt.date | None = None
        self.storm_served: Counter[str] = Counter()
        self._storm: tuple[float, random.Random] | None = None
        self.clock: Callable[[], dt.datetime] | None = None
        self.publication: dict[str, dt.time] = {}
        self.late: dict[tuple[str, dt.date], dt.time] = {}
        self._lock = threading.Lock()
        self._servers = [_Host(self, "twse", TWSE_ROUTES).start(), _Host(self, "tpex", TPEX_ROUTES).start()]

    # ---------------------------------------------------------------------------------- lifecycle
    @property
    def twse_base_url(self) -> str:
        return self._servers[0].base_url

    @property
    def tpex_base_url(self) -> str:
        return self._servers[1].base_url

    def stop(self) -> None:
        for server in self._servers:
            server.stop()

    # ----------------------------------------------------------------------------------- switches
    def close_day(self, date: dt.date) -> None:
        """TWSE answers each endpoint's recorded closed-day envelope; TPEx answers ok with empty tables."""
        self.closed.add(date)

    def serve_html(self, path: str) -> None:
        self.html.add(path)

    def serve_truncated(self, path: str) -> None:
        """Answer `path` with the first half of its JSON body (a connection cut mid-answer)."""
        self.truncated.add(path)

    def mutate(self, path: str, edit: Callable[[dict], dict | None]) -> None:
        """Edit the payload served on `path` (the edit may change it in place and return None)."""
        self.mutations.setdefault(path, []).append(edit)

    def drop_stock_table(self) -> None:
        def edit(payload):
            payload["tables"] = [t for t in payload["tables"] if "每日收盤行情" not in t.get("title", "")]

        self.mutate(MI_INDEX, edit)

    def rename_field(self, path: str, position: int, new_name: str, table: int | str | None = None) -> None:
        """Rename a header field; `table` is a tables[] index or a title substring (None: top-level fields)."""

        def edit(payload):
            target = payload
            if isinstance(table, int):
                target = payload["tables"][table]
            elif isinstance(table, str):
                target = next(t for t in payload["tables"] if table in t.get("title", ""))
            target["fields"][position] = new_name

        self.mutate(path, edit)

    def tpex_answers_date(self, date: dt.date | None) -> None:
        """TPEx's real trap: answer (stat ok) with another day's data."""
        self.tpex_date = date

    def publish_after(self, clock: Callable[[], dt.datetime], times: dict[str, dt.time]) -> None:
        """Serve each path's data for day D only once `clock()` (aware, Taipei) has reached D at its time."""
        self.clock = clock
        self.publication.update(times)

    def publish_late(self, path: str, date: dt.date, at: dt.time) -> None:
        """One day's publication of `path` comes later than its usual time."""
        self.late[(path, date)] = at

    def is_published(self, path: str, date: dt.date) -> bool:
        if self.clock is None or path not in self.publication:
            return True
        at = self.late.get((path, date), self.publication[path])
        now = self.clock()
        return now >= dt.datetime.combine(date, at, tzinfo=now.tzinfo)

    def fail_next(self, path: str, status: int, *, times: int = 1, retry_after: float | None = None) -> None:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        self.failures.setdefault(path, []).extend([(status, headers)] * times)

    def storm(self, rate: float, *, seed: int = 0) -> None:
        self._storm = (rate, random.Random(seed)) if rate > 0 else None

    def _storm_kind(self, market: str) -> str | None:
        with self._lock:
            if self._storm is None:
                return None
            rate, rng = self._storm
            if rng.random() >= rate:
                return None
            kinds = [k for k in STORM_KINDS if k != "another_date" or market == "tpex"]
            kind = rng.choice(kinds)
            self.storm_served[kind] += 1
            return kind

    # ------------------------------------------------------------------------------------- counting
    def count(self, path: str | None = None) -> int:
        return sum(1 for r in self.requests if path is None or r.path == path)

    def times(self, market: str) -> list[float]:
        return [r.at for r in self.requests if r.market == market]

    # --------------------------------------------------------------------------------------- serving
    def _answer(self, market: str, routes: dict[str, Route], path: str, params: dict[str, str]):
        with self._lock:
            queued = self.failures.get(path)
            failure = queued.pop(0) if queued else None
        if failure:
            status, headers = failure
            return status, {"Content-Type": "text/plain", **headers}, f"fake {status}".encode()
        if path in EVENT_LISTS and EVENT_LISTS[path][0] == market:
            return self._event_list(market, path, params)
        route = routes.get(path)
        if route is None:
            return _json(404, {"stat": f"no route {path}"})
        date, problem = _check_params(market, route, params)
        if problem:
            return _json(400, {"stat": f"bad request: {problem}"})
        kind = self._storm_kind(market)
        if kind == "429":
            return 429, {"Content-Type": "text/plain", "Retry-After": STORM_RETRY_AFTER}, b"Too Many Requests"
        if kind == "503":
            return 503, {"Content-Type": "text/html"}, b"<html><body>503 Service Unavailable</body></html>"
        if kind == "timeout":
            time.sleep(STORM_TIMEOUT_SECONDS)
        if path in self.html or kind == "html":
            return 200, {"Content-Type": "text/html; charset=utf-8"}, HTML_PAGE
        if kind == "truncated" or path in self.truncated:
            status, headers, body = _json(200, route.build(date))
            return status, headers, body[: len(body) // 2]
        if kind == "another_date":
            return _json(200, route.build(date - dt.timedelta(days=1)))
        if date in self.closed or not self.is_published(path, date):
            payload = closed_payload(path, date) if market == "twse" else route.build(date, empty=True)
        else:
            served = self.tpex_date if market == "tpex" and self.tpex_date else date
            payload = copy.deepcopy(route.build(served))
            for edit in self.mutations.get(path, []):
                edited = edit(payload)
                payload = edited if isinstance(edited, dict) else payload
        return _json(200, payload)

    def _event_list(self, market: str, path: str, params: dict[str, str]):
        pattern = r"\d{8}" if market == "twse" else r"\d{4}/\d{2}/\d{2}"
        start, end = params.get("startDate", ""), params.get("endDate", "")
        if params.get("response") != "json" or not (re.fullmatch(pattern, start) and re.fullmatch(pattern, end)):
            return _json(400, {"stat": f"bad request: {params}"})
        return _json(200, EVENT_LISTS[path][1](start, end))


def _json(status: int, payload: dict):
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return status, {"Content-Type": "application/json; charset=utf-8"}, body


def _check_params(market: str, route: Route, params: dict[str, str]) -> tuple[dt.date | None, str]:
    if params.get("response") != "json":
        return None, f"response={params.get('response')!r}, expected 'json'"
    for key, value in route.params.items():
        if params.get(key) != value:
            return None, f"{key}={params.get(key)!r}, expected {value!r}"
    raw = params.get("date", "")
    pattern = r"(\d{4})(\d{2})(\d{2})" if market == "twse" else r"(\d{4})/(\d{2})/(\d{2})"
    match = re.fullmatch(pattern, raw)
    if not match:
        return None, f"date={raw!r} is not in the {'YYYYMMDD' if market == 'twse' else 'YYYY/MM/DD'} form"
    try:
        return dt.date(*map(int, match.groups())), ""
    except ValueError:
        return None, f"date={raw!r} is not a valid date"
