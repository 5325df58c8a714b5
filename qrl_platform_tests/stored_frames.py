"""Test helper: a frame written straight into the FrameStore counts as stored only once Dagster's
event log holds a materialisation of it (`qrl_platform/defs/stored.py`), so this writes both."""

from pathlib import Path

import dagster as dg
import polars as pl

from qrl_platform.storage.frames import FrameStore


def write_stored(instance: dg.DagsterInstance, store: FrameStore, asset: str, partition: str, frame: pl.DataFrame):
    """Write `frame` as `asset`'s `partition` and report a runless materialisation of it."""
    path = store.write(asset, partition, frame)
    report_stored(instance, asset, partition)
    return path


def report_home(instance: dg.DagsterInstance, qrl_home: Path) -> int:
    """Report a runless materialisation of every partition file under a local QRL_HOME (frames copied or
    written by hand, as earlier runs would have stored them); returns how many."""
    store, reported = FrameStore(str(qrl_home)), 0
    for directory in sorted(p for p in (qrl_home / "frames").iterdir() if p.is_dir()):
        for partition in store.partitions(directory.name):
            report_stored(instance, directory.name, partition)
            reported += 1
    return reported


def report_stored(instance: dg.DagsterInstance, asset: str, partition: str) -> None:
    """Record a runless materialisation of a partition whose frame is already written."""
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset, partition=partition))
