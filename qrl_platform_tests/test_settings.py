"""settings(): every variable in its real type with its default, a bad value fails naming the variable,
each call reads the environment afresh; the range-run Dagster switches are set for the run only and
never override the operator's."""

import datetime as dt
import os
from decimal import Decimal

import pytest
from pydantic import SecretStr

from qrl_platform.defs.resources import MarketSourceResource
from qrl_platform.defs.treasury.resources import MexcResource
from qrl_platform.settings import RANGE_RUN_DAGSTER_ENVIRONMENT, Settings, range_run_dagster_environment, settings


def test_every_variable_has_its_real_type_and_default():
    defaults = settings({})
    assert (defaults.market_source, defaults.mexc_mode, defaults.event_bus) == ("demo", "simulated", "")
    assert (defaults.demo_seed, defaults.demo_universe, defaults.daily_trade_cap) == (7, 1800, 4)
    assert (defaults.http_min_interval_seconds, defaults.http_backoff_seconds) == (2.0, 1.0)
    assert (defaults.target_ratio, defaults.rebalance_threshold) == (Decimal("0.5"), Decimal("0.01"))
    assert (defaults.max_order_notional, defaults.max_drawdown) == (Decimal("100"), Decimal("0.2"))
    assert (defaults.execute_orders, defaults.in_ci, defaults.smtp_starttls, defaults.smtp_port) == (
        False,
        False,
        None,
        None,
    )
    assert defaults.min_trade_interval_minutes == 60.0 and defaults.kill_switch_reset_at is None
    assert defaults.publication_times() == {} and defaults.calendar_overrides is None
    assert defaults.mexc_base_url == "https://api.mexc.com"

    current = settings(
        {
            "QRL_MARKET_SOURCE": " LIVE ",
            "QRL_MEXC_MODE": "Paper",
            "QRL_EXECUTE_ORDERS": "yes",
            "QRL_TARGET_RATIO": "0.35",
            "QRL_DAILY_TRADE_CAP": "2",
            "QRL_MIN_TRADE_INTERVAL_MINUTES": "7.5",
            "QRL_HTTP_BACKOFF_SECONDS": "0.05",
            "QRL_PUBLISH_MARGIN_BALANCES": "21:45",
            "QRL_KILL_SWITCH_RESET_AT": "2026-12-01T09:30:00",
            "QRL_SMTP_PORT": "2525",
            "QRL_SMTP_STARTTLS": "off",
            "QRL_TWSE_BASE_URL": "http://127.0.0.1:8000/",
            "QRL_CALENDAR_OVERRIDES": "/etc/qrl/closures.yaml",
            "MEXC_API_SECRET": "s3cr3t",
            "CI": "true",
        }
    )
    assert (current.market_source, current.mexc_mode, current.execute_orders) == ("live", "paper", True)
    assert (current.target_ratio, current.daily_trade_cap, current.min_trade_interval_minutes) == (
        Decimal("0.35"),
        2,
        7.5,
    )
    assert current.http_backoff_seconds == 0.05
    assert current.publication_times() == {"margin_balances": dt.time(21, 45)}
    assert current.kill_switch_reset_at == dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)  # UTC when no zone
    assert (current.smtp_port, current.smtp_starttls, current.in_ci) == (2525, False, True)
    assert current.twse_base_url == "http://127.0.0.1:8000"
    assert str(current.calendar_overrides) == "/etc/qrl/closures.yaml"
    assert isinstance(current.mexc_api_secret, SecretStr) and "s3cr3t" not in repr(current)
    # The market source the live source receives carries the same values.
    source = current.market_source_settings()
    assert (source.source, source.twse_base_url, source.http_backoff_seconds) == ("live", "http://127.0.0.1:8000", 0.05)
    assert source.publication_times == {"margin_balances": dt.time(21, 45)}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("QRL_MARKET_SOURCE", "paper", "QRL_MARKET_SOURCE must be 'demo' or 'live', got 'paper'"),
        ("QRL_MEXC_MODE", "demo", "QRL_MEXC_MODE must be one of simulated, paper, live, got 'demo'"),
        ("QRL_DEMO_UNIVERSE", "many", "QRL_DEMO_UNIVERSE\n  Input should be a valid integer"),
        ("QRL_HTTP_MIN_INTERVAL_SECONDS", "2s", "QRL_HTTP_MIN_INTERVAL_SECONDS\n  Input should be a valid number"),
        ("QRL_EXECUTE_ORDERS", "maybe", "QRL_EXECUTE_ORDERS\n  Input should be a valid boolean"),
        ("QRL_TARGET_RATIO", "half", "QRL_TARGET_RATIO\n  Input should be a valid decimal"),
        ("QRL_SMTP_PORT", "smtp", "QRL_SMTP_PORT\n  Input should be a valid integer"),
        ("QRL_SMTP_STARTTLS", "sometimes", "QRL_SMTP_STARTTLS\n  Input should be a valid boolean"),
        (
            "QRL_PUBLISH_DAILY_QUOTES",
            "half past two",
            "QRL_PUBLISH_DAILY_QUOTES must be a Taipei time of day HH:MM (e.g. 21:00), got 'half past two'",
        ),
        ("QRL_PUBLISH_VALUATIONS", "25:00", "QRL_PUBLISH_VALUATIONS must be a Taipei time of day HH:MM"),
        ("QRL_KILL_SWITCH_RESET_AT", "soon", "QRL_KILL_SWITCH_RESET_AT: 'soon' is not an ISO date-time"),
    ],
)
def test_a_bad_value_names_its_variable(variable, value, message):
    with pytest.raises(ValueError) as raised:
        settings({variable: value})
    assert message in str(raised.value)


