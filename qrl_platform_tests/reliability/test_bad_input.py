"""Bad input: the error names the field (or endpoint) and the date, and a hash of everything
stored (every file under QRL_HOME: frames, the SQLite warehouse, the raw-response cache) is unchanged.

* Bad dates given to the `qrl` CLI: no run starts.
* The bad-input matrix, through the real Dagster assets (`dg.materialize`, the live source against the
  local fake exchanges): a home already holds a clean version of the 2026-09-07 partition of every
  daily raw table, and the seeded built-in strategies; then each kind of bad input — truncated JSON, HTML
  instead of JSON, renamed and removed columns, `--` in a required field, volumes in the wrong unit,
  negative prices, duplicate rows (within TWSE, and one stock on both markets), TPEx answering another
  day, invalid strategy definitions, partition keys outside trading_day or malformed — is thrown at
  the asset that reads it. Before each case the cache entry of the endpoint under attack is evicted,
  so the exchange is really asked again (as a pod without the cache would). Each run must fail with
  the expected message and leave the hash, the stored rows and the asset's materialisations as they were.
* `--` in a price is not bad input: it is a missing price, stored as null (never 0).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import sqlalchemy as sa
import yaml

from qrl_platform import cli
from qrl_platform.definitions import RESOURCES
from qrl_platform.defs.market.assets import daily_quotes, institutional_flows, margin_balances, valuations
from qrl_platform.defs.strategies.assets import strategies
from qrl_platform.market.schema import KEYS
from qrl_platform.settings import settings
from qrl_platform.storage.frames import FrameStore
from qrl_platform.strategies.definition import BUILTIN_DIR
from qrl_platform.strategies.store import save_run
from qrl_platform.warehouse import Warehouse
from qrl_platform.warehouse import schema as tables
from qrl_platform_tests.market import fake_exchanges as fx
from qrl_platform_tests.market.fake_exchanges import FakeExchanges
from qrl_platform_tests.reliability.crash_targets import SignalsDayReplace
from qrl_platform_tests.reliability.figures import Figures

pytestmark = pytest.mark.reliability

# argv, then what the error must say (field and date).
BAD_DATES = {
    "month 13": (["run-all", "2024-13-01"], "date: '2024-13-01' is not a date in YYYY-MM-DD form"),
    "two-digit year": (["run-strategy", "STG_MOMENTUM_001", "24-11-01"], "date: '24-11-01' is not a date"),
    "February 30": (["notify", "2024-02-30"], "date: '2024-02-30' is not a date"),
    "end not a date": (["backfill", "2024-11-01", "2024-11-0x"], "end: '2024-11-0x' is not a date"),
    "end before start": (["backfill", "2024-11-05", "2024-11-01"], "end 2024-11-01 is before start 2024-11-05"),
    "a Saturday": (["run-all", "2024-11-02"], "date: 2024-11-02 is a Saturday; its partitions are weekdays"),
    "range from a Sunday": (["backfill", "2024-11-03", "2024-11-08"], "start: 2024-11-03 is a Sunday"),
    "before the first partition": (["notify", "1999-01-04"], "date: 1999-01-04 is outside its partitions (2020-01-02"),
    "far future": (["run-all", "2099-01-05"], "date: 2099-01-05 is outside its partitions"),
}  # fmt: skip


def stored_hash(root: Path) -> str:
    """Every file under `root`, by path and content. The HTTP client's `.throttle` stamps (the time of the
    last request to each host, rewritten by every request) are a politeness clock, not stored data."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and ".throttle" not in p.parts):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_bad_dates_given_to_the_cli_name_field_and_date_and_change_nothing(qrl_home, tmp_path, monkeypatch, record):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # Something stored to lose: a frame partition and a day of strategy signals in the warehouse.
    FrameStore(settings().qrl_home).write(
        "daily_quotes", "2024-11-01", pl.DataFrame({"stock_id": ["2330"], "close": [1090.0]})
    )
    warehouse = Warehouse(settings().warehouse_url)
    signals = SignalsDayReplace({"url": settings().warehouse_url})
    save_run(warehouse, signals.records("A"))
    signals.close()
    warehouse.dispose()
    before = stored_hash(qrl_home)

    wrong: dict[str, str] = {}
    for case, (argv, expected) in BAD_DATES.items():
        try:
            cli.main(argv)
            wrong[case] = "no error"
        except (SystemExit, ValueError) as error:
            if expected not in str(error):
                wrong[case] = str(error)
    runs = dg.DagsterInstance.get().get_runs()
    after = stored_hash(qrl_home)
    record(
        Figures(
            target="bad dates given to the qrl CLI",
            faults=f"{len(BAD_DATES)} malformed or non-partition dates (run-all, run-strategy, backfill, notify)",
            runs=len(BAD_DATES),
            lost=int(before != after),
            duplicated=0,
            notes=f"{len(BAD_DATES) - len(wrong)}/{len(BAD_DATES)} errors name the field and the date; "
            f"{len(runs)} runs started; stored hash unchanged: {before == after}",
        )
    )
    assert wrong == {}
    assert runs == [] and before == after


