"""The local instance's batched SQLite event log (defs/instance_storage.py) stores what Dagster's own
SQLite event log stores for the same range run — the same events, materialised partitions, latest
materialisation per partition and asset, and tags — but a batch of materialisations at once."""

import dagster as dg
import pytest
from dagster._core.events import AssetMaterializationPlannedData

from qrl_platform.defs import instance_storage
from qrl_platform.settings import range_run_dagster_environment

RUN_DEPENDENT_TAGS = ("dagster/data_version", "dagster/code_version", "dagster/input_")
DAYS = dg.DailyPartitionsDefinition(start_date="2024-03-01", end_date="2024-03-13")


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def raw_days(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    for key in context.partition_keys:
        context.add_asset_metadata({"rows": int(key[-2:])}, partition_key=key)
    return dg.MaterializeResult(metadata={"days": len(context.partition_keys)})


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run(), deps=[raw_days])
def derived_days(context: dg.AssetExecutionContext) -> None:
    return None


def _instance(tmp_path, event_log_class: str) -> dg.DagsterInstance:
    base = tmp_path / event_log_class
    module = "qrl_platform.defs.instance_storage" if event_log_class.startswith("Batched") else "dagster._core.storage.event_log"
    config = f"""
run_storage:
  module: dagster._core.storage.runs
  class: SqliteRunStorage
  config: {{base_dir: {base}/history}}
event_log_storage:
  module: {module}
  class: {event_log_class}
  config: {{base_dir: {base}/history/runs}}
schedule_storage:
  module: dagster._core.storage.schedules
  class: SqliteScheduleStorage
  config: {{base_dir: {base}/schedules}}
telemetry: {{enabled: false}}
"""
    base.mkdir()
    (base / "dagster.yaml").write_text(config)
    return dg.DagsterInstance.from_config(str(base))


def _stored(instance: dg.DagsterInstance, run_id: str) -> dict:
    def normalised(record):
        # Data and code versions hash the run id (a new run each side) and point at storage ids: compare
        # their presence; every other tag and all metadata by value.
        materialization = record.asset_materialization
        tags = {
            k: (v if not k.startswith(RUN_DEPENDENT_TAGS) else "present") for k, v in materialization.tags.items()
        }
        return (record.partition_key, {k: v.value for k, v in materialization.metadata.items()}, tags)

    stored = {}
    for asset in ("raw_days", "derived_days"):
        key = dg.AssetKey(asset)
        records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=100).records
        stored[asset] = {
            "materialized": sorted(instance.get_materialized_partitions(key)),
            "records": sorted(normalised(r) for r in records),
            "latest_per_partition": {
                day: normalised(
                    instance.fetch_materializations(
                        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day]), limit=1
                    ).records[0]
                )
                for day in DAYS.get_partition_keys()
            },
            "latest": instance.get_latest_materialization_event(key).dagster_event.partition,
        }
    stored["events"] = sorted(
        (r.dagster_event.event_type_value, r.dagster_event.partition or "")
        for r in instance.all_logs(run_id)
        if r.dagster_event
    )
    return stored


def test_the_batched_event_log_stores_what_dagsters_own_stores(tmp_path, monkeypatch):
    batches = []
    real = instance_storage.BatchedSqliteEventLogStorage.store_event_batch

    def counting(self, events):
        batches.append(len(events))
        return real(self, events)

    monkeypatch.setattr(instance_storage.BatchedSqliteEventLogStorage, "store_event_batch", counting)
    results = {}
    for event_log_class in ("SqliteEventLogStorage", "BatchedSqliteEventLogStorage"):
        instance = _instance(tmp_path, event_log_class)
        assert type(instance.event_log_storage).__name__ == event_log_class
        with range_run_dagster_environment():
            result = dg.materialize(
                [raw_days, derived_days],
                instance=instance,
                tags={"dagster/asset_partition_range_start": "2024-03-01", "dagster/asset_partition_range_end": "2024-03-12"},
            )
        assert result.success
        results[event_log_class] = _stored(instance, result.run_id)
        instance.dispose()

    # The two planned events (one per asset, naming the range), then each asset's twelve per-day
    # materialisations as one batch.
    assert batches == [2, 12, 12]
    ours, dagsters = results["BatchedSqliteEventLogStorage"], results["SqliteEventLogStorage"]
    assert ours == dagsters
    assert ours["raw_days"]["materialized"] == DAYS.get_partition_keys()
    assert ours["raw_days"]["latest_per_partition"]["2024-03-05"][1] == {"days": 12, "rows": 5}


@pytest.mark.parametrize("kinds", ["mixed", "single"])
def test_other_batches_take_dagsters_own_path(tmp_path, monkeypatch, kinds):
    """A batch of one event, or of anything but materialisations, is stored event by event."""
    instance = _instance(tmp_path, "BatchedSqliteEventLogStorage")
    calls = []
    monkeypatch.setattr(
        instance_storage.SqliteEventLogStorage, "store_event", lambda self, event: calls.append(event.dagster_event_type)
    )
    planned = dg.DagsterEvent.build_asset_materialization_planned_event(
        "job", "step", AssetMaterializationPlannedData(dg.AssetKey("raw_days"), partition="2024-03-01")
    )
    entry = dg.EventLogEntry(
        error_info=None, level="DEBUG", user_message="", run_id="r", timestamp=1.0, dagster_event=planned
    )
    events = [entry] if kinds == "single" else [entry, entry]
    instance.event_log_storage.store_event_batch(events)
    assert calls == [dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED] * len(events)
    instance.dispose()
