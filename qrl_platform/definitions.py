"""The qrl_platform code location (workspace.yaml, `dagster dev` and `dg` point here).

Everything Dagster knows lives under `qrl_platform/defs/`, one folder per domain; this module loads
that folder and adds the asset jobs the `qrl` CLI runs (one per partitions definition, derived from the
loaded assets). Read a domain's folder to see its assets, checks, jobs, schedules and sensors.
"""

from collections.abc import Sequence
from pathlib import Path

import dagster as dg

import qrl_platform.defs
from qrl_platform.defs.partitions import fiscal_quarter, quarter_hour, revenue_month, shareholding_week, trading_day

# The name of each partitions definition in the CLI's asset job names (`<name>_assets_job`).
PARTITIONS_NAMES = {
    trading_day: "trading_day",
    revenue_month: "revenue_month",
    fiscal_quarter: "fiscal_quarter",
    shareholding_week: "shareholding_week",
    quarter_hour: "quarter_hour",
    None: "unpartitioned",
}


def _asset_job_name(partitions_def: dg.PartitionsDefinition | None, asset: dg.AssetKey) -> str:
    if partitions_def not in PARTITIONS_NAMES:
        raise ValueError(f"asset {asset.to_user_string()}: its partitions are not one of defs/partitions.py's")
    return f"{PARTITIONS_NAMES[partitions_def]}_assets_job"


def _asset_jobs(loaded: dg.Definitions) -> list:
    """One asset job per partitions definition (and one for the unpartitioned assets): the jobs the
    `qrl` CLI runs any asset selection with (a backfill, the demo, a re-run), locally or submitted to a
    deployment. A Dagster run covers assets of one partitions definition; each job selects every asset
    of one, so a new asset is in its job without being listed anywhere."""
    graph = loaded.resolve_asset_graph()
    keys_by_job: dict[str, list[dg.AssetKey]] = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        if node.is_materializable:
            keys_by_job.setdefault(_asset_job_name(node.partitions_def, key), []).append(key)
    return [
        dg.define_asset_job(
            name,
            selection=dg.AssetSelection.assets(*keys),
            description="Any selection of these assets (with their checks) as one run, for one partition "
            "or a range: what the qrl CLI launches for backfills, the demo and re-runs.",
        )
        for name, keys in sorted(keys_by_job.items())
    ]


def asset_job_for(assets: Sequence[str]) -> str:
    """The asset job that runs `assets` (which share a partitions definition, as any one run's do)."""
    key = dg.AssetKey.from_user_string(assets[0])
    return _asset_job_name(defs.resolve_asset_graph().get(key).partitions_def, key)


def _code_location() -> dg.Definitions:
    loaded = dg.load_defs(defs_root=qrl_platform.defs, project_root=Path(__file__).resolve().parent.parent)
    return dg.Definitions.merge(loaded, dg.Definitions(jobs=_asset_jobs(loaded)))


# A plain Definitions object rather than a `@dg.definitions` function: the CLI, the tests and the
# benchmarks use it directly, and every Dagster tool accepts either. The only one at module scope.
defs = _code_location()

# The resources as the code location binds them (tests and the CLI reuse them).
RESOURCES = dict(defs.resources or {})