# ------------------------------------------------------------------------------ the matrix, through the assets

DAY = dt.date(2026, 9, 7)  # a Monday the fake exchanges serve (see qrl_platform_tests/market)
DAILY_ASSETS = {"daily_quotes": daily_quotes, "institutional_flows": institutional_flows,
                "margin_balances": margin_balances, "valuations": valuations}  # fmt: skip


def replace_cell(code: str, position: int, value):
    def edit(payload):
        for table in payload.get("tables") or [payload]:
            for row in table.get("data", []):
                if row and row[0] == code:
                    row[position] = value

    return edit


def duplicate_row(code: str):
    def edit(payload):
        for table in payload.get("tables") or [payload]:
            rows = table.get("data", [])
            rows += [list(row) for row in rows if row and row[0] == code]

    return edit


def remove_column(name: str, table_title: str):
    def edit(payload):
        table = next(t for t in payload["tables"] if table_title in t.get("title", ""))
        at = table["fields"].index(name)
        del table["fields"][at]
        for row in table["data"]:
            del row[at]

    return edit


def unlabelled_thousands(payload):
    """TPEx quotes whose 成交股數 holds thousands of shares while the header still says shares."""
    for table in payload["tables"]:
        for row in table["data"]:
            row[8] = f"{round(int(row[8].replace(',', '')) / 1000):,}"


def tpex_lists_a_twse_stock(payload):
    """TPEx's quote table carrying 2330 (a TWSE stock) as well: the day has that stock twice."""
    row = list(payload["tables"][0]["data"][1])  # 3105's numbers, a consistent row
    payload["tables"][0]["data"].append(["2330", "台積電", *row[2:]])


