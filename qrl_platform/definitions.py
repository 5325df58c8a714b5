"""The one Definitions object of the qrl_platform code location (workspace.yaml points here)."""

from __future__ import annotations

import dagster as dg

from qrl_platform.market.assets import MARKET_ASSETS
from qrl_platform.resources.frames import FrameStoreResource
from qrl_platform.resources.market import MarketSourceResource
from qrl_platform.resources.redis import RedisResource
from qrl_platform.resources.warehouse import WarehouseResource

RESOURCES = {
    "market_source": MarketSourceResource(),
    "frames": FrameStoreResource(),
    "warehouse": WarehouseResource(),
    "redis": RedisResource(),
}

defs = dg.Definitions(
    assets=[*MARKET_ASSETS],
    resources=RESOURCES,
)
