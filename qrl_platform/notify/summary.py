"""What the STRATEGY_SIGNALS_READY event says about a trading day, read from the warehouse."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from qrl_platform.warehouse import Warehouse
from qrl_platform.warehouse.schema import strategy_executions, strategy_signals


def unconsumed_signal_summary(warehouse: Warehouse, trade_date: dt.date) -> dict[str, int]:
    """Counts of the day's signals the order module has not consumed yet, and how many strategies ran successfully.

    Consumed means the order module acknowledged a STRATEGY_SIGNALS_READY for the day after they were stored
    (`outbox.mark_consumed` sets their consumed_at).
    """
    signal = strategy_signals.c.signal
    counts = sa.select(
        sa.func.count().label("total_signals"),
        sa.func.sum(sa.case((signal == "BUY", 1), else_=0)).label("buy_signals"),
        sa.func.sum(sa.case((signal == "SELL", 1), else_=0)).label("sell_signals"),
        sa.func.sum(sa.case((signal == "HOLD", 1), else_=0)).label("hold_signals"),
    ).where(strategy_signals.c.trade_date == trade_date, strategy_signals.c.consumed_at.is_(None))
    executed = sa.select(sa.func.count(sa.distinct(strategy_executions.c.strategy_id))).where(
        strategy_executions.c.execution_date == trade_date, strategy_executions.c.status == "SUCCESS"
    )
    with warehouse.engine.connect() as conn:
        row = conn.execute(counts).one()
        strategies = conn.execute(executed).scalar_one()
    return {
        "total_signals": int(row.total_signals or 0),
        "buy_signals": int(row.buy_signals or 0),
        "sell_signals": int(row.sell_signals or 0),
        "hold_signals": int(row.hold_signals or 0),
        "strategies_executed": int(strategies or 0),
    }
