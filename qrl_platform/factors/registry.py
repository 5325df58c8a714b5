"""The one factor registry: technical + fundamental + chip factors, as declared by each module.

Everything that needs to know the factors — factor_metadata, the quality checks, the indicator
assets' output schema, the strategy validator — reads `ALL_FACTORS`; nothing keeps a second list.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import TYPE_CHECKING

import sqlalchemy as sa

from qrl_platform.factors import Factor
from qrl_platform.factors.families import FAMILIES

if TYPE_CHECKING:
    from qrl_platform.warehouse import Warehouse

ALL_FACTORS: tuple[Factor, ...] = tuple(factor for family in FAMILIES for factor in family.factors)

_misfiled = [
    f"{f.factor_id} ({f.module} in {family.module})"
    for family in FAMILIES
    for f in family.factors
    if f.module != family.module
]
assert not _misfiled, f"a factor's module must be its family's: {_misfiled}"

_duplicates = sorted(fid for fid, n in Counter(f.factor_id for f in ALL_FACTORS).items() if n > 1)
assert not _duplicates, f"factor ids must be unique across M07/M08/M09; duplicated: {_duplicates}"

FACTORS_BY_ID: dict[str, Factor] = {f.factor_id: f for f in ALL_FACTORS}

# Module code <-> the asset that stores its factors, and its group (short) name: from the family declarations.
MODULE_ASSETS: dict[str, str] = {family.module: family.asset for family in FAMILIES}
MODULE_NAMES: dict[str, str] = {family.module: family.group for family in FAMILIES}


def _module_code(module: str) -> str:
    """Accept "M07", "technical" or "technical_indicators" for the same module."""
    for code, name in MODULE_NAMES.items():
        if module in (code, name, MODULE_ASSETS[code]):
            return code
    raise KeyError(
        f"unknown indicator module {module!r}; known: {sorted(MODULE_NAMES) + sorted(MODULE_NAMES.values())}"
    )


def factors(module: str | None = None) -> tuple[Factor, ...]:
    """The registered factors, all or one module's, in declaration order."""
    if module is None:
        return ALL_FACTORS
    code = _module_code(module)
    return tuple(f for f in ALL_FACTORS if f.module == code)


def factor_ids(module: str | None = None) -> list[str]:
    """Factor ids, all or one module's ("M07" | "technical" | "technical_indicators"), in declaration order."""
    return [f.factor_id for f in factors(module)]


def module_lookback(module: str) -> int:
    """Trading days of history before a day that the module's longest factor needs."""
    return max(f.lookback for f in factors(module))


def factor_metadata_rows(now: dt.datetime | None = None) -> list[dict]:
    """The `factor_metadata` table's rows, straight from the registry."""
    now = now or dt.datetime.now(dt.UTC)
    return [{**f.as_row(), "updated_at": now} for f in ALL_FACTORS]


def sync_factor_metadata(warehouse: Warehouse, now: dt.datetime | None = None) -> int:
    """Replace the warehouse `factor_metadata` table with the registry, in one transaction.

    Factors removed from code disappear from the table too: the code is the source of truth, and a
    crash mid-way leaves the previous version (the delete and the inserts commit together).
    """
    from qrl_platform.warehouse import schema

    rows = factor_metadata_rows(now)
    with warehouse.begin() as connection:
        return warehouse.replace_rows(connection, schema.factor_metadata, sa.true(), rows)
