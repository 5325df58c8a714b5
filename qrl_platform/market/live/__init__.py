"""Live TWSE/TPEx market data (SPEC S4.2): polite HTTP client, pure payload parsers, the source."""

from qrl_platform.market.live.source import LiveMarketSource

__all__ = ["LiveMarketSource"]
