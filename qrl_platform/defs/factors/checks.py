"""Blocking data-quality checks on the technical, fundamental and chip indicator assets: thin wiring over `quality`.

Each indicator asset gets four blocking checks — missing_rate, coverage, no_infinities, within_ranges —
run by one multi-asset check so the stored frames are read once. A failure (severity ERROR) stops
every downstream asset in the same run (Dagster fails the check step on a failed blocking evaluation),
so strategies never score a day off broken factors; across runs the daily flow's gate
(`qrl_platform.defs.gating`) reads these evaluations, so the strategies stage never launches on a
failed day and `strategy_signals` refuses one. Per-partition evaluations are events, not the check's
result; every check that passed on all days of the run also yields its result (`AssetCheckResult`,
no partition), which is what Dagster gates the run's downstream steps on.

The quality rules run once, vectorised over the run's whole range. A one-day run (the daily flow)
reports one evaluation per check for its day (AssetCheckEvaluation with `partition=` the day). A
multi-day run (a backfill) whose days all pass reports one result per check for the whole range
(no `partition`; metadata: days checked, the worst missing rate per factor, the lowest coverage and
its day): the daily flow's gate and `qrl status` count an evaluation without a partition for every
day of its run, and a year no longer costs 3,132 check events (about 45 s of event-log commits on
SQLite). As soon as any day of the range fails any check, every day gets its own evaluations, as in
a one-day run, so the UI, the gate and the strategies see exactly which days failed; a failing
day's evaluation names the factor and the worst stocks. The specs themselves stay unpartitioned: partitioned check specs are a
preview feature in Dagster 1.13, and Dagster already plans unpartitioned checks per partition of a
partitioned run, which these evaluations then resolve.
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import datetime as dt

import dagster as dg
import polars as pl

from qrl_platform.calendar import day_status, parse_date
from qrl_platform.defs.partitions import trading_day
from qrl_platform.defs.resources import FrameStoreResource, MarketSourceResource
from qrl_platform.defs.stored import stored_by_table, stored_partitions
from qrl_platform.factors import compute_range, families, quality, registry
from qrl_platform.storage.frames import FrameStore

# Check name -> the quality rule it enforces.
CHECK_RULES = {
    "missing_rate": "missing_rate",
    "coverage": "coverage",
    "no_infinities": "non_finite",
    "within_ranges": "out_of_range",
}
CHECK_DESCRIPTIONS = {
    "missing_rate": "Per factor, the share of the day's universe without a value stays within the factor's "
    "declared max_missing_rate.",
    "coverage": f"At least {quality.MIN_COVERAGE:.0%} of the day's universe (listed, not suspended stocks in "
    "daily_quotes) has a row.",
    "no_infinities": "No factor value is +inf, -inf or NaN.",
    "within_ranges": "Every finite factor value lies within the factor's declared [min_value, max_value].",
}


def load_for_quality(store: FrameStore, asset: str, dates: list[dt.date]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The stored indicator rows of `dates` and the daily_quotes universe columns of the same days."""
    keys = [d.isoformat() for d in dates]
    frame = store.read_many(asset, keys)
    quotes = store.read_many("daily_quotes", keys, columns=["stock_id", "trade_date", "is_suspended"])
    return frame, quotes


def judged_factors(asset: str, provided_tables: frozenset[str]) -> tuple[list, list[str]]:
    """(factors the checks judge, ids of those left out): a factor built on a raw table the configured
    market source cannot ingest (a source whose `provides` lacks the table) is empty by construction, not broken, so it
    is reported but not held against the day."""
    judged, left_out = [], []
    for factor in registry.factors(asset):
        (judged if factor.source_tables <= provided_tables else left_out).append(factor)
    return judged, [f.factor_id for f in left_out]


def daily_reports(
    frame: pl.DataFrame,
    quotes: pl.DataFrame,
    factors: list,
    dates: list[dt.date],
    overall: quality.QualityReport,
) -> dict[dt.date, quality.QualityReport]:
    """One report per day from `overall`, the report of the whole range (`load_for_quality` rows):
    only failing days are re-evaluated on their own, so their worst stocks are that day's."""
    failing = {d for issue in overall.issues for d in issue.dates}
    reports = {}
    for date in dates:
        if date in failing:
            day = pl.col("trade_date") == date
            reports[date] = quality.evaluate(
                frame.filter(day) if frame.width else frame,
                quotes.filter(day) if quotes.width else quotes,
                factors,
                dates=[date],
            )
        else:
            reports[date] = quality.QualityReport(
                dates=[date] if date in overall.dates else [],
                closed_dates=[date] if date in overall.closed_dates else [],
                missing_rates=overall.missing_rates.filter(pl.col("trade_date") == date),
                coverage=overall.coverage.filter(pl.col("trade_date") == date),
            )
    return reports


