"""Test helper: a frame written straight into the FrameStore counts as stored only once Dagster's
event log holds a materialisation of it (`qrl_platform/defs/stored.py`), so this writes both."""

import dagster as dg
import polars as pl

from qrl_platform.storage.frames import FrameStore


def write_stored(instance: dg.DagsterInstance, store: FrameStore, asset: str, partition: str, frame: pl.DataFrame):
    """Write `frame` as `asset`'s `partition` and report a runless materialisation of it."""
    path = store.write(asset, partition, frame)
    report_stored(instance, asset, partition)
    return path


def report_stored(instance: dg.DagsterInstance, asset: str, partition: str) -> None:
    """Record a runless materialisation of a partition whose frame is already written."""
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset, partition=partition))
