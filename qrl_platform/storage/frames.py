"""Per-partition Parquet frames under QRL_HOME.

One file per (asset, partition key). A write goes to a temporary file in the same directory and is
renamed over the old one, so a crash mid-write leaves the previous version readable (atomic replace on
POSIX; on object stores a PUT is atomic per object). A process killed mid-write leaves its temporary
file behind; the next write of that partition removes such files once they are an hour old (a
younger one may belong to a writer still running). The root is a path or an fsspec URL
(`s3://bucket/qrl`), so production can keep frames in an object store without code changes.
"""

from __future__ import annotations

import datetime as dt
import glob
import io
import os
import time
import uuid
from collections.abc import Iterable

import fsspec
import polars as pl

STALE_TEMP_SECONDS = 3600


class FrameStore:
    def __init__(self, root: str):
        """`root`: QRL_HOME, a local path or an fsspec URL (the wiring passes `Settings.qrl_home`)."""
        self.root = root.rstrip("/")
        self.fs, self._root_path = fsspec.core.url_to_fs(self.root)
        self.is_local = self.fs.protocol in ("file", ("file", "local")) or "file" in self.fs.protocol

    def _dir(self, asset: str) -> str:
        return f"{self._root_path}/frames/{asset}"

    def path(self, asset: str, partition: str) -> str:
        return f"{self._dir(asset)}/{partition}.parquet"

    def write(self, asset: str, partition: str, frame: pl.DataFrame) -> str:
        """Replace one partition's frame atomically; returns the path written."""
        target = self.path(asset, partition)
        self.fs.makedirs(self._dir(asset), exist_ok=True)
        if self.is_local:
            tmp = f"{target}.{uuid.uuid4().hex}.tmp"
            try:
                frame.write_parquet(tmp, compression="zstd", statistics=True)
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
            _remove_stale_temporaries(target)
        else:
            buffer = io.BytesIO()
            frame.write_parquet(buffer, compression="zstd")
            self.fs.pipe_file(target, buffer.getvalue())
        return target

    def exists(self, asset: str, partition: str) -> bool:
        return self.fs.exists(self.path(asset, partition))

    def partitions(self, asset: str) -> list[str]:
        """Stored partition keys of an asset, sorted."""
        directory = self._dir(asset)
        if not self.fs.exists(directory):
            return []
        names = (p.rsplit("/", 1)[-1] for p in self.fs.ls(directory, detail=False))
        return sorted(n[: -len(".parquet")] for n in names if n.endswith(".parquet"))

    def read(self, asset: str, partition: str) -> pl.DataFrame:
        path = self.path(asset, partition)
        if not self.fs.exists(path):
            raise KeyError(f"{asset}: partition {partition} has not been materialised (no {path})")
        with self.fs.open(path, "rb") as handle:
            return pl.read_parquet(handle)

    def read_many(self, asset: str, partitions: Iterable[str], *, columns: list[str] | None = None) -> pl.DataFrame:
        """Concatenate the stored partitions among `partitions`; missing ones are skipped."""
        wanted = set(partitions)
        present = [p for p in self.partitions(asset) if p in wanted]
        return self._read_paths(asset, present, columns)

    def read_range(
        self,
        asset: str,
        start: str | dt.date | None = None,
        end: str | dt.date | None = None,
        *,
        columns: list[str] | None = None,
    ) -> pl.DataFrame:
        """Every stored partition whose key (ISO date prefix) falls in [start, end]."""
        # Keys start with an ISO date, so string order is time order; comparing the key's prefix with
        # `end` keeps intraday keys (2024-12-31-23:45) of the end day.
        lo = str(start) if start is not None else ""
        hi = str(end) if end is not None else None
        present = [p for p in self.partitions(asset) if p >= lo and (hi is None or p[: len(hi)] <= hi)]
        return self._read_paths(asset, present, columns)

    def _read_paths(self, asset: str, partitions: list[str], columns: list[str] | None) -> pl.DataFrame:
        if not partitions:
            return pl.DataFrame()
        if self.is_local:
            frames = [pl.read_parquet(self.path(asset, p), columns=columns) for p in partitions]
        else:
            frames = []
            for p in partitions:
                with self.fs.open(self.path(asset, p), "rb") as handle:
                    frames.append(pl.read_parquet(handle, columns=columns))
        # Relaxed: tolerate a column added in a later version of an asset (null in older partitions).
        return pl.concat(frames, how="diagonal_relaxed")


def _remove_stale_temporaries(target: str) -> None:
    """Temporary files of killed writers of `target`, once old enough not to be a live writer's."""
    cutoff = time.time() - STALE_TEMP_SECONDS
    for leftover in glob.glob(f"{glob.escape(target)}.*.tmp"):
        try:
            if os.path.getmtime(leftover) < cutoff:
                os.remove(leftover)
        except FileNotFoundError:  # another writer removed it first
            pass