# kind of bad input -> cases: name -> (table, endpoint path whose cache entry is evicted, break, message parts)
MARKET_KINDS = {
    "malformed payload": {
        "T86 truncated JSON": ("institutional_flows", fx.T86, lambda x: x.serve_truncated(fx.T86),
                               ["TWSE T86 2026-09-07", "response body is not JSON"]),
        "TPEx margin truncated JSON": ("margin_balances", fx.MARGIN_BALANCE, lambda x: x.serve_truncated(fx.MARGIN_BALANCE),
                                       ["TPEx margin/balance 2026-09-07", "response body is not JSON"]),
    },
    "HTML instead of JSON": {
        "MI_INDEX answers HTML": ("daily_quotes", fx.MI_INDEX, lambda x: x.serve_html(fx.MI_INDEX),
                                  ["TWSE MI_INDEX 2026-09-07", "not JSON", "text/html"]),
        "TPEx dailyQuotes answers HTML": ("daily_quotes", fx.DAILY_QUOTES, lambda x: x.serve_html(fx.DAILY_QUOTES),
                                          ["TPEx dailyQuotes 2026-09-07", "not JSON", "text/html"]),
    },
    "missing fields": {
        "T86 column renamed": ("institutional_flows", fx.T86, lambda x: x.rename_field(fx.T86, 10, "投信買賣超"),
                               ["TWSE T86 2026-09-07", "'投信買賣超股數'", "missing"]),
        "MI_INDEX 收盤價 removed": ("daily_quotes", fx.MI_INDEX, lambda x: x.mutate(fx.MI_INDEX, remove_column("收盤價", "每日收盤行情")),
                                  ["TWSE MI_INDEX 2026-09-07", "'收盤價'", "missing"]),
        "BWIBBU_d 本益比 renamed": ("valuations", fx.BWIBBU_D, lambda x: x.rename_field(fx.BWIBBU_D, 4, "本益比(倍)"),
                                  ["TWSE BWIBBU_d 2026-09-07", "'本益比'", "missing"]),
    },
    "`--` in a required field": {
        "MI_INDEX 成交股數 --": ("daily_quotes", fx.MI_INDEX, lambda x: x.mutate(fx.MI_INDEX, replace_cell("2330", 2, "--")),
                               ["TWSE MI_INDEX 2026-09-07", "field '成交股數' is empty ('--') for stock 2330"]),
        "MI_MARGN 今日餘額 --": ("margin_balances", fx.MI_MARGN, lambda x: x.mutate(fx.MI_MARGN, replace_cell("2330", 6, "--")),
                              ["TWSE MI_MARGN 2026-09-07", "今日餘額 (margin_balance)", "2330", "empty"]),
    },
    "wrong units": {
        "TPEx volume in thousands labelled shares": ("daily_quotes", fx.DAILY_QUOTES, lambda x: x.mutate(fx.DAILY_QUOTES, unlabelled_thousands),
                                                     ["TPEx dailyQuotes 2026-09-07", "field '成交股數' has the wrong unit"]),
    },
    "negative prices": {
        "MI_INDEX close -1,090.00": ("daily_quotes", fx.MI_INDEX, lambda x: x.mutate(fx.MI_INDEX, replace_cell("2330", 8, "-1,090.00")),
                                     ["daily_quotes TWSE MI_INDEX 2026-09-07", "field 'close' is negative (-1090.0) for stock 2330 on 2026-09-07"]),
    },
    "duplicate rows": {
        "2330 twice in MI_INDEX": ("daily_quotes", fx.MI_INDEX, lambda x: x.mutate(fx.MI_INDEX, duplicate_row("2330")),
                                   ["daily_quotes TWSE MI_INDEX 2026-09-07", "duplicate rows for stock_id=2330, trade_date=2026-09-07"]),
        "2330 on TWSE and TPEx": ("daily_quotes", fx.DAILY_QUOTES, lambda x: x.mutate(fx.DAILY_QUOTES, tpex_lists_a_twse_stock),
                                  ["daily_quotes 2026-09-07", "duplicate rows for stock_id=2330, trade_date=2026-09-07"]),
    },
    "another day's data": {
        "TPEx answers 2026-09-04": ("daily_quotes", fx.DAILY_QUOTES, lambda x: x.tpex_answers_date(dt.date(2026, 9, 4)),
                                    ["TPEx dailyQuotes 2026-09-07", "field 'date' says 2026-09-04"]),
    },
}  # fmt: skip


# Invalid strategy definitions given to the `strategies` asset (config `directory`): a copy of the built-ins
# with one file edited. Definitions carry no date, so the error names the file, the strategy and the field.
def edit_yaml(file: str, edit):
    def apply(directory: Path) -> None:
        path = directory / file
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        edit(raw)
        path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")

    return apply


STRATEGY_CASES = {
    # case: (edit of the copied directory, message parts)
    "unknown factor": (edit_yaml("value.yaml", lambda raw: raw["rules"][0].update(factor="pe_ratio")),
                       ["value.yaml: STG_VALUE_001: rules[0].factor 'pe_ratio' is not a known factor (did you mean 'pe'?)"]),
    "misspelt field": (edit_yaml("momentum.yaml", lambda raw: raw.update(horizn_days=raw.pop("horizon_days"))),
                       ["momentum.yaml: STG_MOMENTUM_001: horizn_days is not a known field (did you mean 'horizon_days'?)"]),
    "bad operator": (edit_yaml("value.yaml", lambda raw: raw["rules"][3].update(op="=>")),
                     ["value.yaml: STG_VALUE_001: rules[3].op"]),
    "rules changed, version not bumped": (edit_yaml("value.yaml", lambda raw: raw["signal"].update(buy_above=0.8)),
                                          ["STG_VALUE_001: version: the rules changed but version is still 1"]),
    "not YAML": (lambda directory: (directory / "value.yaml").write_text("rules: [unclosed\n", encoding="utf-8"),
                 ["value.yaml", "is not valid YAML"]),
}  # fmt: skip

# Partition keys dg.materialize refuses before any run starts: Dagster's message names the key.
PARTITION_KINDS = {
    "dates outside the partition range": ["1999-01-04", "2099-01-05", "2026-09-05"],  # before start, future, a Saturday
    "malformed partition key": ["2026-13-01", "2026-9-7", "20260907", "garbage"],
}


