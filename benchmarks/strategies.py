"""Benchmark M11: 10 built-in strategies × 1,800 stocks (SPEC S11 targets: ≤ 1 s compute and ≤ 1 s
write per day; a one-year single-run backfill of strategy_signals in ≤ 3 minutes).

    python benchmarks/strategies.py               # one day + the 2024 backfill, PostgreSQL warehouse
    python benchmarks/strategies.py --no-year     # one day only

Inputs are synthetic (every M07/M08/M09 factor id, plausible ranges) so the figures measure the
strategy layer alone. PostgreSQL is started from the binaries on PATH like the test fixtures do.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qrl_platform.calendar import trading_days  # noqa: E402
from qrl_platform.storage.frames import FrameStore  # noqa: E402
from qrl_platform.strategies.definition import load_definitions  # noqa: E402
from qrl_platform.strategies.engine import build_frame, run_strategies  # noqa: E402
from qrl_platform.strategies.runner import INDICATOR_ASSETS  # noqa: E402
from qrl_platform.strategies.store import build_records, save_run, seed_strategies  # noqa: E402

# factor -> (distribution, a, b); "rel" = close × (1 + normal(0, a)); "u" uniform(a, b); "n" normal(a, b)
FACTORS = {
    "technical_indicators": {
        "sma_5": ("rel", 0.02),
        "sma_10": ("rel", 0.03),
        "sma_20": ("rel", 0.05),
        "sma_60": ("rel", 0.08),
        "sma_120": ("rel", 0.1),
        "sma_240": ("rel", 0.15),
        "ema_12": ("rel", 0.03),
        "ema_26": ("rel", 0.05),
        "rsi_14": ("u", 5, 95),
        "macd": ("n", 0, 1),
        "macd_signal": ("n", 0, 1),
        "macd_hist": ("n", 0, 0.5),
        "bb_upper": ("rel", 0.06),
        "bb_middle": ("rel", 0.05),
        "bb_lower": ("rel", 0.06),
        "atr_14": ("atr",),
        "obv": ("n", 0, 1e7),
        "kd_k": ("u", 0, 100),
        "kd_d": ("u", 0, 100),
        "kd_j": ("n", 50, 40),
        "vol_ratio_5": ("u", 0.3, 3),
        "ret_1": ("n", 0, 0.02),
        "ret_5": ("n", 0, 0.05),
        "ret_20": ("n", 0, 0.1),
        "ret_60": ("n", 0, 0.2),
        "dist_52w_high": ("u", -0.5, 0),
        "dist_52w_low": ("u", 0, 1),
    },
    "fundamental_indicators": {
        "pe": ("u", 5, 60),
        "pb": ("u", 0.5, 8),
        "dividend_yield": ("u", 0, 8),
        "eps_ttm": ("n", 3, 4),
        "roe_ttm": ("n", 10, 8),
        "eps_yoy": ("n", 5, 40),
        "revenue_yoy": ("n", 5, 30),
        "revenue_mom": ("n", 0, 15),
        "revenue_3m_yoy": ("n", 5, 25),
    },
    "chip_indicators": {
        **{f"{who}_net_pct_{n}": ("n", 0, 10) for who in ("foreign", "trust", "dealer") for n in (1, 5, 20)},
        "trust_buy_streak": ("streak",),
        "margin_utilization": ("u", 0, 80),
        "short_margin_ratio": ("u", 0, 40),
        "margin_change_5": ("n", 0, 5),
        "margin_change_20": ("n", 0, 10),
        "big_holder_pct": ("u", 20, 90),
        "big_holder_pct_change_1w": ("n", 0, 0.5),
    },
}


def synthetic_day(day: dt.date, stocks: int, seed: int = 11) -> dict[str, pl.DataFrame]:
    """daily_quotes + the three indicator frames for one day."""
    rng = np.random.default_rng([seed, day.toordinal()])
    ids = [f"{1101 + i}" for i in range(stocks)]
    close = np.round(np.exp(rng.normal(3.8, 0.9, stocks)), 2)
    quotes = pl.DataFrame(
        {
            "stock_id": ids,
            "trade_date": [day] * stocks,
            "market": np.where(np.arange(stocks) % 5 < 3, "TWSE", "TPEx"),
            "close": close,
            "volume": (np.exp(rng.normal(14.5, 1.2, stocks))).astype(np.int64),
            "is_etf": np.arange(stocks) % 33 == 0,
            "is_suspended": rng.random(stocks) < 0.005,
        }
    )
    frames = {"daily_quotes": quotes}
    for asset, factors in FACTORS.items():
        columns = {}
        for name, spec in factors.items():
            kind = spec[0]
            if kind == "rel":
                columns[name] = close * (1 + rng.normal(0, spec[1], stocks))
            elif kind == "u":
                columns[name] = rng.uniform(spec[1], spec[2], stocks)
            elif kind == "n":
                columns[name] = rng.normal(spec[1], spec[2], stocks)
            elif kind == "atr":
                columns[name] = close * rng.uniform(0.005, 0.05, stocks)
            else:
                columns[name] = rng.integers(0, 8, stocks).astype(float)
        frames[asset] = quotes.select("stock_id", "trade_date").with_columns(
            pl.Series(name, values, dtype=pl.Float64) for name, values in columns.items()
        )
    return frames


def timed(fn, repeat: int = 1):
    times, result = [], None
    for _ in range(repeat):
        tick = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - tick)
    return result, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stocks", type=int, default=1800)
    parser.add_argument("--year", type=int, default=2024)
    parser.add_argument("--no-year", action="store_true", help="skip the one-year backfill")
    args = parser.parse_args()

    definitions = load_definitions()
    day = dt.date(args.year, 3, 5)
    data = synthetic_day(day, args.stocks)
    frame, build = timed(lambda: build_frame(data["daily_quotes"], [data[a] for a in INDICATOR_ASSETS]), repeat=5)
    run_strategies(definitions, frame, [day])  # warm-up (polars plan caches, imports)
    outcomes, compute = timed(lambda: run_strategies(definitions, frame, [day]), repeat=7)
    records = build_records(outcomes, [day])
    print(f"strategies: {len(definitions)} built-ins, {args.stocks} stocks, {frame.width - 2} columns")
    print(
        f"one day  compute (10 strategies, median of 7): {statistics.median(compute) * 1000:8.1f} ms"
        f"   [join of the 4 frames: {statistics.median(build) * 1000:.1f} ms]"
    )
    print(
        "           per strategy: "
        + ", ".join(f"{o.strategy_id.removeprefix('STG_')}={o.duration_ms:.1f}" for o in outcomes)
    )
    print(f"           signals: {records.signals.height} rows, executions: {len(records.executions)}")
    # What the runner does: the same strategies in a worker process with a time limit (isolation.py);
    # the first call also starts the forkserver, so it is the warm-up.
    run_strategies(definitions, frame, [day], timeout_seconds=1800)
    _, isolated = timed(lambda: run_strategies(definitions, frame, [day], timeout_seconds=1800), repeat=7)
    print(
        f"one day  compute in a worker process (the runner's way, median of 7): "
        f"{statistics.median(isolated) * 1000:8.1f} ms"
    )

    from qrl_platform.warehouse import Warehouse
    from qrl_platform_tests.servers import start_postgres

    server = start_postgres()
    try:
        for backend, url in (
            ("PostgreSQL", server.create_database("bench_day")),
            ("SQLite", f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite"),
        ):
            warehouse = Warehouse(url)
            seed_strategies(warehouse)
            first, t_first = timed(lambda w=warehouse: save_run(w, build_records(outcomes, [day])))
            _, t_again = timed(lambda w=warehouse: save_run(w, build_records(outcomes, [day])), repeat=3)
            print(
                f"one day  write on {backend:<10}: first {t_first[0] * 1000:7.1f} ms, "
                f"replace (median of 3) {statistics.median(t_again) * 1000:7.1f} ms  ({first.signals_written} signals)"
            )
            warehouse.dispose()
        if not args.no_year:
            year_backfill(args, server)
    finally:
        server.stop()


def year_backfill(args, server) -> None:
    """strategy_signals over a whole year as ONE Dagster run (BackfillPolicy.single_run), on PostgreSQL."""
    import dagster as dg

    from qrl_platform.defs.resources import FrameStoreResource, WarehouseResource
    from qrl_platform.defs.strategies.assets import strategies, strategy_signals, strategy_stats

    home = Path(tempfile.mkdtemp(prefix="qrl-bench-"))
    os.environ["QRL_HOME"] = str(home)
    store = FrameStore(str(home))
    days = trading_days(f"{args.year}-01-01", f"{args.year}-12-31")
    tick = time.perf_counter()
    for day in days:
        for asset, frame in synthetic_day(day, args.stocks).items():
            store.write(asset, day.isoformat(), frame)
    print(f"year     inputs: {len(days)} trading days × 4 frames written in {time.perf_counter() - tick:.1f} s")

    url = server.create_database("bench_year")
    resources = {"warehouse": WarehouseResource(url=url), "frames": FrameStoreResource(root=str(home))}
    instance = dg.DagsterInstance.ephemeral()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # keep the figures readable
    dg.materialize([strategies], resources=resources, instance=instance, run_config=quiet)
    tags = {
        "dagster/asset_partition_range_start": f"{args.year}-01-01",
        "dagster/asset_partition_range_end": f"{args.year}-12-31",
    }
    tick = time.perf_counter()
    result = dg.materialize([strategy_signals], resources=resources, instance=instance, tags=tags, run_config=quiet)
    wall = time.perf_counter() - tick
    meta = result.asset_materializations_for_node("strategy_signals")[0].metadata
    print(
        f"year     strategy_signals single run: {wall:6.1f} s wall  (compute {meta['compute_ms'].value / 1000:.1f} s, "
        f"write {meta['write_ms'].value / 1000:.1f} s; {meta['total_signals'].value} signals, "
        f"{meta['trading_days'].value} trading days, runs: {len(instance.get_runs()) - 1})"
    )
    tick = time.perf_counter()
    stats = dg.materialize([strategy_stats], resources=resources, instance=instance, tags=tags, run_config=quiet)
    print(
        f"year     strategy_stats single run:   {time.perf_counter() - tick:6.1f} s wall  "
        f"({stats.asset_materializations_for_node('strategy_stats')[0].metadata['dagster/row_count'].value} rows)"
    )


if __name__ == "__main__":
    main()
