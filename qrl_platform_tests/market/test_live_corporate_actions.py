"""Corporate actions from the exchanges' lists: parsers on the real recordings, the live source against
local hosts serving them, and the check against the exchange (our reference price = the published one
to the tick, for every event whose terms the recording carries)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from qrl_platform.market.corporate_actions import (
    dividend_reference_price,
    reduction_reference_price,
    tick_size,
    within_a_tick,
)
from qrl_platform.market.live import LiveMarketSource
from qrl_platform.market.live import corporate_actions as actions
from qrl_platform.market.live.twse import NotPublishedYet
from qrl_platform.market.schema import CORPORATE_ACTIONS, BadMarketData
from qrl_platform.settings import MarketSourceSettings
from qrl_platform_tests.market.fake_corporate_actions import FakeCorporateActions, load

EVERYTHING = (dt.date(2019, 1, 1), dt.date(2026, 9, 2))


def number(value: str) -> float:
    return float(value.replace(",", ""))


@pytest.fixture
def fake():
    server = FakeCorporateActions()
    yield server
    server.stop()


@pytest.fixture
def make_source(fake, tmp_path):
    sources = []

    def make() -> LiveMarketSource:
        settings = MarketSourceSettings(
            source="live", twse_base_url=fake.twse.base_url, tpex_base_url=fake.tpex.base_url,
            demo_seed=7, demo_universe=10,
        )  # fmt: skip
        sources.append(LiveMarketSource(settings, cache_root=str(tmp_path / "raw"), min_interval=0.0))
        return sources[-1]

    yield make
    for source in sources:
        source.close()


# ------------------------------------------------------------------------- check against the exchange


def test_tick_table():
    assert [tick_size(p) for p in (9.99, 10, 49.95, 50, 99.9, 100, 499.5, 500, 999, 1000, 14510)] == [
        0.01, 0.05, 0.05, 0.1, 0.1, 0.5, 0.5, 1.0, 1.0, 5.0, 5.0,
    ]  # fmt: skip


def test_exdailyq_reference_prices_follow_from_the_published_terms_to_the_tick():
    table = load("tpex_exdailyq_20260601_20260902_excerpt.json")["tables"][0]
    at = {name: i for i, name in enumerate(table["fields"])}
    checked = 0
    for row in table["data"]:
        value = {
            name: number(row[i]) if name not in ("除權息日期", "代號", "名稱", "權/息") else row[i]
            for name, i in at.items()
        }
        existing = value["原股東認購股數"]
        rights = value["按持股比例仟股認購"] / 1000 * value["現金增資股數"] / existing if existing else 0.0
        ours = dividend_reference_price(
            value["除權息前收盤價"], value["現金股利"], value["每仟股無償配股"] / 1000, rights, value["現金增資認購價"]
        )
        assert within_a_tick(ours, value["除權息參考價"]), (row[1], ours, value["除權息參考價"])
        # 減除股利參考價 leaves the rights issue out.
        dividends_only = dividend_reference_price(
            value["除權息前收盤價"], value["現金股利"], value["每仟股無償配股"] / 1000
        )
        assert within_a_tick(dividends_only, value["減除股利參考價"]), row[1]
        checked += 1
    assert checked == len(table["data"]) == 13  # incl. three rights issues (3709, 3540, 4749)


def test_revivt_and_pvchgrslt_reference_prices_follow_from_their_terms_to_the_tick():
    frame = actions.parse_revivt(load("tpex_revivt_20260101_20260902.json"), dt.date(2026, 1, 1), dt.date(2026, 9, 2))
    assert len(frame) == 5
    for event in frame:
        ours = reduction_reference_price(event["prior_close"], event["stock_per_share"], event["cash_per_share"] or 0.0)
        assert within_a_tick(ours, event["reference_price"]), event
    changes = actions.parse_pv_change(
        load("tpex_pvchgrslt_20190101_20260902.json"), dt.date(2019, 1, 1), dt.date(2026, 9, 2)
    )
    assert len(changes) == 14
    for event in changes:
        assert within_a_tick(event["prior_close"] / event["stock_per_share"], event["reference_price"]), event


def test_twt49u_cash_dividends_give_the_published_dividend_reference_price_to_the_tick():
    payload = load("twse_twt49u_20260601_20260902_excerpt.json")
    at = {name: i for i, name in enumerate(payload["fields"])}
    cash_rows = [row for row in payload["data"] if row[at["權/息"]] == "息"]
    assert len(cash_rows) == 10
    for row in cash_rows:
        ours = dividend_reference_price(number(row[at["除權息前收盤價"]]), number(row[at["權值+息值"]]))
        assert within_a_tick(ours, number(row[at["減除股利參考價"]])), row[1]
        assert within_a_tick(ours, number(row[at["除權息參考價"]])), row[1]
    # Stock dividends (權) give back their reference price from the free shares we derive.
    events, pending = actions.parse_twt49u(payload, dt.date(2026, 6, 1), dt.date(2026, 9, 2))
    stock = [e for e in events if e["stock_per_share"]]
    assert {e["stock_id"] for e in stock} == {"2753", "6669"}
    for event in stock:
        ours = dividend_reference_price(event["prior_close"], 0.0, event["stock_per_share"])
        assert within_a_tick(ours, event["reference_price"]), event
    assert [p.stock_id for p in pending] == ["1583"]  # 權息: its cash comes from TWT49UDetail


# ----------------------------------------------------------------------------------------- parsers


def test_twt49u_rows_parse_to_exact_events():
    events, _ = actions.parse_twt49u(
        load("twse_twt49u_20260601_20260902_excerpt.json"), dt.date(2026, 6, 1), dt.date(2026, 9, 2)
    )
    by_stock = {e["stock_id"]: e for e in events}
    assert by_stock["2330"] == {
        "stock_id": "2330", "ex_date": dt.date(2026, 6, 11), "market": "TWSE", "kind": "cash_dividend",
        "prior_close": 2255.0, "reference_price": 2248.99, "cash_per_share": 6.000035, "stock_per_share": None,
        "published_on": dt.date(2026, 6, 11),
    }  # fmt: skip
    assert by_stock["6669"]["kind"] == "stock_dividend"
    assert by_stock["6669"]["stock_per_share"] == pytest.approx(7800 / 2614.99 - 1, abs=1e-6)
    # A rights issue (權 with a negative 權值, 減除股利參考價 = prior close): no free shares, no cash.
    assert by_stock["1312"]["kind"] == "stock_dividend" and by_stock["1312"]["stock_per_share"] is None
    assert by_stock["2059"]["prior_close"] == 14510.0  # thousands separators


def test_twtauu_and_twtb8u_parse_with_ratio_above_and_below_one():
    reductions = actions.parse_twtauu(
        load("twse_twtauu_20260101_20260902.json"), dt.date(2026, 1, 1), dt.date(2026, 9, 2)
    )
    assert [(e["stock_id"], e["ex_date"], e["prior_close"], e["reference_price"]) for e in reductions] == [
        ("1414", dt.date(2026, 1, 12), 17.45, 18.27),
        ("2380", dt.date(2026, 6, 29), 6.6, 23.86),
        ("1459", dt.date(2026, 8, 3), 11.85, 12.46),
        ("6176", dt.date(2026, 8, 24), 81.3, 105.06),
    ]
    changes = actions.parse_twtb8u(load("twse_twtb8u_20200101_20260902.json"), dt.date(2020, 1, 1), dt.date(2026, 9, 2))
    assert len(changes) == 9 and all(e["kind"] == "par_value_change" for e in changes)
    assert changes[2]["prior_close"] == 2485.0 and changes[2]["reference_price"] == 621.25


def test_event_free_ranges_are_empty_not_errors():
    day = (dt.date(2026, 8, 29), dt.date(2026, 8, 30))
    assert actions.parse_twt49u(load("twse_twt49u_20260829_20260830_empty.json"), *day) == ([], [])
    assert actions.parse_twtb8u(load("twse_twtb8u_20260829_20260830_empty.json"), *day) == []
    assert actions.parse_ex_daily(load("tpex_exdailyq_20260829_20260830_empty.json"), *day) == []


def test_a_renamed_column_fails_naming_endpoint_and_field():
    payload = load("twse_twt49u_20260601_20260902_excerpt.json")
    payload["fields"][4] = "除權息參考價格"
    with pytest.raises(BadMarketData, match=r"TWSE TWT49U 2026-06-01\.\.2026-09-02: field '除權息參考價' is missing"):
        actions.parse_twt49u(payload, dt.date(2026, 6, 1), dt.date(2026, 9, 2))


def test_a_reference_price_that_does_not_follow_from_its_terms_is_rejected():
    payload = load("tpex_exdailyq_20260601_20260902_excerpt.json")
    payload["tables"][0]["data"][1][13] = "30.00000000"  # 4527's 現金股利 misread
    with pytest.raises(BadMarketData, match=r"TPEx exDailyQ .*stock 4527 on 2026-06-01.*more than a tick apart"):
        actions.parse_ex_daily(payload, dt.date(2026, 6, 1), dt.date(2026, 9, 2))


def test_rows_outside_the_requested_range_are_rejected():
    with pytest.raises(
        BadMarketData, match=r"TWSE TWTAUU 2026-06-01\.\.2026-06-30: field '恢復買賣日期' is 2026-01-12"
    ):
        actions.parse_twtauu(load("twse_twtauu_20260101_20260902.json"), dt.date(2026, 6, 1), dt.date(2026, 6, 30))


# ------------------------------------------------------------------------------------- live source


def test_live_source_combines_the_six_lists(make_source, fake):
    frame = make_source().corporate_actions(*EVERYTHING)
    assert dict(frame.schema) == CORPORATE_ACTIONS
    assert frame.height == 60
    kinds = dict(frame.group_by("kind").len().iter_rows())
    assert kinds == {
        "cash_dividend": 21, "stock_dividend": 6, "cash_and_stock": 1, "capital_reduction": 9, "par_value_change": 23,
    }  # fmt: skip
    combined = frame.filter(pl.col("stock_id") == "1583").row(0, named=True)
    assert combined["kind"] == "cash_and_stock" and combined["cash_per_share"] == 2.0  # from the fake's TWT49UDetail
    assert combined["stock_per_share"] == pytest.approx((51.3 - 2.0) / 46.97 - 1, abs=1e-6)
    refund = frame.filter(pl.col("stock_id") == "3152").row(0, named=True)
    assert refund["cash_per_share"] == pytest.approx(4.34680553) and refund["stock_per_share"] == pytest.approx(
        0.56531945
    )
    assert fake.count("/rwd/zh/exRight/TWT49UDetail") == 1


def test_a_range_is_asked_once_then_read_from_the_cache(make_source, fake):
    first = make_source().corporate_actions(dt.date(2026, 6, 1), dt.date(2026, 6, 30))
    asked = len(fake.requests)
    again = make_source().corporate_actions(dt.date(2026, 6, 1), dt.date(2026, 6, 30))  # a new process
    assert again.equals(first) and len(fake.requests) == asked
    assert {(m, p) for m, p, _ in fake.requests} >= {("GET", "/www/zh-tw/bulletin/exDailyQ")}
    exdaily = next(q for _, p, q in fake.requests if p.endswith("exDailyQ"))
    assert exdaily == {"startDate": "2026/06/01", "endDate": "2026/06/30", "response": "json"}


def test_exdailyq_answering_todays_events_is_rejected_and_not_cached(make_source, fake):
    fake.answer_today = True
    with pytest.raises(
        BadMarketData, match=r"TPEx exDailyQ 2026-06-01\.\.2026-06-30: field 'date' is '20260611~20260611'"
    ):
        make_source().corporate_actions(dt.date(2026, 6, 1), dt.date(2026, 6, 30))
    fake.answer_today = False
    frame = make_source().corporate_actions(dt.date(2026, 6, 1), dt.date(2026, 6, 30))
    assert frame.filter(pl.col("market") == "TPEx").height == 14  # asked again: the wrong answer was not cached


def test_the_fake_reproduces_the_slashless_trap(fake):
    import httpx

    answer = httpx.get(f"{fake.tpex.base_url}/www/zh-tw/bulletin/exDailyQ",
                       params={"startDate": "20260601", "endDate": "20260630", "response": "json"}).json()  # fmt: skip
    with pytest.raises(BadMarketData, match="not the requested '20260601~20260630'"):
        actions.parse_ex_daily(answer, dt.date(2026, 6, 1), dt.date(2026, 6, 30))
    revivt = httpx.post(f"{fake.tpex.base_url}/www/zh-tw/bulletin/revivt", data={"startDate": "2026/01/01"}).json()
    with pytest.raises(BadMarketData, match="參數錯誤"):
        actions.parse_revivt(revivt, dt.date(2026, 1, 1), dt.date(2026, 9, 2))


def test_an_event_free_range_is_an_empty_frame(make_source):
    frame = make_source().corporate_actions(dt.date(2026, 8, 29), dt.date(2026, 8, 30))
    assert frame.is_empty() and dict(frame.schema) == CORPORATE_ACTIONS


def test_a_range_not_published_yet_asks_nothing(make_source, fake):
    tomorrow = dt.date.today() + dt.timedelta(days=2)
    with pytest.raises(NotPublishedYet, match="corporate_actions"):
        make_source().corporate_actions(tomorrow, tomorrow)
    assert fake.requests == []


def test_recordings_are_listed_in_sources_md_with_their_digests():
    from qrl_platform_tests.market.fake_corporate_actions import MANIFEST, RECORDINGS

    listed = (RECORDINGS / "SOURCES.md").read_text(encoding="utf-8")
    for name, digest in MANIFEST.items():
        assert name in listed and digest in listed, name
