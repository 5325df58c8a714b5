import datetime as dt

import polars as pl
import pytest

from qrl_platform.storage.frames import FrameStore


def _frame(value: float) -> pl.DataFrame:
    return pl.DataFrame(
        {"stock_id": ["2330", "2317"], "trade_date": [dt.date(2024, 3, 5)] * 2, "close": [value, value]}
    )


def test_write_replaces_atomically_and_a_crash_keeps_the_previous_version(tmp_path, monkeypatch):
    store = FrameStore(str(tmp_path))
    store.write("daily_quotes", "2024-03-05", _frame(1.0))

    def crash(self, file, **kwargs):
        with open(file, "wb") as handle:
            handle.write(b"PAR1 half-written")
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", crash)
    with pytest.raises(OSError, match="disk full"):
        store.write("daily_quotes", "2024-03-05", _frame(2.0))
    monkeypatch.undo()
    assert store.read("daily_quotes", "2024-03-05")["close"].to_list() == [1.0, 1.0]
    assert [p.name for p in (tmp_path / "frames" / "daily_quotes").iterdir()] == ["2024-03-05.parquet"]


def test_range_reads_only_the_requested_partitions(tmp_path):
    store = FrameStore(str(tmp_path))
    for day in ("2024-03-04", "2024-03-05", "2024-03-06"):
        store.write("daily_quotes", day, _frame(float(day[-1])))
    assert store.partitions("daily_quotes") == ["2024-03-04", "2024-03-05", "2024-03-06"]
    assert store.read_range("daily_quotes", "2024-03-05", "2024-03-06")["close"].to_list() == [5.0, 5.0, 6.0, 6.0]
    assert store.read_many("daily_quotes", ["2024-03-04", "2024-01-01"]).height == 2
    assert store.read_range("daily_quotes", "2025-01-01").height == 0


def test_intraday_keys_in_a_date_range(tmp_path):
    store = FrameStore(str(tmp_path))
    for key in ("2026-11-21-23:45", "2026-11-22-00:00", "2026-11-22-23:45", "2026-11-23-00:00"):
        store.write("qrl_prices", key, pl.DataFrame({"key": [key]}))
    assert store.read_range("qrl_prices", "2026-11-22", "2026-11-22")["key"].to_list() == [
        "2026-11-22-00:00",
        "2026-11-22-23:45",
    ]


def test_missing_partition_error_names_asset_and_partition(tmp_path):
    with pytest.raises(KeyError, match="daily_quotes: partition 2024-03-05 has not been materialised"):
        FrameStore(str(tmp_path)).read("daily_quotes", "2024-03-05")


def test_object_store_urls_work_through_fsspec():
    store = FrameStore("memory://qrl-test")
    store.write("valuations", "2024-03-05", _frame(3.0))
    assert store.read("valuations", "2024-03-05")["close"].to_list() == [3.0, 3.0]
    assert store.read_range("valuations", "2024-03-01", "2024-03-31").height == 2


def test_a_killed_writers_temporary_file_is_removed_once_stale(tmp_path):
    import os
    import time

    from qrl_platform.storage import frames

    store = FrameStore(str(tmp_path))
    target = store.write("prices", "2024-01-02", pl.DataFrame({"x": [1]}))
    stale, young = f"{target}.dead.tmp", f"{target}.live.tmp"
    for path in (stale, young):
        with open(path, "wb") as handle:
            handle.write(b"PAR1 torn")
    old = time.time() - frames.STALE_TEMP_SECONDS - 5
    os.utime(stale, (old, old))
    store.write("prices", "2024-01-02", pl.DataFrame({"x": [2]}))
    assert not os.path.exists(stale) and os.path.exists(young)
    assert store.read("prices", "2024-01-02")["x"].to_list() == [2]
    assert store.partitions("prices") == ["2024-01-02"]
