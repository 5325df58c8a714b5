"""Bad dates given to the `qrl` CLI: the error names the field and the date, no run starts, and a hash
of everything stored (every file under QRL_HOME: frames, the SQLite warehouse) is unchanged.

The payload kinds of S11 (HTML instead of JSON, missing fields, `--`, wrong units, another day…) are
covered field by field in qrl_platform_tests/market/test_live_source.py and, under a fault storm, by
test_fault_storm.py; strategy definitions in qrl_platform_tests/strategy/test_strategy_definition.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from qrl_platform import cli
from qrl_platform.settings import warehouse_url
from qrl_platform.storage.frames import FrameStore
from qrl_platform.strategy.store import save_run
from qrl_platform.warehouse import Warehouse
from qrl_platform_tests.reliability.crash_targets import SignalsDayReplace
from qrl_platform_tests.reliability.figures import Figures

pytestmark = pytest.mark.reliability

# argv, then what the error must say (field and date).
BAD_DATES = {
    "month 13": (["run-all", "2024-13-01"], "date: '2024-13-01' is not a date in YYYY-MM-DD form"),
    "two-digit year": (["run-strategy", "STG_MOMENTUM_001", "24-11-01"], "date: '24-11-01' is not a date"),
    "February 30": (["notify", "2024-02-30"], "date: '2024-02-30' is not a date"),
    "end not a date": (["backfill", "2024-11-01", "2024-11-0x"], "end: '2024-11-0x' is not a date"),
    "end before start": (["backfill", "2024-11-05", "2024-11-01"], "end 2024-11-01 is before start 2024-11-05"),
    "a Saturday": (["run-all", "2024-11-02"], "date: 2024-11-02 is a Saturday; its partitions are weekdays"),
    "range from a Sunday": (["backfill", "2024-11-03", "2024-11-08"], "start: 2024-11-03 is a Sunday"),
    "before the first partition": (["notify", "1999-01-04"], "date: 1999-01-04 is outside its partitions (2020-01-02"),
    "far future": (["run-all", "2099-01-05"], "date: 2099-01-05 is outside its partitions"),
}  # fmt: skip


def stored_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_bad_dates_given_to_the_cli_name_field_and_date_and_change_nothing(qrl_home, tmp_path, monkeypatch, record):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # Something stored to lose: a frame partition and a day of strategy signals in the warehouse.
    FrameStore().write("daily_quotes", "2024-11-01", pl.DataFrame({"stock_id": ["2330"], "close": [1090.0]}))
    warehouse = Warehouse(warehouse_url())
    signals = SignalsDayReplace({"url": warehouse_url()})
    save_run(warehouse, signals.records("A"))
    signals.close()
    warehouse.dispose()
    before = stored_hash(qrl_home)

    wrong: dict[str, str] = {}
    for case, (argv, expected) in BAD_DATES.items():
        try:
            cli.main(argv)
            wrong[case] = "no error"
        except (SystemExit, ValueError) as error:
            if expected not in str(error):
                wrong[case] = str(error)
    runs = dg.DagsterInstance.get().get_runs()
    after = stored_hash(qrl_home)
    record(
        Figures(
            target="bad dates given to the qrl CLI",
            faults=f"{len(BAD_DATES)} malformed or non-partition dates (run-all, run-strategy, backfill, notify)",
            runs=len(BAD_DATES),
            lost=int(before != after),
            duplicated=0,
            notes=f"{len(BAD_DATES) - len(wrong)}/{len(BAD_DATES)} errors name the field and the date; "
            f"{len(runs)} runs started; stored hash unchanged: {before == after}",
        )
    )
    assert wrong == {}
    assert runs == [] and before == after
