"""Configuration from the environment: the one place that reads it.

Every outside system is configured by environment variables (the table is in docs/operations.md), so
the same code location runs on a laptop with embedded defaults and in production with PostgreSQL,
Redis and the live exchanges. `settings()` builds one validated `Settings` object (pydantic-settings)
with every value in its real type: numbers, booleans, times of day, fixed choices, secrets. A bad
value fails there, naming its variable. Nothing else reads the environment and no core module asks
for the settings: the entry points (the CLI, `qrl_platform.load`) and the one place that builds the
Dagster resources read them and hand the values on (docs/configuration.md).

Secrets (MEXC keys, webhook URLs that carry their token, the SMTP password, the SMS token, database
URLs with a password) are `SecretStr`: their repr is `'**********'`, so a settings object that ends
up in a log or in metadata shows no secret; `secret_values()` lists them for redaction.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, create_model, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qrl_platform.market import tables as raw_tables

TWSE_DEFAULT_BASE_URL = "https://www.twse.com.tw"
TPEX_DEFAULT_BASE_URL = "https://www.tpex.org.tw"
TDCC_DEFAULT_BASE_URL = "https://opendata.tdcc.com.tw"
MEXC_DEFAULT_BASE_URL = "https://api.mexc.com"
MOPS_DEFAULT_BASE_URL = "https://mops.twse.com.tw"
# The exchanges' politeness: at least this long between two requests to one host, and the first
# retry's wait (doubling after).
HTTP_MIN_INTERVAL_SECONDS = 2.0
HTTP_BACKOFF_SECONDS = 1.0


def _env(name: str, default: Any = None) -> Any:
    return Field(default=default, validation_alias=AliasChoices(name))


def _secret(name: str) -> SecretStr:
    return Field(default=SecretStr(""), validation_alias=AliasChoices(name))


MarketSourceName = Literal["demo", "live"]
MexcMode = Literal["simulated", "paper", "live"]
MEXC_MODES: tuple[MexcMode, ...] = ("simulated", "paper", "live")


# When each raw table's data for day D is normally out: one `publish_<table>` field per raw table declared
# in market/tables.py, read from QRL_PUBLISH_<TABLE> (HH:MM Taipei; None: the declaration's default).
PUBLISH_FIELDS = tuple(f"publish_{table.name}" for table in raw_tables.RAW)
_PublicationTimes = create_model(
    "_PublicationTimes",
    __base__=BaseSettings,
    **{f"publish_{table.name}": (dt.time | None, _env(table.publish_variable)) for table in raw_tables.RAW},
)


class Settings(_PublicationTimes):
    """Every variable the platform reads, by its environment name, in its real type. An empty
    variable means the default written here; a value that does not parse fails, naming the variable."""

    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore", case_sensitive=True, frozen=True)

    # Where data lives
    home: str = _env("QRL_HOME", "")
    warehouse_url_raw: SecretStr = _secret("QRL_WAREHOUSE_URL")
    calendar_overrides: Path | None = _env("QRL_CALENDAR_OVERRIDES")

    # Market data
    market_source: MarketSourceName = _env("QRL_MARKET_SOURCE", "demo")
    twse_base_url: str = _env("QRL_TWSE_BASE_URL", TWSE_DEFAULT_BASE_URL)
    tpex_base_url: str = _env("QRL_TPEX_BASE_URL", TPEX_DEFAULT_BASE_URL)
    tdcc_base_url: str = _env("QRL_TDCC_BASE_URL", TDCC_DEFAULT_BASE_URL)
    mops_base_url: str = _env("QRL_MOPS_BASE_URL", MOPS_DEFAULT_BASE_URL)
    http_min_interval_seconds: float = _env("QRL_HTTP_MIN_INTERVAL_SECONDS", HTTP_MIN_INTERVAL_SECONDS)
    http_backoff_seconds: float = _env("QRL_HTTP_BACKOFF_SECONDS", HTTP_BACKOFF_SECONDS)
    demo_seed: int = _env("QRL_DEMO_SEED", 7)
    demo_universe: int = _env("QRL_DEMO_UNIVERSE", 1800)
    # Redis and the event bus to the order module. The backend stays text here: notify/relay.py checks the name and
    # reports a misspelt one as the bus's own error when the bus is used, not when anything else starts.
    redis_url: SecretStr = _secret("QRL_REDIS_URL")
    event_bus: str = _env("QRL_EVENT_BUS", "")

    # Alert channels. Levels and the channel list stay text: a bad one becomes a failing channel
    # (alerts/channels.py), because an alert setting must never stop the job that alerts.
    alert_channels: str = _env("QRL_ALERT_CHANNELS", "")
    log_min_level: str = _env("QRL_LOG_MIN_LEVEL", "")
    slack_webhook_url: SecretStr = _secret("QRL_SLACK_WEBHOOK_URL")
    slack_min_level: str = _env("QRL_SLACK_MIN_LEVEL", "")
    smtp_host: str = _env("QRL_SMTP_HOST", "")
    smtp_port: int | None = _env("QRL_SMTP_PORT")  # None: 587 with STARTTLS, else 25
    smtp_user: str = _env("QRL_SMTP_USER", "")
    smtp_password: SecretStr = _secret("QRL_SMTP_PASSWORD")
    smtp_starttls: bool | None = _env("QRL_SMTP_STARTTLS")  # None: on when there is a login
    alert_email_from: str = _env("QRL_ALERT_EMAIL_FROM", "")
    alert_email_to: str = _env("QRL_ALERT_EMAIL_TO", "")
    email_min_level: str = _env("QRL_EMAIL_MIN_LEVEL", "")
    sms_webhook_url: SecretStr = _secret("QRL_SMS_WEBHOOK_URL")
    sms_token: SecretStr = _secret("QRL_SMS_TOKEN")
    sms_to: str = _env("QRL_SMS_TO", "")
    sms_min_level: str = _env("QRL_SMS_MIN_LEVEL", "")

    # QRL/USDT on MEXC (docs/treasury.md)
    mexc_mode: MexcMode = _env("QRL_MEXC_MODE", "simulated")
    mexc_base_url: str = _env("QRL_MEXC_BASE_URL", MEXC_DEFAULT_BASE_URL)
    mexc_api_key: SecretStr = _secret("MEXC_API_KEY")
    mexc_api_secret: SecretStr = _secret("MEXC_API_SECRET")
    execute_orders: bool = _env("QRL_EXECUTE_ORDERS", False)
    target_ratio: Decimal = _env("QRL_TARGET_RATIO", Decimal("0.5"))
    rebalance_threshold: Decimal = _env("QRL_REBALANCE_THRESHOLD", Decimal("0.01"))
    max_order_notional: Decimal = _env("QRL_MAX_ORDER_NOTIONAL", Decimal("100"))
    daily_trade_cap: int = _env("QRL_DAILY_TRADE_CAP", 4)
    min_trade_interval_minutes: float = _env("QRL_MIN_TRADE_INTERVAL_MINUTES", 60.0)
    max_drawdown: Decimal = _env("QRL_MAX_DRAWDOWN", Decimal("0.2"))
    # Resets a drawdown kill switch tripped before this instant (UTC when the value has no zone).
    kill_switch_reset_at: dt.datetime | None = _env("QRL_KILL_SWITCH_RESET_AT")

    # How long Dagster's own runs (and their event logs) are kept, in days (dagster_retention_job, weekly):
    # the high-frequency QRL jobs briefly, every other job (the daily chain) for more than a year.
    dagster_runs_high_frequency_days: int = _env("QRL_DAGSTER_RUNS_HIGH_FREQUENCY_DAYS", 14)
    dagster_runs_daily_days: int = _env("QRL_DAGSTER_RUNS_DAILY_DAYS", 400)

    # The `qrl` CLI: submit runs to this deployed Dagster webserver (GraphQL) instead of the local instance;
    # the token is sent as `Authorization: Bearer …` to the authenticating proxy in front of it.
    dagster_url: str = _env("QRL_DAGSTER_URL", "")
    # Dagster's own variable for the local instance; the CLI uses QRL_HOME/dagster when it is unset.
    dagster_home: str = _env("DAGSTER_HOME", "")
    dagster_token: SecretStr = _secret("QRL_DAGSTER_TOKEN")
    # Set by CI systems (GitHub Actions, GitLab, …): progress stays at one line per stage.
    in_ci: bool = _env("CI", False)

    @classmethod
    def variable(cls, field_name: str) -> str:
        """The environment variable behind a field (for messages that name it)."""
        return cls.model_fields[field_name].validation_alias.choices[0]

    @field_validator("dagster_runs_high_frequency_days", "dagster_runs_daily_days")
    @classmethod
    def _at_least_a_day(cls, value: int, info) -> int:
        if value < 1:
            name = cls.model_fields[info.field_name].validation_alias.choices[0]
            raise ValueError(f"{name} must be at least 1 (days), got {value}")
        return value

    def with_values(self, **values: Any) -> Settings:
        """A copy with some fields replaced (a test, a variant of a deployment), validated exactly like
        the environment, so a bad value fails the same way, naming its variable."""
        fields = type(self).model_fields
        data = {type(self).variable(name): getattr(self, name) for name in fields}
        data.update({type(self).variable(name): value for name, value in values.items()})
        return type(self).model_validate(data)

    @field_validator("*", mode="before")
    @classmethod
    def _strip(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value

    @field_validator("market_source", mode="before")
    @classmethod
    def _known_source(cls, value: object) -> object:
        value = str(value).strip().lower()
        if value not in {"demo", "live"}:
            raise ValueError(f"QRL_MARKET_SOURCE must be 'demo' or 'live', got {value!r}")
        return value

    @field_validator("mexc_mode", mode="before")
    @classmethod
    def _known_mode(cls, value: object) -> object:
        value = str(value).strip().lower()
        if value not in MEXC_MODES:
            raise ValueError(f"QRL_MEXC_MODE must be one of {', '.join(MEXC_MODES)}, got {value!r}")
        return value

    @field_validator("in_ci", mode="before")
    @classmethod
    def _ci_flag(cls, value: object) -> object:
        # CI systems set CI to all sorts of text ("true", "1", a product name); only the common
        # affirmative spellings count, and no value of it may stop the platform from starting.
        return str(value).strip().lower() in {"true", "1", "yes"}

    @field_validator("twse_base_url", "tpex_base_url", "tdcc_base_url", "mops_base_url", "mexc_base_url", "dagster_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator(*PUBLISH_FIELDS, mode="before")
    @classmethod
    def _time_of_day(cls, value: object, info) -> object:
        if not isinstance(value, str):
            return value
        try:
            hours, minutes = value.split(":")
            return dt.time(int(hours), int(minutes))
        except ValueError:
            raise ValueError(
                f"{cls.variable(info.field_name)} must be a Taipei time of day HH:MM (e.g. 21:00), got {value!r}"
            ) from None

    @field_validator("kill_switch_reset_at", mode="before")
    @classmethod
    def _iso_date_time(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"QRL_KILL_SWITCH_RESET_AT: {value!r} is not an ISO date-time (e.g. 2026-12-01T09:30:00+00:00)"
            ) from None

    @field_validator("kill_switch_reset_at")
    @classmethod
    def _utc_unless_zoned(cls, value: dt.datetime | None) -> dt.datetime | None:
        return value if value is None or value.tzinfo else value.replace(tzinfo=dt.UTC)

    # ------------------------------------------------------------------ derived values

    @property
    def qrl_home(self) -> str:
        """Data directory (local path or object-store URL) holding frames, caches and the SQLite files."""
        return self.home or str(Path(".qrl").resolve())

    @property
    def warehouse_url(self) -> str:
        explicit = self.warehouse_url_raw.get_secret_value()
        if explicit:
            return explicit
        home = self.qrl_home
        return f"sqlite:///{Path(home) / 'warehouse.sqlite'}" if "://" not in home else "sqlite:///warehouse.sqlite"

    @property
    def raw_cache_root(self) -> str:
        """`{QRL_HOME}/cache/raw`, a path or an fsspec URL: with an `s3://` home every pod shares the cache."""
        return f"{self.qrl_home.rstrip('/')}/cache/raw"

    def publication_times(self) -> dict[str, dt.time]:
        """The `QRL_PUBLISH_<TABLE>` times that are set, by raw table (market/timetable.py)."""
        return {
            name.removeprefix("publish_"): value
            for name in PUBLISH_FIELDS
            if (value := getattr(self, name)) is not None
        }

    def market_source_settings(self) -> MarketSourceSettings:
        return MarketSourceSettings(
            source=self.market_source,
            twse_base_url=self.twse_base_url,
            tpex_base_url=self.tpex_base_url,
            demo_seed=self.demo_seed,
            demo_universe=self.demo_universe,
            tdcc_base_url=self.tdcc_base_url,
            mops_base_url=self.mops_base_url,
            http_min_interval_seconds=self.http_min_interval_seconds,
            http_backoff_seconds=self.http_backoff_seconds,
            publication_times=self.publication_times(),
        )

    def secret_values(self) -> list[str]:
        """Every secret value that is set, plus the password inside any URL, for redaction."""
        values = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                secret = value.get_secret_value()
                if name in {"warehouse_url_raw", "redis_url"}:
                    # Database and Redis URLs are secret only through their password.
                    password = urlsplit(secret).password if "://" in secret else None
                    if password:
                        values.append(password)
                    continue
                values.append(secret)
        return values


def settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The current configuration: from the process environment, or from `environ` when given (tests,
    a dry run of another deployment's variables).

    Not cached: it is called only where something starts (a run or tick builds its resources from it,
    a CLI command or `qrl_platform.load` reads it once), which costs about 3 ms a validation, a handful
    per run. A cache would save nothing measurable and would hand a process that changes a variable
    (a test, a notebook) the old values."""
    if environ is None:
        return Settings()
    return _MappingSettings.model_validate({name: value for name, value in environ.items() if str(value).strip()})