def _dates_to_check(context: dg.AssetCheckExecutionContext, asset: str) -> list[dt.date]:
    """Every partition of the run; for a run of the checks alone, the partition(s) in the run's tags."""
    run = context.op_execution_context
    tags = context.run.tags
    if run.has_partition_key or run.has_partition_key_range:
        try:
            keys = run.partition_keys
        except dg.DagsterInvariantViolationError:  # checks-only run: no partitioned asset in the step
            start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
            if start and end:
                keys = trading_day.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))
            else:
                keys = [tags["dagster/partition"]]
        return sorted(parse_date(k, field="partition") for k in keys)
    stored = sorted(stored_partitions(context.instance, asset))  # no partition at all: judge the latest stored day
    return [parse_date(stored[-1], field="partition")] if stored else []


def _unmaterialised_quotes(instance: dg.DagsterInstance, dates: list[dt.date]) -> set[dt.date]:
    """Open days whose daily_quotes was never stored: no universe to judge against, which is a failure."""
    stored = stored_partitions(instance, "daily_quotes", [d.isoformat() for d in dates])
    return {d for d in dates if day_status(d).is_open and d.isoformat() not in stored}


def _blocking_evaluation(
    asset: str, check: str, passed: bool, metadata: dict, description: str, partition: str | None
) -> dg.AssetCheckEvaluation:
    """An ERROR-severity blocking evaluation; `partition` None = every day of the run."""
    return dg.AssetCheckEvaluation(
        **_error_fields(asset, check, passed, metadata, description), blocking=True, partition=partition
    )


def _error_fields(asset: str, check: str, passed: bool, metadata: dict, description: str) -> dict:
    """What an ERROR-severity evaluation and a check result of `check` share."""
    return {
        "asset_key": dg.AssetKey(asset),
        "check_name": check,
        "passed": passed,
        "metadata": metadata,
        "severity": dg.AssetCheckSeverity.ERROR,
        "description": description[:2000],
    }


def _evaluation(
    asset: str,
    check: str,
    date: dt.date,
    report: quality.QualityReport,
    no_quotes: bool,
    left_out=(),
    missing_history: str = "",
) -> dg.AssetCheckEvaluation:
    """`missing_history`: the line naming unstored lookback partitions; it leads a failure's description,
    since missing history is the usual cause of warm-up factors failing their missing rate."""
    issues = report.failures(CHECK_RULES[check])
    passed = not issues
    metadata: dict = {"market_closed": bool(report.closed_dates) and not no_quotes}
    if left_out:
        metadata["factors_not_provided_by_source"] = ", ".join(left_out)
    if no_quotes:
        # The indicator asset refuses to run without the day's quotes; a check-only run can still get here.
        passed = check != "coverage"
        description = f"daily_quotes {date} is not materialised: there is no universe to check against."
    elif report.closed_dates:
        description = "Market closed: nothing to check."
    elif issues:
        description = "; ".join(i.message for i in issues)
        if missing_history:
            description = f"{missing_history}\n{description}"
            metadata["missing_history"] = missing_history
        metadata["failing_factors"] = ", ".join(i.factor or "universe" for i in issues)
        metadata["worst_stocks"] = ", ".join(sid for sid, _ in issues[0].worst_stocks)
        metadata["issues"] = dg.MetadataValue.json([i.as_dict() for i in issues])
    else:
        description = f"{CHECK_DESCRIPTIONS[check]} Passed."
    if left_out and not report.closed_dates:
        description += f" Not judged (the market source does not provide their raw tables): {', '.join(left_out)}."
    if check == "missing_rate" and report.missing_rates.height:
        metadata["missing_rates"] = dg.MetadataValue.json(
            {
                f: round(r, 4)
                for f, r in zip(report.missing_rates["factor"], report.missing_rates["missing_rate"], strict=True)
            }
        )
    if check == "coverage" and report.coverage.height:
        metadata["coverage"] = float(report.coverage["coverage"][0])
        metadata["universe"] = int(report.coverage["universe"][0])
    return _blocking_evaluation(asset, check, passed, metadata, description, date.isoformat())


