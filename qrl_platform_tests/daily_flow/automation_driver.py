"""Drive the daily flow's automation conditions at simulated Taipei times, as its sensors would tick,
with Dagster's public `evaluate_automation_conditions`; launch what they request as the sensors do."""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg

from qrl_platform.definitions import defs
from qrl_platform.defs.daily_flow.conditions import DAILY_STAGES
from qrl_platform.defs.daily_flow.sensors import STAGE_JOBS, stage_sensor_name

TZ = ZoneInfo("Asia/Taipei")
STAGE_ASSETS = [stage.asset for stage in DAILY_STAGES]


def indicator_check_keys() -> list[dg.AssetCheckKey]:
    """The check keys of the three indicator assets (what the strategies wait for)."""
    from qrl_platform.defs.factors.checks import INDICATOR_CHECKS

    return [key for checks in INDICATOR_CHECKS for key in checks.check_keys]


def at(date: str, hhmm: str) -> dt.datetime:
    hour, minute = map(int, hhmm.split(":"))
    return dt.datetime.fromisoformat(date).replace(hour=hour, minute=minute, tzinfo=TZ)


def tick(instance, when: dt.datetime, cursor=None, definitions: dg.Definitions = defs):
    """One evaluation of the stages' conditions at `when` (pass the previous tick's cursor)."""
    return dg.evaluate_automation_conditions(
        defs=definitions,
        instance=instance,
        asset_selection=dg.AssetSelection.assets(*STAGE_ASSETS) if definitions is defs else None,
        evaluation_time=when,
        cursor=cursor,
    )


def requested(result) -> dict[str, list[str]]:
    """asset -> the partitions the tick requested (stages with no request left out)."""
    found = {asset: sorted(result.get_requested_partitions(dg.AssetKey(asset)) - {None}) for asset in STAGE_ASSETS}
    return {asset: keys for asset, keys in found.items() if keys}


def unmet(result, asset: str) -> list[str]:
    """Why `asset` was not requested, as the UI's evaluation tree shows it: the label of the first part
    of the stage condition that was false (the parts after it are evaluated on nothing), and each
    blocking check under it that has not passed."""
    (root,) = [r for r in result.results if r.key == dg.AssetKey(asset)]
    reasons = []

    def walk(node):
        if not node.true_subset.is_empty:
            return
        if isinstance(node.key, dg.AssetCheckKey) and node.condition.name == "check_passed":
            reasons.append(f"{node.key.asset_key.to_user_string()}:{node.key.name} not passed")
        for child in node.child_results:
            walk(child)

    for part in root.child_results:
        if part.true_subset.is_empty:
            reasons.append(part.condition.get_label() or part.condition.name)
            walk(part)
            break
    return reasons


def launch(instance, asset: str, partition: str) -> dg.ExecuteInProcessResult:
    """The run the stage's sensor launches: the asset for the partition in Dagster's implicit asset
    job, with the sensor's run tags (the named job's tags and the stage)."""
    job = {stage.asset: job for stage, job in STAGE_JOBS}[asset]
    sensor = defs.get_sensor_def(stage_sensor_name(job.name))
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey(asset)],
        partition_key=partition,
        tags=dict(sensor.run_tags),
        raise_on_error=False,
    )
