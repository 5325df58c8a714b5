"""Ageing runs of a local (SQLite) Dagster instance, for the retention test and benchmark."""

import datetime as dt
import sqlite3
from pathlib import Path


def backdate_run(dagster_home: Path, run_id: str, finished_at: dt.datetime, *, status: str | None = None) -> None:
    """Rewrite a run's timestamps in the SQLite run storage as if it had run and finished at
    `finished_at` (and optionally its status column, which Dagster trusts over the run body).
    Dagster's public API has no way to create a run in the past; its records are what retention reads."""
    (runs_db,) = dagster_home.rglob("runs.db")
    naive_utc = finished_at.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
    with sqlite3.connect(runs_db) as conn:
        conn.execute(
            "UPDATE runs SET create_timestamp = ?, update_timestamp = ?, start_time = ?, end_time = ? WHERE run_id = ?",
            (naive_utc, naive_utc, finished_at.timestamp(), finished_at.timestamp(), run_id),
        )
        if status:
            conn.execute("UPDATE runs SET status = ? WHERE run_id = ?", (status, run_id))
    conn.close()
