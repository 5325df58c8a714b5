"""The code location loads, and its asset graph, partitions, schedules and sensors are what we ship.

A rename or a dropped asset fails here instead of silently breaking the deployment."""

import dagster as dg

from qrl_platform.definitions import defs
from qrl_platform.partitions import trading_day

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
