"""Warehouse writes on SQLite and PostgreSQL: idempotent signal ids, one transaction, seeding."""

import datetime as dt
import json
import sqlite3

import polars as pl
import psycopg
import pytest
import sqlalchemy as sa

from qrl_platform.strategies import store as store_module
from qrl_platform.strategies.definition import InvalidStrategy, parse_definition
from qrl_platform.strategies.engine import build_frame, run_strategies
from qrl_platform.strategies.store import (
    build_records,
    latest_executions,
    load_strategies,
    make_signal_id,
    save_run,
    seed_strategies,
)
from qrl_platform.warehouse import Warehouse
from qrl_platform.warehouse.schema import job_execution_details, strategies, strategy_executions, strategy_signals

D1, D2 = dt.date(2024, 3, 5), dt.date(2024, 3, 6)


def _definition(strategy_id: str, factor: str = "rsi_14", version: int = 1, **extra) -> dict:
    return {
        "strategy_id": strategy_id,
        "name": strategy_id.title(),
        "status": "ACTIVE",
        "version": version,
        "horizon_days": 2,
        "universe": {"min_volume_lots": 0},
        "rules": [{"factor": factor, "op": ">", "value": 50, "weight": 1}],
        "signal": {"buy_above": 1.0, "sell_below": 0.0},
        **extra,
    }


def _frame(dates=(D1, D2)) -> pl.DataFrame:
    rows = []
    for day in dates:
        for i, stock in enumerate(["1101", "2330", "2454", "3008"]):
            rows.append(
                {
                    "stock_id": stock,
                    "trade_date": day,
                    "market": "TWSE",
                    "close": 10.0 + i,
                    "volume": 10**6,
                    "is_etf": False,
                    "is_suspended": False,
                    "rsi_14": 30.0 + 20 * i,
                }
            )
    data = pl.DataFrame(rows)
    return build_frame(data.drop("rsi_14"), [data.select("stock_id", "trade_date", "rsi_14")])


def _run(definitions, dates=(D1, D2), run_id="run-1"):
    outcomes = run_strategies(definitions, _frame(dates), list(dates))
    return build_records(outcomes, list(dates), run_id=run_id)


def test_rerun_gives_same_signal_ids_and_a_second_execution(warehouse):
    defs = [parse_definition(_definition("STG_A_001")), parse_definition(_definition("STG_B_001"))]
    first = save_run(warehouse, _run(defs))
    assert first.signals_written == 16 and first.executions_written == 4 and first.signals_deleted == 0
    before = warehouse.read_table("strategy_signals").sort("signal_id")
    assert before["signal_id"][0] == make_signal_id("STG_A_001", "1101", D1) == "STG_A_001-20240305-1101"

    second = save_run(warehouse, _run(defs, run_id="run-2"))
    assert second.signals_deleted == 16
    after = warehouse.read_table("strategy_signals").sort("signal_id")
    assert after.select("signal_id", "signal", "confidence", "score").equals(
        before.select("signal_id", "signal", "confidence", "score")
    )
    # The signals now point at the second run's executions; both runs' executions are kept.
    executions = warehouse.read_table("strategy_executions")
    assert executions.height == 8
    assert set(after["execution_id"]) == set(executions.filter(pl.col("run_id") == "run-2")["execution_id"])
    latest = latest_executions(warehouse, [D1, D2])
    assert latest.height == 4 and (latest["signals_generated"] == latest["stored_signals"]).all()
    # Without the count (the checks that read only the executions' columns): the same current
    # executions, and no count pretending to be one.
    uncounted = latest_executions(warehouse, [D1, D2], count_stored=False)
    assert uncounted.drop("stored_signals").equals(latest.drop("stored_signals"))
    assert uncounted["stored_signals"].null_count() == 4


def test_the_stored_signal_count_per_execution_reads_the_index_alone(tmp_path):
    """The consistency check's count per execution is answered from the (trade_date, strategy_id,
    execution_id) index, not by reading the signal rows: the plan SQLite makes for the statement
    `latest_executions` runs."""
    warehouse = Warehouse(f"sqlite:///{tmp_path / 'warehouse.sqlite'}")
    save_run(warehouse, _run([parse_definition(_definition("STG_A_001"))]))
    statements = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    sa.event.listen(warehouse.engine, "before_cursor_execute", remember)
    try:
        latest = latest_executions(warehouse, [D1, D2])
    finally:
        sa.event.remove(warehouse.engine, "before_cursor_execute", remember)
    assert latest["stored_signals"].to_list() == [4, 4]
    [(statement, parameters)] = [(s, p) for s, p in statements if "count(*)" in s.lower()]
    with warehouse.engine.connect() as conn:
        plan = " | ".join(row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters))
    assert (
        "SEARCH strategy_signals USING COVERING INDEX ix_strategy_signals_date_strategy_execution (trade_date=? AND strategy_id=? AND execution_id=?)"
        in plan
    ), plan
    warehouse.dispose()


