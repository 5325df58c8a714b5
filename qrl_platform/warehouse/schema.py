"""Warehouse tables (SQLAlchemy Core), the one description of the relational side.

Portable across SQLite (embedded default) and PostgreSQL (production). Alembic migrations under
`migrations/` create and evolve these tables; this module is what code imports to query them.
JSON payloads are stored as text so both backends behave the same.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

TS = sa.DateTime(timezone=True)

strategies = sa.Table(
    "strategies",
    metadata,
    sa.Column("strategy_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # ACTIVE | INACTIVE
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("horizon_days", sa.Integer, nullable=False),
    sa.Column("definition", sa.Text, nullable=False),  # the validated definition as JSON
    # Summary columns kept up to date by UPDATE_STRATEGY_STATS (the source's SQL).
    sa.Column("total_executions", sa.Integer, nullable=False, server_default="0"),
    sa.Column("total_signals", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_execution_at", TS, nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

strategy_signals = sa.Table(
    "strategy_signals",
    metadata,
    # Deterministic from (strategy_id, stock_id, trade_date): re-runs replace, never duplicate.
    sa.Column("signal_id", sa.String(64), primary_key=True),
    sa.Column("strategy_id", sa.String(64), nullable=False),
    sa.Column("stock_id", sa.String(16), nullable=False),
    sa.Column("trade_date", sa.Date, nullable=False),
    sa.Column("execution_id", sa.String(64), nullable=False),
    sa.Column("signal", sa.String(4), nullable=False),  # BUY | SELL | HOLD
    sa.Column("confidence", sa.Float, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("factor_values", sa.Text, nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("consumed_at", TS, nullable=True),
    # One index: (trade_date, strategy_id) for the readers of a day, the execution id last for the
    # consistency check's count. Execution ids are random; an index on them alone made each written
    # row touch a random page (migration 0004).
    sa.Index("ix_strategy_signals_date_strategy_execution", "trade_date", "strategy_id", "execution_id"),
)

strategy_executions = sa.Table(
    "strategy_executions",
    metadata,
    sa.Column("execution_id", sa.String(64), primary_key=True),
    sa.Column("strategy_id", sa.String(64), nullable=False),
    sa.Column("execution_date", sa.Date, nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS, nullable=True),
    sa.Column("duration_ms", sa.Float, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # SUCCESS | FAILED | TIMEOUT
    sa.Column("stocks_evaluated", sa.Integer, nullable=False, server_default="0"),
    sa.Column("signals_generated", sa.Integer, nullable=False, server_default="0"),
    sa.Column("buy_signals", sa.Integer, nullable=False, server_default="0"),
    sa.Column("sell_signals", sa.Integer, nullable=False, server_default="0"),
    sa.Column("hold_signals", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("diagnostics", sa.Text, nullable=True),
    sa.Index("ix_strategy_executions_date", "execution_date"),
    sa.Index("ix_strategy_executions_strategy", "strategy_id"),
)

job_execution_details = sa.Table(
    "job_execution_details",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_name", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("trade_date", sa.Date, nullable=True),
    sa.Column("strategy_id", sa.String(64), nullable=True),
    sa.Column("execution_id", sa.String(64), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error_type", sa.String(128), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("recorded_at", TS, nullable=False),
    sa.Index("ix_job_execution_details_date", "trade_date"),
)

factor_metadata = sa.Table(
    "factor_metadata",
    metadata,
    sa.Column("factor_id", sa.String(64), primary_key=True),
    sa.Column("module", sa.String(8), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("unit", sa.String(64), nullable=False),
    sa.Column("lookback", sa.Integer, nullable=False),
    sa.Column("source_columns", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("min_value", sa.Float, nullable=True),
    sa.Column("max_value", sa.Float, nullable=True),
    sa.Column("max_missing_rate", sa.Float, nullable=False),
    # trading days between a source row's date and the first day the factor uses it (margin: 1)
    sa.Column("lag_days", sa.Integer, nullable=False, server_default="0"),
    # prices the factor is computed on: raw | adjusted (total-return basis) | none (no prices)
    sa.Column("price_basis", sa.String(16), nullable=False, server_default="none"),
    sa.Column("updated_at", TS, nullable=False),
)

strategy_stats = sa.Table(
    "strategy_stats",
    metadata,
    sa.Column("strategy_id", sa.String(64), primary_key=True),
    sa.Column("as_of_date", sa.Date, primary_key=True),
    sa.Column("period_days", sa.Integer, primary_key=True),  # 7 | 30 | 90
    sa.Column("total_executions", sa.Integer, nullable=False),
    sa.Column("total_signals", sa.Integer, nullable=False),
    sa.Column("last_execution_at", TS, nullable=True),
    sa.Column("signal_count", sa.Integer, nullable=False),
    sa.Column("buy_count", sa.Integer, nullable=False),
    sa.Column("sell_count", sa.Integer, nullable=False),
    sa.Column("avg_confidence", sa.Float, nullable=True),
    sa.Column("evaluated_signals", sa.Integer, nullable=False),  # signals whose horizon has elapsed
    sa.Column("hit_rate", sa.Float, nullable=True),
    # BUY at limit-up / SELL at limit-down in the window: not fillable, excluded from the hit rate
    sa.Column("unfilled_signals", sa.Integer, nullable=False, server_default="0"),
    sa.Column("computed_at", TS, nullable=False),
)

# Transactional outbox of the event bus to the order module: the durable record of every event; the Redis relay
# reads unpublished rows from here, so an event survives Redis being down at publication time.
event_outbox = sa.Table(
    "event_outbox",
    metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("dedupe_key", sa.String(128), nullable=False, unique=True),
    sa.Column("trade_date", sa.Date, nullable=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("published_at", TS, nullable=True),  # relayed to the Redis stream
    sa.Column("stream_id", sa.String(64), nullable=True),
    sa.Column("consumed_at", TS, nullable=True),
    sa.Column("consumer", sa.String(64), nullable=True),
    sa.Index("ix_event_outbox_unpublished", "published_at"),
)

# QRL/USDT on MEXC: the account's own trades (synced incrementally), position snapshots and
# every rebalance plan for audit. `account` / `mode` (simulated | paper | live) keep the paper ledgers
# apart from the real one, so trying the simulated default first never pollutes the live cost basis.
qrl_trades = sa.Table(
    "qrl_trades",
    metadata,
    sa.Column("account", sa.String(16), primary_key=True),
    sa.Column("trade_id", sa.String(64), primary_key=True),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("order_id", sa.String(64), nullable=True),
    sa.Column("price", sa.Float, nullable=False),
    sa.Column("qty", sa.Float, nullable=False),
    sa.Column("quote_qty", sa.Float, nullable=False),
    sa.Column("commission", sa.Float, nullable=False),
    sa.Column("commission_asset", sa.String(16), nullable=True),
    sa.Column("time_ms", sa.BigInteger, nullable=False),
    sa.Column("is_buyer", sa.Boolean, nullable=False),
    sa.Column("is_maker", sa.Boolean, nullable=True),
    sa.Index("ix_qrl_trades_account_symbol_time", "account", "symbol", "time_ms"),
)

qrl_positions = sa.Table(
    "qrl_positions",
    metadata,
    sa.Column("partition_key", sa.String(32), primary_key=True),
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("as_of", TS, nullable=False),
    sa.Column("price", sa.Float, nullable=True),
    sa.Column("position_qty", sa.Float, nullable=False),
    sa.Column("avg_cost", sa.Float, nullable=True),
    sa.Column("invested", sa.Float, nullable=False),
    sa.Column("realized_pnl", sa.Float, nullable=False),
    sa.Column("unrealized_pnl", sa.Float, nullable=True),
    sa.Column("fees_usdt", sa.Float, nullable=False),
    sa.Column("trades_count", sa.Integer, nullable=False),
)

rebalance_plans = sa.Table(
    "rebalance_plans",
    metadata,
    sa.Column("partition_key", sa.String(32), primary_key=True),
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("timestamp", TS, nullable=False),
    sa.Column("price", sa.Float, nullable=True),
    sa.Column("qrl_balance", sa.Float, nullable=False),
    sa.Column("usdt_balance", sa.Float, nullable=False),
    sa.Column("qrl_value", sa.Float, nullable=True),
    sa.Column("total_value", sa.Float, nullable=True),
    sa.Column("target_ratio", sa.Float, nullable=False),
    sa.Column("current_ratio", sa.Float, nullable=True),
    sa.Column("action", sa.String(8), nullable=False),  # BUY | SELL | HOLD
    sa.Column("quantity", sa.Float, nullable=False),
    sa.Column("notional_usdt", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("details", sa.Text, nullable=True),  # caps, rounding, locked funds excluded
    sa.Column("client_order_id", sa.String(64), nullable=True),
    # NOT_EXECUTED | BLOCKED (a guard) | REJECTED (the exchange) | PLACED | UNKNOWN (5xx, not found after)
    sa.Column("order_status", sa.String(32), nullable=True),
    sa.Column("order_id", sa.String(64), nullable=True),
    sa.Column("order_message", sa.Text, nullable=True),
    sa.Column("executed_at", TS, nullable=True),  # when the order was sent: daily cap and min interval
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_rebalance_plans_mode_time", "mode", "timestamp"),
)

TABLES = {table.name: table for table in metadata.sorted_tables}
