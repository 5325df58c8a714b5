"""The seed's alert table, one row per test, each alert seen arriving on a local Slack
webhook server (QRL_ALERT_CHANNELS=slack, QRL_SLACK_WEBHOOK_URL pointing at it):

| condition                                   | level    | test                                                      |
| duration above 2x its estimate (every job)  | WARNING  | test_a_run_over_twice_its_estimate_alerts_warning_for_every_job |
| strategy failure rate above 30 %            | ERROR    | test_a_failure_rate_above_30_percent_alerts_error_at_once |
| zero signals across all strategies          | WARNING  | test_zero_signals_across_all_strategies_alert_warning    |
| M13 lag above 30 min                        | WARNING  | test_m13_lag_above_30_minutes_alerts_warning             |
| 3+ consecutive failures (schedule paused)   | CRITICAL | daily_flow/test_monitoring.py::test_three_consecutive_failures_pause_the_schedule_and_alert_critical |
"""

import datetime as dt
import shutil

import dagster as dg
import pytest
import yaml

from qrl_platform.definitions import PARTITIONS_NAMES, RESOURCES, defs
from qrl_platform.defs import clock
from qrl_platform.defs.alerts.sensors import job_duration_sensor
from qrl_platform.defs.job_tags import ESTIMATE_TAG
from qrl_platform.defs.market.assets import daily_quotes
from qrl_platform.defs.resources import AlertsResource, alerts_resource
from qrl_platform.defs.strategies.assets import STRATEGY_ASSETS
from qrl_platform.defs.strategies.checks import STRATEGY_CHECKS
from qrl_platform.notify.relay import publish_signals_ready
from qrl_platform.settings import settings
from qrl_platform.storage.frames import FrameStore
from qrl_platform.strategies.definition import BUILTIN_DIR
from qrl_platform_tests.alerts.local_servers import WebhookServer
from qrl_platform_tests.conftest import configured_resources
from qrl_platform_tests.strategies.conftest import write_synthetic_indicators

SLACK_PATH = "/services/T0ALERTS/B0TABLE/notARealToken"
DAY = "2024-03-05"


