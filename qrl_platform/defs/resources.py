"""Dagster resources: one ConfigurableResource per outside system, built from the settings in one place.

`shared_resources(current)` turns one `Settings` into every shared resource with every field filled:
the warehouse URL, the frame root (QRL_HOME), the Redis URL, the event bus backend, the market
source's hosts, politeness, publication times and cache root. The resources' methods use only their
fields and never read the settings.

The code location binds each key to a small factory (`bound_resources`) that calls `shared_resources`
on the settings when a run (or a sensor or schedule tick) starts, so one Definitions object serves a
laptop and production, follows the environment each process has, and holds no resource config for
the Dagster UI to show: the warehouse and Redis URLs may carry a password. A deployment that binds a
resource itself passes such a URL as `dg.EnvVar("QRL_WAREHOUSE_URL")` / `dg.EnvVar("QRL_REDIS_URL")`.

Resources compose: the event bus holds the warehouse and Redis resources it writes to, so an asset
asks the bus to publish and never opens a Redis connection itself.
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import redis as redis_lib
from pydantic import Field, SecretStr
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
from qrl_platform.settings import (
    HTTP_BACKOFF_SECONDS,
    HTTP_MIN_INTERVAL_SECONDS,
    MOPS_DEFAULT_BASE_URL,
    TDCC_DEFAULT_BASE_URL,
    TPEX_DEFAULT_BASE_URL,
    TWSE_DEFAULT_BASE_URL,
    MarketSourceSettings,
    Settings,
    settings,
)
from qrl_platform.storage.frames import FrameStore
from qrl_platform.warehouse import Warehouse

_warehouses: dict[str, Warehouse] = {}
_frame_stores: dict[str, FrameStore] = {}

MARKET_SOURCES = ("demo", "live")
# The market source resource's fields that are MarketSourceSettings' as they are (hosts, demo size, politeness).
_MARKET_SOURCE_FIELDS = tuple(
    field.name
    for field in dataclasses.fields(MarketSourceSettings)
    if field.name not in {"source", "publication_times"}
)


class WarehouseResource(dg.ConfigurableResource):
    """The relational warehouse (signals, stats, outbox, QRL audit): a SQLite file by default,
    PostgreSQL in production (QRL_WAREHOUSE_URL=postgresql+psycopg://…)."""

    # A secret through its password: bind it with dg.EnvVar; repr=False keeps it out of a printed resource.
    url: str = Field(repr=False, description="QRL_WAREHOUSE_URL, or the SQLite file under QRL_HOME")

    def get(self) -> Warehouse:
        # Shared per URL: one engine per database in a process.
        if self.url not in _warehouses:
            _warehouses[self.url] = Warehouse(self.url)
        return _warehouses[self.url]


class FrameStoreResource(dg.ConfigurableResource):
    """Per-partition Parquet frames under QRL_HOME (a path or an object-store URL)."""

    root: str = Field(description="QRL_HOME")

    def get(self) -> FrameStore:
        if self.root not in _frame_stores:
            _frame_stores[self.root] = FrameStore(self.root)
        return _frame_stores[self.root]


class RedisResource(dg.ConfigurableResource):
    """Redis (QRL plan/position, the order module's event stream)."""

    # A secret through its password, like the warehouse URL. Empty: this deployment has no Redis.
    url: str = Field(default="", repr=False, description="QRL_REDIS_URL; empty: Redis is not configured")

    @property
    def configured(self) -> bool:
        return bool(self.url)

    def client(self) -> redis_lib.Redis:
        if not self.url:
            raise RuntimeError("Redis is not configured: set QRL_REDIS_URL (e.g. redis://localhost:6379/0)")
        # Short timeouts and bounded retries: Redis being down must fail a step fast and clearly.
        return redis_lib.Redis.from_url(
            self.url,
            socket_timeout=5,
            socket_connect_timeout=5,
            retry_on_timeout=True,
            health_check_interval=30,
            decode_responses=True,
        )


class MarketSourceResource(dg.ConfigurableResource):
    """Where raw market data comes from: the seeded demo market (default) or live TWSE/TPEx/MOPS/TDCC."""

    source: str = Field(default="demo", description="demo | live (QRL_MARKET_SOURCE)")
    raw_cache_root: str = Field(description="where live answers are cached: {QRL_HOME}/cache/raw")
    twse_base_url: str = TWSE_DEFAULT_BASE_URL
    tpex_base_url: str = TPEX_DEFAULT_BASE_URL
    tdcc_base_url: str = TDCC_DEFAULT_BASE_URL
    mops_base_url: str = MOPS_DEFAULT_BASE_URL
    demo_seed: int = Settings.model_fields["demo_seed"].default
    demo_universe: int = Settings.model_fields["demo_universe"].default
    http_min_interval_seconds: float = HTTP_MIN_INTERVAL_SECONDS
    http_backoff_seconds: float = HTTP_BACKOFF_SECONDS
    publication_times: dict[str, str] = Field(
        default_factory=dict, description="HH:MM Taipei by raw table (QRL_PUBLISH_<TABLE>); unset: the table's default"
    )

    def settings(self) -> MarketSourceSettings:
        """The fields as the live source takes them; an unknown source names QRL_MARKET_SOURCE, as
        the variable's own check does."""
        source = self.source.strip().lower()
        if source not in MARKET_SOURCES:
            raise ValueError(f"QRL_MARKET_SOURCE must be 'demo' or 'live', got {self.source!r}")
        return MarketSourceSettings(
            source=source,
            **{name: getattr(self, name) for name in _MARKET_SOURCE_FIELDS},
            publication_times={table: dt.time.fromisoformat(hhmm) for table, hhmm in self.publication_times.items()},
        )

    def provided_tables(self) -> frozenset[str]:
        """The raw tables the configured source can ingest (without connecting to anything)."""
        return self._source_class(self.settings().source).provides

    @staticmethod
    def _source_class(source: str) -> type:
        if source == "demo":
            from qrl_platform.market.demo import DemoMarket

            return DemoMarket
        from qrl_platform.market.live import LiveMarketSource

        return LiveMarketSource

    def get(self) -> MarketSource:
        current = self.settings()
        if current.source == "demo":
            from qrl_platform.market.demo import demo_market

            return demo_market(current.demo_seed, current.demo_universe)
        return self._source_class("live")(current, self.raw_cache_root)


class EventBusResource(dg.ConfigurableResource):
    """The event bus to the order module: `outbox` (default, warehouse table only) or `redis` (outbox +
    relay to the Redis Stream `qrl:events:m13`), as QRL_EVENT_BUS says.

    It holds the warehouse and Redis resources it writes to. The methods take the warehouse and,
    optionally, a Redis client; without them it uses its own (`bus.warehouse.get()`, a client of
    `bus.redis` opened and closed around the call)."""

    # Text, checked when the bus is used: a misspelt backend is the bus's own error, not the code location's.
    backend: str = Field(default=relay.DEFAULT_BACKEND, description="outbox | redis (QRL_EVENT_BUS)")
    stream_key: str = relay.STREAM_KEY
    warehouse: WarehouseResource
    redis: RedisResource

    def resolved_backend(self) -> str:
        return relay.resolve_backend(self.backend)

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


class RunRetentionResource(dg.ConfigurableResource):
    """How long Dagster's own runs are kept, in days (the weekly dagster_retention_job; QRL_DAGSTER_RUNS_*_DAYS)."""

    high_frequency_days: int = Settings.model_fields["dagster_runs_high_frequency_days"].default
    daily_days: int = Settings.model_fields["dagster_runs_daily_days"].default


# The settings an alert channel is configured from (alerts/channels.py), carried by the alerts resource.
ALERT_SETTINGS = (
    "alert_channels",
    "log_min_level",
    "slack_webhook_url",
    "slack_min_level",
    "smtp_host",
    "smtp_port",
    "smtp_user",
    "smtp_password",
    "smtp_starttls",
    "alert_email_from",
    "alert_email_to",
    "email_min_level",
    "sms_webhook_url",
    "sms_token",
    "sms_to",
    "sms_min_level",
)
_SECRET_ALERT_SETTINGS = frozenset(
    name for name in ALERT_SETTINGS if isinstance(Settings.model_fields[name].default, SecretStr)
)


class AlertsResource(dg.ConfigurableResource):
    """Alerts: log by default; Slack, email and SMS webhook as listed in QRL_ALERT_CHANNELS.

    The channel fields carry their variables' values (secrets with repr=False: bind them with
    dg.EnvVar). `send` does not raise for delivery or configuration problems (only for a programming
    error such as an unknown level).
    """

    # Where dedupe state lives: a JSON file (<QRL_HOME>/state/alert_dedupe.json), or "memory": this
    # process only (an object-store QRL_HOME, tests).
    dedupe_state_path: str = "memory"
    default_dedupe_minutes: float = 60.0
    alert_channels: str = Field(default="", description="QRL_ALERT_CHANNELS; empty: log only")
    log_min_level: str = ""
    slack_webhook_url: str = Field(default="", repr=False)
    slack_min_level: str = ""
    smtp_host: str = ""
    smtp_port: int | None = None
    smtp_user: str = ""
    smtp_password: str = Field(default="", repr=False)
    smtp_starttls: bool | None = None
    alert_email_from: str = ""
    alert_email_to: str = ""
    email_min_level: str = ""
    sms_webhook_url: str = Field(default="", repr=False)
    sms_token: str = Field(default="", repr=False)
    sms_to: str = ""
    sms_min_level: str = ""
    # Every secret of the deployment (not only the alert channels'), removed from any alert text.
    redact: list[str] = Field(default_factory=list, repr=False)

    def _channel_settings(self) -> Settings:
        # The channel builders read these fields by their settings names; constructed, not read from
        # the environment (the values were validated when the settings were read).
        values = {name: getattr(self, name) for name in ALERT_SETTINGS}
        return Settings.model_construct(
            **{name: SecretStr(value) if name in _SECRET_ALERT_SETTINGS else value for name, value in values.items()}
        )

    def _deduper(self) -> AlertDeduper:
        path = self.dedupe_state_path.strip() or "memory"
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
        channels = channels_from_settings(self._channel_settings())
        if dedupe_key is None:
            return send_alert(alert, channels, secrets=self.redact)
        minutes = self.default_dedupe_minutes if dedupe_minutes is None else dedupe_minutes
        return send_with_dedupe(
            alert,
            channels,
            deduper=self._deduper(),
            dedupe_key=dedupe_key,
            window=dt.timedelta(minutes=minutes),
            secrets=self.redact,
            now=now,
        )

    def configuration_problems(self) -> list[str]:
        """Misconfigured channels (missing URL, bad level, unknown name) — empty when all is well."""
        return configuration_problems(self._channel_settings())


def _plain(value: object) -> object:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def alerts_resource(current: Settings, **fields: Any) -> AlertsResource:
    """The alerts resource as the settings configure it; `fields` (tests: another dedupe file) replace
    what the settings give."""
    home = current.qrl_home
    from_settings = dict(
        # An object-store home has no local file to lock: dedupe in this process's memory.
        dedupe_state_path="memory" if "://" in home else str(Path(home) / "state" / "alert_dedupe.json"),
        redact=current.secret_values(),
        **{name: _plain(getattr(current, name)) for name in ALERT_SETTINGS},
    )
    return AlertsResource(**{**from_settings, **fields})


def _market_source(current: Settings) -> MarketSourceResource:
    source = current.market_source_settings()
    return MarketSourceResource(
        source=source.source,
        raw_cache_root=current.raw_cache_root,
        **{name: getattr(source, name) for name in _MARKET_SOURCE_FIELDS},
        publication_times={table: time.strftime("%H:%M") for table, time in source.publication_times.items()},
    )


def _warehouse(current: Settings) -> WarehouseResource:
    return WarehouseResource(url=current.warehouse_url)


def _redis(current: Settings) -> RedisResource:
    return RedisResource(url=current.redis_url.get_secret_value())


def _event_bus(current: Settings) -> EventBusResource:
    return EventBusResource(
        backend=current.event_bus or relay.DEFAULT_BACKEND, warehouse=_warehouse(current), redis=_redis(current)
    )


def _frames(current: Settings) -> FrameStoreResource:
    return FrameStoreResource(root=current.qrl_home)


def _run_retention(current: Settings) -> RunRetentionResource:
    return RunRetentionResource(
        high_frequency_days=current.dagster_runs_high_frequency_days, daily_days=current.dagster_runs_daily_days
    )


# Each shared resource key and how the settings build it: the one place settings become resources.
_BUILDERS: dict[str, Callable[[Settings], dg.ConfigurableResource]] = {
    "market_source": _market_source,
    "frames": _frames,
    "warehouse": _warehouse,
    "redis": _redis,
    "event_bus": _event_bus,
    "alerts": alerts_resource,
    "run_retention": _run_retention,
}


def shared_resources(current: Settings) -> dict[str, dg.ConfigurableResource]:
    """Every shared resource (the treasury adds `mexc`) with every field filled from `current`."""
    return {key: build(current) for key, build in _BUILDERS.items()}


def _bound(build: Callable[[Settings], dg.ConfigurableResource]) -> dg.ResourceDefinition:
    resource_class = build.__annotations__["return"]

    @dg.resource(
        description=f"{resource_class.__name__}, built from the settings when a run or tick starts "
        f"({resource_class.__doc__.splitlines()[0]})"
    )
    def from_settings(_context) -> dg.ConfigurableResource:
        # The settings of the process that runs: no Dagster config, so the UI has no URL or secret to show.
        return build(settings())

    return from_settings


def bound_resources() -> dict[str, dg.ResourceDefinition]:
    """What the code location binds: per key, a factory that builds the resource with `shared_resources`' builder."""
    return {key: _bound(build) for key, build in _BUILDERS.items()}


@dg.definitions
def resources() -> dg.Definitions:
    # Loading the code location also installs the operator's calendar closures (QRL_CALENDAR_OVERRIDES).
    use_extra_overrides(settings().calendar_overrides)
    return dg.Definitions(resources=bound_resources())
