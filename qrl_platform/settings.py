"""Configuration from the environment, read in one place.

Every outside system is configured by environment variables (documented in the README) so the same
code location runs on a laptop with embedded defaults and in production with Postgres/Redis/live
exchanges. Secrets (MEXC keys, webhook URLs with tokens) are read here too but never echoed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TWSE_DEFAULT_BASE_URL = "https://www.twse.com.tw"
TPEX_DEFAULT_BASE_URL = "https://www.tpex.org.tw"
TDCC_DEFAULT_BASE_URL = "https://opendata.tdcc.com.tw"
MOPS_DEFAULT_BASE_URL = "https://mops.twse.com.tw"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def qrl_home() -> str:
    """Data directory (local path or object-store URL) holding frames, caches and the SQLite files."""
    return _env("QRL_HOME", str(Path(".qrl").resolve()))


def publication_time_override(table: str) -> str | None:
    """`QRL_PUBLISH_<TABLE>` (HH:MM, Taipei): when a raw table's data is normally out (market/timetable.py)."""
    return os.environ.get(f"QRL_PUBLISH_{table.upper()}", "").strip() or None


def warehouse_url() -> str:
    home = qrl_home()
    default = f"sqlite:///{Path(home) / 'warehouse.sqlite'}" if "://" not in home else "sqlite:///warehouse.sqlite"
    return _env("QRL_WAREHOUSE_URL", default)


@dataclass(frozen=True)
class MarketSourceSettings:
    source: str  # "demo" | "live"
    twse_base_url: str
    tpex_base_url: str
    demo_seed: int
    demo_universe: int
    tdcc_base_url: str = TDCC_DEFAULT_BASE_URL
    mops_base_url: str = MOPS_DEFAULT_BASE_URL

    @staticmethod
    def from_env() -> MarketSourceSettings:
        source = _env("QRL_MARKET_SOURCE", "demo").lower()
        if source not in {"demo", "live"}:
            raise ValueError(f"QRL_MARKET_SOURCE must be 'demo' or 'live', got {source!r}")
        return MarketSourceSettings(
            source=source,
            twse_base_url=_env("QRL_TWSE_BASE_URL", TWSE_DEFAULT_BASE_URL).rstrip("/"),
            tpex_base_url=_env("QRL_TPEX_BASE_URL", TPEX_DEFAULT_BASE_URL).rstrip("/"),
            demo_seed=int(_env("QRL_DEMO_SEED", "7")),
            demo_universe=int(_env("QRL_DEMO_UNIVERSE", "1800")),
            tdcc_base_url=_env("QRL_TDCC_BASE_URL", TDCC_DEFAULT_BASE_URL).rstrip("/"),
            mops_base_url=_env("QRL_MOPS_BASE_URL", MOPS_DEFAULT_BASE_URL).rstrip("/"),
        )
