"""Dagster resources: one ConfigurableResource per outside system, configured from the settings.

Resources compose: the event bus holds the warehouse and Redis resources it writes to, so an asset
asks the bus to publish and never opens a Redis connection itself. Each resource reads the typed
settings (`qrl_platform.settings`, the only reader of the environment) once when it is used and hands
plain values to the core; a config field that is set replaces its setting (tests, a second
deployment). Secrets are never resource config, because the Dagster UI shows config values.
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import datetime as dt
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import redis as redis_lib
from sqlalchemy.engine import Connection

from qrl_platform.alerts.channels import (
    Alert,
    AlertDeduper,
    AlertReport,
    Level,
    channels_from_settings,
    configuration_problems,
    send_alert,
    send_with_dedupe,
)
from qrl_platform.calendar import TAIPEI, use_extra_overrides
from qrl_platform.market.sources import MarketSource
from qrl_platform.notify import lag, outbox, relay
from qrl_platform.settings import MarketSourceSettings, Settings, settings
from qrl_platform.storage.frames import FrameStore
from qrl_platform.warehouse import Warehouse

_warehouses: dict[str, Warehouse] = {}
_frame_stores: dict[str, FrameStore] = {}


class WarehouseResource(dg.ConfigurableResource):
    """The relational warehouse (signals, stats, outbox, QRL audit). SQLite file by default,
    PostgreSQL in production via QRL_WAREHOUSE_URL=postgresql+psycopg://…"""

    url: str = ""  # empty: the settings' warehouse (QRL_WAREHOUSE_URL or the SQLite file under QRL_HOME)

    def get(self) -> Warehouse:
        # Resolved at each use and shared per URL: one engine per database in a process, and a
        # resource object that outlives a change of QRL_HOME (tests, a notebook) follows it.
        url = self.url or settings().warehouse_url
        if url not in _warehouses:
            _warehouses[url] = Warehouse(url)
        return _warehouses[url]


class FrameStoreResource(dg.ConfigurableResource):
    """Per-partition Parquet frames under QRL_HOME (a path or an object-store URL)."""

    root: str = ""  # empty: QRL_HOME

    def get(self) -> FrameStore:
        root = self.root or settings().qrl_home
        if root not in _frame_stores:
            _frame_stores[root] = FrameStore(root)
        return _frame_stores[root]


class RedisResource(dg.ConfigurableResource):
    """Redis (QRL plan/position, the order module's event stream). URL from QRL_REDIS_URL; empty means not configured."""

    url: str = ""

    def resolved_url(self) -> str:
        return self.url or settings().redis_url.get_secret_value()

    @property
    def configured(self) -> bool:
        return bool(self.resolved_url())

    def client(self) -> redis_lib.Redis:
        url = self.resolved_url()
        if not url:
            raise RuntimeError("Redis is not configured: set QRL_REDIS_URL (e.g. redis://localhost:6379/0)")
        # Short timeouts and bounded retries: Redis being down must fail a step fast and clearly.
        return redis_lib.Redis.from_url(
            url,
            socket_timeout=5,
            socket_connect_timeout=5,
            retry_on_timeout=True,
            health_check_interval=30,
            decode_responses=True,
        )


