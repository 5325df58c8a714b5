"""The QRL exchange resource: `simulated` (default), `paper` or `live` MEXC Spot v3.

`MexcResource` works only from its own fields. The code location binds `mexc` to
`mexc_from_settings`, which builds the resource from the settings (`mexc_resource`: QRL_MEXC_MODE,
QRL_MEXC_BASE_URL, MEXC_API_KEY, MEXC_API_SECRET, QRL_EXECUTE_ORDERS, QRL_TARGET_RATIO,
QRL_REBALANCE_THRESHOLD, QRL_MAX_ORDER_NOTIONAL, QRL_DAILY_TRADE_CAP, QRL_MIN_TRADE_INTERVAL_MINUTES,
QRL_MAX_DRAWDOWN, QRL_KILL_SWITCH_RESET_AT and QRL_HOME; the table is in docs/configuration.md) when a
run starts, so one Definitions object serves a laptop and production, and the API key is never Dagster
config. A deployment that binds `MexcResource(...)` itself passes the key and secret as
`dg.EnvVar("MEXC_API_KEY")` / `dg.EnvVar("MEXC_API_SECRET")`: the Dagster UI and the stored run config
then show the variable's name, never its value.
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from qrl_platform.settings import MEXC_DEFAULT_BASE_URL, MEXC_MODES, Settings, settings
from qrl_platform.treasury.cycle import TreasuryConfig
from qrl_platform.treasury.execution import RESET_VARIABLE, ExecutionLimits
from qrl_platform.treasury.mexc_client import ClientSettings, MexcClient, SpotExchange
from qrl_platform.treasury.rebalance import RebalanceParams
from qrl_platform.treasury.simulated import SIMULATION_EPOCH, PaperAccount, PaperExchange, SimulatedMarket


def _setting_default(name: str) -> Any:
    """The settings' default for a field, so the resource's own defaults never drift from them."""
    default = Settings.model_fields[name].default
    return float(default) if isinstance(default, Decimal) else default


class MexcResource(dg.ConfigurableResource):
    """QRL/USDT on MEXC: simulated (default, offline), paper, or live signed Spot v3."""

    mode: str = Field(default="simulated", description="simulated | paper | live (QRL_MEXC_MODE)")
    base_url: str = Field(default=MEXC_DEFAULT_BASE_URL, description="QRL_MEXC_BASE_URL")
    # Secrets: bind them with dg.EnvVar; repr=False keeps them out of any printed resource.
    api_key: str = Field(default="", repr=False, description="MEXC_API_KEY, as dg.EnvVar; live mode only")
    api_secret: str = Field(default="", repr=False, description="MEXC_API_SECRET, as dg.EnvVar; live mode only")
    symbol: str = "QRLUSDT"
    base_asset: str = "QRL"
    quote_asset: str = "USDT"
    target_ratio: float = Field(default=_setting_default("target_ratio"), description="share of value in QRL")
    threshold: float = Field(
        default=_setting_default("rebalance_threshold"), description="HOLD below this |delta|/total"
    )
    max_order_notional: float = Field(default=_setting_default("max_order_notional"), description="USDT per order")
    fee_rate: float | None = Field(
        default=None, description="taker fee reserved on BUY; unset: the account's takerCommission"
    )
    execute_orders: bool = Field(default=_setting_default("execute_orders"), description="QRL_EXECUTE_ORDERS")
    daily_trade_cap: int = _setting_default("daily_trade_cap")
    min_trade_interval_minutes: float = _setting_default("min_trade_interval_minutes")
    max_drawdown: float = Field(default=_setting_default("max_drawdown"), description="kill switch")
    max_plan_age_minutes: float = 30.0
    kill_switch_reset_at: str = Field(default="", description=f"ISO time ({RESET_VARIABLE}); empty: never reset")
    recv_window_ms: int = 5000
    timeout_seconds: float = 10.0
    max_retries: int = 3
    backoff_seconds: float = 0.5
    max_retry_after_seconds: float = 60.0
    min_request_interval_seconds: float = 0.1
    trades_since: str = Field(
        default="", description="ISO date: where the first myTrades sync starts (empty: MEXC's default window)"
    )
    paper_initial_qrl: float = 1000.0
    paper_initial_usdt: float = 500.0
    paper_account_dir: str = Field(
        default="", description="local directory of the paper balances (from the settings: $QRL_HOME/qrl)"
    )
    simulated_seed: int = 7

    def treasury_config(self) -> TreasuryConfig:
        """The fields as the treasury's use cases take them; a bad value names its field."""
        mode = self.mode.strip().lower()
        if mode not in MEXC_MODES:
            raise ValueError(f"mexc resource: mode must be one of {', '.join(MEXC_MODES)}, got {self.mode!r}")
        since = None
        if self.trades_since:
            since = int(_utc(_iso_date_time(self.trades_since, "trades_since")).timestamp() * 1000)
        reset_at = (
            _utc(_iso_date_time(self.kill_switch_reset_at, "kill_switch_reset_at"))
            if self.kill_switch_reset_at
            else None
        )
        base_url = self.base_url.rstrip("/")
        max_order_notional = Decimal(str(self.max_order_notional))
        return TreasuryConfig(
            mode=mode,
            base_url=base_url,
            symbol=self.symbol,
            base_asset=self.base_asset,
            quote_asset=self.quote_asset,
            params=RebalanceParams(
                target_ratio=Decimal(str(self.target_ratio)),
                threshold=Decimal(str(self.threshold)),
                max_order_notional=max_order_notional,
            ),
            fee_rate_override=None if self.fee_rate is None else Decimal(str(self.fee_rate)),
            limits=ExecutionLimits(
                enabled=self.execute_orders,
                daily_trade_cap=self.daily_trade_cap,
                min_interval=dt.timedelta(minutes=self.min_trade_interval_minutes),
                max_order_notional=max_order_notional,
                max_drawdown=Decimal(str(self.max_drawdown)),
                max_plan_age=dt.timedelta(minutes=self.max_plan_age_minutes),
                kill_switch_reset_at=reset_at,
            ),
            client=ClientSettings(
                base_url=base_url,
                recv_window_ms=self.recv_window_ms,
                timeout_seconds=self.timeout_seconds,
                max_retries=self.max_retries,
                backoff_seconds=self.backoff_seconds,
                max_retry_after_seconds=self.max_retry_after_seconds,
                min_request_interval_seconds=self.min_request_interval_seconds,
            ),
            trades_since_ms=since,
        )

    def exchange(self, *, partition_end: dt.datetime, now: dt.datetime | None = None) -> SpotExchange:
        """The exchange for one run. Simulated prices and fills are pinned to the partition's end, so
        re-materialising a partition reproduces it; paper and live use the current market."""
        config = self.treasury_config()
        now = now or dt.datetime.now(dt.UTC)
        if config.mode == "live":
            if not (self.api_key and self.api_secret):
                raise RuntimeError(
                    "live mode needs the mexc resource's api_key and api_secret (MEXC_API_KEY and MEXC_API_SECRET)"
                )
            return MexcClient(config.client, api_key=self.api_key, api_secret=self.api_secret)
        if not self.paper_account_dir:
            raise RuntimeError(
                f"{config.mode} mode keeps its paper balances in a local file: set the mexc resource's "
                "paper_account_dir (from the settings it is $QRL_HOME/qrl, which an object-store QRL_HOME cannot hold)"
            )
        account = PaperAccount(
            Path(self.paper_account_dir) / f"paper_account_{config.mode}_{config.symbol}.json",
            symbol=config.symbol,
            base_asset=config.base_asset,
            quote_asset=config.quote_asset,
            initial_base=Decimal(str(self.paper_initial_qrl)),
            initial_quote=Decimal(str(self.paper_initial_usdt)),
        )
        if config.mode == "simulated":
            market = SimulatedMarket(partition_end, seed=self.simulated_seed)
            return PaperExchange(
                mode="simulated", market=market, account=account, at=partition_end, opening=SIMULATION_EPOCH
            )
        public = MexcClient(config.client)  # unsigned: ticker/price and exchangeInfo only
        return PaperExchange(mode="paper", market=public, account=account, at=now, opening=now)


