"""Live MOPS ingestion (monthly revenue, quarterly financials) against a local server answering pages in
the recorded shapes: cp950 t21sc03 pages, UTF-8 t163sb04/05 summaries, the 查無資料 page."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from qrl_platform.calendar import TAIPEI
from qrl_platform.market.live import LiveMarketSource, mops
from qrl_platform.market.live.twse import NotPublishedYet
from qrl_platform.market.schema import RAW_TABLES, BadMarketData
from qrl_platform.settings import MOPS_DEFAULT_BASE_URL, MarketSourceSettings, settings
from qrl_platform_tests.conftest import configured_resources
from qrl_platform_tests.market import fake_mops
from qrl_platform_tests.market.fake_mops import FakeMops

MONTH = fake_mops.MONTH  # 2026-07
Q2 = dt.date(2026, 4, 1)


@pytest.fixture
def server():
    fake = FakeMops()
    yield fake
    fake.stop()


def at_taipei(monkeypatch, day: dt.date, time: dt.time = dt.time(9, 0)) -> None:
    monkeypatch.setattr(
        "qrl_platform.market.live.source.taipei_now", lambda: dt.datetime.combine(day, time, tzinfo=TAIPEI)
    )


@pytest.fixture(autouse=True)
def after_every_deadline(monkeypatch):
    at_taipei(monkeypatch, dt.date(2026, 9, 1))


@pytest.fixture
def make_source(server, tmp_path):
    sources = []

    def make(min_interval: float = 0.01) -> LiveMarketSource:
        settings = MarketSourceSettings(
            source="live", twse_base_url="http://127.0.0.1:9", tpex_base_url="http://127.0.0.1:9",
            demo_seed=7, demo_universe=10, mops_base_url=server.base_url,
        )  # fmt: skip
        sources.append(LiveMarketSource(settings, cache_root=str(tmp_path / "raw"), min_interval=min_interval))
        return sources[-1]

    yield make
    for source in sources:
        source.close()


def cached(tmp_path) -> list[str]:
    return sorted(
        p.relative_to(tmp_path / "raw").as_posix().split("/", 1)[1] for p in (tmp_path / "raw").rglob("*.json")
    )


# ---------------------------------------------------------------------------------------- revenue


def test_monthly_revenue_parses_the_cp950_pages_to_exact_values(make_source):
    frame = make_source().monthly_revenue(MONTH)
    assert dict(frame.schema) == RAW_TABLES["monthly_revenue"]
    # 2353 宏碁 and 2399 碁曜電子 carry the cp950-only 碁; 2399's revenue is negative; "   8,470,118" has
    # leading spaces; the 合計 and 全部國內上市公司合計 rows are gone; 備註 (rowspan=2) is the eleventh column.
    assert frame.rows() == [
        ("1101", "2026-07", 8_470_118, dt.date(2026, 8, 10)),
        ("1102", "2026-07", 5_120_300, dt.date(2026, 8, 10)),
        ("2353", "2026-07", 21_345_678, dt.date(2026, 8, 10)),
        ("2399", "2026-07", -12_345, dt.date(2026, 8, 10)),
        ("6488", "2026-07", 5_901_234, dt.date(2026, 8, 10)),
    ]


def test_the_revenue_page_is_one_line_of_cp950_that_strict_big5_cannot_read():
    body = fake_mops.revenue_page("sii", MONTH, dt.date(2026, 8, 12))
    assert (
        b"\n" not in body
        and b"<Td nowrap>" in body
        and "<th class=tt nowrap colspan=2 align=center>合計</th>".encode("cp950") in body
        and b"<th rowspan=2 class=tt>" in body
    )
    with pytest.raises(UnicodeDecodeError):
        body.decode("big5")
    rows = mops.parse_revenue(mops.decode_cp950(body), "sii", MONTH)
    assert [(r["stock_id"], r["name"]) for r in rows] == [
        ("1101", "台泥"),
        ("1102", "亞泥"),
        ("2353", "宏碁"),
        ("2399", "碁曜電子"),
    ]


REVENUE_NAMES = [
    "公司代號", "公司名稱", "當月營收", "上月營收", "去年當月營收", "上月比較增減(%)", "去年同月增減(%)",
    "當月累計營收", "去年累計營收", "前期比較增減(%)",
]  # fmt: skip


def test_revenue_header_rows_are_read_as_a_grid_so_the_rowspan_note_is_the_eleventh_column():
    # The real layout: &nbsp; (colspan=2), 營業收入 (colspan=5), 累計營業收入 (colspan=3), 備註 (rowspan=2)
    # over the ten names; the closing grand-total table has 備註 commented out.
    page = mops.decode_cp950(fake_mops.revenue_page("sii", MONTH, dt.date(2026, 8, 12)))
    tables, _ = mops.read_tables(page)
    named = [mops.leaf_columns(t) for t in tables if "公司代號" in mops.leaf_columns(t)[0]]
    assert [names for names, _ in named] == [[*REVENUE_NAMES, "備註"]] * 2 + [REVENUE_NAMES]
    assert {first for _, first in named} == {2}  # data from the third row on


def test_header_grid_fills_every_slot_a_spanning_cell_covers():
    def th(text, colspan=1, rowspan=1):
        return mops.Cell("th", text, colspan, rowspan)

    rows = [[th("A", rowspan=2), th("B", colspan=2), th("C", rowspan=2)], [th("b1"), th("b2")]]
    assert mops.header_grid(rows) == [["A", "B", "B", "C"], ["A", "b1", "b2", "C"]]
    assert mops.leaf_columns(mops.Table(rows)) == (["A", "b1", "b2", "C"], 2)


def test_a_month_mops_has_not_published_is_not_published_yet_and_retried(server, make_source, tmp_path):
    server.published_months.discard(("otc", MONTH))
    source = make_source()
    with pytest.raises(NotPublishedYet, match=r"MOPS t21sc03 otc 2026-07: MOPS answers 查無資料"):
        source.monthly_revenue(MONTH)
    assert cached(tmp_path) == ["nas/t21/sii/t21sc03_115_7_0.html/2026-07-01.json"]  # the 查無資料 page is not kept
    server.published_months.add(("otc", MONTH))
    assert source.monthly_revenue(MONTH).height == 5
    assert server.count("/sii/") == 1 and server.count("/otc/") == 2


def test_before_the_10th_nothing_is_asked(server, make_source, monkeypatch):
    at_taipei(monkeypatch, dt.date(2026, 8, 10), dt.time(23, 0))
    with pytest.raises(
        NotPublishedYet,
        match=r"MOPS t21sc03 2026-07: monthly_revenue for 2026-07-01 is not published yet: normally out at 2026-08-11 00:00",
    ):
        make_source().monthly_revenue(MONTH)
    assert server.requests == []


def test_a_second_run_reads_the_cache_and_asks_nothing(server, make_source):
    first = make_source().monthly_revenue(MONTH)
    revenue_requests = len(server.requests)
    assert revenue_requests == 2
    first_q2 = make_source().financials(Q2)
    assert len(server.requests) == revenue_requests + 6  # sb04 Q2 + Q1 and sb05 Q2, per market
    again = make_source()
    assert again.monthly_revenue(MONTH).equals(first) and again.financials(Q2).equals(first_q2)
    assert len(server.requests) == revenue_requests + 6


def test_a_truncated_revenue_page_fails_and_is_not_cached(server, make_source, tmp_path):
    full = fake_mops.revenue_page("sii", MONTH, dt.date(2026, 8, 12))
    # Cut before the closing 全部國內上市公司合計 table: every industry table is whole, the page is not.
    cut = full.rindex(fake_mops.REVENUE_TABLE.encode("cp950"))
    server.overrides["/nas/t21/sii/t21sc03_115_7_0.html"] = full[:cut]
    with pytest.raises(BadMarketData, match=r"MOPS t21sc03 sii 2026-07: field '全部國內上市公司合計' is missing"):
        make_source().monthly_revenue(MONTH)
    assert cached(tmp_path) == []


def test_a_revenue_cell_that_is_not_a_number_names_field_and_stock(server, make_source):
    page = fake_mops.revenue_page("sii", MONTH, dt.date(2026, 8, 12)).decode("cp950")
    server.overrides["/nas/t21/sii/t21sc03_115_7_0.html"] = page.replace("   5,120,300", "   5,12O,300").encode("cp950")
    with pytest.raises(
        BadMarketData,
        match=r"MOPS t21sc03 sii 2026-07: field '當月營收' is not a number \('   5,12O,300'\) for stock 1102",
    ):
        make_source().monthly_revenue(MONTH)


def test_revenue_table_without_a_known_revenue_column_fails_naming_it(server, make_source):
    page = fake_mops.revenue_page("otc", MONTH, dt.date(2026, 8, 12)).decode("cp950")
    server.overrides["/nas/t21/otc/t21sc03_115_7_0.html"] = page.replace("當月營收</th>", "本月營收</th>").encode(
        "cp950"
    )
    with pytest.raises(
        BadMarketData, match=r"MOPS t21sc03 otc 2026-07: field '當月營收' or '營業收入當月營收' is missing"
    ):
        make_source().monthly_revenue(MONTH)


# ------------------------------------------------------------------------------------- financials


def test_financials_are_the_quarter_from_year_to_date_with_equity_at_its_end(make_source):
    frame = make_source().financials(Q2)
    assert dict(frame.schema) == RAW_TABLES["financials"]
    got = {r["stock_id"]: r for r in frame.iter_rows(named=True)}
    assert set(got) == {"1101", "1109", "2353", "2881", "6488"}
    published = dt.date(2026, 8, 14)
    expected = {
        # Q2 = (Jan–Jun) − (Jan–Mar); net income attributable to the parent; equity 歸屬於母公司業主之權益合計
        "1101": (0.39, 2_900_000, 230_000_000, 26_895_877),
        "2353": (-0.5, -1_500_000, 110_000_000, 58_500_000),
        # listed during the year: no Q1 year-to-date, so no quarter figures, only the balance sheet
        "1109": (None, None, 5_000_000, None),
        # bank template: 淨收益 as revenue, 權益總額 as equity
        "2881": (3.15, 21_200_000, 600_000_000, 37_000_000),
        "6488": (6.37, 3_050_000, 79_000_000, 16_500_000),
    }
    for code, (eps, net_income, equity, revenue) in expected.items():
        assert got[code] == {
            "stock_id": code, "fiscal_quarter": "2026Q2", "eps": eps, "net_income": net_income, "equity": equity,
            "revenue": revenue, "published_on": published,
        }, code  # fmt: skip


def test_first_quarter_is_the_year_to_date_itself(make_source):
    got = {r["stock_id"]: r for r in make_source().financials(dt.date(2026, 1, 1)).iter_rows(named=True)}
    assert (got["1101"]["eps"], got["1101"]["net_income"], got["1101"]["revenue"]) == (0.32, 2_400_000, 25_104_123)
    assert got["1101"]["published_on"] == dt.date(2026, 5, 15)
    assert "1109" not in got  # no income statement filed for Q1


def test_statements_are_posted_with_the_mops_form(server, make_source):
    make_source().financials(Q2)
    forms = sorted((r.path, r.form["TYPEK"], r.form["year"], r.form["season"]) for r in server.requests)
    assert forms == [
        ("/mops/web/t163sb04", "otc", "115", "1"), ("/mops/web/t163sb04", "otc", "115", "2"),
        ("/mops/web/t163sb04", "sii", "115", "1"), ("/mops/web/t163sb04", "sii", "115", "2"),
        ("/mops/web/t163sb05", "otc", "115", "2"), ("/mops/web/t163sb05", "sii", "115", "2"),
    ]  # fmt: skip
    assert all(
        r.method == "POST" and r.form["isQuery"] == "Y" and r.form["encodeURIComponent"] == "1" for r in server.requests
    )


def test_a_quarter_not_filed_yet_is_not_published_yet(server, make_source, monkeypatch, tmp_path):
    at_taipei(monkeypatch, dt.date(2026, 8, 14), dt.time(20, 0))
    with pytest.raises(
        NotPublishedYet,
        match=r"MOPS t163sb04 2026Q2: financials for 2026-04-01 is not published yet: normally out at 2026-08-15 00:00",
    ):
        make_source().financials(Q2)
    assert server.requests == []
    at_taipei(monkeypatch, dt.date(2026, 8, 15))
    server.published_quarters.discard((2026, 2))
    with pytest.raises(NotPublishedYet, match=r"MOPS t163sb04 sii 2026Q2: MOPS answers 查無資料"):
        make_source().financials(Q2)
    assert cached(tmp_path) == []


def test_an_unknown_statement_layout_fails_naming_endpoint_period_and_field(server, make_source, tmp_path):
    general = [name for name in fake_mops.GENERAL_INCOME if name != "基本每股盈餘（元）"]
    rows = [row[:-1] for row in fake_mops.INCOME[(2, "sii")][0]]
    server.overrides["/mops/web/t163sb04"] = fake_mops.statement_page("綜合損益表", [(general, rows)])
    with pytest.raises(BadMarketData, match=r"MOPS t163sb04 sii 2026Q2: field '基本每股盈餘（元）' or .* is missing"):
        make_source().financials(Q2)
    assert cached(tmp_path) == []


def test_mops_requests_are_min_interval_apart(server, make_source):
    make_source(min_interval=0.2).financials(Q2)
    times = [r.at for r in server.requests]
    assert len(times) == 6 and min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.2


# ------------------------------------------------------------------------------------------ settings


def test_the_live_source_provides_all_seven_raw_tables():
    assert LiveMarketSource.provides == frozenset(RAW_TABLES)


def test_mops_base_url_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("QRL_MOPS_BASE_URL", raising=False)
    assert settings().market_source_settings().mops_base_url == MOPS_DEFAULT_BASE_URL == "https://mops.twse.com.tw"
    monkeypatch.setenv("QRL_MOPS_BASE_URL", "http://127.0.0.1:8123/")
    assert settings().market_source_settings().mops_base_url == "http://127.0.0.1:8123"


def test_frames_conform_to_the_canonical_schema_with_negative_revenue_allowed(make_source):
    frame = make_source().monthly_revenue(MONTH)
    assert frame.filter(pl.col("revenue") < 0)["stock_id"].to_list() == ["2399"]


def test_a_throttling_page_without_tables_is_an_error_not_a_skip(server, make_source, tmp_path):
    server.overrides["/mops/web/t163sb04"] = (
        b"<html><body>FOR SECURITY REASONS, THIS PAGE CAN NOT BE ACCESSED!</body></html>"
    )
    with pytest.raises(BadMarketData, match=r"MOPS t163sb04 sii 2026Q2: no table with a '公司代號' column") as error:
        make_source().financials(Q2)
    assert not isinstance(error.value, NotPublishedYet)
    assert cached(tmp_path) == []


def test_the_revenue_and_financials_assets_ingest_from_mops_in_live_mode(server, qrl_home, monkeypatch):
    """Through Dagster: the live source now provides both tables, so the assets store MOPS's rows (and
    the raw cache lands under QRL_HOME)."""
    import dagster as dg

    import qrl_platform
    from qrl_platform.definitions import RESOURCES
    from qrl_platform.defs.market.assets import financials, monthly_revenue

    monkeypatch.setenv("QRL_HTTP_MIN_INTERVAL_SECONDS", "0.01")
    resources = {
        **RESOURCES,
        "market_source": configured_resources(market_source="live", mops_base_url=server.base_url)["market_source"],
    }
    revenue = dg.materialize([monthly_revenue], resources=resources, partition_key=MONTH.isoformat())
    assert revenue.success
    stored = qrl_platform.load("monthly_revenue", MONTH.isoformat())
    assert stored.sort("stock_id")["revenue"].to_list() == [8_470_118, 5_120_300, 21_345_678, -12_345, 5_901_234]
    assert dg.materialize([financials], resources=resources, partition_key=Q2.isoformat()).success
    assert (
        qrl_platform.load("financials", Q2.isoformat()).filter(pl.col("stock_id") == "2881")["equity"].item()
        == 600_000_000
    )
    assert len(list((qrl_home / "cache" / "raw").rglob("*.json"))) == 8
