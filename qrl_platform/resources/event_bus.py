from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import dagster as dg
import redis as redis_lib
from sqlalchemy.engine import Connection

from qrl_platform.notify import event_bus
from qrl_platform.resources.redis import RedisResource
from qrl_platform.warehouse import Warehouse


class EventBusResource(dg.ConfigurableResource):
    """The M13 event bus (S7). Backend from QRL_EVENT_BUS: `outbox` (default, warehouse table only) or
    `redis` (outbox + relay to the Redis Stream `qrl:events:m13`, Redis from QRL_REDIS_URL).

    The methods take the warehouse and, optionally, a Redis client (e.g. `RedisResource.client()`);
    without a client the Redis backend connects to QRL_REDIS_URL itself."""

    backend: str = ""  # empty: QRL_EVENT_BUS, else "outbox"
    stream_key: str = event_bus.STREAM_KEY

    def resolved_backend(self) -> str:
        return event_bus.resolve_backend(self.backend)

    @contextmanager
    def _redis(self, redis: redis_lib.Redis | None) -> Iterator[redis_lib.Redis | None]:
        """The client the backend needs: None for the outbox, the given one, or one from QRL_REDIS_URL."""
        if self.resolved_backend() == "outbox" or redis is not None:
            yield redis
            return
        source = RedisResource()
        if not source.configured:
            raise event_bus.EventBusError(
                "QRL_EVENT_BUS=redis but Redis is not configured: set QRL_REDIS_URL (e.g. redis://localhost:6379/0) "
                "or QRL_EVENT_BUS=outbox"
            )
        client = source.client()
        try:
            yield client
        finally:
            client.close()

    def record_signals_ready(
        self,
        connection: Connection,
        trade_date: dt.date | str,
        summary: Mapping[str, int],
        *,
        force: bool = False,
        now: dt.datetime | None = None,
    ) -> event_bus.OutboxEvent:
        """Write the event inside the caller's transaction; call `relay()` after the commit."""
        self.resolved_backend()  # fail on a misspelt backend before anything is written
        return event_bus.record_signals_ready(connection, trade_date, summary, force=force, now=now)

    def publish_signals_ready(
        self,
        warehouse: Warehouse,
        trade_date: dt.date | str,
        summary: Mapping[str, int],
        *,
        redis: redis_lib.Redis | None = None,
        force: bool = False,
        now: dt.datetime | None = None,
    ) -> event_bus.PublishResult:
        """Publish STRATEGY_SIGNALS_READY (idempotent per trade date unless `force`). On the Redis
        backend an outage leaves the event in the outbox and sets `relay_error` instead of raising."""
        backend = self.resolved_backend()
        with self._redis(redis) as client:
            return event_bus.publish_signals_ready(
                warehouse,
                trade_date,
                summary,
                backend=backend,
                redis=client,
                force=force,
                now=now,
                stream=self.stream_key,
            )

    def relay(self, warehouse: Warehouse, redis: redis_lib.Redis | None = None) -> list[event_bus.RelayedEvent]:
        """Send outbox rows that have not reached the stream yet (no-op on the outbox backend)."""
        if self.resolved_backend() == "outbox":
            return []
        with self._redis(redis) as client:
            return event_bus.relay_pending(warehouse, client, stream=self.stream_key)

    def unconsumed(
        self,
        warehouse: Warehouse,
        redis: redis_lib.Redis | None = None,
        older_than: dt.timedelta = event_bus.DEFAULT_LAG_THRESHOLD,
        now: dt.datetime | None = None,
    ) -> list[event_bus.LaggingEvent]:
        """Events M13 has not consumed `older_than` after publication (the lag sensor's question)."""
        with self._redis(redis) as client:
            return event_bus.unconsumed_events(warehouse, client, older_than, now, stream=self.stream_key)

    def env_summary(self) -> dict[str, str]:
        """What the bus is wired to, for run metadata (never the Redis URL: it may carry a password)."""
        return {
            "backend": self.resolved_backend(),
            "stream": self.stream_key,
            "redis_configured": str(bool(os.environ.get("QRL_REDIS_URL", "").strip())).lower(),
        }
