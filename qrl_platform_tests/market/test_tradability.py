"""Price limits and trading restrictions on hand-built cases (tick rounding, ex-date reference, notices)."""

import datetime as dt

import polars as pl
import pytest

from qrl_platform.market.tradability import TRADABILITY_SCHEMA, tradability

D0, D1, D2 = dt.date(2024, 7, 1), dt.date(2024, 7, 2), dt.date(2024, 7, 3)


def _quotes(rows):
    return pl.DataFrame(
        rows,
        schema={"stock_id": pl.Utf8, "trade_date": pl.Date, "close": pl.Float64, "is_suspended": pl.Boolean},
        orient="row",
    )


def _previous(rows):
    return pl.DataFrame(rows, schema={"stock_id": pl.Utf8, "trade_date": pl.Date, "close": pl.Float64}, orient="row")


NO_ACTIONS = pl.DataFrame(schema={"stock_id": pl.Utf8, "ex_date": pl.Date, "reference_price": pl.Float64})


@pytest.mark.parametrize(
    ("previous", "limit_up", "limit_down"),
    [
        # 100 → 110 / 90: both on the 0.5 tick (100–500) exactly.
        (100.0, 110.0, 90.0),
        # 9.5 → 10.45 (tick 0.05 above 10) / 8.55 (tick 0.01).
        (9.5, 10.45, 8.55),
        # 45.5 → 50.05 lies in the 0.1 band: rounded DOWN to 50.0; 40.95 is on the 0.05 tick already.
        (45.5, 50.0, 40.95),
        # 56 → 61.6 (tick 0.1); 50.4 on the 0.1 tick; 55.5 → 49.95 stays on the 0.05 tick below 50.
        (56.0, 61.6, 50.4),
        (55.5, 61.0, 49.95),
        # 47 → 51.7 (tick 0.1) / 42.3 (tick 0.05, rounded UP to 42.3 exactly).
        (47.0, 51.7, 42.3),
        # 47.3 → 52.03 down to 52.0; 42.57 up to 42.6.
        (47.3, 52.0, 42.6),
        # 123 → 135.3 down to 135.0 (tick 0.5); 110.7 up to 111.0.
        (123.0, 135.0, 111.0),
        # 955 → 1050.5 down to 1050 (tick 5); 859.5 up to 860 (tick 1).
        (955.0, 1050.0, 860.0),
        # 9.99 → 10.989 down to 10.95; 8.991 up to 9.0 (tick 0.01 → 8.991 ceil is 9.00).
        (9.99, 10.95, 9.0),
    ],
)
def test_limits_are_ten_percent_of_the_previous_close_rounded_inwards_to_the_tick(previous, limit_up, limit_down):
    out = tradability(_quotes([("2330", D1, previous, False)]), NO_ACTIONS, _previous([("2330", D0, previous)]))
    row = out.row(0, named=True)
    assert row["reference_price"] == previous
    assert row["limit_up"] == pytest.approx(limit_up, abs=1e-9)
    assert row["limit_down"] == pytest.approx(limit_down, abs=1e-9)
    assert not row["at_limit_up"] and not row["at_limit_down"]


def test_closes_at_the_limits_are_flagged():
    quotes = _quotes([("A", D1, 110.0, False), ("B", D1, 8.55, False), ("C", D1, 109.5, False)])
    previous = _previous([("A", D0, 100.0), ("B", D0, 9.5), ("C", D0, 100.0)])
    out = tradability(quotes, NO_ACTIONS, previous)
    assert out.select("stock_id", "at_limit_up", "at_limit_down").rows() == [
        ("A", True, False),
        ("B", False, True),
        ("C", False, False),
    ]


def test_on_an_ex_date_the_limits_follow_the_exchange_reference_price_not_the_previous_close():
    # Prior close 100, cash dividend 10 → reference 90: limits 99 / 81. Against the previous close a
    # close of 99 would look ordinary; on the ex-date it is locked limit-up.
    actions = pl.DataFrame(
        {
            "stock_id": ["2330"],
            "ex_date": [D1],
            "market": ["TWSE"],
            "kind": ["cash_dividend"],
            "prior_close": [100.0],
            "reference_price": [90.0],
            "cash_per_share": [10.0],
            "stock_per_share": [None],
            "published_on": [D0],
        }
    )
    quotes = _quotes([("2330", D1, 99.0, False), ("2330", D2, 99.0, False)])
    out = tradability(quotes, actions, _previous([("2330", D0, 100.0)]))
    ex_day, next_day = out.rows(named=True)
    assert (ex_day["reference_price"], ex_day["limit_up"], ex_day["limit_down"]) == (90.0, 99.0, 81.0)
    assert ex_day["at_limit_up"]
    # The day after, the reference is the ex-date's own close (taken from the quotes frame itself).
    assert (next_day["reference_price"], next_day["limit_up"], next_day["limit_down"]) == (99.0, 108.5, 89.1)
    assert not next_day["at_limit_up"]


