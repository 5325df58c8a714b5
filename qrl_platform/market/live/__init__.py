"""Live TWSE/TPEx market data : polite HTTP client, pure payload parsers, the source."""

from qrl_platform.market.live.source import LiveMarketSource

__all__ = ["LiveMarketSource"]