def test_a_resource_field_is_checked_like_its_variable(monkeypatch):
    monkeypatch.delenv("QRL_MEXC_MODE", raising=False)
    assert MexcResource(mode="LIVE", daily_trade_cap=1).treasury_config().limits.daily_trade_cap == 1
    with pytest.raises(ValueError, match="mexc resource: mode must be one of simulated, paper, live, got 'demo'"):
        MexcResource(mode="demo").treasury_config()
    with pytest.raises(ValueError, match="mexc resource: kill_switch_reset_at 'tomorrow' is not an ISO date-time"):
        MexcResource(kill_switch_reset_at="tomorrow").treasury_config()
    with pytest.raises(ValueError, match="QRL_MARKET_SOURCE must be 'demo' or 'live', got 'paper'"):
        MarketSourceResource(source="paper", raw_cache_root="unused").settings()


def test_a_changed_variable_is_seen_at_the_next_call(monkeypatch):
    monkeypatch.setenv("QRL_DEMO_UNIVERSE", "60")
    assert settings().demo_universe == 60
    monkeypatch.setenv("QRL_DEMO_UNIVERSE", "61")
    assert settings().demo_universe == 61
    monkeypatch.delenv("QRL_DEMO_UNIVERSE")
    assert settings().demo_universe == Settings().demo_universe == 1800


def test_with_values_replaces_fields_and_keeps_the_rest():
    current = settings({"QRL_MEXC_MODE": "paper", "QRL_SMS_TOKEN": "tok3n-value"})
    changed = current.with_values(target_ratio="0.25", mexc_mode="live")
    assert (changed.target_ratio, changed.mexc_mode) == (Decimal("0.25"), "live")
    assert changed.sms_token.get_secret_value() == "tok3n-value" and current.mexc_mode == "paper"


def test_the_range_run_switches_are_set_for_the_run_only_and_the_operators_value_wins(monkeypatch):
    for name in RANGE_RUN_DAGSTER_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "50")  # the operator's choice
    with range_run_dagster_environment():
        assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == "50"
        assert os.environ["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] == "true"
    assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == "50"
    assert "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS" not in os.environ