def _range_result(asset: str, check: str, report: quality.QualityReport, left_out=()) -> dg.AssetCheckResult:
    """The passing result of `check` for every day of the run at once (see the module docstring): no
    partition, so it counts for each day of its run. Being the check's result (not only an evaluation
    event), it is what Dagster gates the downstream steps of the run on."""
    checked = sorted(report.dates)
    metadata: dict = {
        "days_checked": len(checked),
        "closed_days": len(report.closed_dates),
        "market_closed": not checked,
    }
    if checked:
        metadata.update({"first_day": checked[0].isoformat(), "last_day": checked[-1].isoformat()})
        description = f"{CHECK_DESCRIPTIONS[check]} Passed on all {len(checked)} open days {checked[0]}..{checked[-1]}"
        description += f" ({len(report.closed_dates)} closed)." if report.closed_dates else "."
    else:
        description = "Market closed on every day of the run: nothing to check."
    if left_out:
        metadata["factors_not_provided_by_source"] = ", ".join(left_out)
        if checked:
            description += f" Not judged (the market source does not provide their raw tables): {', '.join(left_out)}."
    if check == "missing_rate" and report.missing_rates.height:
        worst = report.missing_rates.group_by("factor").agg(pl.col("missing_rate").max()).sort("factor")
        metadata["worst_missing_rates"] = dg.MetadataValue.json(
            {f: round(r, 4) for f, r in zip(worst["factor"], worst["missing_rate"], strict=True)}
        )
    if check == "coverage" and report.coverage.height:
        lowest = report.coverage.sort("coverage", "trade_date").row(0, named=True)
        metadata.update(
            {
                "lowest_coverage": float(lowest["coverage"]),
                "lowest_coverage_day": str(lowest["trade_date"]),
                "universe": int(lowest["universe"]),
            }
        )
    return dg.AssetCheckResult(**_error_fields(asset, check, True, metadata, description))


def _quality_checks(asset: str) -> dg.AssetChecksDefinition:
    specs = [
        dg.AssetCheckSpec(name=check, asset=asset, blocking=True, description=CHECK_DESCRIPTIONS[check])
        for check in CHECK_RULES
    ]

    # can_subset: the op yields AssetCheckEvaluation events (one per partition) instead of one output per
    # check, which Dagster accepts only when the check outputs are optional.
    @dg.multi_asset_check(specs=specs, name=f"{asset}_quality", can_subset=True)
    def _checks(
        context: dg.AssetCheckExecutionContext, frames: FrameStoreResource, market_source: MarketSourceResource
    ):
        selected = [
            c for c in CHECK_RULES if dg.AssetCheckKey(dg.AssetKey(asset), c) in context.selected_asset_check_keys
        ]
        store = frames.get()
        dates = _dates_to_check(context, asset)
        factors, left_out = judged_factors(asset, market_source.provided_tables())
        if left_out:
            context.log.info(f"{asset}: not judged, their raw tables are not provided by the source: {left_out}")
        no_quotes = _unmaterialised_quotes(context.instance, dates)
        frame, quotes = load_for_quality(store, asset, dates)  # read once, judged once over the whole range
        overall = quality.evaluate(frame, quotes, factors, dates=dates)
        if len(dates) > 1 and not no_quotes and not any(overall.failures(CHECK_RULES[c]) for c in selected):
            for check in selected:
                yield _range_result(asset, check, overall, left_out)
            context.log.info(f"{asset}: quality checked on {len(dates)} partitions, all passed")
            return
        reports = daily_reports(frame, quotes, factors, dates, overall)
        stored = stored_by_table(context.instance, compute_range.DAILY_INPUTS[asset])
        failed, failing_checks = 0, set()
        for date in dates:
            cause = ""
            if any(reports[date].failures(CHECK_RULES[check]) for check in selected):
                missing = compute_range.missing_history(store, asset, [date], stored)
                if missing:  # named on each failing evaluation, with the command that fixes the run's days
                    cause = compute_range.describe_missing_history(missing, (dates[0], dates[-1]))
            for check in selected:
                evaluation = _evaluation(asset, check, date, reports[date], date in no_quotes, left_out, cause)
                if not evaluation.passed:
                    failed += 1
                    failing_checks.add(check)
                    context.log.error(f"{asset} {date}: {evaluation.description}")
                yield evaluation
        # A check that passed on every day also gives the run its result (after the days' evaluations,
        # which it agrees with), so the run's downstream steps are gated on it. A check that failed on
        # some day gives none: its failed evaluation fails this step, and the days it passed keep
        # their own passing evaluations for the daily flow's gate.
        for check in selected if dates else []:  # nothing stored to judge: no result either
            if check not in failing_checks:
                yield _range_result(asset, check, overall, left_out)
        context.log.info(f"{asset}: quality checked on {len(dates)} partition(s), {failed} failing evaluation(s)")

    return _checks


# The quality checks of every declared indicator family (qrl_platform/factors/families.py).
INDICATOR_CHECKS = [_quality_checks(asset) for asset in families.ASSETS]
