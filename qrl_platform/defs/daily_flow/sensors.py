"""The catch-up sensor of the daily flow (S9): a stage whose upstream became ready after its
scheduled time runs as soon as it is ready — never before its time, never twice."""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import dagster as dg

from qrl_platform.calendar import TAIPEI
from qrl_platform.defs import clock
from qrl_platform.defs.daily_flow.schedules import DAILY_STAGES, stage_gate


@dg.sensor(
    jobs=[stage.job for stage in DAILY_STAGES[1:]],
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches strategies / M13 notification / stats for today as soon as their upstream is ready when "
    "it was not at the scheduled time (late data), never before the stage's time and never twice.",
)
def daily_flow_catchup_sensor(context: dg.SensorEvaluationContext):
    now = clock.current_time().astimezone(TAIPEI)
    requests, waiting = [], []
    for stage in DAILY_STAGES[1:]:
        if now.time() < stage.at:
            continue
        gate = stage_gate(context.instance, stage, now.date())
        if gate.ready:
            requests.append(dg.RunRequest(
                run_key=f"{stage.job.name}:{now.date()}:catch-up", job_name=stage.job.name,
                partition_key=now.date().isoformat(), tags={"qrl/trigger": "catch-up"},
            ))
        else:
            waiting.append(f"{stage.job.name}: {gate.reason}")
    if requests:
        return requests
    return dg.SkipReason("; ".join(waiting) or f"before {DAILY_STAGES[1].at:%H:%M}")
