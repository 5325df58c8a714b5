from __future__ import annotations

from functools import cached_property

import dagster as dg

from qrl_platform.storage.frames import FrameStore


class FrameStoreResource(dg.ConfigurableResource):
    """Per-partition Parquet frames under QRL_HOME (a path or an object-store URL)."""

    root: str = ""  # empty: QRL_HOME

    @cached_property
    def _store(self) -> FrameStore:
        return FrameStore(self.root or None)

    def get(self) -> FrameStore:
        return self._store
