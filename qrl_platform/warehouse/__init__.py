"""The relational warehouse (SQLite by default, PostgreSQL in production)."""

from qrl_platform.warehouse import schema
from qrl_platform.warehouse.database import Warehouse, normalise_url

__all__ = ["Warehouse", "normalise_url", "schema"]