class MarketSourceResource(dg.ConfigurableResource):
    """Where raw market data comes from: the seeded demo market (default) or live TWSE/TPEx.

    Empty fields fall back to the environment (QRL_MARKET_SOURCE, QRL_TWSE_BASE_URL, QRL_TPEX_BASE_URL,
    QRL_TDCC_BASE_URL, QRL_MOPS_BASE_URL, QRL_DEMO_SEED, QRL_DEMO_UNIVERSE), so the same definitions serve
    a laptop and production.
    """

    source: str = ""
    twse_base_url: str = ""
    tpex_base_url: str = ""
    tdcc_base_url: str = ""
    mops_base_url: str = ""

    def configured(self, current: Settings | None = None) -> Settings:
        """The settings (read now unless given) with this resource's set fields in their place,
        validated like the environment (a bad source names QRL_MARKET_SOURCE)."""
        current = current or settings()
        fields = ("twse_base_url", "tpex_base_url", "tdcc_base_url", "mops_base_url")
        overrides = {name: getattr(self, name) for name in fields if getattr(self, name)}
        if self.source:
            overrides["market_source"] = self.source
        return current.with_values(**overrides) if overrides else current

    def settings(self) -> MarketSourceSettings:
        return self.configured().market_source_settings()

    def provided_tables(self) -> frozenset[str]:
        """The raw tables the configured source can ingest (without connecting to anything)."""
        return self._source_class(self.configured().market_source).provides

    @staticmethod
    def _source_class(source: str) -> type:
        if source == "demo":
            from qrl_platform.market.demo import DemoMarket

            return DemoMarket
        from qrl_platform.market.live import LiveMarketSource

        return LiveMarketSource

    def get(self) -> MarketSource:
        current = self.configured()
        if current.market_source == "demo":
            from qrl_platform.market.demo import demo_market

            return demo_market(current.demo_seed, current.demo_universe)
        return self._source_class("live")(current.market_source_settings(), current.raw_cache_root)


class EventBusResource(dg.ConfigurableResource):
    """The event bus to the order module. Backend from QRL_EVENT_BUS: `outbox` (default, warehouse table only) or
    `redis` (outbox + relay to the Redis Stream `qrl:events:m13`, Redis from QRL_REDIS_URL).

    It holds the warehouse and Redis resources it writes to. The methods take the warehouse and,
    optionally, a Redis client; without them it uses its own (`bus.warehouse.get()`, a client of
    `bus.redis` opened and closed around the call)."""

    backend: str = ""  # empty: QRL_EVENT_BUS, else "outbox"
    stream_key: str = relay.STREAM_KEY
    warehouse: WarehouseResource
    redis: RedisResource

    def __init__(self, **fields):
        # The nested resources default to the environment's (Dagster's config layer has no
        # default_factory for a nested resource).
        fields.setdefault("warehouse", WarehouseResource())
        fields.setdefault("redis", RedisResource())
        super().__init__(**fields)

    def resolved_backend(self) -> str:
        return relay.resolve_backend(self.backend or settings().event_bus)

    @contextmanager
    def _redis(self, redis: redis_lib.Redis | None) -> Iterator[redis_lib.Redis | None]:
        """The client the backend needs: None for the outbox, the given one, or one from QRL_REDIS_URL."""
        if self.resolved_backend() == "outbox" or redis is not None:
            yield redis
            return
        source = self.redis
        if not source.configured:
            raise outbox.EventBusError(
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
    ) -> outbox.OutboxEvent:
        """Write the event inside the caller's transaction; call `relay()` after the commit."""
        self.resolved_backend()  # fail on a misspelt backend before anything is written
        return outbox.record_signals_ready(connection, trade_date, summary, force=force, now=now)

    def publish_signals_ready(
        self,
        warehouse: Warehouse | None,
        trade_date: dt.date | str,
        summary: Mapping[str, int],
        *,
        redis: redis_lib.Redis | None = None,
        force: bool = False,
        now: dt.datetime | None = None,
    ) -> relay.PublishResult:
        """Publish STRATEGY_SIGNALS_READY (idempotent per trade date unless `force`). On the Redis
        backend an outage leaves the event in the outbox and sets `relay_error` instead of raising."""
        backend = self.resolved_backend()
        with self._redis(redis) as client:
            return relay.publish_signals_ready(
                warehouse or self.warehouse.get(),
                trade_date,
                summary,
                backend=backend,
                redis=client,
                force=force,
                now=now,
                stream=self.stream_key,
            )

    def relay(
        self, warehouse: Warehouse | None = None, redis: redis_lib.Redis | None = None
    ) -> list[relay.RelayedEvent]:
        """Send outbox rows that have not reached the stream yet (no-op on the outbox backend)."""
        if self.resolved_backend() == "outbox":
            return []
        with self._redis(redis) as client:
            return relay.relay_pending(warehouse or self.warehouse.get(), client, stream=self.stream_key)

    def unconsumed(
        self,
        warehouse: Warehouse | None = None,
        redis: redis_lib.Redis | None = None,
        older_than: dt.timedelta = lag.DEFAULT_LAG_THRESHOLD,
        now: dt.datetime | None = None,
    ) -> list[lag.LaggingEvent]:
        """Events the order module has not consumed `older_than` after publication (the lag sensor's question)."""
        with self._redis(redis) as client:
            return lag.unconsumed_events(
                warehouse or self.warehouse.get(), client, older_than, now, stream=self.stream_key
            )

    def env_summary(self) -> dict[str, str]:
        """What the bus is wired to, for run metadata (never the Redis URL: it may carry a password)."""
        return {
            "backend": self.resolved_backend(),
            "stream": self.stream_key,
            "redis_configured": str(self.redis.configured).lower(),
        }