@pytest.fixture
def live_home(qrl_home, monkeypatch):
    exchanges = FakeExchanges()
    monkeypatch.setenv("QRL_MARKET_SOURCE", "live")
    monkeypatch.setenv("QRL_TWSE_BASE_URL", exchanges.twse_base_url)
    monkeypatch.setenv("QRL_TPEX_BASE_URL", exchanges.tpex_base_url)
    monkeypatch.setenv("QRL_HTTP_MIN_INTERVAL_SECONDS", "0")
    monkeypatch.setenv("QRL_HTTP_BACKOFF_SECONDS", "0.01")
    yield qrl_home, exchanges
    exchanges.stop()


def heal(exchanges: FakeExchanges) -> None:
    """Back to clean answers."""
    exchanges.html.clear()
    exchanges.truncated.clear()
    exchanges.mutations.clear()
    exchanges.tpex_answers_date(None)


def evict(home: Path, path: str) -> dict[Path, bytes]:
    """Drop the cached answer of `path` for DAY (so the exchange is asked again); returns it for `restore`."""
    evicted = {entry: entry.read_bytes() for entry in home.glob(f"cache/raw/*{path}/{DAY}.json")}
    assert len(evicted) == 1, (path, evicted)  # the clean run cached it
    for entry in evicted:
        entry.unlink()
    return evicted


def restore(evicted: dict[Path, bytes]) -> None:
    """Put the clean answer back, so the next case starts from the same full cache."""
    for entry, body in evicted.items():
        entry.write_bytes(body)


def error_text(result: dg.ExecuteInProcessResult) -> str:
    """The failed step's error with its causes (Dagster wraps the asset's exception)."""
    parts = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None:
            parts.append(f"{error.cls_name}: {error.message}")
            error = error.cause
    return "\n".join(parts)


def stored_duplicates(table: str) -> int:
    frame = FrameStore(settings().qrl_home).read(table, str(DAY))
    return frame.height - frame.unique(subset=list(KEYS[table])).height


def stored_strategies() -> list[tuple]:
    warehouse = Warehouse(settings().warehouse_url)
    try:
        with warehouse.engine.connect() as conn:
            query = sa.select(tables.strategies.c.strategy_id, tables.strategies.c.version,
                              tables.strategies.c.status, tables.strategies.c.definition)  # fmt: skip
            return sorted(tuple(row) for row in conn.execute(query.order_by(tables.strategies.c.strategy_id)))
    finally:
        warehouse.dispose()


def materialisations(instance: dg.DagsterInstance, table: str) -> int:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(table), asset_partitions=[DAY.isoformat()]), limit=100
    )
    return len(records.records)


