"""The live TWSE/TPEx source against local servers that speak the real payload shapes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from qrl_platform.calendar import TAIPEI, taipei_today
from qrl_platform.market.live import LiveMarketSource
from qrl_platform.market.live.http import ExchangeUnavailable
from qrl_platform.market.live.source import NotPublishedYet
from qrl_platform.market.live.twse import parse_any_date
from qrl_platform.market.schema import RAW_TABLES, BadMarketData
from qrl_platform.market.sources import DAILY_TABLES
from qrl_platform.settings import MarketSourceSettings
from qrl_platform.settings import settings as current_settings
from qrl_platform_tests.market import fake_exchanges as fx
from qrl_platform_tests.market.fake_exchanges import FakeExchanges

DAY = dt.date(2026, 9, 7)  # a Monday, more than a week before the tests' "today" in practice
NO_DATA = "很抱歉，沒有符合條件的資料!"


@pytest.fixture
def exchanges():
    server = FakeExchanges()
    yield server
    server.stop()


@pytest.fixture
def cache_root(tmp_path) -> Path:
    return tmp_path / "raw"


@pytest.fixture
def make_source(exchanges, cache_root):
    sources = []

    def make(min_interval: float = 0.01) -> LiveMarketSource:
        settings = MarketSourceSettings(
            source="live",
            twse_base_url=exchanges.twse_base_url,
            tpex_base_url=exchanges.tpex_base_url,
            demo_seed=7,
            demo_universe=10,
            http_backoff_seconds=0.05,
        )
        source = LiveMarketSource(settings, cache_root=str(cache_root), min_interval=min_interval)
        sources.append(source)
        return source

    yield make
    for source in sources:
        source.close()


@pytest.fixture
def source(make_source) -> LiveMarketSource:
    return make_source()


def rows(frame: pl.DataFrame) -> dict[str, dict]:
    return {row["stock_id"]: row for row in frame.iter_rows(named=True)}


def cache_files(cache_root: Path, path: str) -> list[Path]:
    return sorted(p for p in cache_root.rglob("*.json") if p.parent.as_posix().endswith(path.strip("/")))


# ------------------------------------------------------------------------------------------ parsing


def quote(market, name, open_, high, low, close, volume, turnover, trades, change, etf=False, suspended=False):
    return {
        "trade_date": DAY, "market": market, "name": name, "open": open_, "high": high, "low": low, "close": close,
        "volume": volume, "turnover": turnover, "trades": trades, "change": change, "is_etf": etf,
        "is_suspended": suspended,
    }  # fmt: skip


EXPECTED_QUOTES = {
    "0050": quote("TWSE", "元大台灣50", 190.0, 192.5, 189.1, 191.85, 12_345_678, 2_360_493_634, 8901, 1.35, etf=True),
    "1101": quote("TWSE", "台泥", 30.1, 30.5, 29.9, 30.2, 8_001_000, 241_630_200, 3456, None),  # X: not comparable
    "2002": quote("TWSE", "中鋼", 20.0, 20.1, 19.95, 20.0, 20_000_000, 400_500_000, 9000, 0.0),  # blank sign, 0.00
    "2317": quote("TWSE", "鴻海", 210.5, 211.0, 205.5, 206.0, 55_001_234, 11_440_256_672, 30123, -4.5),  # green −
    "2330": quote("TWSE", "台積電", 1085.0, 1095.0, 1080.0, 1090.0, 40_033_236, 43_556_160_768, 61234, 10.0),
    "9910": quote("TWSE", "豐泰", None, None, None, None, 0, 0, 0, None, suspended=True),
    "006201": quote("TPEx", "元大富櫃50", 16.45, 16.97, 16.45, 16.97, 111_047, 1_872_949, 80, 0.64, etf=True),
    "3105": quote("TPEx", "穩懋", 151.0, 152.0, 149.0, 150.0, 2_000_000, 300_200_000, 1500, 0.0),
    "4111": quote("TPEx", "濟生", None, None, None, None, 0, 0, 0, None, suspended=True),
    "6488": quote("TPEx", "環球晶", 465.0, 466.0, 450.0, 452.5, 1_234_567, 562_962_552, 3210, -12.5),
    "8069": quote("TPEx", "元太", 252.0, 253.0, 248.0, 250.0, 3_000_000, 751_500_000, 2100, None),  # 除息
    "5349": quote("TPEx", "先豐", 12.4, 12.45, 12.25, 12.3, 50_000, 617_500, 40, -0.1),  # 管理股票 table
}


def test_quotes_parse_to_exact_values(source):
    result = source.fetch_day("daily_quotes", DAY)
    assert not result.closed
    assert dict(result.frame.schema) == RAW_TABLES["daily_quotes"]
    got = rows(result.frame)
    assert set(got) == set(EXPECTED_QUOTES)  # the TPEx warrant 712345 is left out, like TWSE's ALLBUT0999
    for code, expected in EXPECTED_QUOTES.items():
        assert got[code] == {"stock_id": code, **expected}, code
    assert result.details["rows_per_market"] == {"TWSE": 6, "TPEx": 6}
    assert result.details["endpoints"] == ["TWSE MI_INDEX", "TPEx dailyQuotes"]


def flows(fb, fs, fn, fdb, fds, fdn, tb, ts, tn, db, ds, dn, total):
    return {
        "trade_date": DAY, "foreign_buy": fb, "foreign_sell": fs, "foreign_net": fn, "foreign_dealer_buy": fdb,
        "foreign_dealer_sell": fds, "foreign_dealer_net": fdn, "trust_buy": tb, "trust_sell": ts, "trust_net": tn,
        "dealer_buy": db, "dealer_sell": ds, "dealer_net": dn, "total_net": total,
    }  # fmt: skip


def test_institutional_flows_parse_to_exact_values(source):
    got = rows(source.fetch_day("institutional_flows", DAY).frame)
    expected = {
        # dealer buy/sell = proprietary (自行買賣) + hedging (避險); names with trailing spaces are fine
        "0050": flows(1_200_000, 800_000, 400_000, 0, 0, 0, 50_000, 10_000, 40_000, 130_000, 280_000, -150_000, 290_000),
        "1101": flows(0, 0, 0, 0, 0, 0, 0, 0, 0, 12_000, 0, 12_000, 12_000),
        "2317": flows(10_000_000, 12_500_000, -2_500_000, 0, 0, 0, 0, 600_000, -600_000, 0, 0, 0, -3_100_000),
        "2330": flows(25_123_456, 20_000_000, 5_123_456, 1000, 2000, -1000, 300_000, 100_000, 200_000, 650_000, 200_000, 450_000, 5_772_456),
        # TPEx, by position: groups 0 foreign, 1 foreign dealers, 3 trust, 4+5 dealers, 6 dealer total, 23 total
        "006201": flows(5000, 1000, 4000, 0, 0, 0, 0, 0, 0, 21_000, 9836, 11_164, 15_164),
        "3105": flows(0, 250_000, -250_000, 0, 0, 0, 0, 0, 0, 0, 0, 0, -250_000),
        "6488": flows(300_000, 100_000, 200_000, 1000, 0, 1000, 50_000, 80_000, -30_000, 12_000, 12_000, 0, 171_000),
    }  # fmt: skip
    assert got == {code: {"stock_id": code, **values} for code, values in expected.items()}


def margin(buy, sell, repay, prev, bal, limit, cover, short, srepay, sprev, sbal, slimit, offset):
    return {
        "trade_date": DAY, "margin_buy": buy, "margin_sell": sell, "margin_cash_repay": repay,
        "margin_prev_balance": prev, "margin_balance": bal, "margin_limit": limit, "short_cover": cover,
        "short_sell": short, "short_stock_repay": srepay, "short_prev_balance": sprev, "short_balance": sbal,
        "short_limit": slimit, "offset": offset,
    }  # fmt: skip


def test_margin_parses_by_position_in_lots_without_the_total_row(source):
    got = rows(source.fetch_day("margin_balances", DAY).frame)
    expected = {
        "0050": margin(1200, 1000, 10, 20_000, 20_190, 500_000, 30, 50, 0, 1000, 1020, 500_000, 5),
        "1101": margin(500, 600, 0, 30_000, 29_900, 2_500_000, 100, 200, 0, 5000, 5100, 2_500_000, 20),
        "2330": margin(3456, 2345, 12, 25_000, 26_099, 6_483_000, 123, 456, 7, 3000, 3326, 6_483_000, 89),  # 89: JSON number
        # TPEx lists 券賣 before 券買
        "3105": margin(100, 400, 0, 8000, 7700, 420_000, 100, 0, 0, 900, 800, 420_000, 0),
        "6488": margin(300, 200, 10, 5000, 5090, 250_000, 30, 50, 0, 400, 420, 250_000, 12),
    }  # fmt: skip
    assert got == {code: {"stock_id": code, **values} for code, values in expected.items()}
    assert "" not in got and "\u3000" not in got  # the 合計 row


def test_valuations_parse_with_null_pe_for_losses(source):
    got = rows(source.fetch_day("valuations", DAY).frame)
    expected = {
        "1101": (None, 0.95, 3.31),  # 本益比 "-" → null; 殖利率 a JSON number
        "2002": (None, 1.02, 0.0),
        "2317": (14.37, 1.85, 2.6),
        "2330": (22.15, 6.8, 1.65),
        "3105": (None, 3.05, 0.0),  # TPEx "N/A"
        "6488": (18.52, 2.1, 1.77),
        "8069": (35.2, 5.6, 1.4),
    }
    assert {code: (r["pe"], r["pb"], r["dividend_yield"]) for code, r in got.items()} == expected


def thousands(payload):
    """TPEx quotes with the volume in thousands of shares, as the header then says."""
    for table in payload["tables"]:
        table["fields"][8] = "成交股數(千股)"
        for row in table["data"]:
            row[8] = f"{round(int(row[8].replace(',', '')) / 1000):,}"


def test_tpex_volume_in_thousands_is_converted_to_shares(exchanges, source):
    exchanges.mutate(fx.DAILY_QUOTES, thousands)
    got = rows(source.fetch_day("daily_quotes", DAY).frame)
    assert got["6488"]["volume"] == 1_235_000  # "1,235" 千股
    assert got["006201"]["volume"] == 111_000
    assert got["2330"]["volume"] == 40_033_236  # TWSE untouched


def test_volume_in_the_wrong_unit_fails_loudly(exchanges, source):
    def unlabelled_thousands(payload):
        thousands(payload)
        for table in payload["tables"]:
            table["fields"][8] = "成交股數"  # says shares, holds thousands

    exchanges.mutate(fx.DAILY_QUOTES, unlabelled_thousands)
    with pytest.raises(BadMarketData) as error:
        source.fetch_day("daily_quotes", DAY)
    message = str(error.value)
    assert "dailyQuotes" in message and str(DAY) in message and "成交股數" in message and "unit" in message


def test_roc_and_gregorian_dates():
    assert parse_any_date("115/09/07") == DAY
    assert parse_any_date("1150907") == DAY
    assert parse_any_date("20260907") == DAY
    assert parse_any_date("2026/09/07") == DAY
    assert parse_any_date("not a date") is None


# ------------------------------------------------------------------------------------- closed days


CLOSED_STAT = {  # as recorded: MI_MARGN's closed-day stat lacks the final 「!」
    "daily_quotes": NO_DATA,
    "institutional_flows": NO_DATA,
    "margin_balances": "很抱歉，沒有符合條件的資料",
    "valuations": NO_DATA,
}


@pytest.mark.parametrize("table", DAILY_TABLES)
def test_a_day_twse_has_no_data_for_is_closed_not_an_error(exchanges, source, table):
    exchanges.close_day(DAY)
    result = source.fetch_day(table, DAY)
    assert result.closed
    assert result.reason == f"TWSE has no data for {DAY}: {CLOSED_STAT[table]}"
    assert result.frame.is_empty() and dict(result.frame.schema) == RAW_TABLES[table]
    assert sum(1 for r in exchanges.requests if r.market == "tpex") == 0  # TPEx need not be asked
    assert source.has_data(DAY) is False


def at_taipei(monkeypatch, when: dt.datetime) -> None:
    monkeypatch.setattr("qrl_platform.market.live.source.taipei_now", lambda: when.replace(tzinfo=TAIPEI))


def test_old_no_data_answers_are_cached_but_not_todays(exchanges, source, monkeypatch):
    today = taipei_today()
    at_taipei(monkeypatch, dt.datetime.combine(today, dt.time(16, 0)))  # after the closing data are out
    exchanges.close_day(DAY)
    exchanges.close_day(today)
    assert source.fetch_day("daily_quotes", DAY).closed
    assert source.fetch_day("daily_quotes", today).closed
    before = exchanges.count(fx.MI_INDEX)
    again_old = source.fetch_day("daily_quotes", DAY)
    assert exchanges.count(fx.MI_INDEX) == before  # a closed day long past stays closed: no request
    assert again_old.closed and again_old.details["cache_hits"] == 1
    source.fetch_day("daily_quotes", today)
    assert exchanges.count(fx.MI_INDEX) == before + 1  # today's "no data" may be "not yet": asked again


def test_no_data_before_publication_or_for_the_future_is_not_a_closure(exchanges, source, monkeypatch, cache_root):
    today = taipei_today()
    at_taipei(monkeypatch, dt.datetime.combine(today, dt.time(11, 0)))
    exchanges.close_day(today)
    with pytest.raises(NotPublishedYet, match=f"MI_INDEX {today}: no data yet"):
        source.fetch_day("daily_quotes", today)
    tomorrow = today + dt.timedelta(days=1)
    exchanges.close_day(tomorrow)
    with pytest.raises(NotPublishedYet, match=f"T86 {tomorrow}: no data yet"):
        source.fetch_day("institutional_flows", tomorrow)
    assert list(cache_root.rglob("*.json")) == []


def test_a_table_published_later_is_not_a_closed_day(exchanges, source, cache_root):
    exchanges.mutate(fx.MI_MARGN, lambda payload: dict(fx.MI_MARGN_NO_DATA))  # margin not out yet, quotes are
    with pytest.raises(NotPublishedYet, match="MI_MARGN 2026-09-07"):
        source.fetch_day("margin_balances", DAY)
    assert cache_files(cache_root, fx.MI_MARGN) == []


def test_tpex_without_rows_on_a_twse_trading_day_is_not_published_yet(exchanges, source):
    exchanges.mutate(fx.DAILY_TRADE, lambda payload: fx.daily_trade(DAY, empty=True))
    with pytest.raises(NotPublishedYet, match="dailyTrade 2026-09-07"):
        source.fetch_day("institutional_flows", DAY)


def test_has_data_probes_twse_quotes(exchanges, source):
    assert source.has_data(DAY) is True
    other = dt.date(2026, 9, 8)
    exchanges.drop_stock_table()
    assert source.has_data(other) is False  # stat OK but no 每日收盤行情 table: not published


# ---------------------------------------------------------------------------------------- HTTP manners


def test_second_fetch_of_a_date_makes_no_requests(exchanges, make_source, cache_root):
    first = make_source()
    for table in DAILY_TABLES:
        assert first.fetch_day(table, DAY).details["requests"] == 2
    made = exchanges.count()
    assert made == 8
    assert (
        cache_root
        / exchanges.twse_base_url.split("//")[1].replace(":", "_")
        / "rwd/zh/afterTrading/MI_INDEX"
        / "2026-09-07.json"
    ).exists()
    second = make_source()  # a new process would see the same disk cache
    for table in DAILY_TABLES:
        result = second.fetch_day(table, DAY)
        assert result.details["requests"] == 0 and result.details["cache_hits"] == 2
        assert result.frame.equals(first.fetch_day(table, DAY).frame)
    assert exchanges.count() == made


def test_consecutive_requests_to_one_host_are_min_interval_apart(exchanges, make_source):
    source = make_source(min_interval=0.3)
    for table in ("daily_quotes", "institutional_flows", "margin_balances"):
        source.fetch_day(table, DAY)
    for market in ("twse", "tpex"):
        times = exchanges.times(market)
        assert len(times) == 3
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert min(gaps) >= 0.3, (market, gaps)


def test_429_is_retried_after_retry_after(exchanges, source):
    exchanges.fail_next(fx.MI_INDEX, 429, retry_after=1)
    result = source.fetch_day("daily_quotes", DAY)
    assert rows(result.frame)["2330"]["close"] == 1090.0
    times = [r.at for r in exchanges.requests if r.path == fx.MI_INDEX]
    assert len(times) == 2 and times[1] - times[0] >= 0.95
    assert result.details["requests"] == 3  # 2 to TWSE, 1 to TPEx


def test_5xx_is_retried_with_backoff(exchanges, source):
    exchanges.fail_next(fx.T86, 500)
    exchanges.fail_next(fx.DAILY_TRADE, 503, times=2)
    result = source.fetch_day("institutional_flows", DAY)
    assert result.frame.height == 7
    assert exchanges.count(fx.T86) == 2 and exchanges.count(fx.DAILY_TRADE) == 3


def test_retries_are_bounded_then_a_clear_failure(exchanges, source, cache_root):
    exchanges.fail_next(fx.MI_INDEX, 503, times=10)
    with pytest.raises(ExchangeUnavailable, match=r"TWSE MI_INDEX 2026-09-07: gave up after 4 attempts \(HTTP 503\)"):
        source.fetch_day("daily_quotes", DAY)
    assert exchanges.count(fx.MI_INDEX) == 4
    assert list(cache_root.rglob("*.json")) == []


def test_an_unreadable_cache_entry_is_fetched_again(exchanges, source, cache_root):
    source.fetch_day("daily_quotes", DAY)
    [entry] = cache_files(cache_root, fx.MI_INDEX)
    entry.write_text("<html>truncated", encoding="utf-8")
    assert rows(source.fetch_day("daily_quotes", DAY).frame)["2330"]["close"] == 1090.0
    assert exchanges.count(fx.MI_INDEX) == 2


# -------------------------------------------------------------------------------------- bad payloads


def replace_cell(code: str, position: int, value):
    def edit(payload):
        tables = payload.get("tables") or [payload]
        for table in tables:
            for row in table.get("data", []):
                if row and row[0] == code:
                    row[position] = value

    return edit


def drop_last_value(code: str):
    def edit(payload):
        for table in payload.get("tables", []):
            for row in table.get("data", []):
                if row and row[0] == code:
                    row.pop()

    return edit


BAD_PAYLOADS = {
    # case: (table, endpoint path, how to break it, substrings the message must contain)
    "html instead of json": ("daily_quotes", fx.MI_INDEX, lambda x: x.serve_html(fx.MI_INDEX), ["MI_INDEX", "body", "not JSON"]),
    "stock table missing": ("daily_quotes", fx.MI_INDEX, lambda x: x.drop_stock_table(), ["MI_INDEX", "tables", "每日收盤行情"]),
    "quotes row short of a field": ("daily_quotes", fx.MI_INDEX, lambda x: x.mutate(fx.MI_INDEX, drop_last_value("2330")), ["MI_INDEX", "2330", "15 values", "fields"]),
    "quotes price not a number": ("daily_quotes", fx.MI_INDEX, lambda x: x.mutate(fx.MI_INDEX, replace_cell("2330", 8, "1,09O.00")), ["MI_INDEX", "收盤價", "2330", "not a number"]),
    "quotes unknown sign": ("daily_quotes", fx.MI_INDEX, lambda x: x.mutate(fx.MI_INDEX, replace_cell("2330", 9, "<p>?</p>")), ["MI_INDEX", "漲跌(+/-)", "2330"]),
    "twse throttling stat": ("daily_quotes", fx.MI_INDEX, lambda x: x.mutate(fx.MI_INDEX, lambda p: {"stat": "每日1:30PM到1:45PM為網站尖峰時間，查詢全部資料功能暫停使用!"}), ["MI_INDEX", "stat", "尖峰"]),
    "T86 header changed": ("institutional_flows", fx.T86, lambda x: x.rename_field(fx.T86, 10, "投信買賣超"), ["T86", "投信買賣超股數", "missing"]),
    "T86 volume not a number": ("institutional_flows", fx.T86, lambda x: x.mutate(fx.T86, replace_cell("2330", 2, "n/a!")), ["T86", "外陸資買進股數(不含外資自營商)", "2330"]),
    "MI_MARGN header changed": ("margin_balances", fx.MI_MARGN, lambda x: x.rename_field(fx.MI_MARGN, 8, "融券買進", table=1), ["MI_MARGN", "買進", "position 8"]),
    "MI_MARGN empty count": ("margin_balances", fx.MI_MARGN, lambda x: x.mutate(fx.MI_MARGN, replace_cell("2330", 6, "--")), ["MI_MARGN", "今日餘額 (margin_balance)", "2330", "empty"]),
    "BWIBBU_d header changed": ("valuations", fx.BWIBBU_D, lambda x: x.rename_field(fx.BWIBBU_D, 4, "本益比(倍)"), ["BWIBBU_d", "'本益比'", "missing"]),
    "MI_MARGN limit renamed to an unknown name": ("margin_balances", fx.MI_MARGN, lambda x: x.rename_field(fx.MI_MARGN, 7, "融資限額", table=1), ["MI_MARGN", "'限額' or '次一營業日限額'", "position 7", "'融資限額'"]),
    "TPEx valuations unknown layout": ("valuations", fx.PE_QRY_DATE, lambda x: x.rename_field(fx.PE_QRY_DATE, 6, "淨值比", table=0), ["peQryDate", "'股價淨值比'", "missing"]),
    "TPEx insti header changed": ("institutional_flows", fx.DAILY_TRADE, lambda x: x.rename_field(fx.DAILY_TRADE, 11, "自營商-買進股數", table=0), ["dailyTrade", "投信買進股數", "position 11"]),
    "TPEx insti column count": ("institutional_flows", fx.DAILY_TRADE, lambda x: x.mutate(fx.DAILY_TRADE, lambda p: p["tables"][0]["fields"].pop()), ["dailyTrade", "expected 24 fields"]),
    "TPEx insti net is not buy - sell": ("institutional_flows", fx.DAILY_TRADE, lambda x: x.mutate(fx.DAILY_TRADE, replace_cell("6488", 13, "-31,000")), ["dailyTrade", "投信買賣超股數", "6488"]),
    "TPEx margin header changed": ("margin_balances", fx.MARGIN_BALANCE, lambda x: x.rename_field(fx.MARGIN_BALANCE, 11, "券買", table=0), ["margin/balance", "券賣", "position 11"]),
    "TPEx quotes without date": ("daily_quotes", fx.DAILY_QUOTES, lambda x: x.mutate(fx.DAILY_QUOTES, lambda p: p.pop("date")), ["dailyQuotes", "'date'", "missing"]),
    "TPEx valuations pb not a number": ("valuations", fx.PE_QRY_DATE, lambda x: x.mutate(fx.PE_QRY_DATE, replace_cell("6488", 6, "2.1x")), ["peQryDate", "股價淨值比", "6488"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_PAYLOADS))
def test_bad_payload_raises_naming_endpoint_date_and_field_and_is_not_cached(exchanges, source, cache_root, case):
    table, path, breaking, expected = BAD_PAYLOADS[case]
    breaking(exchanges)
    with pytest.raises(BadMarketData) as error:
        source.fetch_day(table, DAY)
    message = str(error.value)
    for part in [str(DAY), *expected]:
        assert part in message, (part, message)
    assert cache_files(cache_root, path) == []  # nothing bad is ever kept


def test_tpex_answering_another_day_is_an_error_naming_both_dates(exchanges, source, cache_root):
    exchanges.tpex_answers_date(dt.date(2026, 9, 4))
    with pytest.raises(BadMarketData) as error:
        source.fetch_day("daily_quotes", DAY)
    message = str(error.value)
    assert "TPEx dailyQuotes 2026-09-07" in message and "2026-09-04" in message and "'date'" in message
    assert cache_files(cache_root, fx.DAILY_QUOTES) == []
    assert len(cache_files(cache_root, fx.MI_INDEX)) == 1  # TWSE's answer was fine and is kept


def test_the_raw_cache_lives_on_an_object_store_qrl_home(exchanges, monkeypatch, tmp_path):
    """With QRL_HOME an fsspec URL (memory:// here, s3:// in production) the cache is kept there, so a
    second pod (a new source, nothing local shared) never fetches the date again; nothing lands on local disk."""
    import fsspec

    home = "memory://qrl-raw-cache-test"
    monkeypatch.setenv("QRL_HOME", home)
    monkeypatch.chdir(tmp_path)
    settings = MarketSourceSettings(
        source="live", twse_base_url=exchanges.twse_base_url, tpex_base_url=exchanges.tpex_base_url,
        demo_seed=7, demo_universe=10, http_backoff_seconds=0.05,
    )  # fmt: skip
    cache_root = current_settings().raw_cache_root  # what the market source resource passes
    memory = fsspec.filesystem("memory")
    try:
        first = LiveMarketSource(settings, cache_root, min_interval=0.01)
        assert first.fetch_day("daily_quotes", DAY).details["requests"] == 2
        host = exchanges.twse_base_url.split("//")[1].replace(":", "_")
        entry = f"/qrl-raw-cache-test/cache/raw/{host}/rwd/zh/afterTrading/MI_INDEX/2026-09-07.json"
        assert memory.exists(entry)
        assert b'"stat": "OK"' in memory.cat_file(entry)
        second = LiveMarketSource(settings, cache_root, min_interval=0.01)
        again = second.fetch_day("daily_quotes", DAY)
        assert again.details == {**again.details, "requests": 0, "cache_hits": 2}
        assert exchanges.count() == 2
        assert not (tmp_path / ".qrl").exists()  # no silent pod-local fallback
        first.close()
        second.close()
    finally:
        memory.rm("/qrl-raw-cache-test", recursive=True)
