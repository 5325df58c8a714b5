"""The whole 2024 evaluation in one run, and one incremental day.

    python benchmarks/evaluation.py --home /tmp/qrl-2024        # builds the 2024 demo chain there once
    python benchmarks/evaluation.py --home /tmp/qrl-2024 --repeat 3

The home holds a finished `qrl backfill 2024-01-02 2024-12-31 --whole-chain` on the demo market (1,800
stocks, SQLite warehouse, the repository's local dagster.yaml); when absent it is built first (a few
minutes, printed separately, not part of the figures). Then, in this process:

* a trivial one-asset Dagster run on the same instance (median of 5) — the floor of any run;
* the 2024 research as ONE single-run backfill of factor_ic + factor_report + strategy_backtest over
  2024-01-02..2024-12-31 (every factor × 1,800 stocks × 1/5/10/20 days, 10 strategy backtests), from no
  stored evaluation frames; each asset's own seconds from the event log;
* one incremental day (the three assets for 2024-12-31, the year before it stored);
* the 2024 demo table: per strategy annual return, Sharpe, maximum drawdown, turnover (after costs);
  per factor the five best and five worst by 5-day ICIR over 250 days, as of 2024-12-31.

Figures are printed, never asserted. The machine is shared: repeat and compare with the trivial run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from year import trivial_run_seconds  # noqa: E402  (benchmarks/ is on sys.path as the script's folder)

START, END = "2024-01-02", "2024-12-31"
EVALUATION_FRAMES = (
    "factor_ic",
    "factor_quantile_returns",
    "factor_turnover",
    "factor_report",
    "strategy_backtest",
    "strategy_positions",
    "strategy_trades",
)


def prepare_home(home: Path) -> None:
    """Point QRL_HOME / DAGSTER_HOME at `home`, building the 2024 chain there when it is not yet."""
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "QRL_HOME": str(home / "qrl"),
            "DAGSTER_HOME": str(home / "dagster"),
            "QRL_MARKET_SOURCE": "demo",
            "QRL_DEMO_UNIVERSE": "1800",
        }
    )
    os.environ.pop("QRL_WAREHOUSE_URL", None)
    config = (Path(__file__).resolve().parents[1] / "dagster.yaml").read_text()
    storage = home / "dagster" / "storage"
    (home / "dagster" / "dagster.yaml").write_text(
        config.replace("base_dir: .qrl/dagster_storage", f"base_dir: {storage}")
    )
    done = home / "chain-2024.done"
    if done.exists():
        return
    print(f"building the 2024 demo chain in {home} (once) ...", flush=True)
    tick = time.perf_counter()
    subprocess.run([sys.executable, "-m", "qrl_platform.cli", "backfill", START, END, "--whole-chain"], check=True)
    done.write_text("ok\n")
    print(f"  built in {time.perf_counter() - tick:.0f} s", flush=True)


def clear_evaluation(home: Path) -> None:
    for name in EVALUATION_FRAMES:
        shutil.rmtree(home / "qrl" / "frames" / name, ignore_errors=True)


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def step_seconds(instance, run_id: str) -> dict[str, float]:
    """STEP_START → STEP_SUCCESS per step of one run, from the event log."""
    started, seconds = {}, {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type_value == "STEP_START":
            started[event.step_key] = record.timestamp
        elif event.event_type_value == "STEP_SUCCESS":
            seconds[event.step_key] = record.timestamp - started.get(event.step_key, record.timestamp)
    return seconds


def materialize(instance, **kwargs):
    import dagster as dg

    from qrl_platform.definitions import RESOURCES
    from qrl_platform.defs.evaluation.assets import EVALUATION_ASSETS

    tick = time.perf_counter()
    result = dg.materialize(EVALUATION_ASSETS, instance=instance, resources=RESOURCES, run_config=QUIET, **kwargs)
    return time.perf_counter() - tick, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=Path("/tmp/qrl-evaluation-2024"))
    parser.add_argument("--repeat", type=int, default=1, help="year runs (median printed)")
    args = parser.parse_args()
    prepare_home(args.home)

    import dagster as dg

    from qrl_platform.evaluation.factor_report import RANKING_COLUMNS, best_and_worst
    from qrl_platform.evaluation.pipeline import FACTOR_REPORT, stored_performance
    from qrl_platform.settings import settings
    from qrl_platform.storage.frames import FrameStore

    instance = dg.DagsterInstance.get()
    trivial = trivial_run_seconds(instance)
    years, steps = [], {}
    for _ in range(args.repeat):
        clear_evaluation(args.home)
        wall, result = materialize(
            instance,
            tags={"dagster/asset_partition_range_start": START, "dagster/asset_partition_range_end": END},
        )
        assert result.success
        years.append(wall)
        steps = step_seconds(instance, result.run_id)
    days = []
    for _ in range(3):
        wall, result = materialize(instance, partition_key=END)
        assert result.success
        days.append(wall)
    day_steps = step_seconds(instance, result.run_id)

    store = FrameStore(settings().qrl_home)
    print("\n== evaluation benchmark (demo market, 1,800 stocks, 2-core machine) ==")
    print(f"trivial one-asset Dagster run (median of 5):      {trivial:6.2f} s")
    print(
        f"2024 research, one run (median of {len(years)}):            {statistics.median(years):6.2f} s"
        f"  = {statistics.median(years) / trivial:.0f}x the trivial run"
    )
    for step, seconds in sorted(steps.items()):
        print(f"    {step:<20} {seconds:6.2f} s")
    print(
        f"one incremental day 2024-12-31 (median of 3):     {statistics.median(days):6.2f} s"
        f"  = {statistics.median(days) / trivial:.1f}x the trivial run"
    )
    for step, seconds in sorted(day_steps.items()):
        print(f"    {step:<20} {seconds:6.2f} s")
    ic_rows = store.read_range("factor_ic", START, END).height
    print(f"factor_ic rows over 2024: {ic_rows:,}")

    _, figures = stored_performance(store, pl.Series([END]).str.to_date()[0])
    with pl.Config(tbl_rows=60, tbl_cols=20, tbl_width_chars=200, float_precision=4, tbl_hide_dataframe_shape=True):
        print("\n2024 strategies (after costs):")
        print(
            figures.select(
                "strategy_id",
                "annual_return",
                "sharpe",
                "max_drawdown",
                "turnover",
                "volatility",
                "sortino",
                "hit_rate",
                "unfilled_share",
                "costs",
            )
        )
        report = store.read(FACTOR_REPORT, END)
        print("\nfactors, five best and five worst by 5-day ICIR over the 250 days to 2024-12-31:")
        print(best_and_worst(report, window=250, horizon=5).select(RANKING_COLUMNS))


if __name__ == "__main__":
    main()
