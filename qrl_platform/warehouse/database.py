"""Engine creation, automatic migrations and the few query helpers every domain needs.

The schema is applied by Alembic on first use of a URL in a process, so a newcomer never runs a
migration command by hand and production upgrades happen on the first run after a deploy.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from qrl_platform.warehouse import schema

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_migrated: set[str] = set()
_lock = threading.Lock()


def normalise_url(url: str) -> str:
    """Map `postgresql://` / `postgres://` to the psycopg 3 driver we ship."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers (the UI, notebooks) proceed while a run writes; busy_timeout waits for the
    # lock instead of failing when two runs write at once. synchronous=NORMAL is SQLite's advice for
    # WAL: a transaction is still all-or-nothing after a crash (the WAL is synced at checkpoints), only
    # the last commits before a power loss may roll back; one fsync fewer per commit.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Warehouse:
    """A migrated SQLAlchemy engine plus transactional helpers."""

    def __init__(self, url: str, *, migrate: bool = True):
        self.url = normalise_url(url)
        if self.url.startswith("sqlite:///"):
            Path(self.url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = sa.create_engine(self.url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        if migrate:
            self.migrate()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (once per URL per process)."""
        with _lock:
            if self.url in _migrated:
                return
            from alembic import command
            from alembic.config import Config

            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS_DIR))
            config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
            with self.engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
            _migrated.add(self.url)

    @contextmanager
    def begin(self):
        """One transaction: everything inside commits together or not at all."""
        with self.engine.begin() as connection:
            yield connection

    def replace_rows(
        self, connection: Connection, table: sa.Table, where: sa.ColumnElement[bool], rows: Iterable[Mapping[str, Any]]
    ) -> int:
        """Delete the rows matching `where` and insert `rows` — call inside `begin()` for atomicity."""
        connection.execute(table.delete().where(where))
        rows = list(rows)
        if rows:
            connection.execute(table.insert(), rows)
        return len(rows)

    def read(self, query: sa.Select | sa.Table | str, **params: Any) -> pl.DataFrame:
        """Run a query and return a polars frame (typed from the result's columns)."""
        if isinstance(query, sa.Table):
            query = sa.select(query)
        if isinstance(query, str):
            query = sa.text(query)
        with self.engine.connect() as connection:
            result = connection.execute(query, params)
            columns = list(result.keys())
            rows = result.fetchall()
        if not rows:
            return pl.DataFrame({name: [] for name in columns})
        return pl.DataFrame([tuple(row) for row in rows], schema=columns, orient="row", infer_schema_length=None)

    def read_table(self, name: str, *, where: sa.ColumnElement[bool] | None = None) -> pl.DataFrame:
        table = schema.TABLES.get(name)
        if table is None:
            raise KeyError(f"unknown warehouse table {name!r}; known: {sorted(schema.TABLES)}")
        query = sa.select(table)
        if where is not None:
            query = query.where(where)
        return self.read(query)

    def vacuum(self, tables: Iterable[str] = ()) -> None:
        """Reclaim space after large deletes (VACUUM cannot run inside a transaction)."""
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            if self.dialect == "sqlite":
                connection.exec_driver_sql("VACUUM")
            else:
                for name in tables or schema.TABLES:
                    connection.exec_driver_sql(f'VACUUM (ANALYZE) "{name}"')

    def dispose(self) -> None:
        self.engine.dispose()
