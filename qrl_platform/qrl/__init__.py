"""QRL/USDT on MEXC every 15 minutes (SPEC S8): cost basis and PnL, a symmetric rebalance plan in
Redis and the warehouse, and guarded (off by default) execution.

Pure code: cost.py (PnL maths + trade ledger), rebalance.py (plan maths + storage), execution.py
(guards, client order ids), mexc_client.py (thin signed client + parsers), simulated.py (offline
exchange, paper account). Dagster wiring: assets.py, checks.py, schedules.py, resources/mexc.py.
The assets need the resource keys "mexc" (provided here), "warehouse" and "redis" (shared).

The exports are resolved lazily: `resources/mexc.py` imports the pure modules of this package, and
an eager import of the assets here would make that a circular import.
"""

from typing import Any

__all__ = ["QRL_ASSETS", "QRL_CHECKS", "QRL_JOBS", "QRL_RESOURCES", "QRL_SCHEDULES"]


def __getattr__(name: str) -> Any:
    if name == "QRL_ASSETS":
        from qrl_platform.qrl.assets import QRL_ASSETS

        return QRL_ASSETS
    if name == "QRL_CHECKS":
        from qrl_platform.qrl.checks import QRL_CHECKS

        return QRL_CHECKS
    if name in ("QRL_JOBS", "QRL_SCHEDULES"):
        from qrl_platform.qrl import schedules

        return getattr(schedules, name)
    if name == "QRL_RESOURCES":
        from qrl_platform.resources.mexc import MexcResource

        return {"mexc": MexcResource()}
    raise AttributeError(f"module 'qrl_platform.qrl' has no attribute {name!r}")
