"""The local Dagster instance's event log: Dagster's SQLite event log, storing a batch of
materialisations at once (named by the local `dagster.yaml`; production runs on PostgreSQL,
whose event log already does this).

Why: a run over many partitions records one ASSET_MATERIALIZATION per partition and asset — a year's
daily chain about 3,900 — and Dagster's SQLite event log stores each with its own two connections
and commits (the run's file, then the cross-run index), about 11 ms apiece: some 40 s of a year's
backfill. Dagster hands the per-partition events of one output over as one batch when
`DAGSTER_EVENT_BATCH_SIZE` is set (the CLI sets it for its range runs, `settings.py`), and its
PostgreSQL event log writes such a batch with one INSERT. This class does the same for SQLite, as
Dagster's PostgreSQL implementation does it: one multi-row INSERT into the run's file, one
transaction on the index for the rows, their tags and the asset's latest materialisation (the last
of the batch). Anything else (other event types, mixed runs) goes through Dagster's own path.

A deleted run (`DagsterInstance.delete_run`, e.g. by the weekly dagster_retention_job) also loses
its own SQLite file: Dagster's class empties the rows but leaves the file (one per run, ~180-250 KB,
SQLite never shrinks a file by itself), so without this a year of 15-minute runs would keep 35,040
empty files however old runs are pruned.

This relies on Dagster internals (the SQLite storage class and its helpers, pinned by
`dagster==1.13.*`); `qrl_platform_tests/test_instance_storage.py` compares what it stores with what
Dagster's own class stores for the same run.
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import contextlib
import os
from collections.abc import Sequence

import dagster as dg
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable


class BatchedSqliteEventLogStorage(SqliteEventLogStorage):
    """SQLite event log storage whose `store_event_batch` writes a batch of one run's
    materialisations in one statement per database (see the module docstring)."""

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> "BatchedSqliteEventLogStorage":
        return cls(inst_data=inst_data, **config_value)

    def store_event_batch(self, events: Sequence[dg.EventLogEntry]) -> None:
        kinds = {event.dagster_event_type for event in events}
        one_run = len({event.run_id for event in events}) == 1
        if len(events) < 2 or kinds != {dg.DagsterEventType.ASSET_MATERIALIZATION} or not one_run:
            super().store_event_batch(events)  # Dagster's path: event by event
            return
        insert = self.prepare_insert_event_batch(events)
        with self.run_connection(events[0].run_id) as conn:
            conn.execute(insert)
        with self.index_transaction() as conn:
            # RETURNING gives no order; ids grow with the rows of one INSERT, so sorted ids follow `events`.
            event_ids = sorted(row[0] for row in conn.execute(insert.returning(SqlEventLogStorageTable.c.id)))
            self._store_asset_event_tags(conn, events, event_ids)
            self._store_asset_event(conn, events[-1], event_ids[-1])  # the asset's latest materialisation

    def delete_events(self, run_id: str) -> None:
        """Dagster's deletion (the run's rows in its file and in the index), then the run's file."""
        super().delete_events(run_id)
        path = self.path_for_shard(run_id)
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path + suffix)
        self._initialized_dbs.discard(run_id)  # a later write for this id recreates the schema