# One deduper per state file per process, so every resource instance in a process shares its memory.
_dedupers: dict[str, AlertDeduper] = {}


class AlertsResource(dg.ConfigurableResource):
    """Alerts: log by default; Slack, email and SMS webhook as listed in QRL_ALERT_CHANNELS.

    Channels and their secrets are read from the environment at every send, so no webhook URL or
    password is ever resource config (which the Dagster UI displays). `send` does not raise for
    delivery or configuration problems (only for a programming error such as an unknown level).
    """

    # Where dedupe state lives: empty → <QRL_HOME>/state/alert_dedupe.json (in-process memory when
    # QRL_HOME is an object-store URL); "memory" → in-process only.
    dedupe_state_path: str = ""
    default_dedupe_minutes: float = 60.0

    def _deduper(self, home: str) -> AlertDeduper:
        path = self.dedupe_state_path.strip()
        if not path:
            path = "memory" if "://" in home else str(Path(home) / "state" / "alert_dedupe.json")
        if path not in _dedupers:
            _dedupers[path] = AlertDeduper(None if path == "memory" else path)
        return _dedupers[path]

    def send(
        self,
        level: Level | str,
        title: str,
        message: str,
        *,
        source: str | None = None,
        dedupe_key: str | None = None,
        dedupe_minutes: float | None = None,
        now: dt.datetime | None = None,
        **tags: object,
    ) -> AlertReport:
        """Send an alert to every configured channel whose minimum level it reaches.

        With `dedupe_key` (e.g. "m13-lag:2024-12-24") the same alert goes out at most once per
        `dedupe_minutes` (default `default_dedupe_minutes`); a suppressed send returns a report with
        `suppressed=True` and no channel results.
        """
        alert = Alert(
            level=Level.parse(level),
            title=title,
            message=message,
            source=source,
            tags={key: str(value) for key, value in tags.items()},
            timestamp=(now or dt.datetime.now(TAIPEI)).astimezone(TAIPEI),
        )
        current = settings()
        channels = channels_from_settings(current)
        secrets = current.secret_values()
        if dedupe_key is None:
            return send_alert(alert, channels, secrets=secrets)
        minutes = self.default_dedupe_minutes if dedupe_minutes is None else dedupe_minutes
        return send_with_dedupe(
            alert,
            channels,
            deduper=self._deduper(current.qrl_home),
            dedupe_key=dedupe_key,
            window=dt.timedelta(minutes=minutes),
            secrets=secrets,
            now=now,
        )

    def configuration_problems(self) -> list[str]:
        """Misconfigured channels (missing URL, bad level, unknown name) — empty when all is well."""
        return configuration_problems(settings())


def shared_resources() -> dict[str, dg.ConfigurableResource]:
    """The resources every domain shares, wired together (the treasury adds `mexc`). Loading the code
    location also installs the operator's calendar closures (QRL_CALENDAR_OVERRIDES) in the calendar."""
    use_extra_overrides(settings().calendar_overrides)
    warehouse = WarehouseResource()
    redis = RedisResource()
    return {
        "market_source": MarketSourceResource(),
        "frames": FrameStoreResource(),
        "warehouse": warehouse,
        "redis": redis,
        "event_bus": EventBusResource(warehouse=warehouse, redis=redis),
        "alerts": AlertsResource(),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=shared_resources())
