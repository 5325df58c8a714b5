"""The QRL exchange resource: `simulated` (default), `paper` or `live` MEXC Spot v3 (SPEC S8).

Configuration comes from the environment so one Definitions object serves a laptop and production:

| variable | default | meaning |
|---|---|---|
| QRL_MEXC_MODE | simulated | simulated (offline price path, paper balances), paper (live public prices, paper balances), live |
| QRL_MEXC_BASE_URL | https://api.mexc.com | MEXC host (tests point it at a local fake server) |
| MEXC_API_KEY / MEXC_API_SECRET | — | live mode only; read at use time, never stored in config, logs or metadata |
| QRL_EXECUTE_ORDERS | false | place orders at all (see qrl_platform/treasury/execution.py for the guards) |
| QRL_TARGET_RATIO / QRL_REBALANCE_THRESHOLD / QRL_MAX_ORDER_NOTIONAL | 0.5 / 0.01 / 100 | plan parameters |
| QRL_DAILY_TRADE_CAP / QRL_MIN_TRADE_INTERVAL_MINUTES / QRL_MAX_DRAWDOWN | 4 / 60 / 0.2 | execution guards |
| QRL_KILL_SWITCH_RESET_AT | — | ISO time (UTC if no zone): resets a tripped drawdown kill switch tripped before it |

A config field, when set, wins over its variable. The API key and secret deliberately have no
config field: config values are shown in the Dagster UI and stored with every run.
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from qrl_platform.settings import settings as current_settings
from qrl_platform.treasury.execution import ExecutionLimits
from qrl_platform.treasury.mexc_client import DEFAULT_BASE_URL, ClientSettings, MexcClient, SpotExchange
from qrl_platform.treasury.rebalance import RebalanceParams
from qrl_platform.treasury.simulated import SIMULATION_EPOCH, PaperAccount, PaperExchange, SimulatedMarket

MODES = ("simulated", "paper", "live")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _number(value: float | int | None, env_value: str, env: str, default: str) -> Decimal:
    raw = str(value) if value is not None else (env_value or default)
    try:
        return Decimal(raw)
    except ArithmeticError:
        raise ValueError(f"{env}: {raw!r} is not a number") from None


def _instant(value: str, env_value: str, env: str) -> dt.datetime | None:
    raw = value or env_value
    if not raw:
        return None
    try:
        instant = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{env}: {raw!r} is not an ISO date-time (e.g. 2026-12-01T09:30:00+00:00)") from None
    return instant if instant.tzinfo else instant.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class QrlSettings:
    """Everything resolved from config + environment, secrets excluded (safe to show as metadata)."""

    mode: str
    base_url: str
    symbol: str
    base_asset: str
    quote_asset: str
    params: RebalanceParams
    fee_rate_override: Decimal | None
    limits: ExecutionLimits
    client: ClientSettings
    trades_since_ms: int | None

    def metadata(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "symbol": self.symbol,
            "base_url": self.base_url if self.mode != "simulated" else "(offline)",
            "execute_orders": self.limits.enabled,
            "target_ratio": float(self.params.target_ratio),
            "threshold": float(self.params.threshold),
            "max_order_notional": float(self.limits.max_order_notional),
        }


class MexcResource(dg.ConfigurableResource):
    """QRL/USDT on MEXC: simulated (default, offline), paper, or live signed Spot v3."""

    mode: str = Field(default="", description="simulated | paper | live; empty: QRL_MEXC_MODE or simulated")
    base_url: str = Field(default="", description="empty: QRL_MEXC_BASE_URL or https://api.mexc.com")
    symbol: str = "QRLUSDT"
    base_asset: str = "QRL"
    quote_asset: str = "USDT"
    target_ratio: float | None = Field(
        default=None, description="share of value in QRL; empty: QRL_TARGET_RATIO or 0.5"
    )
    threshold: float | None = Field(
        default=None, description="HOLD below this |delta|/total; QRL_REBALANCE_THRESHOLD or 0.01"
    )
    max_order_notional: float | None = Field(default=None, description="USDT per order; QRL_MAX_ORDER_NOTIONAL or 100")
    fee_rate: float | None = Field(
        default=None, description="taker fee reserved on BUY; empty: the account's takerCommission"
    )
    execute_orders: bool | None = Field(default=None, description="empty: QRL_EXECUTE_ORDERS (default false)")
    daily_trade_cap: int | None = Field(default=None, description="QRL_DAILY_TRADE_CAP or 4")
    min_trade_interval_minutes: float | None = Field(default=None, description="QRL_MIN_TRADE_INTERVAL_MINUTES or 60")
    max_drawdown: float | None = Field(default=None, description="kill switch; QRL_MAX_DRAWDOWN or 0.2")
    max_plan_age_minutes: float = 30.0
    kill_switch_reset_at: str = Field(default="", description="ISO time; empty: QRL_KILL_SWITCH_RESET_AT or never")
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

    def settings(self) -> QrlSettings:
        env = current_settings()
        mode = (self.mode or env.mexc_mode or "simulated").lower()
        if mode not in MODES:
            raise ValueError(f"QRL_MEXC_MODE must be one of {', '.join(MODES)}, got {mode!r}")
        execute = self.execute_orders
        if execute is None:
            raw = env.execute_orders.lower()
            if raw not in _TRUE | _FALSE:
                raise ValueError(f"QRL_EXECUTE_ORDERS must be true or false, got {raw!r}")
            execute = raw in _TRUE
        max_notional = _number(self.max_order_notional, env.max_order_notional, "QRL_MAX_ORDER_NOTIONAL", "100")
        base_url = (self.base_url or env.mexc_base_url or DEFAULT_BASE_URL).rstrip("/")
        since = None
        if self.trades_since:
            day = dt.datetime.fromisoformat(self.trades_since)
            since = int((day if day.tzinfo else day.replace(tzinfo=dt.UTC)).timestamp() * 1000)
        return QrlSettings(
            mode=mode,
            base_url=base_url,
            symbol=self.symbol,
            base_asset=self.base_asset,
            quote_asset=self.quote_asset,
            params=RebalanceParams(
                target_ratio=_number(self.target_ratio, env.target_ratio, "QRL_TARGET_RATIO", "0.5"),
                threshold=_number(self.threshold, env.rebalance_threshold, "QRL_REBALANCE_THRESHOLD", "0.01"),
                max_order_notional=max_notional,
            ),
            fee_rate_override=None if self.fee_rate is None else Decimal(str(self.fee_rate)),
            limits=ExecutionLimits(
                enabled=execute,
                daily_trade_cap=int(_number(self.daily_trade_cap, env.daily_trade_cap, "QRL_DAILY_TRADE_CAP", "4")),
                min_interval=dt.timedelta(
                    minutes=float(_number(self.min_trade_interval_minutes, env.min_trade_interval_minutes, "QRL_MIN_TRADE_INTERVAL_MINUTES", "60"))
                ),
                max_order_notional=max_notional,
                max_drawdown=_number(self.max_drawdown, env.max_drawdown, "QRL_MAX_DRAWDOWN", "0.2"),
                max_plan_age=dt.timedelta(minutes=self.max_plan_age_minutes),
                kill_switch_reset_at=_instant(self.kill_switch_reset_at, env.kill_switch_reset_at, "QRL_KILL_SWITCH_RESET_AT"),
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
        settings = self.settings()
        now = now or dt.datetime.now(dt.UTC)
        if settings.mode == "live":
            # Read at use time, kept only inside the client; never a config field.
            env = current_settings()
            api_key, api_secret = env.mexc_api_key.get_secret_value(), env.mexc_api_secret.get_secret_value()
            if not (api_key and api_secret):
                raise RuntimeError("QRL_MEXC_MODE=live needs MEXC_API_KEY and MEXC_API_SECRET in the environment")
            return MexcClient(settings.client, api_key=api_key, api_secret=api_secret)
        account = PaperAccount(
            self._paper_dir() / f"paper_account_{settings.mode}_{settings.symbol}.json",
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

    def _paper_dir(self) -> Path:
        if self.paper_account_dir:
            return Path(self.paper_account_dir)
        home = current_settings().qrl_home
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
