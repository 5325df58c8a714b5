import datetime as dt

import sqlalchemy as sa

from qrl_platform.warehouse import Warehouse, schema


def test_migrations_create_every_table(warehouse):
    names = set(sa.inspect(warehouse.engine).get_table_names())
    assert set(schema.TABLES) <= names
    assert "alembic_version" in names


def test_migration_is_idempotent_across_processes(warehouse_url):
    # A second Warehouse on the same URL (as another process would) finds the schema at head.
    from qrl_platform.warehouse import database

    database._migrated.clear()
    Warehouse(warehouse_url).migrate()
    database._migrated.clear()
    wh = Warehouse(warehouse_url)
    with wh.engine.connect() as conn:
        assert conn.execute(sa.text("select version_num from alembic_version")).scalar() is not None


def test_replace_rows_is_atomic(warehouse):
    now = dt.datetime(2024, 1, 2, 8, tzinfo=dt.UTC)
    table = schema.factor_metadata

    def row(fid: str) -> dict:
        return dict(
            factor_id=fid,
            module="M07",
            name=fid,
            description="d",
            unit="x",
            lookback=1,
            source_columns="close",
            version=1,
            min_value=None,
            max_value=None,
            max_missing_rate=0.1,
            updated_at=now,
        )

    with warehouse.begin() as conn:
        warehouse.replace_rows(conn, table, table.c.module == "M07", [row("a"), row("b")])
    try:
        with warehouse.begin() as conn:
            warehouse.replace_rows(conn, table, table.c.module == "M07", [row("c")])
            raise RuntimeError("crash mid-transaction")
    except RuntimeError:
        pass
    assert sorted(warehouse.read_table("factor_metadata")["factor_id"].to_list()) == ["a", "b"]


def test_migrations_match_the_schema_module(warehouse):
    """A table or column added to schema.py without a migration fails here, on both backends."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with warehouse.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    assert diff == []
