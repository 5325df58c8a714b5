"""factor_ic / factor_report / strategy_backtest through Dagster on the demo market (synthetic indicator
frames, the real built-in strategies): a range backfill equals day-by-day runs, metadata carries the
figures and charts, missing inputs fail naming the day."""

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from qrl_platform.calendar import trading_days
from qrl_platform.defs.evaluation.assets import EVALUATION_ASSETS, factor_ic, factor_report, strategy_backtest
from qrl_platform.defs.market.assets import daily_quotes
from qrl_platform.defs.strategies.assets import strategies, strategy_signals
from qrl_platform.evaluation.pipeline import (
    FACTOR_IC,
    FACTOR_QUANTILE_RETURNS,
    FACTOR_REPORT,
    FACTOR_TURNOVER,
    STRATEGY_BACKTEST,
    STRATEGY_POSITIONS,
    STRATEGY_TRADES,
)
from qrl_platform.settings import settings
from qrl_platform.storage.frames import FrameStore
from qrl_platform_tests.conftest import configured_resources
from qrl_platform_tests.stored_frames import report_stored
from qrl_platform_tests.strategies.conftest import write_synthetic_indicators

START, END = "2024-02-15", "2024-03-29"
RANGE_START, RANGE_END = "2024-03-18", "2024-03-27"


def _resources() -> dict:
    return {
        "market_source": configured_resources()["market_source"],
        "frames": configured_resources()["frames"],
        "warehouse": configured_resources()["warehouse"],
    }


def _range(start: str, end: str) -> dict:
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


@pytest.fixture
def chain(qrl_home, monkeypatch):
    monkeypatch.setenv("QRL_DEMO_UNIVERSE", "300")
    instance = dg.DagsterInstance.ephemeral()
    dg.materialize([daily_quotes], resources=_resources(), instance=instance, tags=_range(START, END))
    write_synthetic_indicators(FrameStore(settings().qrl_home), trading_days(START, END))
    config = {"ops": {"strategy_signals": {"config": {"min_volume": 0.0}}}}
    result = dg.materialize(
        [strategies, strategy_signals],
        resources=_resources(),
        instance=instance,
        tags=_range("2024-03-01", END),
        run_config=config,
    )
    assert result.success
    return instance


def _frames(store: FrameStore, names, start, end) -> dict[str, pl.DataFrame]:
    return {name: store.read_range(name, start, end) for name in names}


NAMES = (
    FACTOR_IC,
    FACTOR_QUANTILE_RETURNS,
    FACTOR_TURNOVER,
    FACTOR_REPORT,
    STRATEGY_BACKTEST,
    STRATEGY_POSITIONS,
    STRATEGY_TRADES,
)


def test_a_range_backfill_stores_what_day_by_day_runs_store(chain, tmp_path):
    store = FrameStore(settings().qrl_home)
    result = dg.materialize(
        EVALUATION_ASSETS, resources=_resources(), instance=chain, tags=_range(RANGE_START, RANGE_END)
    )
    assert result.success
    whole = _frames(store, NAMES, RANGE_START, RANGE_END)
    ics = whole[FACTOR_IC]
    assert ics.height and set(ics["horizon"].unique()) == {1, 5, 10, 20}
    assert ics.filter(pl.col("horizon") == 5)["n_stocks"].min() > 200
    assert set(whole[STRATEGY_BACKTEST]["strategy_id"].unique()) >= {"STG_MOMENTUM_001", "STG_VALUE_001"}
    assert whole[STRATEGY_TRADES].filter(pl.col("status") == "FILLED").height > 0

    meta = result.asset_materializations_for_node("strategy_backtest")[-1].metadata
    assert "nav_chart" in meta and meta["nav_chart"].value.startswith("![nav_chart](data:image/png;base64,")
    performance = {r.data["strategy_id"]: r.data for r in meta["performance"].value.records}
    assert set(performance) == set(whole[STRATEGY_BACKTEST]["strategy_id"].unique())
    report_meta = result.asset_materializations_for_node("factor_report")[-1].metadata
    assert {"ic_chart", "ic_decay_chart", "quantile_chart"} <= set(report_meta)
    assert len(report_meta["best_and_worst_icir_5d_250"].value.records) == 10
    [observation] = chain.fetch_observations(dg.AssetKey("factor_metadata"), limit=1).records
    described = observation.asset_observation.metadata["which_way_is_good"].value
    assert described == report_meta["factors"].value and "ret_5: " in described and " since 2024-" in described

    # Day by day from scratch (the same inputs): the same rows.
    for name in NAMES:
        for key in store.partitions(name):
            store.fs.rm(store.path(name, key))
    for day in trading_days(RANGE_START, RANGE_END):
        dg.materialize(EVALUATION_ASSETS, resources=_resources(), instance=chain, partition_key=day.isoformat())
    daily = _frames(store, NAMES, RANGE_START, RANGE_END)
    for name in NAMES:
        if name == FACTOR_REPORT:  # window sums are differences of running sums: equal to float precision
            assert_frame_equal(daily[name], whole[name], check_exact=False, rel_tol=1e-9, abs_tol=1e-12)
        else:
            assert daily[name].equals(whole[name]), name


