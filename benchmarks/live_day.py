"""One live day against local servers that answer in the recorded shapes, then a re-run of that day.

    python benchmarks/live_day.py [--min-interval 2.0]

For the four TWSE/TPEx daily tables of one day, plus one month of MOPS revenue and one quarter of MOPS
financials, prints the HTTP requests, the cache hits and the wall time. The re-run uses a new source on
the same cache, like a second process or pod. The politeness interval (default 2 s, as in production)
makes up most of the wall time, because the servers are local.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qrl_platform.calendar import TAIPEI  # noqa: E402
from qrl_platform.market.live import LiveMarketSource  # noqa: E402
from qrl_platform.market.sources import DAILY_TABLES  # noqa: E402
from qrl_platform.settings import MarketSourceSettings  # noqa: E402
from qrl_platform_tests.market.fake_exchanges import FakeExchanges  # noqa: E402
from qrl_platform_tests.market.fake_mops import MONTH, FakeMops  # noqa: E402

DAY = dt.date(2026, 9, 7)
QUARTER = dt.date(2026, 4, 1)


def run(settings: MarketSourceSettings, cache: str, min_interval: float, exchanges, mops) -> dict:
    before = len(exchanges.requests) + len(mops.requests)
    source = LiveMarketSource(settings, cache_root=cache, min_interval=min_interval)
    started = time.perf_counter()
    hits = 0
    for table in DAILY_TABLES:
        hits += source.fetch_day(table, DAY).details["cache_hits"]
    source.monthly_revenue(MONTH)
    source.financials(QUARTER)
    seconds = time.perf_counter() - started
    source.close()
    requests = len(exchanges.requests) + len(mops.requests) - before
    return {"requests": requests, "daily_cache_hits": hits, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--min-interval", type=float, default=2.0)
    args = parser.parse_args()
    exchanges, mops = FakeExchanges(), FakeMops()
    settings = MarketSourceSettings(
        source="live", twse_base_url=exchanges.twse_base_url, tpex_base_url=exchanges.tpex_base_url,
        demo_seed=7, demo_universe=10, mops_base_url=mops.base_url,
    )  # fmt: skip
    after_deadlines = dt.datetime(2026, 9, 8, 9, 0, tzinfo=TAIPEI)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="qrl-live-day-") as cache,
            mock.patch("qrl_platform.market.live.source.taipei_now", lambda: after_deadlines),
        ):
            first = run(settings, cache, args.min_interval, exchanges, mops)
            again = run(settings, cache, args.min_interval, exchanges, mops)
    finally:
        exchanges.stop()
        mops.stop()
    print(f"min interval per host: {args.min_interval:g} s")
    for label, figures in (("live day", first), ("re-run of the day", again)):
        print(
            f"{label:>18}: {figures['requests']:2d} requests, {figures['daily_cache_hits']} daily cache hits "
            f"(of 8 daily answers), {figures['seconds']:.2f} s"
        )


if __name__ == "__main__":
    main()