def _iso_date_time(value: str, field: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"mexc resource: {field} {value!r} is not an ISO date-time (e.g. 2026-12-01T09:30:00+00:00)"
        ) from None


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def mexc_resource(current: Settings, **fields: Any) -> MexcResource:
    """The exchange resource as the settings configure it; `fields` (tests, a second deployment)
    replace what the settings give."""
    home = current.qrl_home
    from_settings = dict(
        mode=current.mexc_mode,
        base_url=current.mexc_base_url,
        api_key=current.mexc_api_key.get_secret_value(),
        api_secret=current.mexc_api_secret.get_secret_value(),
        target_ratio=float(current.target_ratio),
        threshold=float(current.rebalance_threshold),
        max_order_notional=float(current.max_order_notional),
        execute_orders=current.execute_orders,
        daily_trade_cap=current.daily_trade_cap,
        min_trade_interval_minutes=current.min_trade_interval_minutes,
        max_drawdown=float(current.max_drawdown),
        kill_switch_reset_at=current.kill_switch_reset_at.isoformat() if current.kill_switch_reset_at else "",
        # Paper balances are a local file; an object-store home leaves the directory to be set.
        paper_account_dir="" if "://" in home else str(Path(home) / "qrl"),
    )
    return MexcResource(**{**from_settings, **fields})


@dg.resource(
    description="QRL/USDT on MEXC (MexcResource), built from the settings when a run starts: simulated "
    "(default, offline), paper or live. MEXC_API_KEY / MEXC_API_SECRET stay out of Dagster config."
)
def mexc_from_settings(_context) -> MexcResource:
    # Built per run from the environment the run sees; no config, so the UI has no key to show.
    return mexc_resource(settings())


QRL_RESOURCES = {"mexc": mexc_from_settings}


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=QRL_RESOURCES)
