"""Raw against total return: how each strategy's 2024 hit rate and forward return change.

    python benchmarks/total_return.py                  # the 2024 demo chain from an empty home, then the table
    python benchmarks/total_return.py --stocks 300     # a smaller demo universe (faster)
    python benchmarks/total_return.py --home .qrl      # judge what an existing home already stores

Without `--home` it runs `qrl backfill 2024-01-02 2024-12-31 --whole-chain` in a child process on an
isolated home (as `benchmarks/year.py` does). Then, from the stored signals, quotes and corporate
actions, it judges every BUY/SELL of the year the way `strategy_stats` does (`stats.signal_outcomes`)
and prints per strategy, side by side:

* hit rate and mean forward return on raw closes (close(exit) / close(entry) − 1);
* hit rate and mean forward return on total return (prices adjusted as of the exit date);
* the signals judged (filled, horizon elapsed by the end of the year, both closes known) and the
  unfilled ones (BUY at limit-up / SELL at limit-down), which neither column counts.

Both columns judge the same filled signals, so the difference is the adjustment alone. With no
corporate action stored (a market source without them) the two columns are equal — the script says so.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import isolated_home  # noqa: E402

START, END = dt.date(2024, 1, 2), dt.date(2024, 12, 31)
YEAR_WINDOW_DAYS = (END - START).days + 2  # a stats period (calendar days back from END) covering START


def judge(home: Path) -> tuple[pl.DataFrame, int]:
    """(per-strategy table, corporate actions stored in the window) from the stored year."""
    from qrl_platform.storage.frames import FrameStore
    from qrl_platform.strategies.stats import update_strategy_stats
    from qrl_platform.warehouse import Warehouse

    store = FrameStore(str(home))
    warehouse = Warehouse(os.environ.get("QRL_WAREHOUSE_URL") or f"sqlite:///{home / 'warehouse.sqlite'}")
    # The stats' own pass over one window holding the whole year, not saved: the outcomes are exactly
    # what strategy_stats judges (same reads, same adjustment, same limits).
    result = update_strategy_stats(warehouse, store, [END], periods=(YEAR_WINDOW_DAYS,), save=False)
    warehouse.dispose()
    actions = store.read_range("corporate_actions", START, END)
    outcomes = result.outcomes.filter(pl.col("trade_date") >= START)
    judged = pl.col("hit").is_not_null()
    raw_hit = (
        pl.when(pl.col("signal") == "BUY")
        .then(pl.col("raw_forward_return") > 0)
        .otherwise(pl.col("raw_forward_return") < 0)
    )
    table = (
        outcomes.group_by("strategy_id")
        .agg(
            pl.len().alias("signals"),
            judged.sum().alias("judged"),
            pl.col("unfilled").sum().alias("unfilled"),
            raw_hit.filter(judged).mean().alias("hit_raw"),
            pl.col("hit").filter(judged).mean().alias("hit_total"),
            # The signed return the signal bet on: a SELL gains when the price falls.
            _signed("raw_forward_return").filter(judged).mean().alias("ret_raw"),
            _signed("forward_return").filter(judged).mean().alias("ret_total"),
            (pl.col("raw_forward_return") != pl.col("forward_return")).filter(judged).sum().alias("adjusted"),
        )
        .sort("strategy_id")
    )
    return table, actions.height


def _signed(column: str) -> pl.Expr:
    return pl.when(pl.col("signal") == "BUY").then(pl.col(column)).otherwise(-pl.col(column))


def report(table: pl.DataFrame, actions: int, seconds: float) -> None:
    print(f"\n2024 demo year, signals with trade date {START}..{END} judged by {END} ({seconds:.1f} s to judge)")
    print(f"corporate actions stored: {actions}")
    if not actions:
        print(
            "  none: raw = total return here. The demo market's dividends and capital reductions come with the\n"
            "  corporate_actions table (corporate-actions branch); rerun after it is merged."
        )
    header = (
        f"{'strategy':<22}{'signals':>9}{'judged':>9}{'unfilled':>9}{'adjusted':>9}"
        f"{'hit raw':>9}{'hit TR':>9}{'ret raw':>10}{'ret TR':>10}"
    )
    print(header)
    print("-" * len(header))

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{100 * value:.2f}%"

    for r in table.iter_rows(named=True):
        print(
            f"{r['strategy_id']:<22}{r['signals']:>9,}{r['judged']:>9,}{r['unfilled']:>9,}{r['adjusted']:>9,}"
            f"{pct(r['hit_raw']):>9}{pct(r['hit_total']):>9}{pct(r['ret_raw']):>10}{pct(r['ret_total']):>10}"
        )
    print(
        "\nhit raw / hit TR: hit rate on raw closes / on total return; ret: mean forward return of the signal's\n"
        "direction (SELL counts the fall as a gain); adjusted: judged signals whose horizon spans an event;\n"
        "unfilled: BUY at limit-up / SELL at limit-down on the trade date (not judged)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stocks", type=int, default=1800, help="demo universe size (default 1800)")
    parser.add_argument("--home", type=Path, help="judge an existing QRL_HOME instead of running the year")
    args = parser.parse_args()
    if args.home:
        tick = time.perf_counter()
        table, actions = judge(args.home)
        report(table, actions, time.perf_counter() - tick)
        return
    import subprocess

    with isolated_home(args.stocks) as root:
        tick = time.perf_counter()
        argv = [sys.executable, "-m", "qrl_platform.cli", "backfill", str(START), str(END), "--whole-chain"]
        subprocess.run(argv, check=True)
        print(f"\nqrl backfill {START} {END} --whole-chain ({args.stocks} stocks): {time.perf_counter() - tick:.1f} s")
        tick = time.perf_counter()
        table, actions = judge(root / "qrl")
        report(table, actions, time.perf_counter() - tick)


if __name__ == "__main__":
    main()