class _MappingSettings(Settings):
    """Settings from a given mapping alone: the process environment (CI=true on a CI machine, say)
    must not leak into a configuration that was handed over whole."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        return (init_settings,)


# Dagster's own switches for a run over many partitions (Dagster reads them as it writes the events).
# Without them a single-run backfill of the year writes one ASSET_MATERIALIZATION_PLANNED event per
# asset and day before it starts (2,610 for the daily chain, each its own commit) and stores the
# per-day materialisations of one output one by one.
RANGE_RUN_DAGSTER_ENVIRONMENT = {
    # One planned event per asset naming the run's partition range. Dagster's documented trade-off: if
    # the run fails, its partitions are not marked "failed" in the UI (they stay "missing"); the run
    # itself shows as failed and the daily flow never reads planned events.
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
    # The per-partition events of one output stored as one batch (PostgreSQL event log: one INSERT;
    # Dagster's SQLite event log, the local instance's, still stores a batch event by event:
    # docs/performance-storage.md).
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
}


@contextlib.contextmanager
def range_run_dagster_environment() -> Iterator[None]:
    """`RANGE_RUN_DAGSTER_ENVIRONMENT` for the duration of a run launched in this process; a value the
    operator exported wins, and the previous environment is restored afterwards."""
    added = {name: value for name, value in RANGE_RUN_DAGSTER_ENVIRONMENT.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@dataclass(frozen=True)
class MarketSourceSettings:
    """Where raw market data comes from, resolved (the live source and the resource take this)."""

    source: str  # "demo" | "live"
    twse_base_url: str
    tpex_base_url: str
    demo_seed: int
    demo_universe: int
    tdcc_base_url: str = TDCC_DEFAULT_BASE_URL
    mops_base_url: str = MOPS_DEFAULT_BASE_URL
    http_min_interval_seconds: float = HTTP_MIN_INTERVAL_SECONDS
    http_backoff_seconds: float = HTTP_BACKOFF_SECONDS
    # The set QRL_PUBLISH_<TABLE> times (MOPS is asked only once a period's deadline has passed).
    publication_times: Mapping[str, dt.time] = field(default_factory=dict)
