"""When each stage of the daily flow runs, as Dagster automation conditions on its asset.

A stage (strategies 16:35, the order-module notification 16:45, stats 17:00, Asia/Taipei) runs for
today's partition once its time has passed, once per day, as soon as its upstream partition is
materialised and every blocking check of it passed:

* strategies (`strategy_signals`) wait for the three indicator assets and their quality checks;
* the notification (`m13_notification`) and stats (`strategy_stats`) wait for `strategy_signals` and
  its `signals_match_executions` check.

It is Dagster's `AutomationCondition.on_cron` with its dependency part replaced and two parts added:
the stage's own partition must not be materialised yet (a day run by hand is not run again) and the
market must be open. `on_cron` waits for every dependency to be updated *after* the cron tick;
`strategy_signals` is written before 16:45, so the notification would wait a day. Here the upstream
only has to be present (`~missing()`) with its blocking checks passed. A check never evaluated against the latest materialisation has not passed,
so the stage waits for it; a failed check holds the stage until the day is materialised again or
its checks are re-run and pass. Only the upstream named above counts (`allow`): the other inputs
(quotes, tradability, corporate actions, the strategy definitions) are read as they are.

The one rule Dagster cannot express is the market calendar: `MarketOpen`. A closed weekday (a
holiday, a typhoon) keeps its partition, and the market job materialises it as empty with
`market_closed=true`, so the indicators and their checks are present and pass; a weekday cron and
Dagster's own conditions would run the strategies for it. `MarketOpen` asks the calendar
(`qrl_platform.calendar.day_status`) and is the smallest piece that does; its test shows the closed
day that the condition without it requests. A custom condition is evaluated in the code server, so
the sensors that carry these conditions set `use_user_code_server=True` (sensors.py).
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from qrl_platform.calendar import TAIPEI_NAME, day_status
from qrl_platform.defs.job_tags import INDICATORS


class MarketOpen(dg.AutomationCondition):
    """True for the partitions (trading-day keys) on which the Taiwan market trades, per the calendar."""

    @property
    def name(self) -> str:
        return "market_open"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        candidates = context.candidate_subset
        open_days = {key for key in candidates.expensively_compute_partition_keys() if day_status(key).is_open}
        return dg.AutomationResult(context, candidates.compute_intersection_with_partition_keys(open_days))


@dataclass(frozen=True)
class DailyStage:
    """One stage of the trading day: the asset it materialises, its time, and what it waits for."""

    asset: str
    at: dt.time
    upstream: tuple[str, ...]

    @property
    def cron(self) -> str:
        return f"{self.at.minute} {self.at.hour} * * 1-5"


STRATEGIES = DailyStage("strategy_signals", dt.time(16, 35), tuple(INDICATORS))
NOTIFICATION = DailyStage("m13_notification", dt.time(16, 45), ("strategy_signals",))
STATS = DailyStage("strategy_stats", dt.time(17, 0), ("strategy_signals",))
DAILY_STAGES = (STRATEGIES, NOTIFICATION, STATS)


def upstream_ready(upstream: Sequence[str]) -> dg.AutomationCondition:
    """Every listed upstream asset is materialised for the partition and its blocking checks passed."""
    selection = dg.AssetSelection.assets(*upstream)
    return (
        dg.AutomationCondition.all_deps_match(~dg.AutomationCondition.missing()).allow(selection)
        & dg.AutomationCondition.all_deps_blocking_checks_passed().allow(selection)
    ).with_label(f"upstream ready: {', '.join(upstream)}")


def after_its_time_once_upstream_ready(stage: DailyStage) -> dg.AutomationCondition:
    """`on_cron` for a stage whose upstream may finish before its time: today's partition, on a trading
    day, not yet materialised (by this sensor or by hand), once per cron tick, as soon as the upstream
    is ready, not while a run of it is in progress."""
    return (
        dg.AutomationCondition.in_latest_time_window()
        & MarketOpen()
        & dg.AutomationCondition.missing().with_label("not materialised for the day yet")
        & dg.AutomationCondition.cron_tick_passed(stage.cron, TAIPEI_NAME)
        .since_last_handled()
        .with_label(f"{stage.at:%H:%M} passed since its last run")
        & upstream_ready(stage.upstream)
        & ~dg.AutomationCondition.in_progress()
    ).with_label(f"daily at {stage.at:%H:%M} {TAIPEI_NAME} once {', '.join(stage.upstream)} ready")


STRATEGIES_CONDITION = after_its_time_once_upstream_ready(STRATEGIES)
NOTIFICATION_CONDITION = after_its_time_once_upstream_ready(NOTIFICATION)
STATS_CONDITION = after_its_time_once_upstream_ready(STATS)
