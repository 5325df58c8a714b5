"""The one answer to "is this partition stored?": a partition counts as stored when Dagster's event log
holds a materialisation of it.

Why the event log and not the Parquet file list: Dagster owns the flow. The daily flow's automation
conditions (`missing()`), the UI's partition status, the market sensor and the blocking-check gate
already read materialisations, so every other reader (`qrl status`, the CLI's backfill planner, the
history the market assets fetch first, the factor checks' missing-history cause) asks the same question
here and all of them agree. A frame file written without a materialisation (by hand, by a notebook that
did not report it) is therefore not stored; reporting a runless `dg.AssetMaterialization` for it makes
it stored everywhere at once.

Only public `DagsterInstance` API is used: `fetch_materializations`, paged newest first
(`get_materialized_partitions` is not marked public in Dagster 1.13). Core code that needs the answer
(e.g. `factors/compute_range.py`) receives the keys as a plain set from the wiring.

A CLI that submits its runs to a deployed webserver (QRL_DAGSTER_URL) asks that deployment the same
question through its GraphQL API (`stored_partitions_on_webserver`: the asset's materialisation
events), so its plan never comes from a local instance that did not see the deployment's runs.
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

from collections.abc import Callable, Iterable

import dagster as dg

PAGE = 1000  # materialisation records read per call


def stored_partitions(instance: dg.DagsterInstance, asset: str, keys: Iterable[str] | None = None) -> set[str]:
    """The partition keys of `asset` that have a materialisation in `instance` (among `keys` if given,
    else all of them)."""
    wanted = None if keys is None else list(dict.fromkeys(keys))
    if wanted == []:
        return set()
    found: set[str] = set()
    cursor = None
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=wanted), limit=PAGE, cursor=cursor
        )
        found.update(record.partition_key for record in result.records if record.partition_key is not None)
        if not result.has_more or (wanted is not None and len(found) == len(wanted)):
            return found
        cursor = result.cursor


def stored_by_table(instance: dg.DagsterInstance, tables: Iterable[str]) -> dict[str, set[str]]:
    """table -> its stored partition keys, for handing to core code as a plain value."""
    return {table: stored_partitions(instance, table) for table in tables}


# A GraphQL query function: (query, variables) -> the response's data (`cli_deployment.graphql`).
GraphQL = Callable[[str, dict], dict]

MATERIALISED_PARTITIONS_QUERY = """
query QrlStoredPartitions($assetKey: AssetKeyInput!, $partitions: [String!]) {
  assetOrError(assetKey: $assetKey) {
    __typename
    ... on Asset { assetMaterializations(partitions: $partitions) { partition } }
  }
}
"""


def stored_partitions_on_webserver(graphql: GraphQL, asset: str, keys: Iterable[str] | None = None) -> set[str]:
    """`stored_partitions` answered by a deployed webserver: the partition keys of `asset` (among `keys`
    if given) that have a materialisation in the deployment's event log. An asset the deployment has
    never heard of has none."""
    wanted = None if keys is None else list(dict.fromkeys(keys))
    if wanted == []:
        return set()
    variables = {"assetKey": {"path": [asset]}, "partitions": wanted}
    found = graphql(MATERIALISED_PARTITIONS_QUERY, variables)["assetOrError"]
    if found["__typename"] != "Asset":
        return set()
    return {event["partition"] for event in found["assetMaterializations"] if event["partition"] is not None}
