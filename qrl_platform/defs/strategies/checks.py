"""Asset checks on `strategy_signals` , evaluated over the run's partition dates.

* `signals_match_executions` (blocking, ERROR): every current execution's `signals_generated`
  equals the rows stored under its execution_id — the seed's §6.2 SQL as a check. Blocking, so
  the order module's notification and stats never run on an inconsistent day.
* `signals_not_all_zero` (WARN): a day where every strategy produced no BUY/SELL (or no rows at
  all) usually means bad input data ("check the data source", seed §4.1); it also sends a WARNING
  alert through the alerts resource (resource key "alerts").
* `strategy_failure_rate` (ERROR above 30 %): share of FAILED/TIMEOUT strategies per day; above
  30 % it also sends an ERROR alert at once (the seed's 立即告警, "alert at once").

Each alert has a dedupe key per day, so re-evaluating a day does not alert twice.

The three are one step (`strategy_signals_checks`, a multi-asset check): one read of the day's
executions, and a daily run two steps and their events shorter than with a step per check.

The checks read the latest execution per (strategy, date): re-running a day adds executions and
supersedes the older ones, whose signals were replaced.
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import datetime as dt

import dagster as dg
import polars as pl
import sqlalchemy as sa

from qrl_platform.calendar import parse_date
from qrl_platform.defs.resources import WarehouseResource
from qrl_platform.defs.strategies.assets import strategy_signals
from qrl_platform.strategies.store import latest_executions

FAILURE_RATE_ERROR = 0.30  # above it: ERROR check and an immediate ERROR alert
ALERTS_RESOURCE_KEY = "alerts"  # qrl_platform.defs.resources.AlertsResource in the Definitions


def _check_dates(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> list[dt.date]:
    """The run's partition dates; for a check launched on its own, the latest executed date."""
    try:
        return sorted(parse_date(key, field="partition") for key in context.partition_keys)
    except Exception:  # no partition in this run
        from qrl_platform.warehouse.schema import strategy_executions

        with warehouse.get().engine.connect() as conn:
            latest = conn.execute(sa.select(sa.func.max(strategy_executions.c.execution_date))).scalar()
        return [latest] if latest else []


def consistency_result(executions: pl.DataFrame) -> dg.AssetCheckResult:
    mismatched = executions.filter(pl.col("signals_generated") != pl.col("stored_signals"))
    metadata = {"executions_checked": executions.height, "mismatched": mismatched.height}
    if mismatched.height:
        metadata["mismatches"] = "\n".join(
            f"{r['execution_date']} {r['strategy_id']} {r['execution_id']}: signals_generated="
            f"{r['signals_generated']}, stored={r['stored_signals']}"
            for r in mismatched.head(20).iter_rows(named=True)
        )
    return dg.AssetCheckResult(
        passed=mismatched.height == 0,
        metadata=metadata,
        description=None
        if not mismatched.height
        else f"{mismatched.height} execution(s) disagree with the stored signals; re-run those days",
    )


def zero_signal_result(executions: pl.DataFrame) -> dg.AssetCheckResult:
    per_day = (
        executions.group_by("execution_date")
        .agg(
            pl.col("signals_generated").sum().alias("rows"),
            (pl.col("buy_signals") + pl.col("sell_signals")).sum().alias("actionable"),
        )
        .sort("execution_date")
    )
    empty = per_day.filter((pl.col("rows") == 0) | (pl.col("actionable") == 0))
    metadata = {"days_checked": per_day.height, "days_without_signals": empty.height}
    if empty.height:
        metadata["dates"] = ", ".join(str(d) for d in empty["execution_date"].to_list()[:30])
    return dg.AssetCheckResult(
        passed=empty.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
        description=None
        if not empty.height
        else "every strategy produced zero BUY/SELL signals on these days — check the data source (indicators, quotes)",
    )


def failure_rates(executions: pl.DataFrame) -> pl.DataFrame:
    return (
        executions.group_by("execution_date")
        .agg(
            pl.len().alias("strategies"),
            (pl.col("status") != "SUCCESS").sum().alias("failed"),
            pl.col("strategy_id").filter(pl.col("status") != "SUCCESS").alias("failed_ids"),
        )
        .with_columns((pl.col("failed") / pl.col("strategies")).alias("failure_rate"))
        .sort("execution_date")
    )


def failure_rate_result(rates: pl.DataFrame) -> dg.AssetCheckResult:
    worst = rates.sort("failure_rate", descending=True).head(1)
    worst_rate = float(worst["failure_rate"][0]) if worst.height else 0.0
    over = rates.filter(pl.col("failure_rate") > FAILURE_RATE_ERROR)
    metadata: dict = {"days_checked": rates.height, "max_failure_rate": round(worst_rate, 4)}
    if worst.height:
        metadata["worst_day"] = str(worst["execution_date"][0])
    if over.height:
        metadata["days_over_30pct"] = "\n".join(
            f"{r['execution_date']}: {r['failed']}/{r['strategies']} failed ({', '.join(r['failed_ids'])})"
            for r in over.head(20).iter_rows(named=True)
        )
    return dg.AssetCheckResult(
        passed=over.height == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=None
        if not over.height
        else f"strategy failure rate above {FAILURE_RATE_ERROR:.0%} on {over.height} day(s) (worst {worst_rate:.0%})",
    )


