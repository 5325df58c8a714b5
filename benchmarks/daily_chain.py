"""One trading day end to end on the demo market (S11): raw → M07/M08/M09 (+ blocking checks) →
10 strategies × the universe → signals written → M13 event → stats, as one Dagster run.

    python benchmarks/daily_chain.py [--stocks 1800] [--day 2024-12-24]

The ~1-year raw history the indicators need is materialised first (timed separately). Prints the
wall time of the day's run and of each step, and the ratio to the source document's 5-minute budget
(its estimate for the strategies alone: JOB-M11-001 budgets 5–10 minutes).

Then the day's strategies stage (`qrl run-all DAY`: strategy_signals and its checks) alternates
`--repeat` times with a trivial one-asset Dagster run on the same instance and with the same day's
strategy_signals run without its three checks (what the checks' steps and events cost), and prints the
medians, the ratios pair by pair, the run's steps and events, and one verdict line
"one day / trivial run: x.x× (goal ≤ 2×)". The machine is shared: the ratio to a trivial run measured
in the same process is the figure to compare, not the seconds; run it several times.
"""

from __future__ import annotations

import argparse

from _common import isolated_home, peak_rss_mib, timed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stocks", type=int, default=1800)
    parser.add_argument("--day", default="2024-12-24")
    parser.add_argument("--repeat", type=int, default=5, help="run-all / trivial-run pairs (0: skip)")
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
        chain = [
            "daily_quotes",
            "institutional_flows",
            "margin_balances",
            "valuations",
            "technical_indicators",
            "fundamental_indicators",
            "chip_indicators",
            "strategy_signals",
            "m13_notification",
            "strategy_stats",
        ]
        with timed("day", results):
            result = cli.materialize_range(chain, day.isoformat(), day.isoformat(), instance=instance)
        steps = {}
        for event in result.result.all_events:
            if event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                steps[event.step_key] = event.event_specific_data.duration_ms / 1000
        from qrl_platform import load

        signals = load("strategy_signals", day).height
        run_all = one_day_against_trivial(instance, day.isoformat(), args.repeat) if args.repeat else None
    own, children = peak_rss_mib()
    print(f"stocks: {args.stocks}; history set-up (raw year + chain for the previous day): {results['history']:.1f} s")
    print(f"one trading day {day} end to end, one run: {results['day']:.1f} s wall; {signals:,} signals stored")
    for step, seconds in sorted(steps.items(), key=lambda item: -item[1]):
        print(f"  {step:<32} {seconds:6.2f} s")
    print(f"ratio to the source's 5-minute budget: {results['day'] / 300:.3f}")
    print(f"peak memory: {max(own, children):.0f} MiB")
    if run_all:
        ratios = ", ".join(f"{r:.1f}" for r in run_all["ratios"])
        unchecked = ", ".join(f"{r:.1f}" for r in run_all["unchecked_ratios"])
        print(
            f"qrl run-all {day} (median of {args.repeat}): {run_all['day']:.2f} s, {run_all['steps']} steps, "
            f"{run_all['events']} events; trivial one-asset run {run_all['trivial']:.2f} s, {run_all['trivial_events']} "
            f"events; day / trivial run = {run_all['day'] / run_all['trivial']:.2f}x (pairwise: {ratios})"
        )
        print(
            f"the same strategy_signals run without its three checks: {run_all['unchecked']:.2f} s, "
            f"{run_all['unchecked_events']} events; / trivial run = {run_all['unchecked'] / run_all['trivial']:.2f}x "
            f"(pairwise: {unchecked})"
        )
        print(f"one day / trivial run: {run_all['day'] / run_all['trivial']:.1f}× (goal ≤ 2×)")


def one_day_against_trivial(instance, day: str, repeat: int) -> dict:
    """`qrl run-all DAY` alternating with the trivial run, `repeat` times each, on `instance`."""
    import contextlib
    import io
    import statistics
    import time

    import year  # benchmarks/ is on sys.path as the script's folder

    from qrl_platform import cli

    without_checks = _signals_without_checks_job()
    days, trivials, unchecked = [], [], []
    unchecked_events = 0
    for _ in range(repeat):
        tick = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli.main(["run-all", day]) == 0
        days.append(time.perf_counter() - tick)
        run_id = instance.get_run_records(limit=1)[0].dagster_run.run_id
        trivials.append(year.trivial_run_seconds(instance, repeat=1))
        tick = time.perf_counter()
        result = without_checks.execute_in_process(instance=instance, partition_key=day, run_config=cli.QUIET)
        unchecked.append(time.perf_counter() - tick)
        assert result.success
        unchecked_events = len(instance.all_logs(result.run_id))
    logs = instance.all_logs(run_id)  # the last run-all
    steps = {e.step_key for e in logs if e.is_dagster_event and e.step_key}
    return {
        "day": statistics.median(days),
        "trivial": statistics.median(trivials),
        "unchecked": statistics.median(unchecked),
        "ratios": [d / t for d, t in zip(days, trivials, strict=True)],
        "unchecked_ratios": [u / t for u, t in zip(unchecked, trivials, strict=True)],
        "steps": len(steps),
        "events": len(logs),
        "trivial_events": year.TRIVIAL_EVENTS,
        "unchecked_events": unchecked_events,
    }


def _signals_without_checks_job():
    """strategies_job's asset without its checks, resolved against the platform's Definitions."""
    import dagster as dg

    from qrl_platform.definitions import defs

    job = dg.define_asset_job(
        "strategy_signals_without_checks", selection=dg.AssetSelection.assets("strategy_signals").without_checks()
    )
    return dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(job.name)


if __name__ == "__main__":
    main()
