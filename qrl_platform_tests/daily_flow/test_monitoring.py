"""Monitoring: failed runs alert, three consecutive failures pause the job's schedule (CRITICAL),
slow runs warn. Evaluated with real runs on a real (test) instance."""

import logging
import time

import dagster as dg
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteInstigatorOrigin, RemoteRepositoryOrigin
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    ScheduleInstigatorData,
    SensorInstigatorData,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from qrl_platform.defs.alerts.sensors import consecutive_failures, job_duration_sensor, run_failure_alert_sensor
from qrl_platform.defs.job_tags import ESTIMATE_TAG, STAGE_TAG
from qrl_platform.defs.resources import alerts_resource
from qrl_platform.settings import settings
from qrl_platform_tests.alerts.local_servers import WebhookServer


@dg.op
def explode():
    raise RuntimeError("exchange answered 503 three times")


@dg.job(tags={ESTIMATE_TAG: "60"})
def flaky_job():
    explode()


@dg.op
def nap():
    time.sleep(1.2)


@dg.job(tags={ESTIMATE_TAG: "0.5"})
def slow_job():
    nap()


flaky_schedule = dg.ScheduleDefinition(name="flaky_schedule", job=flaky_job, cron_schedule="0 16 * * 1-5")
test_defs = dg.Definitions(jobs=[flaky_job, slow_job], schedules=[flaky_schedule])


def _schedule_state(status: InstigatorStatus) -> InstigatorState:
    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(python_file=__file__))
    origin = RemoteInstigatorOrigin(RemoteRepositoryOrigin(location, "__repository__"), "flaky_schedule")
    return InstigatorState(origin, InstigatorType.SCHEDULE, status, ScheduleInstigatorData("0 16 * * 1-5", time.time()))


@dg.asset
def stage_stand_in(): ...


# A stage of the daily flow: its sensor's runs carry the named job they stand for.
stage_defs = dg.Definitions(
    assets=[stage_stand_in],
    jobs=[flaky_job],
    sensors=[
        dg.AutomationConditionSensorDefinition(
            "flaky_automation", target=[stage_stand_in], run_tags={STAGE_TAG: "flaky_job"}, use_user_code_server=True
        )
    ],
)


def _stage_sensor_state(status: InstigatorStatus) -> InstigatorState:
    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(python_file=__file__))
    origin = RemoteInstigatorOrigin(RemoteRepositoryOrigin(location, "__repository__"), "flaky_automation")
    return InstigatorState(origin, InstigatorType.SENSOR, status, SensorInstigatorData(min_interval=60))


def _evaluate_failure_sensor(instance, run_id, alerts, definitions=test_defs):
    record = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records[0]
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor",
        dagster_event=record.event_log_entry.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
        resources={"alerts": alerts},
        repository_def=definitions.get_repository_def(),
    ).for_run_failure()
    run_failure_alert_sensor(context)


def test_three_consecutive_failures_pause_the_schedule_and_alert_critical(monkeypatch, tmp_path):
    """The alert table's row "3+ consecutive failures": each failure alerts ERROR with the step's error; the third
    also alerts CRITICAL and stops the job's schedule. Seen on a local Slack webhook."""
    monkeypatch.delenv("QRL_SLACK_MIN_LEVEL", raising=False)
    with WebhookServer() as slack, dg.instance_for_test() as instance:
        monkeypatch.setenv("QRL_ALERT_CHANNELS", "slack")
        monkeypatch.setenv("QRL_SLACK_WEBHOOK_URL", slack.url("/services/T/B/monitoring"))
        alerts = alerts_resource(settings(), dedupe_state_path=str(tmp_path / "dedupe.json"))
        instance.add_instigator_state(_schedule_state(InstigatorStatus.RUNNING))
        job = test_defs.get_job_def("flaky_job")
        for attempt in range(1, 4):
            result = job.execute_in_process(instance=instance, raise_on_error=False)
            assert not result.success
            _evaluate_failure_sensor(instance, result.run_id, alerts)
            assert consecutive_failures(instance, "flaky_job") == attempt
            state = instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE)[0]
            expected = InstigatorStatus.STOPPED if attempt == 3 else InstigatorStatus.RUNNING
            assert state.status == expected, f"after failure {attempt}"
        texts = [r.json["text"] for r in slack.requests]
    errors = [t for t in texts if t.startswith(":x: [ERROR] flaky_job failed: ")]
    critical = [t for t in texts if "[CRITICAL]" in t]
    assert len(errors) == 3 and all("RuntimeError: exchange answered 503 three times" in t for t in errors)
    assert len(critical) == 1 and len(texts) == 4
    assert "flaky_job failed 3 times in a row" in critical[0] and "Schedules paused: flaky_schedule" in critical[0]


def test_a_success_resets_the_consecutive_failure_count():
    with dg.instance_for_test() as instance:
        job = test_defs.get_job_def("flaky_job")
        job.execute_in_process(instance=instance, raise_on_error=False)
        assert consecutive_failures(instance, "flaky_job") == 1
        # A later success of the same job name resets the count.
        dg.Definitions(
            jobs=[dg.JobDefinition(graph_def=dg.GraphDefinition(name="flaky_job", node_defs=[]))]
        ).get_job_def("flaky_job").execute_in_process(instance=instance)
        assert consecutive_failures(instance, "flaky_job") == 0


def test_a_run_over_twice_its_estimate_warns(caplog, monkeypatch):
    monkeypatch.setenv("QRL_ALERT_CHANNELS", "log")
    caplog.set_level(logging.INFO, logger="qrl_platform.alerts")
    with dg.instance_for_test() as instance:
        result = test_defs.get_job_def("slow_job").execute_in_process(instance=instance)
        record = instance.get_records_for_run(result.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS).records[0]
        context = dg.build_run_status_sensor_context(
            sensor_name="job_duration_sensor",
            dagster_event=record.event_log_entry.dagster_event,
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(result.run_id),
            resources={"alerts": alerts_resource(settings(), dedupe_state_path="memory")},
        )
        job_duration_sensor(context)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("slow_job is slow" in m and "estimate of 0.5s" in m for m in warnings)


def test_failures_of_runs_the_automation_launched_for_a_stage_count_for_its_named_job():
    """The daily flow's stages run in Dagster's asset job, tagged with the job they stand for."""
    with dg.instance_for_test() as instance:
        job = test_defs.get_job_def("flaky_job")
        for attempt in range(1, 4):
            job.execute_in_process(instance=instance, raise_on_error=False, tags={STAGE_TAG: "strategies_job"})
            assert consecutive_failures(instance, "strategies_job") == attempt
        assert consecutive_failures(instance, "flaky_job") == 3


def test_three_consecutive_failures_of_a_stages_automated_runs_pause_its_automation_sensor(tmp_path, monkeypatch):
    monkeypatch.setenv("QRL_ALERT_CHANNELS", "log")
    with dg.instance_for_test() as instance:
        alerts = alerts_resource(settings(), dedupe_state_path=str(tmp_path / "dedupe.json"))
        instance.add_instigator_state(_stage_sensor_state(InstigatorStatus.RUNNING))
        for attempt in range(1, 4):
            result = stage_defs.get_job_def("flaky_job").execute_in_process(
                instance=instance, raise_on_error=False, tags={STAGE_TAG: "flaky_job"}
            )
            _evaluate_failure_sensor(instance, result.run_id, alerts, definitions=stage_defs)
            state = instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)[0]
            expected = InstigatorStatus.STOPPED if attempt == 3 else InstigatorStatus.RUNNING
            assert state.status == expected, f"after failure {attempt}"
