"""A complete small universe for the fake exchanges: every stock in every daily table, every day, with
prices that move from day to day — enough history for the indicators to pass their quality checks.

fake_exchanges.py serves a fixed handful of rows chosen to exercise the parsers (a stock missing from
margin, a suspended one, an ETF): right for parser tests, but the indicators' blocking checks rightly
reject such a universe (half the stocks without margin rows). `install` replaces each endpoint's stock
rows with one row per stock of `TWSE` / `TPEX`, cloned from a template row of the recorded shape (so the
parsers read them exactly like the originals) with code, name, prices, volume and turnover of the day.
Prices follow a deterministic wave per stock (no state, any date), and turnover is volume × the day's
average price, so the volume-unit check holds. The slower tables (revenue, financials, TDCC) come from
the demo market relabelled to these codes (`periodic_history`), as if ingested earlier.
"""

from __future__ import annotations

import datetime as dt
import math

import polars as pl

from qrl_platform.calendar import previous_trading_days
from qrl_platform.market import schema
from qrl_platform.market.demo import DemoMarket
from qrl_platform_tests.market import fake_exchanges as fx

TWSE = {"1101": "台泥", "2002": "中鋼", "2317": "鴻海", "2330": "台積電"}
TPEX = {"3105": "穩懋", "6488": "環球晶", "8069": "元太"}
CODES = [*TWSE, *TPEX]
BASE_PRICE = {"1101": 30.0, "2002": 20.0, "2317": 200.0, "2330": 600.0, "3105": 150.0, "6488": 450.0, "8069": 250.0}


def _wave(code: str, date: dt.date) -> float:
    phase = int(code) % 17
    t = date.toordinal()
    return 1 + 0.08 * math.sin(t / 9 + phase) + 0.03 * math.sin(t / 2.3 + 2 * phase)


def bar(code: str, date: dt.date) -> dict:
    """The day's OHLC (rounded to 0.05), change vs the previous trading day, volume and turnover."""

    def tick(x: float) -> float:
        return round(round(x / 0.05) * 0.05, 2)

    close = tick(BASE_PRICE[code] * _wave(code, date))
    previous = previous_trading_days(date - dt.timedelta(days=1), 1)[0]
    prev_close = tick(BASE_PRICE[code] * _wave(code, previous))
    open_ = tick((close + prev_close) / 2)
    high = tick(max(open_, close) * 1.01)
    low = tick(min(open_, close) * 0.99)
    volume = int(30_000_000 * (1.5 + math.sin(date.toordinal() / 5 + int(code) % 7)))
    average = (open_ + high + low + close) / 4
    return {
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "change": round(close - prev_close, 2),
        "volume": volume,
        "turnover": round(volume * average),
        "average": average,
    }


def _p(x: float) -> str:
    return f"{x:,.2f}"


def _twse_quote(code: str, date: dt.date) -> list:
    b = bar(code, date)
    sign = fx.RED if b["change"] > 0 else fx.GREEN if b["change"] < 0 else "<p> </p>"
    return [
        code, TWSE[code], f"{b['volume']:,}", "1,234", f"{b['turnover']:,}", _p(b["open"]), _p(b["high"]),
        _p(b["low"]), _p(b["close"]), sign, _p(abs(b["change"])), _p(b["close"]), "10", _p(b["close"]), "10", "15.00",
    ]  # fmt: skip


def _tpex_quote(code: str, date: dt.date) -> list:
    b = bar(code, date)
    change = f"{b['change']:+.2f} " if b["change"] else "0.00 "
    return [
        code, TPEX[code], _p(b["close"]), change, _p(b["open"]), _p(b["high"]), _p(b["low"]), _p(b["average"]),
        f"{b['volume']:,}", f"{b['turnover']:,}", "1,500", _p(b["close"]), "12", _p(b["close"]), "30",
        "424,000,000", _p(b["close"]), _p(b["close"] * 1.1), _p(b["close"] * 0.9),
    ]  # fmt: skip


def _clone(template: list, code: str, name: str) -> list:
    return [code, name, *template[2:]]


def _date_of(payload: dict) -> dt.date:
    return dt.datetime.strptime(payload["date"], "%Y%m%d").date()


