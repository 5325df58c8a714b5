"""Conformance on real recordings: each endpoint we read, answered with a verbatim recording of the real
host's body (see recordings/SOURCES.md for where each one comes from), served at its real path by a
local HTTP server, read by the real live source. Every figure asserted here was read off the recorded
body by eye (stock 2330's close on 2023-01-30 is "543.00" in MI_INDEX, …), never taken from our parser.

The recorded bodies are third-party data and are not kept in this repository: a test looks for each
file in `recordings/<endpoint>/` next to this module (a local copy, ignored by git) and then in
`shared/recordings/market/<endpoint>/` beside the checkout, checks its SHA-256 against the manifest
below (a file that is not the recording fails), and is skipped, naming the file, when neither has it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from qrl_platform.market.live import LiveMarketSource, mops, tpex, twse
from qrl_platform.market.live.twse import NotPublishedYet
from qrl_platform.settings import MarketSourceSettings
from qrl_platform_tests.local_http import LocalHttpServer, Reply, Request
from qrl_platform_tests.market.recorded import recorded_body

HERE = Path(__file__).parent / "recordings"
DAY = dt.date(2023, 1, 30)  # the trading day the TWSE and TPEx recordings hold
CLOSED = dt.date(2023, 1, 1)  # a Sunday: the recorded no-data answers
JSON = "application/json; charset=utf-8"

# recording → SHA-256 of its bytes (as listed, with its origin, in recordings/SOURCES.md)
MANIFEST = {
    "MI_INDEX/2023-01-30.json": "c5feb0a90cdc50d9c1542fc8d563657c62711996adeaf479eef20751c1ad3766",
    "T86/2023-01-30.json": "666fddf9ad9b8d3fd46c1586a87546603c9dd309e446b5769d2d417d5033c79e",
    "T86/2023-01-01.json": "b32125d0522389d773814d2be85a9d7363b2c21185aab3d55708a2a8014a18a9",
    "MI_MARGN/2023-01-30.json": "c22ce8928b747818a562fe8f8308761b02e03c37126b50d445b1b252ea5ce8a0",
    "MI_MARGN/2023-01-01.json": "1857ef3a55678c4757560d15a68c3b7823fd0023b6762656faa31acce2d13538",
    "BWIBBU_d/2023-01-30.json": "61fd87b6a7e16c58cfc244f9eb41f1db6fc910d65b8f96d933303d20a4b0aa4e",
    "BWIBBU_d/2023-01-01.json": "b32125d0522389d773814d2be85a9d7363b2c21185aab3d55708a2a8014a18a9",
    "dailyQuotes/2023-01-30.json": "07987e76411ed4107c43488b171f72cf6f9e69ec4236403abe68f05786eefe15",
    "dailyQuotes/2023-01-01.json": "82e618a6db83311d5ca56576bd87ee78d37a35aab898c4e1989ecf63e5b368f7",
    "dailyTrade/2023-01-30.json": "2a5e3032e18666fcb0881e3ed3a0e8fabb8078a8f96194c622e2edd54eda3a96",
    "dailyTrade/2023-01-01.json": "d0908c7961563b3f1c7568975a5fa29bdc01a54143a1ed3112f17b577d0499d2",
    "margin_balance/2023-01-30.json": "bfecbbd34db5e1b2d3ae5cc994ccabc50752f520539cdb38cf5ef4f933fdf1ec",
    "margin_balance/2023-01-01.json": "858351d6517e4d36900a65808ae7a0ca5441cefe90a79e188515a997117d5d5c",
    "peQryDate/2023-01-30.json": "137a0e0d17abcc4f4ccdbb46daa81bd05a354f61dff5fc04c7e348a074dcc81e",
    "peQryDate/2023-01-01.json": "af1ef21a67074db2183b740cc7d41255fbdf7393ada4f7fcc31f9f7dd27d881a",
    "t21sc03/sii_112_1.html": "bc79b582ce5b0b3a579c7f8c27264420b84eff73cfc76f806269b03d2014356c",
    "t21sc03/otc_112_1.html": "68466a2e663e7436c1b8c711c5a464cbffca13680a6faca0712e7bcf8995f8cc",
    "t21sc03/sii_113_1.html": "9b06146e497879ce2f62971a0f640a22eb42df5c2f4d3f81a10706e32ff9484d",
    "t163sb04/sii_112_1.html": "b41a2b71bf4dde885110393e1b30bbcc71fc2c22f7c8d78a3e3b54df5bbcb984",
    "t163sb04/otc_112_1.html": "de19499df7c9fe4ce90254ba7cb74088fc8f3ac49c4f0f3a30e0bd34a8729ae8",
    "t163sb04/sii_113_1.html": "8e736c0c5ba289d0f973e3238886cb004dd911eef0ecf0ab16bd15776e4cc91a",
    "TDCC_1-5/2024-10-25.csv": "b8c69ff311f39d41dadb16914480d281be808b26d17635dc1f73786074daa61a",
}


def recording(name: str) -> bytes:
    return recorded_body(name, MANIFEST)


# ------------------------------------------------------------------------------------------ the host


@dataclass(frozen=True)
class Route:
    """One recorded answer: a request to `path` whose query (GET) or form (POST) holds `match` gets
    `recording` with `content_type`; a value may be a tuple of spellings (MOPS's season "1" or "01")."""

    method: str
    path: str
    match: dict[str, str | tuple[str, ...]]
    recording: str
    content_type: str


class RecordedHost(LocalHttpServer):
    """Answers each routed request with its recording, verbatim; anything else is a 404 (and fails the
    test through the source's error), so a request the real host would not have recognised is caught."""

    def __init__(self, routes: list[Route]):
        super().__init__()
        self.routes = routes
        # Read (and digest-checked) now, in the test's thread: a missing recording skips the test here
        # rather than failing a request inside the server's thread.
        self.bodies = {route.recording: recording(route.recording) for route in routes}

    def answer(self, request: Request) -> Reply:
        sent = request.query
        if request.method == "POST":
            sent = dict(parse_qsl(request.body.decode("ascii"), keep_blank_values=True))
        for route in self.routes:
            if route.method == request.method and route.path == request.path and _matches(route.match, sent):
                return Reply(200, self.bodies[route.recording], content_type=route.content_type)
        return Reply(404, f"no recording for {request.method} {request.path} {sent}", content_type="text/plain")


def _matches(wanted: dict[str, str | tuple[str, ...]], sent: dict[str, str]) -> bool:
    return all(sent.get(key) in (value if isinstance(value, tuple) else (value,)) for key, value in wanted.items())


TWSE_DAY = {"response": "json", "date": "20230130"}
TPEX_DAY = {"response": "json", "date": "2023/01/30"}
TWSE_ROUTES = [
    Route("GET", twse.QUOTES.path, {**TWSE_DAY, "type": "ALLBUT0999"}, "MI_INDEX/2023-01-30.json", JSON),
    Route("GET", twse.INSTITUTIONAL.path, {**TWSE_DAY, "selectType": "ALLBUT0999"}, "T86/2023-01-30.json", JSON),
    # Recorded with selectType=ALL; we ask STOCK. The stock table (tables[1]) is the same (SOURCES.md).
    Route("GET", twse.MARGIN.path, {**TWSE_DAY, "selectType": "STOCK"}, "MI_MARGN/2023-01-30.json", JSON),
    Route("GET", twse.VALUATION.path, {**TWSE_DAY, "selectType": "ALL"}, "BWIBBU_d/2023-01-30.json", JSON),
]
TPEX_ROUTES = [
    # Recorded without type=EW (warrants included); the parser keeps stocks and ETFs either way.
    Route("GET", tpex.QUOTES.path, TPEX_DAY, "dailyQuotes/2023-01-30.json", JSON),
    Route("GET", tpex.INSTITUTIONAL.path, {**TPEX_DAY, "type": "Daily", "sect": "EW"}, "dailyTrade/2023-01-30.json", JSON),
    Route("GET", tpex.MARGIN.path, TPEX_DAY, "margin_balance/2023-01-30.json", JSON),
    Route("GET", tpex.VALUATION.path, TPEX_DAY, "peQryDate/2023-01-30.json", JSON),
]  # fmt: skip
MOPS_FORM = {"encodeURIComponent": "1", "step": "1", "firstin": "1", "off": "1", "isQuery": "Y"}
MOPS_ROUTES = [
    Route("GET", "/nas/t21/sii/t21sc03_112_1_0.html", {}, "t21sc03/sii_112_1.html", "text/html"),
    Route("GET", "/nas/t21/otc/t21sc03_112_1_0.html", {}, "t21sc03/otc_112_1.html", "text/html"),
    Route("GET", "/nas/t21/sii/t21sc03_113_1_0.html", {}, "t21sc03/sii_113_1.html", "text/html"),
    *(
        Route("POST", mops.INCOME.path, {**MOPS_FORM, "TYPEK": market, "year": year, "season": ("1", "01")},
              f"t163sb04/{market}_{year}_1.html", "text/html; charset=UTF-8")
        for market, year in (("sii", "112"), ("otc", "112"), ("sii", "113"))
    ),
]  # fmt: skip
TDCC_ROUTES = [Route("GET", "/opendata/getOD.ashx", {"id": "1-5"}, "TDCC_1-5/2024-10-25.csv", "text/csv")]


@pytest.fixture
def hosts():
    started = {
        "twse": RecordedHost(TWSE_ROUTES).start(),
        "tpex": RecordedHost(TPEX_ROUTES).start(),
        "mops": RecordedHost(MOPS_ROUTES).start(),
        "tdcc": RecordedHost(TDCC_ROUTES).start(),
    }
    yield started
    for host in started.values():
        host.stop()


@pytest.fixture
def source(hosts, tmp_path):
    settings = MarketSourceSettings(
        source="live", twse_base_url=hosts["twse"].base_url, tpex_base_url=hosts["tpex"].base_url,
        demo_seed=7, demo_universe=10, mops_base_url=hosts["mops"].base_url,
        tdcc_base_url=hosts["tdcc"].url("/opendata"),  # the recorded host's path: smart.tdcc.com.tw/opendata/getOD.ashx
    )  # fmt: skip
    live = LiveMarketSource(settings, cache_root=str(tmp_path / "raw"), min_interval=0.01)
    yield live
    live.close()


def rows_of(frame) -> dict[str, dict]:
    return {row["stock_id"]: row for row in frame.iter_rows(named=True)}


# ------------------------------------------------------------------------------------- manifest


def test_every_recording_is_written_down_in_sources_md_with_its_digest():
    sources = (HERE / "SOURCES.md").read_text(encoding="utf-8")
    missing = [name for name, digest in MANIFEST.items() if f"`{name}`" not in sources or digest not in sources]
    assert missing == []
    assert "t163sb05" in sources and (HERE / "t163sb05" / "NO_RECORDING.md").is_file()


# ------------------------------------------------------------------------------------ TWSE + TPEx


def test_daily_quotes_on_the_recorded_day(source):
    result = source.fetch_day("daily_quotes", DAY)
    stocks = rows_of(result.frame)
    recorded = json.loads(recording("MI_INDEX/2023-01-30.json"))
    table = next(t for t in recorded["tables"] if "每日收盤行情" in t.get("title", ""))
    assert result.details["rows_per_market"]["TWSE"] == len(table["data"]) == 1182
    # MI_INDEX: 2330 台積電 542.00 543.00 534.00 543.00, <p style= color:red>+</p> 40.00
    assert {k: stocks["2330"][k] for k in ("market", "open", "high", "low", "close", "change")} == {
        "market": "TWSE", "open": 542.0, "high": 543.0, "low": 534.0, "close": 543.0, "change": 40.0,
    }  # fmt: skip
    assert (stocks["2330"]["volume"], stocks["2330"]["turnover"], stocks["2330"]["trades"]) == (
        148_413_161,
        80_057_158_264,
        153_125,
    )
    assert stocks["1101"]["close"] == 36.95 and stocks["1101"]["change"] == 0.95
    assert stocks["0050"]["close"] == 120.70 and stocks["0050"]["is_etf"]
    # dailyQuotes: 6488 環球晶 530.00 +37.00 505.00 530.00 505.00 …, 成交股數 6,115,888 (shares)
    assert {k: stocks["6488"][k] for k in ("market", "open", "high", "low", "close", "change", "volume")} == {
        "market": "TPEx", "open": 505.0, "high": 530.0, "low": 505.0, "close": 530.0, "change": 37.0,
        "volume": 6_115_888,
    }  # fmt: skip
    assert (stocks["6488"]["turnover"], stocks["6488"]["trades"]) == (3_179_234_099, 6_960)
    assert stocks["3105"]["close"] == 194.0 and stocks["3105"]["change"] == 14.0
    # Recorded without type=EW, dailyQuotes lists warrants (six digits from 7): they are not stocks.
    otc_table = json.loads(recording("dailyQuotes/2023-01-30.json"))["tables"][0]
    warrants = {row[0] for row in otc_table["data"] if len(row[0]) == 6 and row[0].startswith("7")}
    assert len(otc_table["data"]) == 7281 and len(warrants) > 6000 and not warrants & set(stocks)


def test_institutional_flows_on_the_recorded_day(source):
    stocks = rows_of(source.fetch_day("institutional_flows", DAY).frame)
    # T86: 2330 133,236,588 52,595,539 80,641,049 0 0 0 1,032,000 94,327 937,673 880,408 … 82,459,130
    tsmc = stocks["2330"]
    assert (tsmc["foreign_buy"], tsmc["foreign_sell"], tsmc["foreign_net"]) == (133_236_588, 52_595_539, 80_641_049)
    assert (tsmc["trust_buy"], tsmc["trust_sell"], tsmc["trust_net"]) == (1_032_000, 94_327, 937_673)
    assert (tsmc["dealer_net"], tsmc["total_net"]) == (880_408, 82_459_130)
    assert stocks["1101"]["total_net"] == 13_345_623
    # dailyTrade (by position): 6488 3,059,748 2,331,441 728,307 | 0 0 0 | … | 投信 402,000 3,096 398,904 | …
    # | 自營商合計 395,767 224,000 171,767 | 1,298,978
    gw = stocks["6488"]
    assert (gw["foreign_buy"], gw["foreign_sell"], gw["foreign_net"]) == (3_059_748, 2_331_441, 728_307)
    assert (gw["trust_buy"], gw["trust_sell"], gw["trust_net"]) == (402_000, 3_096, 398_904)
    assert (gw["dealer_net"], gw["total_net"]) == (171_767, 1_298_978)


def test_margin_balances_on_the_recorded_day(source):
    stocks = rows_of(source.fetch_day("margin_balances", DAY).frame)
    # MI_MARGN 融資融券彙總: 2330 1,209 2,295 74 20,547 19,387 6,482,595 56 284 101 1,506 1,633 6,482,595 7
    assert [stocks["2330"][k] for k in twse_margin_columns()] == [
        1_209, 2_295, 74, 20_547, 19_387, 6_482_595, 56, 284, 101, 1_506, 1_633, 6_482_595, 7,
    ]  # fmt: skip
    # margin/balance: 6488 前資 3,120 資買 278 資賣 407 現償 11 資餘額 2,980 資限額 108,809 前券 159 券賣 49
    # 券買 8 券償 0 券餘額 200 券限額 108,809 資券相抵 0
    gw = stocks["6488"]
    assert (gw["margin_prev_balance"], gw["margin_buy"], gw["margin_sell"], gw["margin_cash_repay"]) == (
        3_120,
        278,
        407,
        11,
    )
    assert (gw["margin_balance"], gw["margin_limit"]) == (2_980, 108_809)
    assert (gw["short_prev_balance"], gw["short_sell"], gw["short_cover"], gw["short_stock_repay"]) == (159, 49, 8, 0)
    assert (gw["short_balance"], gw["short_limit"], gw["offset"]) == (200, 108_809, 0)


def twse_margin_columns() -> list[str]:
    """MI_MARGN's stock columns in the order TWSE prints them (融資 then 融券, 資券互抵)."""
    return [
        "margin_buy", "margin_sell", "margin_cash_repay", "margin_prev_balance", "margin_balance", "margin_limit",
        "short_cover", "short_sell", "short_stock_repay", "short_prev_balance", "short_balance", "short_limit",
        "offset",
    ]  # fmt: skip


def test_valuations_on_the_recorded_day(source):
    stocks = rows_of(source.fetch_day("valuations", DAY).frame)
    # BWIBBU_d: 2330 台積電 殖利率 2.03, 股利年度 110, 本益比 15.88, 股價淨值比 5.14
    assert (stocks["2330"]["pe"], stocks["2330"]["pb"], stocks["2330"]["dividend_yield"]) == (15.88, 5.14, 2.03)
    assert (stocks["1101"]["pe"], stocks["1101"]["pb"], stocks["1101"]["dividend_yield"]) == (30.79, 1.27, 5.41)
    # peQryDate: 6488 環球晶 本益比 19.82, 每股股利 16.00, 殖利率 3.02, 股價淨值比 4.61
    assert (stocks["6488"]["pe"], stocks["6488"]["pb"], stocks["6488"]["dividend_yield"]) == (19.82, 4.61, 3.02)


CLOSED_ANSWERS = {
    "T86": (twse.parse_institutional, "T86/2023-01-01.json", "很抱歉，沒有符合條件的資料!"),
    "MI_MARGN": (twse.parse_margin, "MI_MARGN/2023-01-01.json", "很抱歉，沒有符合條件的資料"),
    "BWIBBU_d": (twse.parse_valuations, "BWIBBU_d/2023-01-01.json", "很抱歉，沒有符合條件的資料!"),
    "dailyQuotes": (tpex.parse_quotes, "dailyQuotes/2023-01-01.json", tpex.NO_ROWS),
    "dailyTrade": (tpex.parse_institutional, "dailyTrade/2023-01-01.json", tpex.NO_ROWS),
    "margin/balance": (tpex.parse_margin, "margin_balance/2023-01-01.json", tpex.NO_ROWS),
    "peQryDate": (tpex.parse_valuations, "peQryDate/2023-01-01.json", tpex.NO_ROWS),
}


@pytest.mark.parametrize("endpoint", sorted(CLOSED_ANSWERS))
def test_the_recorded_closed_day_answers_are_no_data(endpoint):
    parse, name, reason = CLOSED_ANSWERS[endpoint]
    parsed = parse(json.loads(recording(name)), CLOSED)
    assert parsed.no_data and parsed.frame is None and parsed.reason == reason


# ------------------------------------------------------------------------------------------- MOPS


def company_rows(page: str) -> int:
    """Company rows of a t21sc03 page, counted on the HTML itself (totals are <th> rows)."""
    return len(re.findall(r"<tr align=right><td align=center>", page))


def test_monthly_revenue_on_the_recorded_pages(source):
    frame = source.monthly_revenue(dt.date(2023, 1, 1))
    sii = recording("t21sc03/sii_112_1.html").decode("cp950")
    otc = recording("t21sc03/otc_112_1.html").decode("cp950")
    assert frame.height == company_rows(sii) + company_rows(otc) == 916 + 786
    revenue = {row["stock_id"]: row["revenue"] for row in frame.iter_rows(named=True)}
    # <td align=center>1101</td><td align=left>台泥</td><td nowrap>              7,325,221</td> …
    assert revenue["1101"] == 7_325_221
    assert revenue["2330"] == 200_050_544  # 台積電; its 備註 cell reads 無。
    assert revenue["6488"] == 5_929_796  # otc: 環球晶
    assert set(frame["year_month"]) == {"2023-01"} and set(frame["published_on"]) == {dt.date(2023, 2, 10)}


def test_the_recorded_not_yet_published_revenue_page_is_not_published_yet(source):
    with pytest.raises(NotPublishedYet, match=r"MOPS t21sc03 sii 2024-01: MOPS answers 查無資料"):
        source.monthly_revenue(dt.date(2024, 1, 1))


def test_income_statement_summary_on_the_recorded_pages(source):
    # The source reads one market's t163sb04 this way inside `financials`; no t163sb05 recording exists,
    # so the whole `financials` table cannot be run on recordings.
    listed = source._statement(mops.INCOME, "sii", 2023, 1)
    # 2330 台積電: 營業收入 508,632,973 … 淨利（淨損）歸屬於母公司業主 206,986,561 … 基本每股盈餘（元） 7.98
    assert listed["2330"] == {"name": "台積電", "revenue": 508_632_973, "net_income": 206_986_561, "eps": 7.98}
    assert listed["1101"]["revenue"] == 26_295_929
    otc = source._statement(mops.INCOME, "otc", 2023, 1)
    # 6488 環球晶: 營業收入 18,616,154 … 淨利（淨損）歸屬於母公司業主 5,000,228 … 11.49
    assert otc["6488"] == {"name": "環球晶", "revenue": 18_616_154, "net_income": 5_000_228, "eps": 11.49}


def test_the_recorded_not_yet_filed_quarter_is_not_published_yet(source):
    with pytest.raises(NotPublishedYet, match=r"MOPS t163sb04 sii 2024Q1: MOPS answers 查詢無資料"):
        source._statement(mops.INCOME, "sii", 2024, 1)


# ------------------------------------------------------------------------------------------- TDCC


def test_shareholding_distribution_on_the_recorded_week(source):
    week = dt.date(2024, 10, 25)
    frame = source.shareholding_distribution(week)
    body = recording("TDCC_1-5/2024-10-25.csv").decode("utf-8-sig")
    lines = list(csv.reader(io.StringIO(body)))[1:]
    assert frame.height == sum(1 for line in lines if line and line[2] != "16")  # 差異數調整 dropped
    levels = {(r["stock_id"], r["level"]): r for r in frame.iter_rows(named=True)}
    # 20241025,2330,1,960910,147319215,0.56 … 20241025,2330,17,1381247,25932733242,100.00
    assert [levels[("2330", 1)][k] for k in ("holders", "shares", "pct")] == [960_910, 147_319_215, 0.56]
    assert [levels[("2330", 15)][k] for k in ("holders", "shares", "pct")] == [1_541, 22_626_650_581, 87.25]
    assert [levels[("2330", 17)][k] for k in ("holders", "shares", "pct")] == [1_381_247, 25_932_733_242, 100.0]
    assert ("2330", 16) not in levels
    assert set(frame["week"]) == {week} and set(frame["published_on"]) == {dt.date(2024, 10, 26)}