def test_a_missing_previous_book_refuses_to_restart_the_backtest(chain):
    dg.materialize([strategy_backtest], resources=_resources(), instance=chain, partition_key="2024-03-18")
    result = dg.materialize(
        [strategy_backtest], resources=_resources(), instance=chain, partition_key="2024-03-20", raise_on_error=False
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert "the book of 2024-03-19" in failure.description and "2024-03-18" in failure.description


def test_factor_ic_without_quotes_names_the_day(chain):
    result = dg.materialize(
        [factor_ic, factor_report],
        resources=_resources(),
        instance=chain,
        partition_key="2024-04-01",
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert "daily_quotes is not materialised for 2024-04-01" in failure.description


def _factor_ic_failure(instance, day: str) -> str | None:
    result = dg.materialize(
        [factor_ic], resources=_resources(), instance=instance, partition_key=day, raise_on_error=False
    )
    return (
        None if result.success else result.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    )


def test_a_quotes_file_without_a_materialisation_is_missing_until_one_is_reported(chain):
    """Dagster's event log says which inputs are stored (`defs/stored.py`), not the frame files."""
    store, day = FrameStore(settings().qrl_home), "2024-04-01"
    absent = _factor_ic_failure(chain, day)
    assert absent is not None and f"daily_quotes is not materialised for {day}" in absent

    last = store.read("daily_quotes", END)
    store.write("daily_quotes", day, last.with_columns(pl.lit(pl.Series([day]).str.to_date()[0]).alias("trade_date")))
    assert store.exists("daily_quotes", day)
    assert _factor_ic_failure(chain, day) == absent  # the file alone: the same refusal, the same words

    report_stored(chain, "daily_quotes", day)
    assert _factor_ic_failure(chain, day) is None
    assert store.read(FACTOR_IC, day).filter(pl.col("horizon") == 1)["n_stocks"].min() > 200


def test_qrl_report_prints_the_figures_and_writes_a_self_contained_tear_sheet(chain, tmp_path, capsys):
    from qrl_platform.cli import main

    assert dg.materialize(
        EVALUATION_ASSETS, resources=_resources(), instance=chain, tags=_range(RANGE_START, RANGE_END)
    ).success
    page = tmp_path / "factor.html"
    assert main(["report", "factor", "ret_5", "--from", RANGE_START, "--to", RANGE_END, "--html", str(page)]) == 0
    printed = capsys.readouterr().out
    assert "Factor ret_5, 2024-03-18 to 2024-03-27" in printed and "icir" in printed
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 3 and "<table>" in html and 'src="http' not in html
    stored = FrameStore(settings().qrl_home).read_range(FACTOR_IC, RANGE_START, RANGE_END)
    mean_ic = stored.filter((pl.col("factor_id") == "ret_5") & (pl.col("horizon") == 5))["rank_ic"].mean()
    assert f"{mean_ic:.4f}" in html  # the same figure the stored ICs give

    page = tmp_path / "strategy.html"
    assert (
        main(["report", "strategy", "STG_MOMENTUM_001", "--from", RANGE_START, "--to", RANGE_END, "--html", str(page)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "sharpe" in printed and "max_drawdown" in printed
    assert page.read_text().count("data:image/png;base64,") == 1

    assert main(["report", "strategy", "STG_NOPE_001", "--from", RANGE_START, "--to", RANGE_END]) == 1
    assert "no day of STG_NOPE_001" in capsys.readouterr().err
