"""The code location loads, and its asset graph, partitions, schedules and sensors are what we ship.

A rename or a dropped asset fails here instead of silently breaking the deployment."""

import dagster as dg

from qrl_platform.definitions import defs
from qrl_platform.defs.partitions import trading_day

RAW_DAILY = {"daily_quotes", "institutional_flows", "margin_balances", "valuations"}
RAW_SLOW = {"monthly_revenue", "financials", "shareholding_distribution"}


def _assets() -> dict[str, dg.AssetsDefinition]:
    graph = defs.resolve_asset_graph()
    return {key.to_user_string(): graph.get(key) for key in graph.get_all_asset_keys()}


def test_definitions_load_and_validate():
    dg.Definitions.validate_loadable(defs)


def test_raw_market_assets_have_plain_keys_trading_day_partitions_and_single_run_backfills():
    assets = _assets()
    assert RAW_DAILY | RAW_SLOW <= set(assets)
    for name in RAW_DAILY:
        node = assets[name]
        assert node.partitions_def == trading_day
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
        assert node.group_name == "market"
    for name in RAW_SLOW:
        assert assets[name].partitions_def is not None
        assert assets[name].backfill_policy == dg.BackfillPolicy.single_run()


# Every sensor the code location ships (all on by default).
SHIPPED_SENSORS = (
    "market_data_available_sensor",
    "strategies_automation",
    "notify_m13_automation",
    "strategy_stats_automation",
    "m13_consumption_lag_sensor",
    "run_failure_alert_sensor",
    "job_duration_sensor",
)
ASSET_GROUPS = {
    "daily_quotes": "market",
    "institutional_flows": "market",
    "margin_balances": "market",
    "valuations": "market",
    "monthly_revenue": "market",
    "financials": "market",
    "shareholding_distribution": "market",
    "corporate_actions": "market",
    "tradability": "market",
    "technical_indicators": "technical",
    "fundamental_indicators": "fundamental",
    "chip_indicators": "chip",
    "strategy_signals": "strategies",
    "strategy_stats": "strategies",
    "m13_notification": "notify",
    "qrl_position": "treasury",
    "rebalance_plan": "treasury",
    "factor_ic": "evaluation",
    "factor_report": "evaluation",
    "strategy_backtest": "evaluation",
}


def test_the_asset_graph_is_what_we_ship():
    assets = _assets()
    # corporate_actions is tradability's upstream (ex-date reference prices).
    assert set(ASSET_GROUPS) | {"factor_metadata", "strategies", "corporate_actions"} == set(assets)
    for name, group in ASSET_GROUPS.items():
        assert assets[name].group_name == group, name
    graph = defs.resolve_asset_graph()

    def parents(name: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(name)).parent_keys}

    assert {"technical_indicators", "fundamental_indicators", "chip_indicators"} <= parents("strategy_signals")
    assert "daily_quotes" in parents("technical_indicators")
    assert {"daily_quotes", "corporate_actions"} <= parents("tradability")
    assert "strategy_signals" in parents("m13_notification") and "strategy_signals" in parents("strategy_stats")
    assert "qrl_position" in parents("rebalance_plan")
    for name in ("technical_indicators", "fundamental_indicators", "chip_indicators", "strategy_signals"):
        assert graph.get(dg.AssetKey(name)).check_keys, f"{name} has no checks"


# The jobs the platform ships (the Dagster UI lists them too, test_webserver.py).
SHIPPED_JOBS = {
    "daily_market_job",
    "strategies_job",
    "notify_m13_job",
    "strategy_stats_job",
    "cleanup_old_signals_job",
    "refresh_factor_metadata_job",
    "qrl_15min_job",
    "qrl_rebalance_job",
}


def test_jobs_schedules_and_sensors_exist():
    jobs = {job.name for job in defs.resolve_all_job_defs()}
    assert SHIPPED_JOBS <= jobs
    repository = defs.get_repository_def()
    assert {s.name for s in repository.schedule_defs} >= {
        "daily_market_schedule",
        "cleanup_old_signals_schedule",
        "refresh_factor_metadata_schedule",
        "qrl_15min_schedule",
        "qrl_rebalance_daily_schedule",
    }
    assert {s.name for s in repository.sensor_defs} == set(SHIPPED_SENSORS)
