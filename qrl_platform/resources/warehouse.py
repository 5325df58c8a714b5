from __future__ import annotations

from functools import cached_property

import dagster as dg

from qrl_platform.settings import warehouse_url
from qrl_platform.warehouse import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The relational warehouse (S6/S7 tables, outbox, QRL audit). SQLite file by default,
    PostgreSQL in production via QRL_WAREHOUSE_URL=postgresql+psycopg://…"""

    url: str = ""  # empty: QRL_WAREHOUSE_URL or the SQLite file under QRL_HOME

    @cached_property
    def _warehouse(self) -> Warehouse:
        return Warehouse(self.url or warehouse_url())

    def get(self) -> Warehouse:
        return self._warehouse
