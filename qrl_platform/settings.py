"""Configuration from the environment: the one place that reads it.

Every outside system is configured by environment variables (documented in the README), so the same
code location runs on a laptop with embedded defaults and in production with PostgreSQL, Redis and
the live exchanges. `settings()` builds one validated `Settings` object (pydantic-settings); every
other module asks it, never `os.environ`. Each call sees the current environment: a long-lived
process (the Dagster daemon, a test that changes a variable) sees a changed variable at its next call
(the result is reused only while the environment is unchanged; see `settings()`).

Secrets (MEXC keys, webhook URLs that carry their token, the SMTP password, the SMS token, database
URLs with a password) are `SecretStr`: their repr is `'**********'`, so a settings object that ends
up in a log or in metadata shows no secret; `secret_values()` lists them for redaction.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TWSE_DEFAULT_BASE_URL = "https://www.twse.com.tw"
TPEX_DEFAULT_BASE_URL = "https://www.tpex.org.tw"
TDCC_DEFAULT_BASE_URL = "https://opendata.tdcc.com.tw"
MOPS_DEFAULT_BASE_URL = "https://mops.twse.com.tw"


def _env(name: str, default: str = "") -> str:
    return Field(default=default, validation_alias=AliasChoices(name))


def _secret(name: str) -> SecretStr:
    return Field(default=SecretStr(""), validation_alias=AliasChoices(name))


class Settings(BaseSettings):
    """Every variable the platform reads, by its environment name. Empty values mean "default"."""

    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore", case_sensitive=True, frozen=True)

    # Where data lives
    home: str = _env("QRL_HOME")
    warehouse_url_raw: SecretStr = _secret("QRL_WAREHOUSE_URL")
    calendar_overrides: str = _env("QRL_CALENDAR_OVERRIDES")

    # Market data
    market_source: str = _env("QRL_MARKET_SOURCE", "demo")
    twse_base_url: str = _env("QRL_TWSE_BASE_URL", TWSE_DEFAULT_BASE_URL)
    tpex_base_url: str = _env("QRL_TPEX_BASE_URL", TPEX_DEFAULT_BASE_URL)
    tdcc_base_url: str = _env("QRL_TDCC_BASE_URL", TDCC_DEFAULT_BASE_URL)
    mops_base_url: str = _env("QRL_MOPS_BASE_URL", MOPS_DEFAULT_BASE_URL)
    http_min_interval_seconds: float = _env("QRL_HTTP_MIN_INTERVAL_SECONDS", "2.0")
    http_backoff_seconds: float = _env("QRL_HTTP_BACKOFF_SECONDS", "1.0")
    demo_seed: int = _env("QRL_DEMO_SEED", "7")
    demo_universe: int = _env("QRL_DEMO_UNIVERSE", "1800")
    # When each raw table's data for day D is normally out (HH:MM Taipei; market/timetable.py has the defaults)
    publish_daily_quotes: str = _env("QRL_PUBLISH_DAILY_QUOTES")
    publish_institutional_flows: str = _env("QRL_PUBLISH_INSTITUTIONAL_FLOWS")
    publish_margin_balances: str = _env("QRL_PUBLISH_MARGIN_BALANCES")
    publish_valuations: str = _env("QRL_PUBLISH_VALUATIONS")
    publish_monthly_revenue: str = _env("QRL_PUBLISH_MONTHLY_REVENUE")
    publish_financials: str = _env("QRL_PUBLISH_FINANCIALS")
    publish_shareholding_distribution: str = _env("QRL_PUBLISH_SHAREHOLDING_DISTRIBUTION")

    # Redis and the M13 event bus
    redis_url: SecretStr = _secret("QRL_REDIS_URL")
    event_bus: str = _env("QRL_EVENT_BUS")

    # M15 alert channels (validated by the channel builders, which report problems instead of raising)
    alert_channels: str = _env("QRL_ALERT_CHANNELS")
    log_min_level: str = _env("QRL_LOG_MIN_LEVEL")
    slack_webhook_url: SecretStr = _secret("QRL_SLACK_WEBHOOK_URL")
    slack_min_level: str = _env("QRL_SLACK_MIN_LEVEL")
    smtp_host: str = _env("QRL_SMTP_HOST")
    smtp_port: str = _env("QRL_SMTP_PORT")
    smtp_user: str = _env("QRL_SMTP_USER")
    smtp_password: SecretStr = _secret("QRL_SMTP_PASSWORD")
    smtp_starttls: str = _env("QRL_SMTP_STARTTLS")
    alert_email_from: str = _env("QRL_ALERT_EMAIL_FROM")
    alert_email_to: str = _env("QRL_ALERT_EMAIL_TO")
    email_min_level: str = _env("QRL_EMAIL_MIN_LEVEL")
    sms_webhook_url: SecretStr = _secret("QRL_SMS_WEBHOOK_URL")
    sms_token: SecretStr = _secret("QRL_SMS_TOKEN")
    sms_to: str = _env("QRL_SMS_TO")
    sms_min_level: str = _env("QRL_SMS_MIN_LEVEL")

    # QRL/USDT on MEXC (numbers stay text here: the treasury resource names the variable in its errors)
    mexc_mode: str = _env("QRL_MEXC_MODE")
    mexc_base_url: str = _env("QRL_MEXC_BASE_URL")
    mexc_api_key: SecretStr = _secret("MEXC_API_KEY")
    mexc_api_secret: SecretStr = _secret("MEXC_API_SECRET")
    execute_orders: str = _env("QRL_EXECUTE_ORDERS")
    target_ratio: str = _env("QRL_TARGET_RATIO")
    rebalance_threshold: str = _env("QRL_REBALANCE_THRESHOLD")
    max_order_notional: str = _env("QRL_MAX_ORDER_NOTIONAL")
    daily_trade_cap: str = _env("QRL_DAILY_TRADE_CAP")
    min_trade_interval_minutes: str = _env("QRL_MIN_TRADE_INTERVAL_MINUTES")
    max_drawdown: str = _env("QRL_MAX_DRAWDOWN")
    kill_switch_reset_at: str = _env("QRL_KILL_SWITCH_RESET_AT")

    # The `qrl` CLI: submit runs to this deployed Dagster webserver (GraphQL) instead of the local instance;
    # the token is sent as `Authorization: Bearer …` to the authenticating proxy in front of it.
    dagster_url: str = _env("QRL_DAGSTER_URL")
    dagster_token: SecretStr = _secret("QRL_DAGSTER_TOKEN")
    # Set by CI systems (GitHub Actions, GitLab, …): progress stays at one line per stage.
    ci: str = _env("CI")

    @field_validator("market_source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in {"demo", "live"}:
            raise ValueError(f"QRL_MARKET_SOURCE must be 'demo' or 'live', got {value!r}")
        return value

    @field_validator("twse_base_url", "tpex_base_url", "tdcc_base_url", "mops_base_url", "mexc_base_url", "dagster_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.strip().rstrip("/")

    @field_validator("*", mode="before")
    @classmethod
    def _strip(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value

    # ------------------------------------------------------------------ derived values

    @property
    def qrl_home(self) -> str:
        """Data directory (local path or object-store URL) holding frames, caches and the SQLite files."""
        return self.home or str(Path(".qrl").resolve())

    @property
    def in_ci(self) -> bool:
        return self.ci.lower() in {"true", "1", "yes"}

    @property
    def warehouse_url(self) -> str:
        explicit = self.warehouse_url_raw.get_secret_value()
        if explicit:
            return explicit
        home = self.qrl_home
        return f"sqlite:///{Path(home) / 'warehouse.sqlite'}" if "://" not in home else "sqlite:///warehouse.sqlite"

    def variables(self) -> dict[str, str]:
        """The set values by variable name (secrets revealed), for code that reports problems by the
        variable's name, such as the alert channel builders."""
        values = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            if text:
                values[field.validation_alias.choices[0]] = text
        return values

    def secret_values(self) -> list[str]:
        """Every secret value that is set, plus the password inside any URL, for redaction."""
        values = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                secret = value.get_secret_value()
                password = urlsplit(secret).password if "://" in secret else None
                if name.endswith("_url") or name == "warehouse_url_raw":
                    # Database and Redis URLs are secret only through their password.
                    if name in {"warehouse_url_raw", "redis_url"}:
                        if password:
                            values.append(password)
                        continue
                values.append(secret)
        return values


