"""The QRL exchange resource: `simulated` (default), `paper` or `live` MEXC Spot v3 (SPEC S8).

Its values come from the settings (`qrl_platform.settings`: QRL_MEXC_MODE, QRL_MEXC_BASE_URL,
QRL_EXECUTE_ORDERS, QRL_TARGET_RATIO, QRL_REBALANCE_THRESHOLD, QRL_MAX_ORDER_NOTIONAL,
QRL_DAILY_TRADE_CAP, QRL_MIN_TRADE_INTERVAL_MINUTES, QRL_MAX_DRAWDOWN, QRL_KILL_SWITCH_RESET_AT; the
table is in docs/operations.md), read when a run uses the resource, so one Definitions object serves a
laptop and production. A config field that is set replaces its setting and is validated by the same
typed model (`Settings.with_values`), so a bad value names the variable either way.

MEXC_API_KEY / MEXC_API_SECRET deliberately have no config field: config values are shown in the
Dagster UI and stored with every run. The key is read from the settings when a live client is made,
and kept only inside that client.
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import datetime as dt
from decimal import Decimal
from pathlib import Path

import dagster as dg
from pydantic import Field

from qrl_platform.settings import Settings
from qrl_platform.settings import settings as current_settings
from qrl_platform.treasury.cycle import TreasuryConfig
from qrl_platform.treasury.execution import ExecutionLimits
from qrl_platform.treasury.mexc_client import ClientSettings, MexcClient, SpotExchange
from qrl_platform.treasury.rebalance import RebalanceParams
from qrl_platform.treasury.simulated import SIMULATION_EPOCH, PaperAccount, PaperExchange, SimulatedMarket

# Resource config field -> the setting it replaces when set.
SETTING_OF_FIELD = {
    "mode": "mexc_mode",
    "base_url": "mexc_base_url",
    "target_ratio": "target_ratio",
    "threshold": "rebalance_threshold",
    "max_order_notional": "max_order_notional",
    "execute_orders": "execute_orders",
    "daily_trade_cap": "daily_trade_cap",
    "min_trade_interval_minutes": "min_trade_interval_minutes",
    "max_drawdown": "max_drawdown",
    "kill_switch_reset_at": "kill_switch_reset_at",
}


class MexcResource(dg.ConfigurableResource):
    """QRL/USDT on MEXC: simulated (default, offline), paper, or live signed Spot v3."""

    mode: str | None = Field(default=None, description="simulated | paper | live; unset: QRL_MEXC_MODE")
    base_url: str | None = Field(default=None, description="unset: QRL_MEXC_BASE_URL")
    symbol: str = "QRLUSDT"
    base_asset: str = "QRL"
    quote_asset: str = "USDT"
    target_ratio: float | None = Field(default=None, description="share of value in QRL; unset: QRL_TARGET_RATIO")
    threshold: float | None = Field(
        default=None, description="HOLD below this |delta|/total; unset: QRL_REBALANCE_THRESHOLD"
    )
    max_order_notional: float | None = Field(default=None, description="USDT per order; unset: QRL_MAX_ORDER_NOTIONAL")
    fee_rate: float | None = Field(
        default=None, description="taker fee reserved on BUY; unset: the account's takerCommission"
    )
    execute_orders: bool | None = Field(default=None, description="unset: QRL_EXECUTE_ORDERS")
    daily_trade_cap: int | None = Field(default=None, description="unset: QRL_DAILY_TRADE_CAP")
    min_trade_interval_minutes: float | None = Field(default=None, description="unset: QRL_MIN_TRADE_INTERVAL_MINUTES")
    max_drawdown: float | None = Field(default=None, description="kill switch; unset: QRL_MAX_DRAWDOWN")
    max_plan_age_minutes: float = 30.0
    kill_switch_reset_at: str = Field(default="", description="ISO time; empty: QRL_KILL_SWITCH_RESET_AT")
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
    paper_account_dir: str = Field(default="", description="empty: $QRL_HOME/qrl")
    simulated_seed: int = 7

    def configured(self, current: Settings | None = None) -> Settings:
        """The settings (read now unless given) with this resource's set config fields in their place."""
        current = current or current_settings()
        overrides = {
            setting: value
            for name, setting in SETTING_OF_FIELD.items()
            if (value := getattr(self, name)) not in (None, "")
        }
        return current.with_values(**overrides) if overrides else current

    def treasury_config(self, current: Settings | None = None) -> TreasuryConfig:
        configured = self.configured(current)
        since = None
        if self.trades_since:
            day = dt.datetime.fromisoformat(self.trades_since)
            since = int((day if day.tzinfo else day.replace(tzinfo=dt.UTC)).timestamp() * 1000)
        return TreasuryConfig(
            mode=configured.mexc_mode,
            base_url=configured.mexc_base_url,
            symbol=self.symbol,
            base_asset=self.base_asset,
            quote_asset=self.quote_asset,
            params=RebalanceParams(
                target_ratio=configured.target_ratio,
                threshold=configured.rebalance_threshold,
                max_order_notional=configured.max_order_notional,
            ),
            fee_rate_override=None if self.fee_rate is None else Decimal(str(self.fee_rate)),
            limits=ExecutionLimits(
                enabled=configured.execute_orders,
                daily_trade_cap=configured.daily_trade_cap,
                min_interval=dt.timedelta(minutes=configured.min_trade_interval_minutes),
                max_order_notional=configured.max_order_notional,
                max_drawdown=configured.max_drawdown,
                max_plan_age=dt.timedelta(minutes=self.max_plan_age_minutes),
                kill_switch_reset_at=configured.kill_switch_reset_at,
            ),
            client=ClientSettings(
                base_url=configured.mexc_base_url,
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
        current = current_settings()
        settings = self.treasury_config(current)
        now = now or dt.datetime.now(dt.UTC)
        if settings.mode == "live":
            # Read at use time, kept only inside the client; never a config field.
            api_key, api_secret = current.mexc_api_key.get_secret_value(), current.mexc_api_secret.get_secret_value()
            if not (api_key and api_secret):
                raise RuntimeError("QRL_MEXC_MODE=live needs MEXC_API_KEY and MEXC_API_SECRET in the environment")
            return MexcClient(settings.client, api_key=api_key, api_secret=api_secret)
        account = PaperAccount(
            self._paper_dir(current.qrl_home) / f"paper_account_{settings.mode}_{settings.symbol}.json",
            symbol=settings.symbol,
            base_asset=settings.base_asset,
            quote_asset=settings.quote_asset,
            initial_base=Decimal(str(self.paper_initial_qrl)),
            initial_quote=Decimal(str(self.paper_initial_usdt)),
        )
        if settings.mode == "simulated":
            market = SimulatedMarket(partition_end, seed=self.simulated_seed)
            return PaperExchange(
                mode="simulated", market=market, account=account, at=partition_end, opening=SIMULATION_EPOCH
            )
        public = MexcClient(settings.client)  # unsigned: ticker/price and exchangeInfo only
        return PaperExchange(mode="paper", market=public, account=account, at=now, opening=now)

    def _paper_dir(self, home: str) -> Path:
        if self.paper_account_dir:
            return Path(self.paper_account_dir)
        if "://" in home:
            raise RuntimeError(
                f"paper balances are kept in a local file, but QRL_HOME is {home!r}: set the mexc resource's "
                "paper_account_dir to a local directory"
            )
        return Path(home) / "qrl"


QRL_RESOURCES = {"mexc": MexcResource()}


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=QRL_RESOURCES)