def _stock_table(payload: dict, title: str) -> dict:
    return next(t for t in payload["tables"] if title in t.get("title", ""))


def install(exchanges: fx.FakeExchanges) -> None:
    """Serve the universe on every daily endpoint (closed / not-yet-published answers are left as they are)."""
    t86, margin, bwibbu = fx.T86_ROWS[0], fx.MI_MARGN_ROWS[3], fx.BWIBBU_ROWS[2]  # 2330, 2330, 2317
    trade, otc_margin, pe = fx.DAILY_TRADE_ROWS[2], fx.MARGIN_BALANCE_ROWS[0], fx.PE_QRY_ROWS[1]  # 6488, 3105, 6488

    def quotes(payload):
        date = _date_of(payload)
        _stock_table(payload, "每日收盤行情")["data"] = [_twse_quote(c, date) for c in TWSE]

    def flows(payload):
        payload["data"] = [_clone(t86, c, n) for c, n in TWSE.items()]
        payload["total"] = len(payload["data"])

    def margins(payload):
        table = _stock_table(payload, "融資融券彙總")
        table["data"] = [fx.MI_MARGN_ROWS[0]] + [_clone(margin, c, n) for c, n in TWSE.items()]

    def valuations(payload):
        payload["data"] = [_clone(bwibbu, c, n) for c, n in TWSE.items()]
        payload["total"] = len(payload["data"])

    def otc(rows):
        def edit(payload):
            table = payload["tables"][0]
            if not table.get("data"):
                return  # an empty (closed / not yet published) answer stays empty
            date = _date_of(payload)
            table["data"] = [rows(c, n, date) for c, n in TPEX.items()]
            table["totalCount"] = len(table["data"])
            if len(payload["tables"]) > 1 and payload["tables"][1].get("title") == "管理股票":
                payload["tables"][1]["data"] = []
                payload["tables"][1]["totalCount"] = 0

        return edit

    exchanges.mutate(fx.MI_INDEX, quotes)
    exchanges.mutate(fx.T86, flows)
    exchanges.mutate(fx.MI_MARGN, margins)
    exchanges.mutate(fx.BWIBBU_D, valuations)
    exchanges.mutate(fx.DAILY_QUOTES, otc(lambda c, n, d: _tpex_quote(c, d)))
    exchanges.mutate(fx.DAILY_TRADE, otc(lambda c, n, d: _clone(trade, c, n)))
    exchanges.mutate(fx.MARGIN_BALANCE, otc(lambda c, n, d: _clone(otc_margin, c, n)))
    exchanges.mutate(fx.PE_QRY_DATE, otc(lambda c, n, d: _clone(pe, c, n)))


def _relabel(frame: pl.DataFrame, demo_ids: list[str]) -> pl.DataFrame:
    mapping = dict(zip(demo_ids, CODES, strict=True))
    return frame.filter(pl.col("stock_id").is_in(demo_ids)).with_columns(pl.col("stock_id").replace_strict(mapping))


def periodic_history(
    months: list[dt.date], quarters: list[dt.date], fridays: list[dt.date]
) -> dict[str, dict[str, pl.DataFrame]]:
    """Demo revenue, financials and TDCC weeks for the universe's codes: {table: {partition: frame}}."""
    demo = DemoMarket(seed=7, universe_size=40)
    sample = demo.monthly_revenue(months[-1])["stock_id"].unique().sort().to_list()
    quoted = set(demo.fetch_day("daily_quotes", fridays[-1]).frame["stock_id"].to_list())
    demo_ids = [s for s in sample if s in quoted][: len(CODES)]
    out: dict[str, dict[str, pl.DataFrame]] = {"monthly_revenue": {}, "financials": {}, "shareholding_distribution": {}}
    for table, keys, fetch in (
        ("monthly_revenue", months, demo.monthly_revenue),
        ("financials", quarters, demo.financials),
        ("shareholding_distribution", fridays, demo.shareholding_distribution),
    ):
        for key in keys:
            out[table][key.isoformat()] = schema.conform(table, _relabel(fetch(key), demo_ids), context=str(key))
    return out