_last_read: tuple[tuple[tuple[str, str], ...], Settings] | None = None


def settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The current configuration: from the process environment, or from `environ` when given (tests,
    a dry run of another deployment's variables).

    Validating the variables costs about 3 ms (pydantic-settings inspects every field), and the frame
    store, the market source and the resources ask for each partition they touch (968 times for one
    raw table's 242 days). So the last result is kept with a snapshot of the environment it was read
    from and returned while the environment is unchanged (comparing the snapshot costs microseconds);
    any change to any variable reads it afresh. `Settings` is frozen, so a kept result cannot be
    altered by a caller."""
    global _last_read
    if environ is None:
        snapshot = tuple(os.environ.items())
        last = _last_read
        if last is not None and last[0] == snapshot:
            return last[1]
        current = Settings()
        _last_read = (snapshot, current)
        return current
    return Settings.model_validate({name: value for name, value in environ.items() if str(value).strip()})


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


def qrl_home() -> str:
    return settings().qrl_home


def publication_time_override(table: str) -> str | None:
    """`QRL_PUBLISH_<TABLE>` (HH:MM, Taipei): when a raw table's data is normally out (market/timetable.py)."""
    return getattr(settings(), f"publish_{table}", "") or None


def warehouse_url() -> str:
    return settings().warehouse_url


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

    @staticmethod
    def from_env() -> MarketSourceSettings:
        current = settings()
        return MarketSourceSettings(
            source=current.market_source,
            twse_base_url=current.twse_base_url,
            tpex_base_url=current.tpex_base_url,
            demo_seed=current.demo_seed,
            demo_universe=current.demo_universe,
            tdcc_base_url=current.tdcc_base_url,
            mops_base_url=current.mops_base_url,
        )