def failure_alert(rates: pl.DataFrame, run_id: str) -> tuple[str, str, str, dict] | None:
    """(level, title, message, tags) when a day's failure rate exceeds 30 %, else None."""
    over = rates.filter(pl.col("failure_rate") > FAILURE_RATE_ERROR)
    if not over.height:
        return None
    lines = [
        f"{r['execution_date']}: {r['failed']}/{r['strategies']} strategies failed ({', '.join(r['failed_ids'])})"
        for r in over.iter_rows(named=True)
    ]
    first = over.row(0, named=True)
    title = f"M11 strategy failure rate {first['failure_rate']:.0%} on {first['execution_date']}"
    tags = {"module": "M11", "job": "EXEC_ALL_STRATEGIES", "trade_date": str(first["execution_date"]), "run_id": run_id}
    return "ERROR", title, "\n".join(lines), tags


def zero_signal_alert(executions: pl.DataFrame, run_id: str) -> tuple[str, str, str, dict] | None:
    """(level, title, message, tags) when every strategy produced zero BUY/SELL on a day, else None."""
    result = zero_signal_result(executions)
    if result.passed:
        return None
    dates = result.metadata["dates"].value
    first = dates.split(", ")[0]
    strategies = executions.filter(pl.col("execution_date").cast(pl.Utf8) == first)["strategy_id"].n_unique()
    title = f"M11: zero BUY/SELL signals across all strategies on {first}"
    message = (
        f"{strategies} strategies ran and none produced a BUY or SELL on {dates} — check the data source "
        "(indicators, quotes) before the order module acts on the day."
    )
    tags = {"module": "M11", "job": "EXEC_ALL_STRATEGIES", "trade_date": first, "run_id": run_id}
    return "WARNING", title, message, tags


def _send_alert(context, alerts, alert, dedupe_prefix: str) -> None:
    """Send `alert` (level, title, message, tags) once per day; an alert channel being down or no alerts
    resource wired is logged, never hides the check result."""
    if alert is None:
        return
    level, title, message, tags = alert
    if alerts is None:
        context.log.error(f"{title} (no alerts resource wired): {message}")
        return
    try:
        dedupe = f"{dedupe_prefix}:{tags['trade_date']}"
        alerts.send(level, title, message, source="strategy_signals", dedupe_key=dedupe, **tags)
    except Exception as exc:
        context.log.error(f"{dedupe_prefix} alert could not be sent: {exc}")


CONSISTENCY_DESCRIPTION = "Seed §6.2: each current execution's signals_generated equals its rows in strategy_signals."
ZERO_SIGNALS_DESCRIPTION = "WARN and a WARNING alert when every strategy produced zero BUY/SELL signals on a day."
FAILURE_RATE_DESCRIPTION = "ERROR and an immediate ERROR alert when more than 30 % of strategies failed."
STRATEGY_CHECK_SPECS = [
    dg.AssetCheckSpec(
        "signals_match_executions", asset=strategy_signals, blocking=True, description=CONSISTENCY_DESCRIPTION
    ),
    dg.AssetCheckSpec("signals_not_all_zero", asset=strategy_signals, description=ZERO_SIGNALS_DESCRIPTION),
    dg.AssetCheckSpec("strategy_failure_rate", asset=strategy_signals, description=FAILURE_RATE_DESCRIPTION),
]


def evaluate_strategy_checks(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, alerts):
    """The three check results (and their alerts) from one read of the days' current executions."""
    executions = latest_executions(warehouse.get(), _check_dates(context, warehouse))
    rates = failure_rates(executions)
    _send_alert(context, alerts, zero_signal_alert(executions, context.run.run_id), "m11-zero-signals")
    _send_alert(context, alerts, failure_alert(rates, context.run.run_id), "m11-failure-rate")
    results = {
        "signals_match_executions": consistency_result(executions),
        "signals_not_all_zero": zero_signal_result(executions),
        "strategy_failure_rate": failure_rate_result(rates),
    }
    for name, result in results.items():
        yield dg.AssetCheckResult(
            asset_key=strategy_signals.key,
            check_name=name,
            passed=result.passed,
            severity=result.severity,
            metadata=result.metadata,
            description=result.description,
        )


def build_strategy_checks(alerts_resource_key: str | None = ALERTS_RESOURCE_KEY) -> list[dg.AssetChecksDefinition]:
    """The three checks as one step (one op: a run of the daily flow has two steps fewer and their
    events). With an alerts resource key (default "alerts", the `AlertsResource`) the failure-rate
    check alerts above 30 % and the zero-signal check when a day has no BUY/SELL; with None they only
    log (for Definitions without alerts)."""
    if alerts_resource_key:
        # Dagster resources are either all declared by key or all passed as arguments, not mixed.
        @dg.multi_asset_check(
            specs=STRATEGY_CHECK_SPECS,
            name="strategy_signals_checks",
            required_resource_keys={"warehouse", alerts_resource_key},
        )
        def strategy_signals_checks(context: dg.AssetCheckExecutionContext):
            alerts = getattr(context.resources, alerts_resource_key)
            yield from evaluate_strategy_checks(context, context.resources.warehouse, alerts)
    else:

        @dg.multi_asset_check(specs=STRATEGY_CHECK_SPECS, name="strategy_signals_checks")
        def strategy_signals_checks(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
            yield from evaluate_strategy_checks(context, warehouse, None)

    return [strategy_signals_checks]


STRATEGY_CHECKS = build_strategy_checks()
