"""One trading day end to end on the demo market (S11): raw → M07/M08/M09 (+ blocking checks) →
10 strategies × the universe → signals written → M13 event → stats, as one Dagster run.

    python benchmarks/daily_chain.py [--stocks 1800] [--day 2024-12-24]

The ~1-year raw history the indicators need is materialised first (timed separately). Prints the
wall time of the day's run and of each step, and the ratio to the source document's 5-minute budget
(its estimate for the strategies alone: JOB-M11-001 budgets 5–10 minutes).
"""

from __future__ import annotations

import argparse

from _common import isolated_home, peak_rss_mib, timed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stocks", type=int, default=1800)
    parser.add_argument("--day", default="2024-12-24")
    args = parser.parse_args()
    results: dict[str, float] = {}
    with isolated_home(args.stocks):
        import dagster as dg

        from qrl_platform import cli
        from qrl_platform.calendar import parse_date, previous_trading_days

        instance = dg.DagsterInstance.get()
        day = parse_date(args.day)
        history = previous_trading_days(day, 262)
        with timed("history", results):
            cli.main(["demo", "--days", "1", "--lookback-days", "261", "--end", (history[-2]).isoformat()])
        chain = ["daily_quotes", "institutional_flows", "margin_balances", "valuations", "technical_indicators",
                 "fundamental_indicators", "chip_indicators", "strategy_signals", "m13_notification", "strategy_stats"]
        with timed("day", results):
            result = cli.materialize_range(chain, day.isoformat(), day.isoformat(), instance=instance)
        steps = {}
        for event in result.all_events:
            if event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                steps[event.step_key] = event.event_specific_data.duration_ms / 1000
        from qrl_platform import load

        signals = load("strategy_signals", day).height
    own, children = peak_rss_mib()
    print(f"stocks: {args.stocks}; history set-up (raw year + chain for the previous day): {results['history']:.1f} s")
    print(f"one trading day {day} end to end, one run: {results['day']:.1f} s wall; {signals:,} signals stored")
    for step, seconds in sorted(steps.items(), key=lambda item: -item[1]):
        print(f"  {step:<32} {seconds:6.2f} s")
    print(f"ratio to the source's 5-minute budget: {results['day'] / 300:.3f}")
    print(f"peak memory: {max(own, children):.0f} MiB")


if __name__ == "__main__":
    main()
