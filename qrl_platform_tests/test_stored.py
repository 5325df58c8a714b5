"""One answer to "is this partition stored?": a frame file without a materialisation is not stored for
`qrl status`, the backfill planner and the factor checks alike; a materialisation makes it stored in
all of them at once."""

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from qrl_platform import cli
from qrl_platform.cli_status import status_lines
from qrl_platform.defs.factors.checks import _unmaterialised_quotes
from qrl_platform.defs.stored import stored_by_table, stored_partitions
from qrl_platform.settings import settings
from qrl_platform.storage.frames import FrameStore
from qrl_platform_tests.stored_frames import report_stored, write_stored

DAY = dt.date(2024, 7, 1)
KEY = DAY.isoformat()


@pytest.fixture
def instance(qrl_home):
    return dg.DagsterInstance.ephemeral()


def _quotes_line(instance) -> str:
    [line] = [line for line in status_lines(DAY, instance) if line.strip().startswith("daily_quotes")]
    return line.split("daily_quotes", 1)[1].strip()


def _planner_lacks_the_day(instance) -> bool:
    _, missing = cli.backfill_plan(DAY, DAY, instance)
    [quotes] = [m for m in missing if m.startswith("daily_quotes:")]
    return quotes.endswith(f"…{KEY})")  # the range's own day is the last one listed as missing


def test_a_frame_file_counts_as_stored_only_with_its_materialisation_everywhere_at_once(instance):
    store = FrameStore(settings().qrl_home)
    frame = pl.DataFrame({"stock_id": ["2330", "2317"], "trade_date": [DAY, DAY], "close": [900.0, 150.0]})
    store.write("daily_quotes", KEY, frame)
    assert KEY in store.partitions("daily_quotes")  # the file is there...

    # ...but nothing materialised it: not stored for status, the planner and the checks.
    assert _quotes_line(instance) == "not stored"
    assert _planner_lacks_the_day(instance)
    assert _unmaterialised_quotes(instance, [DAY]) == {DAY}
    assert stored_by_table(instance, ["daily_quotes"]) == {"daily_quotes": set()}

    report_stored(instance, "daily_quotes", KEY)

    assert _quotes_line(instance) == "2 rows"
    assert not _planner_lacks_the_day(instance)
    assert _unmaterialised_quotes(instance, [DAY]) == set()
    assert stored_by_table(instance, ["daily_quotes"]) == {"daily_quotes": {KEY}}


def test_stored_partitions_pages_through_every_materialisation(instance, monkeypatch):
    monkeypatch.setattr("qrl_platform.defs.stored.PAGE", 2)  # several pages with few events
    store = FrameStore(settings().qrl_home)
    keys = ["2024-07-01", "2024-07-02", "2024-07-03", "2024-07-04", "2024-07-05"]
    for key in keys:
        write_stored(instance, store, "valuations", key, pl.DataFrame({"stock_id": ["2330"]}))
    report_stored(instance, "valuations", "2024-07-02")  # a re-materialisation counts once
    assert stored_partitions(instance, "valuations") == set(keys)
    assert stored_partitions(instance, "valuations", ["2024-07-05", "2024-07-08"]) == {"2024-07-05"}
    assert stored_partitions(instance, "valuations", []) == set()
    assert stored_partitions(instance, "daily_quotes") == set()
