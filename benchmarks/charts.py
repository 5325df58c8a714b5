"""Size and render time of each UI chart (qrl_platform.charts) at production shapes.

    python benchmarks/charts.py [--repeat 5]

Shapes: 10 strategies × 90 as-of days (hit rate), 10 strategies × BUY/SELL (baskets), the three
indicator assets' factor counts × 60 trading days (heatmaps), 3 days of quarter hours = 288 rows
(position, plans). Random values (seeded), so the PNG compresses no better than real data would.
The first render of the process (matplotlib import and font set-up) is printed on its own; then the
median and best of --repeat renders per chart, its PNG bytes and pixel size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qrl_platform import charts  # noqa: E402
from qrl_platform.factors import registry  # noqa: E402

STRATEGIES = [f"STG_BENCH_{i:03d}" for i in range(10)]


def frames(rng: np.random.Generator) -> dict[str, tuple]:
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(90)]
    hit_rates = pl.DataFrame(
        {
            "strategy_id": [s for s in STRATEGIES for _ in days],
            "as_of_date": days * len(STRATEGIES),
            "hit_rate": rng.uniform(0.3, 0.7, len(days) * len(STRATEGIES)),
        }
    )
    baskets = pl.DataFrame(
        {
            "strategy_id": [s for s in STRATEGIES for _ in range(2)],
            "signal": ["BUY", "SELL"] * len(STRATEGIES),
            "mean_forward_return": rng.normal(0, 0.02, 2 * len(STRATEGIES)),
            "signals": rng.integers(10, 500, 2 * len(STRATEGIES)),
        }
    )
    cases: dict[str, tuple] = {
        "hit_rate_chart": (charts.hit_rate_chart, hit_rates),
        "basket_return_chart": (charts.basket_return_chart, baskets),
    }
    trading = [d for d in days if d.weekday() < 5][:60]
    for module, asset in registry.MODULE_ASSETS.items():
        factors = registry.factor_ids(module)
        rates = pl.DataFrame(
            {
                "trade_date": [d for d in trading for _ in factors],
                "factor": factors * len(trading),
                "missing_rate": rng.uniform(0, 0.4, len(trading) * len(factors)),
            }
        )
        cases[f"missing_rate_heatmap ({asset}, {len(factors)} factors)"] = (
            lambda frame, f=factors, d=trading: charts.missing_rate_heatmap(frame, factors=f, days=d),
            rates,
        )
    quarters = [dt.datetime(2026, 11, 20, tzinfo=dt.UTC) + dt.timedelta(minutes=15 * i) for i in range(288)]
    price = 2.0 * np.exp(np.cumsum(rng.normal(0, 0.003, len(quarters))))
    positions = pl.DataFrame(
        {
            "as_of": quarters,
            "price": price,
            "position_qty": 1000.0 + np.cumsum(rng.normal(0, 2, len(quarters))),
            "realized_pnl": np.cumsum(rng.uniform(0, 0.05, len(quarters))),
            "unrealized_pnl": rng.normal(0, 20, len(quarters)),
        }
    )
    plans = pl.DataFrame(
        {
            "timestamp": quarters,
            "current_ratio": 0.5 + rng.normal(0, 0.02, len(quarters)),
            "target_ratio": [0.5] * len(quarters),
            "action": rng.choice(["BUY", "SELL", "HOLD", "HOLD", "HOLD"], len(quarters)).tolist(),
            "notional_usdt": rng.uniform(0, 100, len(quarters)),
        }
    )
    cases["position_chart (288 quarter hours)"] = (charts.position_chart, positions)
    cases["rebalance_chart (288 quarter hours)"] = (charts.rebalance_chart, plans)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    cases = frames(np.random.default_rng(0))

    first_name, (first_render, first_frame) = next(iter(cases.items()))
    tick = time.perf_counter()
    first_render(first_frame)
    print(f"first render of the process ({first_name}, incl. matplotlib import): {time.perf_counter() - tick:.2f} s")
    print(f"{'chart':<52} {'pixels':>10} {'PNG KB':>8} {'median ms':>10} {'best ms':>8}")
    for name, (render, frame) in cases.items():
        times = []
        for _ in range(args.repeat):
            tick = time.perf_counter()
            png = render(frame)
            times.append((time.perf_counter() - tick) * 1000)
        width, height = Image.open(io.BytesIO(png)).size
        print(
            f"{name:<52} {f'{width}x{height}':>10} {len(png) / 1024:>8.1f} "
            f"{statistics.median(times):>10.0f} {min(times):>8.0f}"
        )


if __name__ == "__main__":
    main()
