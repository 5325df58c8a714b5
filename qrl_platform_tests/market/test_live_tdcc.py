"""TDCC shareholding distribution (open data 1-5) from a local server answering the CSV that TDCC serves
(the recorded shape): latest week only, UTF-8 with a byte-order mark, CRLF, unquoted, a 差異數調整 line
(level 16) and a total (level 17)."""

from __future__ import annotations

import datetime as dt

import pytest

from qrl_platform.calendar import is_trading_day
from qrl_platform.market.live import LiveMarketSource
from qrl_platform.market.live.tdcc import WeekNoLongerServed
from qrl_platform.market.live.twse import NotPublishedYet
from qrl_platform.market.schema import BadMarketData
from qrl_platform.settings import MarketSourceSettings
from qrl_platform_tests.local_http import LocalHttpServer, Reply, Request

WEEK = dt.date(2024, 3, 8)  # a Friday
HEADER = "資料日期,證券代號,持股分級,人數,股數,占集保庫存數比例%"


def rows_for(data_date: dt.date) -> list[str]:
    day = data_date.strftime("%Y%m%d")
    return [
        f"{day},2330,1,912345,123456789,0.47",
        f"{day},2330,15,1523,22000000000,84.80",
        f"{day},2330,16,0,0,0.00",
        f"{day},2330,17,1234567,25930380458,100.00",
        f"{day},0050,1,345678,45678901,3.21",
        f"{day},0050,17,567890,1423000000,100.00",
    ]


class FakeTdcc(LocalHttpServer):
    """GET /getOD.ashx?id=1-5 → the CSV of `data_date`; `body` overrides the answer entirely."""

    def __init__(self):
        super().__init__()
        self.data_date = WEEK
        self.body: bytes | None = None

    @property
    def requests(self) -> int:
        return len(self.received)

    def answer(self, request: Request) -> Reply:
        if request.path != "/getOD.ashx" or request.query != {"id": "1-5"}:
            return Reply(404, b"not found")
        text = "\r\n".join([HEADER, *rows_for(self.data_date)]) + "\r\n"  # recorded: CRLF
        body = self.body if self.body is not None else "\ufeff".encode() + text.encode()
        return Reply(200, body, content_type="text/csv; charset=utf-8")


@pytest.fixture
def tdcc():
    with FakeTdcc() as server:
        yield server


@pytest.fixture
def make_source(tdcc, tmp_path):
    sources = []

    def make() -> LiveMarketSource:
        settings = MarketSourceSettings(
            source="live", twse_base_url="http://127.0.0.1:9", tpex_base_url="http://127.0.0.1:9",
            demo_seed=7, demo_universe=10, tdcc_base_url=tdcc.base_url,
        )  # fmt: skip
        sources.append(LiveMarketSource(settings, cache_root=str(tmp_path / "raw"), min_interval=0.01))
        return sources[-1]

    yield make
    for source in sources:
        source.close()


def test_the_latest_week_parses_to_exact_values_without_the_adjustment_line(make_source):
    frame = make_source().shareholding_distribution(WEEK)
    assert frame.select("stock_id", "level", "holders", "shares", "pct").rows() == [
        ("0050", 1, 345678, 45678901, 3.21),
        ("0050", 17, 567890, 1423000000, 100.0),
        ("2330", 1, 912345, 123456789, 0.47),
        ("2330", 15, 1523, 22000000000, 84.8),
        ("2330", 17, 1234567, 25930380458, 100.0),
    ]
    assert set(frame["week"]) == {WEEK} and set(frame["published_on"]) == {dt.date(2024, 3, 9)}


def test_an_archived_week_is_served_from_the_cache_even_after_tdcc_moved_on(tdcc, make_source):
    first = make_source().shareholding_distribution(WEEK)
    assert tdcc.requests == 1
    tdcc.data_date = WEEK + dt.timedelta(days=7)
    assert make_source().shareholding_distribution(WEEK).equals(first)  # a new process, same disk cache
    assert tdcc.requests == 1


def test_an_older_week_cannot_be_fetched_and_a_newer_one_is_not_published_yet(tdcc, make_source):
    source = make_source()
    tdcc.data_date = WEEK + dt.timedelta(days=7)
    with pytest.raises(WeekNoLongerServed, match=r"TDCC opendata 1-5 2024-03-08: TDCC serves only its latest week"):
        source.shareholding_distribution(WEEK)
    tdcc.data_date = WEEK - dt.timedelta(days=7)
    with pytest.raises(NotPublishedYet, match=r"TDCC still serves 2024-03-01"):
        source.shareholding_distribution(WEEK)
    tdcc.data_date = WEEK
    assert source.shareholding_distribution(WEEK).height == 5  # neither wrong answer was cached
    assert tdcc.requests == 3


def test_a_week_whose_friday_was_closed_takes_its_last_trading_day(tdcc, make_source):
    fridays = (dt.date(2024, 1, 5) + dt.timedelta(weeks=n) for n in range(52))
    friday = next(day for day in fridays if not is_trading_day(day))
    last_open = next(
        friday - dt.timedelta(days=n) for n in range(1, 7) if is_trading_day(friday - dt.timedelta(days=n))
    )
    tdcc.data_date = last_open
    frame = make_source().shareholding_distribution(friday)
    assert set(frame["week"]) == {friday} and set(frame["published_on"]) == {last_open + dt.timedelta(days=1)}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html><body>maintenance</body></html>", r"TDCC opendata 1-5 2024-03-08: the response body is not CSV"),
        (
            HEADER.replace("人數", "持有人數").encode() + b"\n" + "\n".join(rows_for(WEEK)).encode(),
            r"field '人數' is missing",
        ),
        (HEADER.encode() + b"\n" + rows_for(WEEK)[0].replace("912345", "--").encode(), r"field '人數' is empty"),
        (HEADER.encode() + b"\n" + rows_for(WEEK)[0].replace(",1,", ",18,").encode(), r"field '持股分級' is 18"),
        (HEADER.encode() + b"\n", r"header but no rows"),
    ],
)
def test_an_unexpected_answer_names_the_endpoint_week_and_field_and_is_not_cached(tdcc, make_source, body, message):
    tdcc.body = body
    source = make_source()
    with pytest.raises(BadMarketData, match=message):
        source.shareholding_distribution(WEEK)
    tdcc.body = None
    assert source.shareholding_distribution(WEEK).height == 5
