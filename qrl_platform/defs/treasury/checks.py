"""Asset checks on what the QRL assets stored for a partition (the warehouse rows, not memory).

The rules are plain functions (`plan_problems`, `position_problems`) so they are unit-testable; the
checks are partitioned like their assets, so each quarter hour gets its own verdict.
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import math
import warnings
from collections.abc import Mapping
from typing import Any

import dagster as dg
import sqlalchemy as sa

from qrl_platform.defs.partitions import quarter_hour
from qrl_platform.defs.resources import WarehouseResource
from qrl_platform.defs.treasury.assets import qrl_position, rebalance_plan
from qrl_platform.defs.treasury.resources import MexcResource
from qrl_platform.warehouse.schema import qrl_positions, rebalance_plans

TOLERANCE = 1e-9


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def plan_problems(row: Mapping[str, Any]) -> list[str]:
    """Internal consistency of one stored plan; an empty list means consistent."""
    problems = []
    action, qty, notional = row["action"], row["quantity"], row["notional_usdt"]
    price, ratio = row["price"], row["current_ratio"]
    if action not in ("BUY", "SELL", "HOLD"):
        problems.append(f"action {action!r} is not BUY, SELL or HOLD")
    if qty < 0 or notional < 0:
        problems.append(f"negative quantity {qty} or notional {notional}")
    if action == "HOLD" and (qty != 0 or notional != 0):
        problems.append(f"HOLD with quantity {qty} / notional {notional}")
    if action in ("BUY", "SELL"):
        if not price or price <= 0:
            problems.append(f"{action} without a valid price ({price})")
        elif not _close(notional, qty * price):
            problems.append(f"notional {notional} != quantity {qty} × price {price}")
        if qty <= 0:
            problems.append(f"{action} with quantity {qty}")
    if action == "SELL" and qty > row["qrl_balance"] + TOLERANCE:
        problems.append(f"SELL {qty} exceeds the free QRL balance {row['qrl_balance']}")
    if action == "BUY" and notional > row["usdt_balance"] + TOLERANCE:
        problems.append(f"BUY notional {notional} exceeds the free USDT balance {row['usdt_balance']}")
    if ratio is not None and not 0 <= ratio <= 1:
        problems.append(f"current_ratio {ratio} is outside [0, 1]")
    if (
        row["total_value"] is not None
        and row["qrl_value"] is not None
        and not _close(row["total_value"], row["qrl_value"] + row["usdt_balance"])
    ):
        problems.append(f"total_value {row['total_value']} != qrl_value + usdt_balance")
    return problems


def position_problems(row: Mapping[str, Any]) -> list[str]:
    problems = []
    for field in ("position_qty", "invested", "fees_usdt"):
        if row[field] < -TOLERANCE:
            problems.append(f"{field} is negative ({row[field]})")
    if row["avg_cost"] is not None and row["avg_cost"] < 0:
        problems.append(f"avg_cost is negative ({row['avg_cost']})")
    if row["position_qty"] == 0 and row["invested"] != 0:
        problems.append(f"flat position but invested {row['invested']}")
    return problems


def _stored_row(warehouse: WarehouseResource, mexc: MexcResource, table: sa.Table, partition_key: str):
    query = sa.select(table).where(table.c.partition_key == partition_key, table.c.symbol == mexc.symbol)
    with warehouse.get().engine.connect() as connection:
        row = connection.execute(query).mappings().first()
    return dict(row) if row else None


# Partitioned asset checks are a preview feature in Dagster 1.13; the behaviour we use (a check per
# partition, run in the same job after its asset) is what we need, so the warning is only noise.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", category=dg.PreviewWarning)

    @dg.asset_check(
        asset=rebalance_plan,
        partitions_def=quarter_hour,
        blocking=True,
        description="The stored plan is internally consistent: notional ≈ quantity·price, quantity "
        "within free balances, current ratio in [0, 1], HOLD has no quantity.",
    )
    def rebalance_plan_is_consistent(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, mexc: MexcResource
    ) -> dg.AssetCheckResult:
        row = _stored_row(warehouse, mexc, rebalance_plans, context.partition_key)
        if row is None:
            return dg.AssetCheckResult(passed=False, metadata={"problem": "no stored plan for this partition"})
        problems = plan_problems(row)
        return dg.AssetCheckResult(passed=not problems, metadata={"problems": problems, "action": row["action"]})

    @dg.asset_check(
        asset=rebalance_plan,
        partitions_def=quarter_hour,
        description="Execution did not end REJECTED or UNKNOWN (a refused or unconfirmed order).",
    )
    def rebalance_order_not_rejected(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, mexc: MexcResource
    ) -> dg.AssetCheckResult:
        row = _stored_row(warehouse, mexc, rebalance_plans, context.partition_key) or {}
        status = row.get("order_status")
        return dg.AssetCheckResult(
            passed=status not in ("REJECTED", "UNKNOWN"),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"order_status": status, "order_message": row.get("order_message") or ""},
        )

    @dg.asset_check(
        asset=qrl_position,
        partitions_def=quarter_hour,
        description="The stored position is non-negative (quantity, invested, fees, average cost).",
    )
    def qrl_position_is_non_negative(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, mexc: MexcResource
    ) -> dg.AssetCheckResult:
        row = _stored_row(warehouse, mexc, qrl_positions, context.partition_key)
        if row is None:
            return dg.AssetCheckResult(passed=False, metadata={"problem": "no stored position for this partition"})
        problems = position_problems(row)
        return dg.AssetCheckResult(passed=not problems, metadata={"problems": problems})


QRL_CHECKS = [rebalance_plan_is_consistent, rebalance_order_not_rejected, qrl_position_is_non_negative]
