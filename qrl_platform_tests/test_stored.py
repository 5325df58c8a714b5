"""One answer to "is this partition stored?": a frame file without a materialisation is not stored for
`qrl status`, the backfill planner and the factor checks alike; a materialisation makes it stored in
all of them at once. The CLI asks a persistent instance (QRL_HOME/dagster when DAGSTER_HOME is unset),
so one command sees what the previous one materialised, and so does the UI on that home."""

import datetime as dt

import dagster as dg
import polars as pl
import pytest

from qrl_platform import cli
from qrl_platform.cli_status import UNRECORDED_FILE, status_lines
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
    missing = cli.backfill_plan(DAY, DAY, instance).missing
    [quotes] = [m for m in missing if m.startswith("daily_quotes:")]
    return quotes.endswith(f"…{KEY})")  # the range's own day is the last one listed as missing


def test_a_frame_file_counts_as_stored_only_with_its_materialisation_everywhere_at_once(instance):
    store = FrameStore(settings().qrl_home)
    frame = pl.DataFrame({"stock_id": ["2330", "2317"], "trade_date": [DAY, DAY], "close": [900.0, 150.0]})
    store.write("daily_quotes", KEY, frame)
    assert KEY in store.partitions("daily_quotes")  # the file is there...

    # ...but nothing materialised it: not stored for status (which says why), the planner and the checks.
    assert _quotes_line(instance) == UNRECORDED_FILE
    assert "no materialisation records it" in UNRECORDED_FILE
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


def test_without_dagster_home_the_cli_keeps_its_runs_in_the_instance_under_qrl_home(qrl_home, monkeypatch, capsys):
    """A second command sees the first one's materialisations (a temporary instance would forget them and
    the planner would fetch everything again), and so does a webserver started on QRL_HOME/dagster, as
    `scripts/demo` starts it."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("QRL_DAGSTER_URL", raising=False)
    assert _quotes_line_of_status(capsys) == "not stored"
    assert cli.materialize_range(["daily_quotes"], KEY, KEY).success

    missing = cli.backfill_plan(DAY, DAY).missing  # a new command: it builds its own instance
    [quotes] = [m for m in missing if m.startswith("daily_quotes:")]
    assert not quotes.endswith(f"…{KEY})")  # only the lookback before the day is missing now
    assert _quotes_line_of_status(capsys).endswith(" rows")

    home = qrl_home / "dagster"
    config = (home / "dagster.yaml").read_text()
    assert f"base_dir: {home / 'storage'}" in config and "max_concurrent_runs" in config  # the repository's
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # what the UI of that home reads
    assert stored_partitions(dg.DagsterInstance.get(), "daily_quotes") == {KEY}


def _quotes_line_of_status(capsys) -> str:
    capsys.readouterr()
    assert cli.main(["status", KEY]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("daily_quotes")]
    return line.split("daily_quotes", 1)[1].strip()


def test_the_cli_keeps_one_instance_per_home_in_a_process(qrl_home, tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    first = cli._instance()
    assert cli._instance() is first  # a second command in the same process reuses it
    assert first.root_directory == str(qrl_home / "dagster")
    other_home = tmp_path / "other_home"
    monkeypatch.setenv("QRL_HOME", str(other_home))
    other = cli._instance()
    assert other is not first and other.root_directory == str(other_home / "dagster")
    monkeypatch.setenv("QRL_HOME", str(qrl_home))
    assert cli._instance() is first


def test_an_object_store_home_without_dagster_home_is_refused_plainly(monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("QRL_HOME", "s3://desk-bucket/qrl")
    with pytest.raises(SystemExit, match="DAGSTER_HOME is not set and QRL_HOME is an object-store URL"):
        cli._instance()


def test_an_unrecorded_frame_file_is_named_when_an_indicator_needs_its_day(instance):
    from qrl_platform.factors.compute_range import MissingUpstream, compute_range

    store = FrameStore(settings().qrl_home)
    store.write("daily_quotes", KEY, pl.DataFrame({"stock_id": ["2330"], "trade_date": [DAY], "close": [900.0]}))
    with pytest.raises(MissingUpstream, match="1 have a frame file that no materialisation records"):
        compute_range(
            store, "fundamental_indicators", [DAY], lambda table, keys: stored_partitions(instance, table, keys)
        )
