"""settings(): a changed variable is seen at the next call, an unchanged environment is not validated
again; the range-run Dagster switches are set for the run only and never override the operator's."""

import os

from qrl_platform import settings as settings_module
from qrl_platform.settings import RANGE_RUN_DAGSTER_ENVIRONMENT, range_run_dagster_environment, settings


def test_a_changed_variable_is_seen_at_the_next_call_and_an_unchanged_environment_is_reused(monkeypatch):
    monkeypatch.setenv("QRL_DEMO_UNIVERSE", "60")
    first = settings()
    assert first.demo_universe == 60
    assert settings() is first  # same environment: the kept result, not a new validation
    monkeypatch.setenv("QRL_DEMO_UNIVERSE", "61")
    assert settings().demo_universe == 61
    monkeypatch.setenv("SOME_UNRELATED_VARIABLE", "x")  # any change reads afresh
    assert settings() is not first and settings().demo_universe == 61
    monkeypatch.delenv("QRL_DEMO_UNIVERSE")
    assert settings().demo_universe == settings_module.Settings().demo_universe


def test_the_range_run_switches_are_set_for_the_run_only_and_the_operators_value_wins(monkeypatch):
    for name in RANGE_RUN_DAGSTER_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "50")  # the operator's choice
    with range_run_dagster_environment():
        assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == "50"
        assert os.environ["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] == "true"
    assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == "50"
    assert "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS" not in os.environ