@pytest.fixture
def slack(monkeypatch, qrl_home):
    """A local Slack incoming webhook; the alerts resource sends there (and to the log)."""
    for name in ("QRL_SMTP_HOST", "QRL_SMS_WEBHOOK_URL", "QRL_SLACK_MIN_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    with WebhookServer() as server:
        monkeypatch.setenv("QRL_ALERT_CHANNELS", "log,slack")
        monkeypatch.setenv("QRL_SLACK_WEBHOOK_URL", server.url(SLACK_PATH))
        yield server


def _texts(server: WebhookServer) -> list[str]:
    assert all(r.path == SLACK_PATH for r in server.requests)
    return [r.json["text"] for r in server.requests]


def _alerts(tmp_path) -> AlertsResource:
    return alerts_resource(settings(), dedupe_state_path=str(tmp_path / "alert_dedupe.json"))


# --------------------------------------------------------------------------- duration above 2x estimate
def test_a_run_over_twice_its_estimate_alerts_warning_for_every_job(slack, tmp_path):
    # The qrl CLI's asset jobs run whatever an operator selects, so they carry no estimate.
    cli_jobs = {f"{name}_assets_job" for name in PARTITIONS_NAMES.values()}
    jobs = [
        j for j in defs.get_repository_def().get_all_jobs() if not j.name.startswith("__") and j.name not in cli_jobs
    ]
    assert len(jobs) == 21  # 13 scheduled or manual jobs + 8 the market sensor launches per table/indicator
    missing = [j.name for j in jobs if float(j.tags.get(ESTIMATE_TAG, 0)) <= 0]
    assert missing == []  # every job is judged, refresh_factor_metadata_job included

    job = defs.resolve_job_def("refresh_factor_metadata_job")
    assert job.tags[ESTIMATE_TAG] == "30"

    def judge(run_tags: dict) -> None:
        with dg.instance_for_test() as instance:
            result = job.execute_in_process(instance=instance, tags=run_tags)
            record = instance.get_records_for_run(result.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS).records[0]
            context = dg.build_run_status_sensor_context(
                sensor_name="job_duration_sensor",
                dagster_event=record.event_log_entry.dagster_event,
                dagster_instance=instance,
                dagster_run=instance.get_run_by_id(result.run_id),
                resources={"alerts": _alerts(tmp_path)},
            )
            job_duration_sensor(context)

    judge({})  # a real run well within 2 x 30 s: nothing is sent
    assert _texts(slack) == []
    judge({ESTIMATE_TAG: "0.01"})  # the same run judged against a 10 ms estimate
    [text] = _texts(slack)
    assert text.startswith(":warning: [WARNING] refresh_factor_metadata_job is slow: Run ")
    assert "more than 2× its estimate of 0.01s" in text


# --------------------------------------------------------------------------- strategy runs on the demo day
def _strategies_dir(tmp_path, builtins: bool, broken: int = 0, silent: int = 0) -> str:
    """Strategy YAMLs: the built-ins (optionally), `broken` ones reading a factor the frames lack, and
    `silent` ones whose rule never holds (no BUY, no SELL)."""
    directory = tmp_path / "strategies"
    if builtins:
        shutil.copytree(BUILTIN_DIR, directory)
    else:
        directory.mkdir()
    for kind, count, factor, value in (("BROKEN", broken, "big_holder_pct", 50), ("SILENT", silent, "rsi_14", 99.9)):
        for i in range(count):
            raw = {
                "strategy_id": f"STG_{kind}_{i:03d}",
                "name": kind.title(),
                "status": "ACTIVE",
                "version": 1,
                "horizon_days": 5,
                "rules": [{"factor": factor, "op": ">", "value": value, "weight": 1}],
                "signal": {"buy_above": 1.0},
            }
            (directory / f"{kind.lower()}_{i}.yaml").write_text(yaml.safe_dump(raw))
    return str(directory)


def _run_strategies(tmp_path, directory: str) -> dg.ExecuteInProcessResult:
    resources = {**RESOURCES, "alerts": _alerts(tmp_path), "warehouse": configured_resources()["warehouse"]}
    with dg.instance_for_test() as instance:
        dg.materialize(
            [daily_quotes],
            resources=resources,
            instance=instance,
            tags={"dagster/asset_partition_range_start": "2024-03-04", "dagster/asset_partition_range_end": DAY},
        )
        write_synthetic_indicators(
            FrameStore(settings().qrl_home),
            [dt.date(2024, 3, 4), dt.date(2024, 3, 5)],
            drop={"chip_indicators": ["big_holder_pct"]},
        )
        return dg.materialize(
            [*STRATEGY_ASSETS, *STRATEGY_CHECKS],
            selection=["strategies", "strategy_signals"],
            resources=resources,
            instance=instance,
            partition_key=DAY,
            run_config={"ops": {"strategies": {"config": {"directory": directory}}}},
            raise_on_error=False,
        )


def test_a_failure_rate_above_30_percent_alerts_error_at_once(slack, tmp_path):
    result = _run_strategies(tmp_path, _strategies_dir(tmp_path, builtins=True, broken=5))  # 5 of 15 fail
    rate = {e.check_name: e for e in result.get_asset_check_evaluations()}["strategy_failure_rate"]
    assert not rate.passed and rate.metadata["max_failure_rate"].value == pytest.approx(5 / 15, abs=1e-4)
    [text] = _texts(slack)  # one alert, during the run (the check step), not on a later tick
    assert text.startswith(":x: [ERROR] M11 strategy failure rate 33% on 2024-03-05: ")
    assert "5/15 strategies failed (STG_BROKEN_000, STG_BROKEN_001" in text


def test_zero_signals_across_all_strategies_alert_warning(slack, tmp_path):
    result = _run_strategies(tmp_path, _strategies_dir(tmp_path, builtins=False, silent=2))
    zero = {e.check_name: e for e in result.get_asset_check_evaluations()}["signals_not_all_zero"]
    assert not zero.passed and zero.severity == dg.AssetCheckSeverity.WARN
    [text] = _texts(slack)
    assert text.startswith(":warning: [WARNING] M11: zero BUY/SELL signals across all strategies on 2024-03-05: ")
    assert "2 strategies ran and none produced a BUY or SELL on 2024-03-05" in text


# --------------------------------------------------------------------------- order module lag
def test_m13_lag_above_30_minutes_alerts_warning(slack, tmp_path, monkeypatch):
    warehouse = configured_resources()["warehouse"].get()
    published = dt.datetime(2024, 3, 5, 8, 45, tzinfo=dt.UTC)  # 16:45 Taipei
    summary = {"total_signals": 3, "buy_signals": 2, "sell_signals": 1, "hold_signals": 0, "strategies_executed": 1}
    event = publish_signals_ready(warehouse, DAY, summary, backend="outbox", now=published).event
    resources = {
        "warehouse": configured_resources()["warehouse"],
        "event_bus": configured_resources(event_bus="outbox")["event_bus"],
        "alerts": _alerts(tmp_path),
    }

    def tick(minutes_after: int) -> None:
        monkeypatch.setattr(clock, "current_time", lambda: published + dt.timedelta(minutes=minutes_after))
        with dg.instance_for_test() as instance:
            with dg.build_sensor_context(instance=instance, resources=resources, definitions=defs) as context:
                defs.get_sensor_def("m13_consumption_lag_sensor").evaluate_tick(context)

    tick(29)
    assert _texts(slack) == []
    tick(31)
    [text] = _texts(slack)
    assert text.startswith(":warning: [WARNING] M13 has not consumed signals of 2024-03-05: ")
    assert f"Event {event.event_id}" in text and "31 minutes old" in text
