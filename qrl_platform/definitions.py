"""The one Definitions object of the qrl_platform code location (workspace.yaml points here).

Read top-down: what runs (jobs), when (schedules, sensors), on what (resources), producing what
(assets and their checks). Every domain module exports plain lists; this file only assembles them.
"""

import dagster as dg

from qrl_platform.indicators import INDICATOR_ASSETS, INDICATOR_CHECKS, INDICATOR_JOBS, INDICATOR_SCHEDULES
from qrl_platform.market.assets import MARKET_ASSETS
from qrl_platform.notify.assets import NOTIFY_ASSETS
from qrl_platform.orchestration.jobs import DAILY_FLOW_JOBS
from qrl_platform.orchestration.monitoring import MONITORING_SENSORS
from qrl_platform.orchestration.schedules import ALL_SCHEDULES
from qrl_platform.orchestration.sensors import DAILY_FLOW_SENSORS
from qrl_platform.qrl import QRL_ASSETS, QRL_CHECKS, QRL_JOBS, QRL_RESOURCES, QRL_SCHEDULES
from qrl_platform.resources.alerts import AlertsResource
from qrl_platform.resources.event_bus import EventBusResource
from qrl_platform.resources.frames import FrameStoreResource
from qrl_platform.resources.market import MarketSourceResource
from qrl_platform.resources.redis import RedisResource
from qrl_platform.resources.warehouse import WarehouseResource
from qrl_platform.strategy import STRATEGY_ASSETS, STRATEGY_CHECKS

RESOURCES = {
    "market_source": MarketSourceResource(),
    "frames": FrameStoreResource(),
    "warehouse": WarehouseResource(),
    "redis": RedisResource(),
    "event_bus": EventBusResource(),
    "alerts": AlertsResource(),
    **QRL_RESOURCES,
}

defs = dg.Definitions(
    assets=[*MARKET_ASSETS, *INDICATOR_ASSETS, *STRATEGY_ASSETS, *NOTIFY_ASSETS, *QRL_ASSETS],
    asset_checks=[*INDICATOR_CHECKS, *STRATEGY_CHECKS, *QRL_CHECKS],
    jobs=[*DAILY_FLOW_JOBS, *INDICATOR_JOBS, *QRL_JOBS],
    schedules=[*ALL_SCHEDULES, *INDICATOR_SCHEDULES, *QRL_SCHEDULES],
    sensors=[*DAILY_FLOW_SENSORS, *MONITORING_SENSORS],
    resources=RESOURCES,
)