def test_every_bad_input_kind_through_the_assets_names_field_and_date_and_changes_nothing(live_home, record):
    home, exchanges = live_home
    with dg.instance_for_test() as instance:
        for asset in DAILY_ASSETS.values():  # the clean earlier version of every daily table's partition
            assert dg.materialize([asset], resources=RESOURCES, partition_key=str(DAY), instance=instance).success
        assert dg.materialize([strategies], resources=RESOURCES, instance=instance).success
        clean_rows = {table: FrameStore(settings().qrl_home).read(table, str(DAY)) for table in DAILY_ASSETS}
        assert {table: frame.height for table, frame in clean_rows.items()} == {
            "daily_quotes": 12, "institutional_flows": 7, "margin_balances": 5, "valuations": 7,
        }  # fmt: skip

        for kind, cases in MARKET_KINDS.items():
            wrong: dict[str, str] = {}
            changed = duplicated = 0
            for case, (table, path, breaking, expected) in cases.items():
                evicted = evict(home, path)
                before = stored_hash(home)
                breaking(exchanges)
                result = dg.materialize(
                    [DAILY_ASSETS[table]], resources=RESOURCES, partition_key=str(DAY), instance=instance,
                    raise_on_error=False,
                )  # fmt: skip
                heal(exchanges)
                message = error_text(result)
                missing = [part for part in expected if part not in message]
                if result.success or missing:
                    wrong[case] = f"success={result.success}, missing {missing} in: {message[:400]}"
                changed += int(stored_hash(home) != before)
                changed += int(not FrameStore(settings().qrl_home).read(table, str(DAY)).equals(clean_rows[table]))
                changed += int(materialisations(instance, table) != 1)  # only the clean run's
                duplicated += stored_duplicates(table)
                restore(evicted)
            record(matrix_row(kind, cases, wrong, changed, duplicated))
            assert wrong == {}, kind
            assert (changed, duplicated) == (0, 0), kind

        strategies_before = stored_strategies()
        wrong = {}
        changed = 0
        for number, (case, (breaking, expected)) in enumerate(STRATEGY_CASES.items()):
            directory = home.parent / f"strategies-{number}"
            shutil.copytree(BUILTIN_DIR, directory)
            breaking(directory)
            before = stored_hash(home)
            result = dg.materialize(
                [strategies], resources=RESOURCES, instance=instance, raise_on_error=False,
                run_config={"ops": {"strategies": {"config": {"directory": str(directory)}}}},
            )  # fmt: skip
            message = error_text(result)
            missing = [part for part in expected if part not in message]
            if result.success or missing:
                wrong[case] = f"success={result.success}, missing {missing} in: {message[:400]}"
            changed += int(stored_hash(home) != before) + int(stored_strategies() != strategies_before)
        record(
            Figures(
                target="bad input through the assets: invalid strategy definitions",
                faults=f"{len(STRATEGY_CASES)}: " + "; ".join(STRATEGY_CASES),
                runs=len(STRATEGY_CASES),
                lost=changed,
                duplicated=len(strategies_before) - len({row[0] for row in strategies_before}),
                notes=f"{len(STRATEGY_CASES) - len(wrong)}/{len(STRATEGY_CASES)} failed naming file, strategy and "
                f"field; `strategies` table and stored hash unchanged: {changed == 0}",
            )
        )
        assert wrong == {}
        assert changed == 0 and len(strategies_before) == 10

        for kind, keys in PARTITION_KINDS.items():
            wrong = {}
            before = stored_hash(home)
            runs_before = len(instance.get_runs())
            for key in keys:
                try:
                    dg.materialize([daily_quotes], resources=RESOURCES, partition_key=key, instance=instance)
                    wrong[key] = "no error"
                except dg.DagsterUnknownPartitionError as error:
                    if f"Could not find a partition with key `{key}`" not in str(error):
                        wrong[key] = str(error)
            started = len(instance.get_runs()) - runs_before
            changed = int(stored_hash(home) != before)
            record(
                Figures(
                    target=f"bad input through the assets: {kind}",
                    faults=f"{len(keys)} partition keys ({', '.join(keys)}) for daily_quotes",
                    runs=len(keys),
                    lost=changed,
                    duplicated=0,
                    notes=f"{len(keys) - len(wrong)}/{len(keys)} refused naming the key; {started} runs started; "
                    f"stored hash unchanged: {not changed}",
                )
            )
            assert wrong == {} and started == 0 and changed == 0, kind


def matrix_row(kind: str, cases: dict, wrong: dict, changed: int, duplicated: int) -> Figures:
    return Figures(
        target=f"bad input through the assets: {kind}",
        faults=f"{len(cases)}: " + "; ".join(cases),
        runs=len(cases),
        lost=changed,
        duplicated=duplicated,
        notes=f"{len(cases) - len(wrong)}/{len(cases)} failed naming field or endpoint and the date; "
        f"stored hash, rows and materialisations unchanged: {changed == 0}",
    )


def test_dashes_in_a_price_are_a_missing_price_stored_as_null_not_bad_input(live_home):
    """`--` where a price is: the day is stored with that price null (never 0); the stock
    traded (volume > 0), so it is not marked suspended, and every other value is the clean run's."""
    home, exchanges = live_home
    with dg.instance_for_test() as instance:
        assert dg.materialize([daily_quotes], resources=RESOURCES, partition_key=str(DAY), instance=instance).success
        clean = FrameStore(settings().qrl_home).read("daily_quotes", str(DAY))
        evict(home, fx.MI_INDEX)
        exchanges.mutate(fx.MI_INDEX, replace_cell("2330", 8, "--"))  # 收盤價
        assert dg.materialize([daily_quotes], resources=RESOURCES, partition_key=str(DAY), instance=instance).success
    stored = FrameStore(settings().qrl_home).read("daily_quotes", str(DAY))
    tsmc = stored.filter(pl.col("stock_id") == "2330").row(0, named=True)
    assert (tsmc["close"], tsmc["change"], tsmc["is_suspended"], tsmc["volume"]) == (None, None, False, 40_033_236)
    others = [c for c in clean.columns if c not in ("close", "change")]
    assert stored.select(others).equals(clean.select(others))
    assert stored.filter(pl.col("stock_id") != "2330").equals(clean.filter(pl.col("stock_id") != "2330"))
