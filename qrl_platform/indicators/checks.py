"""Blocking data-quality checks on the M07/M08/M09 indicator assets (SPEC S5): thin wiring over `quality`.

Each indicator asset gets four blocking checks — missing_rate, coverage, no_infinities, within_ranges
— evaluated by one multi-asset check so the stored frames are read once. A failure (severity ERROR)
stops every downstream asset in the same run, so strategies never score a day off broken factors.

The checks are unpartitioned on a partitioned asset: in a single-run backfill they see every
partition key of the run and evaluate all of them; a failure names the days, the factor and the worst
stocks. Run on their own (e.g. "Execute checks" in the UI), they evaluate the latest stored partition.
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import datetime as dt
import json

import dagster as dg
import polars as pl

from qrl_platform.indicators import quality, registry
from qrl_platform.partitions import parse_date
from qrl_platform.resources.frames import FrameStoreResource
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


def evaluate_stored(store: FrameStore, asset: str, dates: list[dt.date]) -> quality.QualityReport:
    """The quality report of an indicator asset's stored partitions `dates` (plain function, no Dagster)."""
    keys = [d.isoformat() for d in dates]
    frame = store.read_many(asset, keys)
    quotes = store.read_many("daily_quotes", keys, columns=["stock_id", "trade_date", "is_suspended"])
    return quality.evaluate(frame, quotes, registry.factors(asset), dates=dates)


def _dates_to_check(context: dg.AssetCheckExecutionContext, store: FrameStore, asset: str) -> list[dt.date]:
    run = context.op_execution_context
    if run.has_partition_key or run.has_partition_key_range:
        return sorted(parse_date(k, field="partition") for k in run.partition_keys)
    stored = store.partitions(asset)
    return [parse_date(stored[-1], field="partition")] if stored else []


def _result(asset: str, check: str, report: quality.QualityReport) -> dg.AssetCheckResult:
    issues = report.failures(CHECK_RULES[check])
    metadata: dict = {
        "days_checked": len(report.dates),
        "closed_days_skipped": len(report.closed_dates),
        "failing_factors": ", ".join(i.factor or "universe" for i in issues) or "none",
    }
    if issues:
        metadata["failing_days"] = len({d for i in issues for d in i.dates})
        worst = issues[0]
        metadata["worst_stocks"] = ", ".join(sid for sid, _ in worst.worst_stocks)
        metadata["issues"] = dg.MetadataValue.json([i.as_dict() for i in issues])
    if check == "missing_rate" and report.missing_rates.height:
        worst_rates = (
            report.missing_rates.group_by("factor")
            .agg(pl.col("missing_rate").max(), pl.col("max_missing_rate").first())
            .sort("factor")
        )
        metadata["worst_missing_rates"] = dg.MetadataValue.json(
            {f: {"worst": round(r, 4), "allowed": m} for f, r, m in worst_rates.iter_rows()}
        )
    if check == "coverage" and report.coverage.height:
        metadata["min_coverage"] = float(report.coverage["coverage"].min())
    description = "; ".join(i.message for i in issues) if issues else f"{CHECK_DESCRIPTIONS[check]} Passed."
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=check,
        passed=not issues,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=description[:2000],
    )


def _quality_checks(asset: str) -> dg.AssetChecksDefinition:
    specs = [
        dg.AssetCheckSpec(name=check, asset=asset, blocking=True, description=CHECK_DESCRIPTIONS[check])
        for check in CHECK_RULES
    ]

    @dg.multi_asset_check(specs=specs, name=f"{asset}_quality", can_subset=False)
    def _checks(context: dg.AssetCheckExecutionContext, frames: FrameStoreResource):
        store = frames.get()
        dates = _dates_to_check(context, store, asset)
        report = evaluate_stored(store, asset, dates)
        for issue in report.issues:
            context.log.error(f"{asset}: {issue.message}")
        context.log.info(
            f"{asset}: quality evaluated on {len(report.dates)} open day(s): "
            f"{json.dumps({c: report.passed(r) for c, r in CHECK_RULES.items()})}"
        )
        for check in CHECK_RULES:
            yield _result(asset, check, report)

    return _checks


technical_indicators_quality = _quality_checks("technical_indicators")
fundamental_indicators_quality = _quality_checks("fundamental_indicators")
chip_indicators_quality = _quality_checks("chip_indicators")

INDICATOR_CHECKS = [technical_indicators_quality, fundamental_indicators_quality, chip_indicators_quality]