def test_a_subset_run_replaces_only_its_strategies(warehouse):
    a, b = parse_definition(_definition("STG_A_001")), parse_definition(_definition("STG_B_001"))
    save_run(warehouse, _run([a, b]))
    save_run(warehouse, _run([a], dates=(D1,), run_id="run-2"))
    signals = warehouse.read_table("strategy_signals")
    assert signals.height == 16
    executions = dict(
        signals.group_by("strategy_id", "trade_date")
        .agg(pl.col("execution_id").n_unique())
        .select(pl.concat_str("strategy_id", pl.col("trade_date").cast(pl.Utf8), separator=" "), "execution_id")
        .iter_rows()
    )
    assert set(executions.values()) == {1}


def test_a_failed_write_leaves_the_previous_version_intact(warehouse, monkeypatch):
    defs = [parse_definition(_definition("STG_A_001"))]
    save_run(warehouse, _run(defs))
    before = warehouse.read_table("strategy_signals").sort("signal_id")

    def crash(conn, signals):
        raise RuntimeError("disk full")  # after the DELETE, inside the transaction

    monkeypatch.setattr(store_module, "_bulk_insert_signals", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        save_run(warehouse, _run(defs, run_id="run-2"))
    assert warehouse.read_table("strategy_signals").sort("signal_id").equals(before)
    assert warehouse.read_table("strategy_executions").height == 2


def test_a_bulk_insert_failing_midway_leaves_the_previous_version_intact(warehouse, monkeypatch):
    """The bulk path itself fails after some rows went in (a duplicate id at the end of the frame):
    the COPY / DBAPI executemany runs in the run's transaction, so nothing of the new run remains."""
    defs = [parse_definition(_definition("STG_A_001"))]
    save_run(warehouse, _run(defs))
    before = warehouse.read_table("strategy_signals").sort("signal_id")
    records = _run(defs, run_id="run-2")
    records.signals = pl.concat([records.signals, records.signals.head(1)])
    monkeypatch.setattr(store_module, "SQLITE_CHUNK_ROWS", 2)  # several chunks: the first ones succeed
    # The bulk paths talk to the driver directly, so the driver's own error surfaces.
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
        save_run(warehouse, records)
    assert warehouse.read_table("strategy_signals").sort("signal_id").equals(before)
    assert warehouse.read_table("strategy_executions").height == 2


def test_consumed_at_survives_an_unchanged_rerun_but_not_a_changed_signal(warehouse):
    defs = [parse_definition(_definition("STG_A_001"))]
    save_run(warehouse, _run(defs, dates=(D1,)))
    consumed = dt.datetime(2024, 3, 5, 9, 0, tzinfo=dt.UTC)
    with warehouse.begin() as conn:
        conn.execute(strategy_signals.update().values(consumed_at=consumed))
    # rsi_14 is 30, 50, 70, 90: "> 50" made 1101 and 2330 SELL, 2454 and 3008 BUY. Re-run with "> 20":
    # 1101 and 2330 flip to BUY (new to the order module: unconsumed); 2454 and 3008 are unchanged (stay consumed).
    changed = _definition("STG_A_001")
    changed["rules"][0]["value"] = 20
    result = save_run(warehouse, _run([parse_definition(changed)], dates=(D1,), run_id="run-2"))
    rows = {r["stock_id"]: r for r in warehouse.read_table("strategy_signals").iter_rows(named=True)}
    assert rows["1101"]["consumed_at"] is None and rows["2330"]["consumed_at"] is None
    assert rows["2454"]["consumed_at"] is not None and rows["3008"]["consumed_at"] is not None
    assert result.consumed_kept == 2


def test_failed_strategy_is_recorded_in_executions_and_details(warehouse):
    good = parse_definition(_definition("STG_A_001"))
    broken = parse_definition(_definition("STG_BROKEN_001", factor="pe"))  # no pe column in the frame
    result = save_run(warehouse, _run([broken, good], dates=(D1,)))
    assert result.details_written == 1
    executions = {r["strategy_id"]: r for r in warehouse.read_table("strategy_executions").iter_rows(named=True)}
    assert executions["STG_BROKEN_001"]["status"] == "FAILED"
    assert "ColumnNotFoundError" in executions["STG_BROKEN_001"]["error_message"]
    assert executions["STG_BROKEN_001"]["signals_generated"] == 0
    assert executions["STG_A_001"]["status"] == "SUCCESS" and executions["STG_A_001"]["signals_generated"] == 4
    detail = warehouse.read_table("job_execution_details").row(0, named=True)
    assert detail["job_name"] == "EXEC_ALL_STRATEGIES" and detail["strategy_id"] == "STG_BROKEN_001"
    assert detail["execution_id"] == executions["STG_BROKEN_001"]["execution_id"]
    assert detail["error_type"] == "ColumnNotFoundError" and detail["trade_date"] == D1
    diagnostics = json.loads(executions["STG_A_001"]["diagnostics"])
    assert diagnostics["universe_size"] == 4


def test_a_strategy_failing_on_a_rerun_keeps_its_previous_signals(warehouse):
    definition = parse_definition(_definition("STG_A_001"))
    save_run(warehouse, _run([definition], dates=(D1,)))
    before = warehouse.read_table("strategy_signals").sort("signal_id")
    # Same strategy, but the day's frame lacks its factor now: FAILED, recorded, old signals kept.
    broken_frame = _frame((D1,)).drop("rsi_14")
    records = build_records(run_strategies([definition], broken_frame, [D1]), [D1], run_id="run-2")
    assert records.strategy_ids == []
    result = save_run(warehouse, records)
    assert (result.signals_deleted, result.signals_written, result.details_written) == (0, 0, 1)
    assert warehouse.read_table("strategy_signals").sort("signal_id").equals(before)
    latest = latest_executions(warehouse, [D1]).row(0, named=True)
    assert latest["status"] == "FAILED" and latest["signals_generated"] == latest["stored_signals"] == 0


def _write_yaml(directory, definition: dict, name: str | None = None):
    import yaml

    path = directory / (name or f"{definition['strategy_id'].lower()}.yaml")
    path.write_text(yaml.safe_dump(definition))
    return path


def test_seed_inserts_updates_by_version_and_rejects_silent_changes(warehouse, tmp_path):
    _write_yaml(tmp_path, _definition("STG_A_001"))
    _write_yaml(tmp_path, _definition("STG_B_001"))
    first = seed_strategies(warehouse, tmp_path)
    assert first.inserted == ["STG_A_001", "STG_B_001"] and not first.updated

    assert seed_strategies(warehouse, tmp_path).unchanged == ["STG_A_001", "STG_B_001"]

    # Changing a rule without bumping the version is refused, naming the file and field; nothing is written.
    changed = _definition("STG_A_001")
    changed["rules"][0]["value"] = 60
    _write_yaml(tmp_path, changed)
    with pytest.raises(
        InvalidStrategy, match=r"stg_a_001.yaml: STG_A_001: version: the rules changed but version is still 1"
    ):
        seed_strategies(warehouse, tmp_path)

    changed["version"] = 2
    _write_yaml(tmp_path, changed)
    inactive = _definition("STG_B_001", status="INACTIVE")
    _write_yaml(tmp_path, inactive)  # a status flip needs no version bump
    result = seed_strategies(warehouse, tmp_path)
    assert result.updated == ["STG_A_001", "STG_B_001"]
    stored = {r["strategy_id"]: r for r in warehouse.read_table("strategies").iter_rows(named=True)}
    assert (
        stored["STG_A_001"]["version"] == 2 and json.loads(stored["STG_A_001"]["definition"])["rules"][0]["value"] == 60
    )
    assert stored["STG_B_001"]["status"] == "INACTIVE"
    assert stored["STG_A_001"]["total_executions"] == 0  # server default for the summary columns

    changed["version"] = 1
    _write_yaml(tmp_path, changed)
    with pytest.raises(InvalidStrategy, match="version 1 is older than the stored version 2"):
        seed_strategies(warehouse, tmp_path)


def test_seed_aborts_on_an_invalid_file_without_writing(warehouse, tmp_path):
    _write_yaml(tmp_path, _definition("STG_A_001"))
    _write_yaml(tmp_path, _definition("STG_VALUE_001", factor="pe_ratio"), name="value.yaml")
    with pytest.raises(InvalidStrategy) as info:
        seed_strategies(warehouse, tmp_path)
    assert (
        str(info.value)
        == "value.yaml: STG_VALUE_001: rules[0].factor 'pe_ratio' is not a known factor (did you mean 'pe'?)"
    )
    assert warehouse.read_table("strategies").height == 0


def test_builtin_seed_and_load_back(warehouse):
    result = seed_strategies(warehouse)
    assert len(result.inserted) == 10
    loaded = load_strategies(warehouse)
    assert {d.strategy_id for d in loaded.definitions} == set(result.inserted) and not loaded.invalid
    assert {d.strategy_id: d for d in loaded.definitions} == {d.strategy_id: d for d in result.definitions}


def test_a_stored_definition_that_no_longer_validates_is_reported_not_raised(warehouse):
    seed_strategies(warehouse)
    with warehouse.begin() as conn:
        stored = conn.execute(
            sa.select(strategies.c.definition).where(strategies.c.strategy_id == "STG_VALUE_001")
        ).scalar()
        raw = json.loads(stored)
        raw["rules"][0]["factor"] = "retired_factor"
        conn.execute(
            strategies.update().where(strategies.c.strategy_id == "STG_VALUE_001").values(definition=json.dumps(raw))
        )
    loaded = load_strategies(warehouse)
    assert "STG_VALUE_001" in loaded.invalid and "retired_factor" in loaded.invalid["STG_VALUE_001"]
    assert len(loaded.definitions) == 9


def test_tables_used_exist(warehouse):
    for table in (strategy_signals, strategy_executions, job_execution_details, strategies):
        assert warehouse.read_table(table.name).height == 0
