"""The deterministic demo market: every raw table, no network, clearly labelled demo data.

All paths (prices, flows, margin, fundamentals) are defined on a fixed weekday grid from `GRID_START`
to `GRID_END` by seeded generators. A process walks the grid once and keeps only checkpoints (each
generator's state and every running sum at the first day of each chunk of 64 grid days); a requested
day recomputes its chunk from its checkpoint with the same operations as one whole-grid computation.
So a date's rows are byte-identical whichever dates were asked for before, memory holds checkpoints
and a few chunks instead of the grid, and a one-year backfill costs one walk plus a few chunks.

Realism where strategies need it: returns share a market and a sector factor; institutional flows and
margin changes correlate with returns; prices respect TWSE tick sizes and the ±10 % daily limit; some
stocks list late, some are ETFs, some are suspended; revenue and quarterly reports appear only on
their (statutory-deadline-bounded) publication dates. Most companies pay a dividend once a year, the
largest quarterly, with ex-dates concentrated in June–September; a few loss makers reduce their capital.
On an ex-date the price path continues from the exchange's reference price, so raw closes drop by the
dividend (and jump on a reduction) exactly as real closes do.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import groupby

import numpy as np
import polars as pl

from qrl_platform.calendar import closing_data_out, day_status, taipei_now, trading_days
from qrl_platform.market import schema
from qrl_platform.market.schema import BadMarketData
from qrl_platform.market.sources import DAILY_TABLES, EVENT_TABLES, PERIODIC_TABLES, DayResult

GRID_START = dt.date(2018, 1, 1)
GRID_END = dt.date(2028, 12, 29)
DEMO_LABEL = "DEMO MARKET — synthetic data, not real quotes"

SECTORS = (
    "Semiconductors",
    "Electronics",
    "Computers",
    "Optoelectronics",
    "Communications",
    "Financials",
    "Shipping",
    "Steel",
    "Plastics",
    "Biotech",
    "Food",
    "Construction",
)


def tick_round(price: np.ndarray) -> np.ndarray:
    """Round to TWSE tick sizes (0.01 below 10, 0.05 below 50, 0.1 below 100, 0.5 below 500, 1 below 1000, else 5)."""
    tick = _TICKS[np.searchsorted(_TICK_BOUNDS, price, side="right")]
    return np.round(np.round(price / tick) * tick, 2)


_TICK_BOUNDS = np.array([10.0, 50.0, 100.0, 500.0, 1000.0])
_TICKS = np.array([0.01, 0.05, 0.1, 0.5, 1.0, 5.0])


@dataclass(frozen=True)
class DemoEvent:
    t: int  # grid index of the ex-date
    stock: int
    kind: str
    prior_close: float
    reference_price: float
    cash_per_share: float | None
    stock_per_share: float | None


@dataclass(frozen=True)
class Universe:
    stock_id: np.ndarray
    name: np.ndarray
    market: np.ndarray
    sector: np.ndarray  # index into SECTORS
    is_etf: np.ndarray
    listed_from: np.ndarray  # grid index of the first trading day
    shares_outstanding: np.ndarray  # shares


class DemoMarket:
    """A seeded synthetic market; `fetch_day` matches the live source's interface."""

    name = "demo"
    provides = frozenset((*DAILY_TABLES, *PERIODIC_TABLES, *EVENT_TABLES))

    def __init__(self, seed: int = 7, universe_size: int = 1800):
        if universe_size < 10:
            raise ValueError(f"demo universe_size must be at least 10, got {universe_size}")
        self.seed = seed
        self.size = universe_size
        self.days = np.array([d for d in _date_range(GRID_START, GRID_END) if d.weekday() < 5], dtype="datetime64[D]")

    # ---------------------------------------------------------------- grid and universe
    def _rng(self, stream: str) -> np.random.Generator:
        # One independent stream per table, so adding a table never changes another table's bytes.
        return np.random.default_rng([self.seed, self.size, _stable_hash(stream)])

    def _index(self, date: dt.date) -> int:
        if not GRID_START <= date <= GRID_END or date.weekday() >= 5:
            raise BadMarketData(
                f"demo market: date {date} is outside the demo range {GRID_START}..{GRID_END} or a weekend"
            )
        return int(np.searchsorted(self.days, np.datetime64(date, "D")))

    @cached_property
    def universe(self) -> Universe:
        rng = self._rng("universe")
        n = self.size
        n_etf = max(1, n // 40)
        n_twse = int(n * 0.55)
        market = np.where(np.arange(n) < n_twse, "TWSE", "TPEx")
        is_etf = np.zeros(n, dtype=bool)
        is_etf[:n_etf] = True  # ETFs trade on TWSE here
        ids = []
        for i in range(n):
            if is_etf[i]:
                ids.append(f"00{50 + i:02d}" if 50 + i < 100 else f"00{600 + i}")
            elif market[i] == "TWSE":
                ids.append(str(1101 + i * 3))
            else:
                ids.append(str(3100 + (i - n_twse) * 3))
        sector = rng.integers(0, len(SECTORS), n)
        listed_from = np.where(rng.random(n) < 0.06, rng.integers(0, len(self.days) // 2, n), 0)
        listed_from[is_etf] = 0
        names = np.array(
            [f"Demo ETF {i}" if is_etf[i] else f"Demo {SECTORS[sector[i]]} {i}" for i in range(n)], dtype=object
        )
        shares = (rng.lognormal(np.log(3e8), 1.0, n)).astype(np.int64) // 1000 * 1000
        return Universe(np.array(ids, dtype=object), names, market, sector, is_etf, listed_from, shares)

    # ---------------------------------------------------------------- the grid, chunk by chunk
    # Every day × stock path is defined over the whole grid (cumulative sums from GRID_START, a
    # volatility over all days), but only checkpoints are kept: the generators' states and the running
    # sums at the first day of each chunk of `_CHUNK` grid days. A requested day recomputes its chunk
    # from there, with the same operations in the same order as one whole-grid computation, so a day's
    # values are the same bytes whichever days were asked for, and memory does not grow with the grid.

    def _chunk_rows(self, k: int) -> np.ndarray:
        return np.arange(k * _CHUNK, min((k + 1) * _CHUNK, len(self.days)))

    @cached_property
    def _chunk_count(self) -> int:
        return -(-len(self.days) // _CHUNK)

    @cached_property
    def _return_model(self) -> dict:
        """Daily returns, days × stocks: market + sector + idiosyncratic, clipped to the ±10 % limit."""
        rng = self._rng("returns")
        n_days, n = len(self.days), self.size
        u = self.universe
        market = rng.normal(0.0003, 0.011, n_days)
        sectors = rng.normal(0.0, 0.008, (n_days, len(SECTORS)))
        beta = rng.uniform(0.6, 1.4, n)
        vol = rng.uniform(0.008, 0.03, n)
        vol[u.is_etf] = 0.004
        drift = rng.normal(0.0002, 0.0006, n)
        idio = _ChunkedDraw(rng, n_days, n, lambda r, shape: r.standard_normal(shape))
        return {"market": market, "sectors": sectors, "beta": beta, "vol": vol, "drift": drift, "idio": idio}

    def _returns_chunk(self, k: int) -> np.ndarray:
        m, rows = self._return_model, self._chunk_rows(k)
        idio = m["idio"].chunk(k, len(rows)) * m["vol"]
        returns = m["market"][rows, None] * m["beta"] + m["sectors"][rows][:, self.universe.sector] + idio + m["drift"]
        return np.clip(returns, -0.095, 0.095)

    @cached_property
    def _return_std(self) -> np.ndarray:
        """Each stock's standard deviation of returns over the whole grid (1 × stocks), summed day after
        day in grid order as `np.std(returns, axis=0)` does."""
        total = np.zeros((1, self.size))
        for k in range(self._chunk_count):
            total = np.sum(np.vstack([total, self._returns_chunk(k)]), axis=0, keepdims=True)
        mean = total / len(self.days)
        squares = np.zeros((1, self.size))
        for k in range(self._chunk_count):
            deviation = self._returns_chunk(k) - mean
            squares = np.sum(np.vstack([squares, deviation * deviation]), axis=0, keepdims=True)
        return np.sqrt(squares / len(self.days))

    @cached_property
    def _suspended(self) -> np.ndarray:
        rng = self._rng("suspensions")
        n_days, n = len(self.days), self.size
        suspended = rng.random((n_days, n)) < 0.002
        # A few stocks with multi-week suspensions (restructurings), never ETFs.
        for stock in rng.choice(np.flatnonzero(~self.universe.is_etf), size=max(1, n // 200), replace=False):
            start = rng.integers(0, n_days - 30)
            suspended[start : start + rng.integers(5, 30), stock] = True
        idx = np.arange(n_days)[:, None]
        suspended |= idx < self.universe.listed_from[None, :]  # not yet listed: no rows at all (filtered later)
        return suspended

    @cached_property
    def _price_model(self) -> dict:
        """The price path's draws, its corporate actions and the running log-return sum at each chunk."""
        rng = self._rng("prices")
        n_days, n = len(self.days), self.size
        start_price = np.exp(rng.uniform(np.log(12), np.log(600), n))
        # close_raw = start_price · exp(cumulative log return); only each chunk's starting sum is kept, and
        # the raw close the day before each scheduled corporate action (its prior close).
        schedule = self._event_schedule
        event_day = np.array([e[0] for e in schedule], dtype=np.int64)
        event_stock = np.array([e[1] for e in schedule], dtype=np.int64)
        prior_raw = np.full(len(schedule), np.nan)
        log_sums, carry = [], np.zeros((1, n))
        for k in range(self._chunk_count):
            rows = self._chunk_rows(k)
            log_sums.append(carry)
            log_path = np.cumsum(np.vstack([carry, np.log1p(self._returns_chunk(k))]), axis=0)[1:]
            close_raw = start_price * np.exp(log_path)
            wanted = (event_day - 1 >= rows[0]) & (event_day - 1 <= rows[-1])
            prior_raw[wanted] = close_raw[event_day[wanted] - 1 - rows[0], event_stock[wanted]]
            carry = log_path[-1:].copy()  # a copy: a view would keep the whole chunk alive
        events = self._price_events(prior_raw)
        # Corporate actions rebase the path: from an ex-date on, every close is scaled by the event's
        # reference price / prior close (a dividend drops the price, a capital reduction lifts it).
        ratio: dict[tuple[int, int], float] = {}
        reference: dict[tuple[int, int], float] = {}
        for event in events:
            ratio[event.t, event.stock] = event.reference_price / event.prior_close
            reference[event.t, event.stock] = event.reference_price
        ratio_cells, reference_cells = _Sparse.of(ratio), _Sparse.of(reference)
        basis_starts, basis = [], np.ones((1, n))
        for k in range(self._chunk_count):
            basis_starts.append(basis)
            basis = np.cumprod(np.vstack([basis, self._sparse_chunk(k, ratio_cells, 1.0)]), axis=0)[-1:].copy()
        return {
            "start_price": start_price,
            "log_sums": log_sums,
            "basis_starts": basis_starts,
            "events": events,
            "ratio": ratio_cells,
            "reference": reference_cells,
            "gap": _ChunkedDraw(rng, n_days, n, lambda r, shape: r.normal(0, 0.004, shape)),
            "wick_hi": _ChunkedDraw(rng, n_days, n, lambda r, shape: np.abs(r.normal(0, 0.006, shape))),
            "wick_lo": _ChunkedDraw(rng, n_days, n, lambda r, shape: np.abs(r.normal(0, 0.006, shape))),
            "base_volume": np.exp(rng.uniform(np.log(2e5), np.log(3e7), n)),
            "activity": _ChunkedDraw(rng, n_days, n, lambda r, shape: np.exp(r.normal(0, 0.35, shape))),
            "trade_size": rng.integers(1500, 8000, n),
        }

    def _sparse_chunk(self, k: int, values: _Sparse, fill: float) -> np.ndarray:
        """Chunk k of a days × stocks grid that is `fill` except at the cells of `values`."""
        rows = self._chunk_rows(k)
        grid = np.full((len(rows), self.size), fill)
        first, end = np.searchsorted(values.day, [rows[0], rows[-1] + 1])
        grid[values.day[first:end] - rows[0], values.stock[first:end]] = values.value[first:end]
        return grid

    def _close_chunk(self, k: int) -> np.ndarray:
        """Closes of chunk k (tick-rounded, rebased by corporate actions, floored at 1 TWD)."""
        cached = self._closes.get(k)
        if cached is None:
            p = self._price_model
            log_path = np.cumsum(np.vstack([p["log_sums"][k], np.log1p(self._returns_chunk(k))]), axis=0)[1:]
            close_raw = p["start_price"] * np.exp(log_path)
            basis = np.cumprod(np.vstack([p["basis_starts"][k], self._sparse_chunk(k, p["ratio"], 1.0)]), axis=0)[1:]
            # Real listed shares rarely trade below 1 TWD for long (they get delisted); a floor keeps the
            # decade-long demo grid free of zero prices (and so of infinite ratios).
            cached = tick_round(np.maximum(close_raw * basis, 1.0))
            _remember(self._closes, k, cached, 8)
        return cached

    @cached_property
    def _closes(self) -> dict[int, np.ndarray]:
        return {}

    @cached_property
    def _chunks(self) -> dict[int, dict[str, np.ndarray]]:
        return {}

    @cached_property
    def _chunk_starts(self) -> list[dict[str, np.ndarray]]:
        """The running sums at the first day of every chunk, from one pass over the grid."""
        starts, carry = [], self._first_carry()
        for k in range(self._chunk_count):
            starts.append(carry)
            _, carry = self._compute_chunk(k, carry, carry_only=True)
        return starts

    def _first_carry(self) -> dict[str, np.ndarray]:
        n = self.size
        return {
            "previous_close": self._close_chunk(0)[:1].copy(),  # day 0's reference price is its own close
            "close_sum": np.zeros((1, n)),
            "z_sums": np.zeros((6, n)),  # the running z-return sums of the 5 days before the chunk and its first
            "margin_log": np.zeros((1, n)),
            "short_log": np.zeros((1, n)),
            "foreign_sum": np.zeros(n, dtype=np.int64),
        }

    def _chunk(self, k: int) -> dict[str, np.ndarray]:
        cached = self._chunks.get(k)
        if cached is None:
            cached, _ = self._compute_chunk(k, self._chunk_starts[k])
            _remember(self._chunks, k, cached, 2)
        return cached

    def _day(self, t: int) -> dict[str, np.ndarray]:
        """Every daily path's row on grid day t (stocks in universe order)."""
        chunk = self._chunk(t // _CHUNK)
        return {name: values[t % _CHUNK] for name, values in chunk.items()}

    def _compute_chunk(
        self, k: int, carry: dict[str, np.ndarray], *, carry_only: bool = False
    ) -> tuple[dict[str, np.ndarray], dict]:
        """Every daily path over chunk k from the running sums at its first day; returns the paths (none
        when `carry_only`: the walk that records the checkpoints) and the running sums at the next
        chunk's first day."""
        p, rows = self._price_model, self._chunk_rows(k)
        returns = self._returns_chunk(k)
        close = self._close_chunk(k)
        activity = p["activity"].chunk(k, len(rows)) * (1 + 25 * np.abs(returns))
        volume = (p["base_volume"] * activity / 1000).astype(np.int64) * 1000  # whole lots, in shares
        close_sums = np.cumsum(np.vstack([carry["close_sum"], close]), axis=0)
        flows, z_sums = self._flows_chunk(k, returns, volume, carry["z_sums"], carry_only)
        margin, margin_log, short_log = self._margin_chunk(
            k, returns, carry["margin_log"], carry["short_log"], carry_only
        )
        # Copies: a view would keep its whole chunk alive in the checkpoints.
        next_carry = {
            "previous_close": close[-1:].copy(),
            "close_sum": close_sums[-1:].copy(),
            "z_sums": z_sums.copy(),
            "margin_log": margin_log.copy(),
            "short_log": short_log.copy(),
            "foreign_sum": carry["foreign_sum"] + flows["foreign"].sum(axis=0),
        }
        if carry_only:
            return {}, next_carry
        # The day's reference price: the previous close, or the exchange's reference price on an ex-date.
        reference = self._sparse_chunk(k, p["reference"], np.nan)
        prev = np.where(np.isnan(reference), np.vstack([carry["previous_close"], close[:-1]]), reference)
        gap = p["gap"].chunk(k, len(rows))
        open_ = tick_round(np.clip(prev * (1 + gap), prev * 0.905, prev * 1.095))
        wick_hi, wick_lo = p["wick_hi"].chunk(k, len(rows)), p["wick_lo"].chunk(k, len(rows))
        high = tick_round(np.minimum(np.maximum(open_, close) * (1 + wick_hi), prev * 1.1))
        low = tick_round(np.maximum(np.minimum(open_, close) * (1 - wick_lo), prev * 0.9))
        high = np.maximum(high, np.maximum(open_, close))
        low = np.minimum(low, np.minimum(open_, close))
        trades = np.maximum(1, volume // p["trade_size"]).astype(np.int64)
        paths = {
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "reference": prev,
            "volume": volume,
            "trades": trades,
        }
        paths.update(flows)
        paths.update(margin)
        return paths, next_carry

    @cached_property
    def _flow_model(self) -> dict[str, _ChunkedDraw]:
        rng = self._rng("flows")
        n_days, n = len(self.days), self.size
        draws = {}
        for name, draw in (
            ("foreign", lambda r, shape: r.standard_normal(shape)),
            ("trust", lambda r, shape: r.standard_normal(shape)),
            ("trust_active", lambda r, shape: r.random(shape)),
            ("foreign_dealer", lambda r, shape: r.standard_normal(shape)),
            ("dealer", lambda r, shape: r.standard_normal(shape)),
            ("gross", lambda r, shape: r.uniform(0.05, 0.3, shape)),
        ):
            draws[name] = _ChunkedDraw(rng, n_days, n, draw)
        return draws

    def _flows_chunk(self, k: int, r: np.ndarray, volume: np.ndarray, z_before: np.ndarray, foreign_only: bool):
        """Institutional net flows (shares): foreign flows lead and follow returns, trusts chase momentum."""
        draws, rows = self._flow_model, self._chunk_rows(k)
        vol = volume.astype(float)
        z = r / (self._return_std + 1e-12)
        # Mean z-return of the previous five days (trusts react to momentum, not to today's move):
        # sums[j] is the running sum of z before grid day rows[0] - 5 + j.
        sums = np.vstack([z_before[:-1], np.cumsum(np.vstack([z_before[-1:], z]), axis=0)])
        momentum = (sums[5:-1] - sums[:-6]) / 5
        momentum[rows < 5] = 0.0

        def draw(name: str) -> np.ndarray:
            return draws[name].chunk(k, len(rows))

        def lots(x: np.ndarray) -> np.ndarray:
            return (np.round(x / 1000) * 1000).astype(np.int64)

        foreign = vol * (0.06 * z + 0.05 * draw("foreign"))
        if foreign_only:  # all the checkpoints need
            return {"foreign": lots(foreign)}, sums[-6:]
        trust = vol * (0.02 * momentum + 0.015 * draw("trust")) * (draw("trust_active") < 0.4)
        foreign_dealer = vol * 0.002 * draw("foreign_dealer")
        dealer = vol * (0.01 * z + 0.02 * draw("dealer"))
        gross = vol * draw("gross")

        flows = {
            "foreign": lots(foreign),
            "trust": lots(trust),
            "foreign_dealer": lots(foreign_dealer),
            "dealer": lots(dealer),
            "gross": lots(gross),
        }
        return flows, sums[-6:]

    @cached_property
    def _margin_model(self) -> dict:
        """Margin and short balances in lots: retail margin chases returns, shorts lean against them."""
        rng = self._rng("margin")
        n_days, n = len(self.days), self.size
        free_float_lots = self.universe.shares_outstanding / 1000
        start = free_float_lots * rng.uniform(0.002, 0.04, n)
        margin_noise = _ChunkedDraw(rng, n_days, n, lambda r, shape: r.normal(0, 0.02, shape))
        short_start = start * rng.uniform(0.02, 0.4, n)
        short_noise = _ChunkedDraw(rng, n_days, n, lambda r, shape: r.normal(0, 0.05, shape))
        return {
            "start": start,
            "short_start": short_start,
            "margin_noise": margin_noise,
            "short_noise": short_noise,
            "limit": (free_float_lots * 0.25).astype(np.int64),
            "churn": _ChunkedDraw(rng, n_days, n, lambda r, shape: r.uniform(0.005, 0.03, shape)),
            "offset": _ChunkedDraw(rng, n_days, n, lambda r, shape: r.poisson(3, shape).astype(np.int64)),
        }

    def _margin_chunk(
        self, k: int, r: np.ndarray, margin_before: np.ndarray, short_before: np.ndarray, sums_only: bool
    ):
        m, rows = self._margin_model, self._chunk_rows(k)
        margin_log = np.cumsum(np.vstack([margin_before, 0.8 * r + m["margin_noise"].chunk(k, len(rows))]), axis=0)[1:]
        short_log = np.cumsum(np.vstack([short_before, -0.5 * r + m["short_noise"].chunk(k, len(rows))]), axis=0)[1:]
        if sums_only:
            return {}, margin_log[-1:], short_log[-1:]
        margin = m["start"] * np.exp(margin_log)
        short = m["short_start"] * np.exp(short_log)
        margin[:, self.universe.is_etf] *= 0.2
        margin = np.minimum(margin, m["limit"] * 0.95)
        short = np.minimum(short, m["limit"] * 0.5)
        paths = {
            "margin": margin.astype(np.int64),
            "short": short.astype(np.int64),
            "churn": m["churn"].chunk(k, len(rows)),
            "offset": m["offset"].chunk(k, len(rows)),
        }
        return paths, margin_log[-1:], short_log[-1:]

    # ---------------------------------------------------------------- corporate actions
    @cached_property
    def _dividend_policy(self) -> dict[str, np.ndarray]:
        """Who pays what: most profitable companies annually, the largest quarterly, some in shares too."""
        rng = self._rng("corporate_actions")
        u, n = self.universe, self.size
        profitable = self._fundamental_base["earnings_sign"] > 0
        payer = ~u.is_etf & profitable & (rng.random(n) < 0.85)
        large = u.shares_outstanding >= np.quantile(u.shares_outstanding[~u.is_etf], 0.95)
        return {
            "payer": payer,
            "quarterly": payer & large,
            "cash_yield": rng.uniform(0.01, 0.08, n),
            "stock_ratio": np.where(rng.random(n) < 0.12, np.round(rng.uniform(0.01, 0.15, n), 3), 0.0),
            "stock_only": rng.random(n) < 0.2,  # of those paying in shares, some pay no cash at all
            "annual_day": rng.integers(0, 365, n),
            "reducer": rng.random(n),
        }

    def _price_events(self, prior_raw: np.ndarray) -> list[DemoEvent]:
        """Every event on the grid with its prior close and reference price, in the order they happen per
        stock (a prior close already reflects the stock's earlier events). `prior_raw`: the raw close the
        day before each event of `_event_schedule`."""
        schedule = list(zip(self._event_schedule, prior_raw, strict=True))
        events: list[DemoEvent] = []
        for stock, stock_events in groupby(schedule, key=lambda e: e[0][1]):
            basis = 1.0
            for (t, _, kind, cash_yield, stock_ratio, reduction), raw in stock_events:
                prior_close = float(tick_round(np.array([max(raw * basis, 1.0)]))[0])
                if kind == "capital_reduction":
                    cash = None
                    reference_price = prior_close / (1 - reduction)  # old shares / new shares
                else:
                    cash = round(prior_close * cash_yield, 2) if cash_yield else None
                    reference_price = (prior_close - (cash or 0.0)) / (1 + stock_ratio)
                reference_price = float(tick_round(np.array([reference_price]))[0])
                events.append(DemoEvent(t, stock, kind, prior_close, reference_price, cash, stock_ratio or None))
                basis = basis * (reference_price / prior_close)
        return events

    @cached_property
    def _event_schedule(self) -> list[tuple[int, int, str, float, float, float]]:
        """(grid day, stock, kind, cash yield, stock per share, share reduction) sorted by stock and day."""
        policy, u = self._dividend_policy, self.universe
        rng = self._rng("corporate_action_dates")
        open_days = {np.datetime64(d, "D") for d in trading_days(GRID_START, GRID_END)}
        is_open = np.array([d in open_days for d in self.days])
        open_index = np.flatnonzero(is_open)

        def ex_day(date: dt.date) -> int:
            """The first open grid day on or after `date` (an ex-date is a trading day)."""
            t = int(np.searchsorted(self.days, np.datetime64(date, "D")))
            return int(open_index[np.searchsorted(open_index, t)]) if t <= open_index[-1] else -1

        def usable(t: int, stock: int) -> bool:
            # Listed, trading on the day and the day before (the prior close is a real close).
            return t > u.listed_from[stock] + 1 and not self._suspended[t - 1 : t + 1, stock].any()

        schedule = []
        for year in range(GRID_START.year, GRID_END.year + 1):
            jitter = rng.integers(-10, 11, self.size)
            off_season = rng.random(self.size) < 0.12
            for stock in np.flatnonzero(policy["payer"]):
                if policy["quarterly"][stock]:
                    # Quarterly payers (like 2330) go ex in the middle of Mar, Jun, Sep and Dec.
                    dates = [
                        dt.date(year, month, 15) + dt.timedelta(days=int(jitter[stock])) for month in (3, 6, 9, 12)
                    ]
                    yields = [policy["cash_yield"][stock] / 4] * 4
                    ratios = [0.0] * 4
                else:
                    # Annual payers: mostly mid-June to September, after the AGM season; some in Oct–Nov.
                    start, span = (dt.date(year, 10, 1), 60) if off_season[stock] else (dt.date(year, 6, 15), 105)
                    dates = [start + dt.timedelta(days=int(policy["annual_day"][stock] % span + jitter[stock] % 5))]
                    ratio = policy["stock_ratio"][stock]
                    yields = [0.0 if ratio and policy["stock_only"][stock] else policy["cash_yield"][stock]]
                    ratios = [ratio]
                for date, cash, ratio in zip(dates, yields, ratios, strict=True):
                    t = ex_day(date) if GRID_START <= date <= GRID_END else -1
                    if t < 1 or not usable(t, stock):
                        continue
                    kind = "cash_and_stock" if cash and ratio else "stock_dividend" if ratio else "cash_dividend"
                    schedule.append((t, int(stock), kind, float(cash), float(ratio), 0.0))
        # A few loss makers reduce their capital to write off losses (20–80 % of the shares cancelled).
        losers = np.flatnonzero(~u.is_etf & (self._fundamental_base["earnings_sign"] < 0))
        for stock in losers[np.argsort(policy["reducer"][losers])][: max(1, self.size // 150)]:
            t = int(open_index[rng.integers(len(open_index) // 10, len(open_index))])
            if usable(t, stock):
                schedule.append(
                    (t, int(stock), "capital_reduction", 0.0, 0.0, float(np.round(rng.uniform(0.2, 0.8), 2)))
                )
        return sorted(schedule, key=lambda e: (e[1], e[0]))

    def corporate_actions(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Events with an ex-date in start..end; published the trading day before the ex-date (the exchange
        computes the reference price from that day's close)."""
        if start > end:
            raise BadMarketData(f"corporate_actions: start {start} is after end {end}")
        if start < GRID_START or end > GRID_END:
            raise BadMarketData(f"demo market: {start}..{end} is outside the demo range {GRID_START}..{GRID_END}")
        u = self.universe
        first, last = np.datetime64(start, "D"), np.datetime64(end, "D")
        chosen = [e for e in self._price_model["events"] if first <= self.days[e.t] <= last]
        frame = pl.DataFrame(
            {
                "stock_id": [u.stock_id[e.stock] for e in chosen],
                "ex_date": [self.days[e.t].item() for e in chosen],
                "market": [str(u.market[e.stock]) for e in chosen],
                "kind": [e.kind for e in chosen],
                "prior_close": [e.prior_close for e in chosen],
                "reference_price": [e.reference_price for e in chosen],
                "cash_per_share": [e.cash_per_share for e in chosen],
                "stock_per_share": [e.stock_per_share for e in chosen],
                "published_on": [self._previous_open_day(e.t) for e in chosen],
            },
            schema=schema.CORPORATE_ACTIONS,
        )
        return schema.conform("corporate_actions", frame, context=f"{start}..{end}").sort("ex_date", "stock_id")

    def _previous_open_day(self, t: int) -> dt.date:
        day = self.days[t].item() - dt.timedelta(days=1)
        while not day_status(day).is_open:
            day -= dt.timedelta(days=1)
        return day

    @cached_property
    def _dividend_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """(sort keys stock × (days + 1) + grid day, running cash-dividend sum per share of the stock up
        to and including that day), over the days with a cash dividend, added in grid-day order."""
        paid: dict[tuple[int, int], float] = {}
        for event in self._price_model["events"]:
            paid[event.stock, event.t] = paid.get((event.stock, event.t), 0.0) + (event.cash_per_share or 0.0)
        keys, sums = [], []
        for (stock, t), cash in sorted(paid.items()):
            running = sums[-1] if keys and keys[-1] // (len(self.days) + 1) == stock else 0.0
            keys.append(stock * (len(self.days) + 1) + t)
            sums.append(running + cash)
        return np.array(keys, dtype=np.int64), np.array(sums)

    def _dividends_before(self, row: int) -> np.ndarray:
        """Cash dividends per share with an ex-date before grid day `row`, per stock (running sums)."""
        keys, sums = self._dividend_sums
        stocks = np.arange(self.size, dtype=np.int64)
        last = np.searchsorted(keys, stocks * (len(self.days) + 1) + row) - 1
        found = (last >= 0) & (keys[np.maximum(last, 0)] // (len(self.days) + 1) == stocks) if len(keys) else last >= 0
        return np.where(found, sums[np.maximum(last, 0)] if len(keys) else 0.0, 0.0)

    def _trailing_cash_dividends(self, t: int) -> np.ndarray:
        """Cash dividends per share with an ex-date in the last 250 grid days (about a year) up to day t."""
        return self._dividends_before(t + 1) - self._dividends_before(max(t + 1 - 250, 0))

    # ---------------------------------------------------------------- daily tables
    def fetch_day(self, table: str, date: dt.date) -> DayResult:
        if table not in DAILY_TABLES:
            raise ValueError(f"{table} is not a daily table; daily tables are {DAILY_TABLES}")
        status = day_status(date)
        details = {"source": "demo", "seed": self.seed, "universe": self.size, "label": DEMO_LABEL}
        if not status.is_open:
            return DayResult(table, date, schema.empty(table), closed=True, reason=status.reason, details=details)
        t = self._index(date)
        listed = np.flatnonzero(t >= self.universe.listed_from)
        frame = getattr(self, f"_{table}")(t, listed, date)
        return DayResult(table, date, schema.conform(table, frame, context=str(date)), details=details)

    def has_data(self, date: dt.date) -> bool:
        now = taipei_now()
        if date > now.date() or (date == now.date() and not closing_data_out(now)):
            return False
        return day_status(date).is_open

    def _daily_quotes(self, t: int, listed: np.ndarray, date: dt.date) -> pl.DataFrame:
        u, p = self.universe, self._day(t)
        suspended = self._suspended[t, listed]
        traded = ~suspended

        def price(name: str) -> np.ndarray:
            values = p[name][listed].astype(float)
            return np.where(traded, values, np.nan)

        close = price("close")
        # TWSE reports the change against the day's reference price (the ex-date's after a corporate action).
        prev_close = p["reference"][listed]
        volume = np.where(traded, p["volume"][listed], 0)
        return pl.DataFrame(
            {
                "stock_id": u.stock_id[listed],
                "trade_date": [date] * len(listed),
                "market": u.market[listed],
                "name": u.name[listed],
                "open": price("open"),
                "high": price("high"),
                "low": price("low"),
                "close": close,
                "volume": volume,
                "turnover": np.where(traded, np.round(volume * np.nan_to_num(close)), 0).astype(np.int64),
                "trades": np.where(traded, p["trades"][listed], 0),
                "change": np.round(close - prev_close, 2),
                "is_etf": u.is_etf[listed],
                "is_suspended": suspended,
            },
            nan_to_null=True,
        )

    def _institutional_flows(self, t: int, listed: np.ndarray, date: dt.date) -> pl.DataFrame:
        f = self._day(t)
        traded = ~self._suspended[t, listed]
        columns: dict[str, object] = {"stock_id": self.universe.stock_id[listed], "trade_date": [date] * len(listed)}
        gross = f["gross"][listed]
        total = np.zeros(len(listed), dtype=np.int64)
        for who, share in (("foreign", 1.0), ("foreign_dealer", 0.05), ("trust", 0.2), ("dealer", 0.3)):
            net = np.where(traded, f[who][listed], 0)
            side = np.where(traded, (gross * share).astype(np.int64) // 1000 * 1000, 0)
            columns[f"{who}_buy"] = side + np.maximum(net, 0)
            columns[f"{who}_sell"] = side + np.maximum(-net, 0)
            columns[f"{who}_net"] = net
            total += net
        columns["total_net"] = total
        return pl.DataFrame(columns)

    def _margin_balances(self, t: int, listed: np.ndarray, date: dt.date) -> pl.DataFrame:
        m, limit = self._day(t), self._margin_model["limit"]
        before = self._day(t - 1) if t > 0 else m
        columns: dict[str, object] = {"stock_id": self.universe.stock_id[listed], "trade_date": [date] * len(listed)}
        for side, buy_name, sell_name, repay_name in (
            ("margin", "margin_buy", "margin_sell", "margin_cash_repay"),
            ("short", "short_sell", "short_cover", "short_stock_repay"),
        ):
            balance = m[side][listed]
            prev = before[side][listed]
            delta = balance - prev
            churn = (balance * m["churn"][listed]).astype(np.int64)
            columns[buy_name] = np.maximum(delta, 0) + churn  # opening side
            columns[sell_name] = np.maximum(-delta, 0) + churn  # closing side
            columns[repay_name] = np.zeros(len(listed), dtype=np.int64)
            columns[f"{side}_prev_balance"] = prev
            columns[f"{side}_balance"] = balance
            columns[f"{side}_limit"] = limit[listed]
        columns["offset"] = np.minimum(m["offset"][listed], columns["margin_balance"])
        return pl.DataFrame(columns)

    def _close_sum(self, j: int) -> np.ndarray:
        """The sum of every close of grid days 0..j-1, per stock, added in grid-day order."""
        k = min(j // _CHUNK, self._chunk_count - 1)
        start = self._chunk_starts[k]["close_sum"]
        if j == k * _CHUNK:
            return start[0]
        return np.cumsum(np.vstack([start, self._close_chunk(k)[: j - k * _CHUNK]]), axis=0)[-1]

    def _fair_value(self, t: int) -> np.ndarray:
        """A slow (120-day mean) price path on grid day t; earnings and book value follow it, so valuation
        ratios stay realistic however far the price wanders over the decade-long grid."""
        window = min(t + 1, 120)
        return (self._close_sum(t + 1) - self._close_sum(t + 1 - window)) / window

    def _eps_and_book(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Trailing annual EPS and book value per share on grid day `t` (all stocks)."""
        f = self._fundamental_base
        fair = self._fair_value(t)
        eps = fair / f["base_pe"] * f["earnings_sign"] * (1 + 0.15 * np.sin(t / 250 + f["phase"]))
        return eps, fair / f["base_pb"]

    def _valuations(self, t: int, listed: np.ndarray, date: dt.date) -> pl.DataFrame:
        close = self._close_chunk(t // _CHUNK)[t % _CHUNK][listed]
        eps, book = (values[listed] for values in self._eps_and_book(t))
        pe = np.where(eps > 0, np.round(close / np.where(eps > 0, eps, 1), 2), np.nan)
        # The exchange's yield: the last year's cash dividends over today's close.
        dividend_yield = np.round(self._trailing_cash_dividends(t)[listed] / close * 100, 2)
        etf = self.universe.is_etf[listed]
        return pl.DataFrame(
            {
                "stock_id": self.universe.stock_id[listed],
                "trade_date": [date] * len(listed),
                "pe": np.where(etf, np.nan, pe),
                "pb": np.where(etf, np.nan, np.round(close / book, 2)),
                "dividend_yield": dividend_yield,
            },
            nan_to_null=True,
        )

    # ---------------------------------------------------------------- slower cadences
    @cached_property
    def _fundamental_base(self) -> dict[str, np.ndarray]:
        rng = self._rng("fundamentals")
        n = self.size
        return {
            "base_pe": rng.uniform(8, 40, n),
            "base_pb": rng.uniform(0.7, 4.0, n),
            "earnings_sign": np.where(rng.random(n) < 0.1, -0.5, 1.0),  # one in ten companies loses money
            "payout": rng.uniform(0.2, 0.9, n),
            "phase": rng.uniform(0, 2 * np.pi, n),
            "monthly_revenue": rng.lognormal(np.log(4e5), 1.2, n),  # thousand TWD
            "growth": rng.normal(0.08, 0.12, n),
            "seasonality": rng.uniform(0.0, 0.15, n),
        }

    def monthly_revenue(self, month: dt.date) -> pl.DataFrame:
        """Revenue for the calendar month starting at `month`; published by the 10th of the next month."""
        month = month.replace(day=1)
        months_since = (month.year - GRID_START.year) * 12 + month.month - GRID_START.month
        if months_since < 0 or month > GRID_END:
            raise BadMarketData(f"demo market: month {month:%Y-%m} is outside the demo range")
        f = self._fundamental_base
        rng = np.random.default_rng([self.seed, self.size, _stable_hash("revenue"), months_since])
        listed = self._listed_by(_first_weekday(month))
        years = months_since / 12
        level = f["monthly_revenue"] * (1 + f["growth"]) ** years
        season = 1 + f["seasonality"] * np.sin(2 * np.pi * month.month / 12 + f["phase"])
        revenue = (level * season * np.exp(rng.normal(0, 0.08, self.size))).astype(np.int64)
        next_month = _add_months(month, 1)
        lag_days = rng.integers(0, 10, self.size)  # 1st..10th of next month
        published = [next_month + dt.timedelta(days=int(d)) for d in lag_days[listed]]
        frame = pl.DataFrame(
            {
                "stock_id": self.universe.stock_id[listed],
                "year_month": [f"{month:%Y-%m}"] * len(listed),
                "revenue": revenue[listed],
                "published_on": published,
            }
        ).filter(~pl.col("stock_id").str.starts_with("00"))  # ETFs report no revenue
        return schema.conform("monthly_revenue", frame, context=f"{month:%Y-%m}")

    def financials(self, quarter_start: dt.date) -> pl.DataFrame:
        """Quarterly results for the fiscal quarter starting at `quarter_start`, published by the statutory deadline."""
        if quarter_start.month not in (1, 4, 7, 10) or quarter_start.day != 1:
            raise BadMarketData(f"financials: {quarter_start} is not the first day of a fiscal quarter")
        q = (quarter_start.month - 1) // 3 + 1
        index = (quarter_start.year - GRID_START.year) * 4 + q - 1
        if index < 0 or quarter_start > GRID_END:
            raise BadMarketData(f"demo market: quarter {quarter_start.year}Q{q} is outside the demo range")
        f = self._fundamental_base
        rng = np.random.default_rng([self.seed, self.size, _stable_hash("financials"), index])
        listed = self._listed_by(_first_weekday(quarter_start))
        years = index / 4
        quarter_end = min(_add_months(quarter_start, 3) - dt.timedelta(days=1), GRID_END)
        while quarter_end.weekday() >= 5:
            quarter_end -= dt.timedelta(days=1)
        annual_eps, book = self._eps_and_book(self._index(quarter_end))
        eps = annual_eps / 4 * np.exp(rng.normal(0, 0.15, self.size))
        shares = self.universe.shares_outstanding
        net_income = (eps * shares / 1000).astype(np.int64)  # thousand TWD
        equity = (book * shares / 1000).astype(np.int64)
        revenue = (f["monthly_revenue"] * 3 * (1 + f["growth"]) ** years).astype(np.int64)
        deadline = statutory_deadline(quarter_start.year, q)
        early = rng.integers(0, 30, self.size)
        published = [deadline - dt.timedelta(days=int(d)) for d in early[listed]]
        frame = pl.DataFrame(
            {
                "stock_id": self.universe.stock_id[listed],
                "fiscal_quarter": [f"{quarter_start.year}Q{q}"] * len(listed),
                "eps": np.round(eps[listed], 2),
                "net_income": net_income[listed],
                "equity": equity[listed],
                "revenue": revenue[listed],
                "published_on": published,
            }
        ).filter(~pl.col("stock_id").str.starts_with("00"))
        return schema.conform("financials", frame, context=f"{quarter_start.year}Q{q}")

    def shareholding_distribution(self, week: dt.date) -> pl.DataFrame:
        """TDCC holding bands for the Friday `week`; big holders drift with foreign flows."""
        if week.weekday() != 4:
            raise BadMarketData(f"shareholding_distribution: week {week} is not a Friday (TDCC data date)")
        t = self._index(week)
        listed = self._listed_by(week)
        base = self._holding_profile
        # Cumulative foreign flow up to day t (integer lots: the prefix sum is exact in any order).
        foreign_cum = self._foreign_sum(t) / self.universe.shares_outstanding
        tilt = np.clip(1 + 3 * foreign_cum, 0.5, 1.5)
        pct = base.copy()
        pct[:, 11:] *= tilt[:, None]  # bands 12–15 hold more than 400 lots
        pct /= pct.sum(axis=1, keepdims=True)
        shares = np.round(pct * self.universe.shares_outstanding[:, None]).astype(np.int64)
        avg_holding = np.array(
            [
                500,
                3_000,
                7_500,
                12_500,
                17_500,
                25_000,
                35_000,
                45_000,
                75_000,
                150_000,
                300_000,
                500_000,
                700_000,
                900_000,
                5_000_000,
            ]
        )
        holders = np.maximum(1, shares // avg_holding).astype(np.int64)
        levels, stock_idx = np.meshgrid(np.arange(1, 16), listed)
        frame = pl.DataFrame(
            {
                "stock_id": self.universe.stock_id[stock_idx.ravel()],
                "week": [week] * stock_idx.size,
                "level": levels.ravel().astype(np.int8),
                "holders": holders[listed].ravel(),
                "shares": shares[listed].ravel(),
                "pct": np.round(pct[listed].ravel() * 100, 4),
                "published_on": [week + dt.timedelta(days=1)] * stock_idx.size,  # TDCC posts on Saturday
            }
        )
        totals = frame.group_by("stock_id", maintain_order=True).agg(
            pl.col("week").first(),
            pl.lit(17, dtype=pl.Int8).alias("level"),
            pl.col("holders").sum(),
            pl.col("shares").sum(),
            pl.lit(100.0).alias("pct"),
            pl.col("published_on").first(),
        )
        frame = pl.concat([frame, totals.select(frame.columns)]).sort("stock_id", "level")
        return schema.conform("shareholding_distribution", frame, context=str(week))

    def _foreign_sum(self, t: int) -> np.ndarray:
        """Foreign net flows of grid days 0..t, per stock (whole shares: exact in any order)."""
        k = t // _CHUNK
        return self._chunk_starts[k]["foreign_sum"] + self._chunk(k)["foreign"][: t - k * _CHUNK + 1].sum(axis=0)

    @cached_property
    def _holding_profile(self) -> np.ndarray:
        """Each stock's stable share of the 15 TDCC bands (drawn once, not once per week)."""
        return self._rng("shareholding").dirichlet(np.linspace(3, 1, 15) ** 1.5, self.size)

    def _listed_by(self, date: dt.date) -> np.ndarray:
        t = self._index(date if date.weekday() < 5 else date - dt.timedelta(days=date.weekday() - 4))
        return np.flatnonzero(t >= self.universe.listed_from)


def statutory_deadline(year: int, quarter: int) -> dt.date:
    """Taiwan filing deadlines: Q1 May 15, Q2 Aug 14, Q3 Nov 14, annual (Q4) Mar 31 next year."""
    return {1: dt.date(year, 5, 15), 2: dt.date(year, 8, 14), 3: dt.date(year, 11, 14), 4: dt.date(year + 1, 3, 31)}[
        quarter
    ]


# Grid days computed together when a day is asked for (one chunk of every daily path at a time).
_CHUNK = 64


class _ChunkedDraw:
    """One days × stocks draw of a generator over the whole grid, reproducible chunk by chunk.

    The whole array is drawn once (chunk by chunk, then dropped) to record the generator's state at
    each chunk's first row; a chunk drawn again from its state equals those rows of one whole-grid
    draw, since numpy's generators fill an array value after value (checked by the demo tests)."""

    def __init__(self, rng: np.random.Generator, n_days: int, n: int, draw):
        self._draw, self._n, self._bit_generator = draw, n, type(rng.bit_generator)
        self._states = []
        for first in range(0, n_days, _CHUNK):
            self._states.append(rng.bit_generator.state)
            draw(rng, (min(_CHUNK, n_days - first), n))

    def chunk(self, k: int, rows: int) -> np.ndarray:
        bit_generator = self._bit_generator()
        bit_generator.state = self._states[k]
        return self._draw(np.random.Generator(bit_generator), (rows, self._n))


@dataclass(frozen=True)
class _Sparse:
    """Cells of a days × stocks grid, sorted by day."""

    day: np.ndarray
    stock: np.ndarray
    value: np.ndarray

    @staticmethod
    def of(cells: dict[tuple[int, int], float]) -> _Sparse:
        ordered = sorted(cells.items())
        return _Sparse(
            np.array([key[0] for key, _ in ordered], dtype=np.int64),
            np.array([key[1] for key, _ in ordered], dtype=np.int64),
            np.array([value for _, value in ordered], dtype=np.float64),
        )


def _remember(cache: dict, key, value, size: int) -> None:
    """Keep `value` in `cache`, dropping the oldest entries beyond `size`."""
    cache[key] = value
    while len(cache) > size:
        del cache[next(iter(cache))]


@lru_cache(maxsize=4)
def demo_market(seed: int, universe_size: int) -> DemoMarket:
    """Process-wide instance so the grid is generated once per run, not once per asset."""
    return DemoMarket(seed, universe_size)


def _date_range(start: dt.date, end: dt.date):
    day = start
    while day <= end:
        yield day
        day += dt.timedelta(days=1)


def _first_weekday(day: dt.date) -> dt.date:
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def _stable_hash(text: str) -> int:
    # Python's hash() is salted per process; the seed stream must be stable across processes.
    value = 0
    for char in text.encode():
        value = (value * 131 + char) % (2**31 - 1)
    return value