def test_a_capital_reduction_resumption_uses_its_reference_price():
    # Reduction of 50 %: last close 20 before the halt, resumption reference 40 → limits 44 / 36.
    actions = pl.DataFrame(
        {"stock_id": ["6456"], "ex_date": [D2], "kind": ["capital_reduction"], "reference_price": [40.0]}
    )
    quotes = _quotes([("6456", D1, None, True), ("6456", D2, 44.0, False)])
    out = tradability(quotes, actions, _previous([("6456", D0, 20.0)]))
    halted, resumed = out.rows(named=True)
    assert halted["is_suspended"] and not halted["at_limit_up"] and halted["limit_up"] == 22.0
    assert (resumed["limit_up"], resumed["limit_down"], resumed["at_limit_up"]) == (44.0, 36.0, True)


def test_the_previous_close_skips_days_without_a_trade_and_is_unknown_without_history():
    quotes = _quotes([("A", D2, 50.0, False), ("NEW", D2, 50.0, False)])
    previous = _previous([("A", D0, 45.5), ("A", D1, None)])
    a, new = tradability(quotes, NO_ACTIONS, previous).rows(named=True)
    assert a["reference_price"] == 45.5 and a["limit_up"] == 50.0 and a["at_limit_up"]
    assert new["reference_price"] is None and new["limit_up"] is None and not new["at_limit_up"]


def test_suspension_without_the_quotes_flag_is_a_missing_close():
    quotes = pl.DataFrame({"stock_id": ["A", "B"], "trade_date": [D1, D1], "close": [10.0, None]})
    out = tradability(quotes, NO_ACTIONS)
    assert out.get_column("is_suspended").to_list() == [False, True]


def test_etfs_use_the_etf_tick():
    quotes = pl.DataFrame(
        {"stock_id": ["0050", "2330"], "trade_date": [D1, D1], "close": [45.5, 45.5], "is_etf": [True, False]}
    )
    previous = _previous([("0050", D0, 45.5), ("2330", D0, 45.5)])
    etf, stock = tradability(quotes, NO_ACTIONS, previous).rows(named=True)
    assert (etf["limit_up"], etf["limit_down"]) == (50.05, 40.95)
    assert (stock["limit_up"], stock["limit_down"]) == (50.0, 40.95)


def test_notices_mark_disposition_and_full_cash_delivery_within_their_dates():
    notices = pl.DataFrame(
        {
            "stock_id": ["A", "B"],
            "kind": ["disposition", "full_cash_delivery"],
            "start_date": [D1, D0],
            "end_date": [D1, None],
        }
    )
    quotes = _quotes([("A", D0, 10.0, False), ("A", D1, 10.0, False), ("B", D2, 10.0, False), ("C", D1, 1.0, False)])
    out = tradability(quotes, NO_ACTIONS, notices=notices)
    assert out.select("stock_id", "trade_date", "is_disposition", "is_full_cash_delivery").rows() == [
        ("A", D0, False, False),
        ("A", D1, True, False),
        ("B", D2, False, True),
        ("C", D1, False, False),
    ]


def test_bad_input_is_named():
    actions = pl.DataFrame({"stock_id": ["A"], "ex_date": [D1], "kind": ["split"], "reference_price": [0.0]})
    with pytest.raises(ValueError, match=r"stock A on ex_date 2024-07-02 \(split\)"):
        tradability(_quotes([("A", D1, 10.0, False)]), actions)
    notices = pl.DataFrame({"stock_id": ["A"], "kind": ["halt"], "start_date": [D1], "end_date": [D1]})
    with pytest.raises(ValueError, match="unknown value"):
        tradability(_quotes([("A", D1, 10.0, False)]), NO_ACTIONS, notices=notices)


