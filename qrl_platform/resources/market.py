from __future__ import annotations

import dagster as dg

from qrl_platform.market.sources import MarketSource
from qrl_platform.settings import MarketSourceSettings


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

    def settings(self) -> MarketSourceSettings:
        env = MarketSourceSettings.from_env()
        return MarketSourceSettings(
            source=(self.source or env.source).lower(),
            twse_base_url=(self.twse_base_url or env.twse_base_url).rstrip("/"),
            tpex_base_url=(self.tpex_base_url or env.tpex_base_url).rstrip("/"),
            demo_seed=env.demo_seed,
            demo_universe=env.demo_universe,
            tdcc_base_url=(self.tdcc_base_url or env.tdcc_base_url).rstrip("/"),
            mops_base_url=(self.mops_base_url or env.mops_base_url).rstrip("/"),
        )

    def provided_tables(self) -> frozenset[str]:
        """The raw tables the configured source can ingest (without connecting to anything)."""
        return self._source_class().provides

    def _source_class(self) -> type:
        source = self.settings().source
        if source == "demo":
            from qrl_platform.market.demo import DemoMarket

            return DemoMarket
        if source == "live":
            from qrl_platform.market.live import LiveMarketSource

            return LiveMarketSource
        raise ValueError(f"market source must be 'demo' or 'live', got {source!r}")

    def get(self) -> MarketSource:
        settings = self.settings()
        source_class = self._source_class()
        if source_class.name == "demo":
            from qrl_platform.market.demo import demo_market

            return demo_market(settings.demo_seed, settings.demo_universe)
        return source_class(settings)
