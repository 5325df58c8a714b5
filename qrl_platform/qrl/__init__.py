"""QRL/USDT on MEXC every 15 minutes (SPEC S8): cost basis and PnL, a symmetric rebalance plan in
Redis and the warehouse, and guarded (off by default) execution.

Pure code: cost.py (PnL maths + trade ledger), rebalance.py (plan maths + storage), execution.py
(guards, client order ids), mexc_client.py (thin signed client + parsers), simulated.py (offline
exchange, paper account). Dagster wiring: assets.py, checks.py, schedules.py, resources/mexc.py.
The assets need the resource keys "mexc" (provided here), "warehouse" and "redis" (shared).
"""

from qrl_platform.qrl.assets import QRL_ASSETS
from qrl_platform.qrl.checks import QRL_CHECKS
from qrl_platform.qrl.schedules import QRL_JOBS, QRL_SCHEDULES
from qrl_platform.resources.mexc import MexcResource

QRL_RESOURCES = {"mexc": MexcResource()}

__all__ = ["QRL_ASSETS", "QRL_CHECKS", "QRL_JOBS", "QRL_RESOURCES", "QRL_SCHEDULES"]