def test_the_tradability_asset_stores_one_row_per_quote_with_the_ex_date_reference_and_demo_notices(qrl_home):
    import os

    import dagster as dg

    from qrl_platform.definitions import RESOURCES
    from qrl_platform.defs.market.assets import daily_quotes
    from qrl_platform.defs.market.tradability import tradability_asset
    from qrl_platform.market.demo import demo_market
    from qrl_platform.market.notices import demo_notices
    from qrl_platform.settings import settings
    from qrl_platform.storage.frames import FrameStore

    def _range(start, end):
        return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}

    assert dg.materialize([daily_quotes], resources=RESOURCES, tags=_range("2024-01-10", "2024-01-17")).success
    store = FrameStore(settings().qrl_home)
    quotes = store.read_range("daily_quotes", "2024-01-10", "2024-01-17")
    # A hand-made ex-date on 2024-01-16 for the first stock that traded on the 15th: reference = 90 % of
    # its previous close (a 10 % dividend).
    stock, previous = quotes.filter(pl.col("trade_date") == dt.date(2024, 1, 15)).select("stock_id", "close").row(0)
    reference = round(previous * 0.9, 2)
    store.write(
        "corporate_actions",
        "2024-01-16",
        pl.DataFrame(
            {
                "stock_id": [stock],
                "ex_date": [dt.date(2024, 1, 16)],
                "market": ["TWSE"],
                "kind": ["cash_dividend"],
                "prior_close": [previous],
                "reference_price": [reference],
                "cash_per_share": [previous - reference],
                "stock_per_share": [None],
                "published_on": [dt.date(2024, 1, 2)],
            },
            schema_overrides={"stock_per_share": pl.Float64},
        ),
    )
    result = dg.materialize(
        [tradability_asset], resources=RESOURCES, tags=_range("2024-01-12", "2024-01-17"), selection=["tradability"]
    )
    assert result.success
    meta = result.asset_materializations_for_node("tradability")[0].metadata
    stored = store.read_range("tradability", "2024-01-12", "2024-01-17")
    in_range = quotes.filter(pl.col("trade_date") >= dt.date(2024, 1, 12))
    assert stored.height == in_range.height == meta["dagster/row_count"].value
    assert stored.schema == TRADABILITY_SCHEMA
    ex_day = stored.filter((pl.col("stock_id") == stock) & (pl.col("trade_date") == dt.date(2024, 1, 16))).row(
        0, named=True
    )
    assert ex_day["reference_price"] == reference
    assert ex_day["at_limit_up"] == (
        ex_day["limit_up"]
        <= in_range.filter((pl.col("stock_id") == stock) & (pl.col("trade_date") == dt.date(2024, 1, 16))).get_column(
            "close"
        )[0]
    )
    # Every other row's reference is its own previous close, read from the stored earlier days.
    previous_closes = quotes.sort("trade_date").with_columns(
        pl.col("close").shift(1).over("stock_id").alias("expected_reference")
    )
    compared = stored.filter(pl.col("stock_id") != stock).join(
        previous_closes.select("stock_id", "trade_date", "expected_reference"), on=["stock_id", "trade_date"]
    )
    traded_before = compared.filter(pl.col("expected_reference").is_not_null())
    assert traded_before.height > 0.9 * compared.height
    assert (traded_before.get_column("reference_price") == traded_before.get_column("expected_reference")).all()
    universe = int(os.environ["QRL_DEMO_UNIVERSE"])
    notices = demo_notices(demo_market(7, universe), dt.date(2024, 1, 12), dt.date(2024, 1, 17))
    expected = {
        (row["stock_id"], day)
        for row in notices.filter(pl.col("kind") == "disposition").iter_rows(named=True)
        for day in stored.get_column("trade_date").unique()
        if row["start_date"] <= day <= row["end_date"]
    }
    flagged = {tuple(r) for r in stored.filter(pl.col("is_disposition")).select("stock_id", "trade_date").rows()}
    assert expected and flagged == {
        pair for pair in expected if pair in {tuple(r) for r in stored.select("stock_id", "trade_date").rows()}
    }
    assert meta["is_disposition_rows"].value == stored.get_column("is_disposition").sum()
    assert meta["disposition_and_full_cash_source"].value.startswith("demo market")
