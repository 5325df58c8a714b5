"""QRL/USDT on MEXC every 15 minutes: cost basis and PnL, a symmetric rebalance plan in
Redis and the warehouse, and guarded (off by default) execution.

Plain Python, no Dagster: cycle.py (the quarter hour's two use cases: position update, rebalance),
trades.py (one fill), cost.py (PnL maths + trade ledger), rebalance.py (plan maths + storage),
execution.py (guards, client order ids), mexc_client.py (thin signed client + parsers), simulated.py
(offline exchange, paper account). The Dagster wiring is in
`qrl_platform.defs.treasury`.
"""
