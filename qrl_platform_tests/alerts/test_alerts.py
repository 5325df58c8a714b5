"""Alerts against local Slack/SMS webhook and SMTP servers: levels, failures, redaction, dedupe."""

import datetime as dt
import json
import logging

import dagster as dg
import pytest

from qrl_platform.alerts import channels as alert_channels
from qrl_platform.alerts.channels import (
    REDACTED,
    Alert,
    AlertDeduper,
    EmailChannel,
    Level,
    SlackChannel,
    channels_from_settings,
    configuration_problems,
    redact,
    send_alert,
)
from qrl_platform.defs.resources import AlertsResource, alerts_resource
from qrl_platform.settings import settings
from qrl_platform_tests.alerts.local_servers import ScriptedResponse, SmtpServer, WebhookServer
from qrl_platform_tests.conftest import configured_resources
from qrl_platform_tests.servers import free_port

# The local SMTP server accepts AUTH without TLS on loopback; aiosmtpd warns about that per connection.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

SLACK_PATH = "/services/T0TESTTEAM/B0TESTHOOK/xoxbSecretWebhookToken123"
SMTP_USER = "alerts@desk.example"
SMTP_PASSWORD = "smtp-pass-Zq81!"
SMS_TOKEN = "sms-bearer-tok-5521"
MEXC_SECRET = "mexc-api-secret-ab12cd34"

ALERT_VARIABLES = [
    "QRL_ALERT_CHANNELS",
    "QRL_SLACK_WEBHOOK_URL",
    "QRL_SLACK_MIN_LEVEL",
    "QRL_SMTP_HOST",
    "QRL_SMTP_PORT",
    "QRL_SMTP_USER",
    "QRL_SMTP_PASSWORD",
    "QRL_SMTP_STARTTLS",
    "QRL_ALERT_EMAIL_FROM",
    "QRL_ALERT_EMAIL_TO",
    "QRL_EMAIL_MIN_LEVEL",
    "QRL_SMS_WEBHOOK_URL",
    "QRL_SMS_TOKEN",
    "QRL_SMS_TO",
    "QRL_SMS_MIN_LEVEL",
    "QRL_LOG_MIN_LEVEL",
]


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean alert environment with QRL_HOME in tmp (the dedupe state file lands there)."""
    for name in ALERT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QRL_HOME", str(tmp_path / "home"))

    def set_env(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))

    return set_env


@pytest.fixture
def slack():
    with WebhookServer() as server:
        yield server


@pytest.fixture
def sms():
    with WebhookServer() as server:
        yield server


@pytest.fixture
def smtp():
    with SmtpServer(user=SMTP_USER, password=SMTP_PASSWORD) as server:
        yield server


def _all_channels(env, slack, sms, smtp, **overrides):
    settings = dict(
        QRL_ALERT_CHANNELS="log,slack,email,sms",
        QRL_SLACK_WEBHOOK_URL=slack.url(SLACK_PATH),
        QRL_SMTP_HOST="127.0.0.1",
        QRL_SMTP_PORT=smtp.port,
        QRL_SMTP_USER=SMTP_USER,
        QRL_SMTP_PASSWORD=SMTP_PASSWORD,
        QRL_SMTP_STARTTLS="false",  # the loopback test server offers no TLS
        QRL_ALERT_EMAIL_FROM="qrl-platform@desk.example",
        QRL_ALERT_EMAIL_TO="ops@desk.example, quant@desk.example",
        QRL_SMS_WEBHOOK_URL=sms.url("/v1/sms/send"),
        QRL_SMS_TOKEN=SMS_TOKEN,
        QRL_SMS_TO="+886912345678,+886987654321",
    )
    env(**{**settings, **overrides})


def _by_channel(report) -> dict:
    return {result.channel: result for result in report.results}


# ------------------------------------------------------------------------------------------ pure parts


def test_levels_are_ordered_and_parsed():
    assert Level.INFO < Level.WARNING < Level.ERROR < Level.CRITICAL
    assert Level.parse("warn") is Level.WARNING and Level.parse(" critical ") is Level.CRITICAL
    assert Level.parse(logging.ERROR) is Level.ERROR
    with pytest.raises(ValueError, match="unknown alert level 'LOUD': choose one of INFO, WARNING, ERROR, CRITICAL"):
        Level.parse("LOUD")


def test_redact_replaces_secrets_and_the_parts_of_urls_that_leak():
    url = f"https://hooks.slack.com{SLACK_PATH}"
    text = f"POST {url} failed; path {SLACK_PATH}; token xoxbSecretWebhookToken123; pw {SMTP_PASSWORD}; on"
    cleaned = redact(text, [url, SMTP_PASSWORD, "on", ""])
    assert cleaned == f"POST {REDACTED} failed; path {REDACTED}; token {REDACTED}; pw {REDACTED}; on"
    assert (
        redact("https://u:hunter22@sms.example/send?key=abcd1234", ["https://u:hunter22@sms.example/send?key=abcd1234"])
        == REDACTED
    )
    assert redact("password hunter22, key abcd1234", ["https://u:hunter22@sms.example/send?key=abcd1234"]) == (
        f"password {REDACTED}, key {REDACTED}"
    )


def test_secrets_from_env_by_variable_name():
    environ = {
        "MEXC_API_SECRET": MEXC_SECRET,
        "MEXC_API_KEY": "mx0key123456",
        "QRL_SMS_TOKEN": SMS_TOKEN,
        "QRL_SMTP_PASSWORD": SMTP_PASSWORD,
        "QRL_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X",
        "QRL_HOME": "/data/qrl",
        "EMPTY_TOKEN": "",
    }
    assert sorted(settings(environ).secret_values()) == sorted(
        [MEXC_SECRET, "mx0key123456", SMS_TOKEN, SMTP_PASSWORD, "https://hooks.slack.com/services/T/B/X"]
    )


def test_channels_from_env_defaults_and_misconfiguration(env):
    [log_channel] = channels_from_settings(settings())
    assert (log_channel.name, log_channel.min_level) == ("log", Level.INFO)
    env(
        QRL_ALERT_CHANNELS="log, slack ,pager,email",
        QRL_LOG_MIN_LEVEL="warning",
        QRL_SMTP_HOST="mail",
        QRL_ALERT_EMAIL_TO="a@b",
    )
    channels = channels_from_settings(settings())
    assert [c.name for c in channels] == ["log", "slack", "pager", "email"]
    assert channels[0].min_level is Level.WARNING
    assert (channels[3].min_level, channels[3].port, channels[3].starttls) == (Level.ERROR, 25, False)
    assert configuration_problems(settings()) == [
        "slack: alert channel 'slack' is enabled in QRL_ALERT_CHANNELS but QRL_SLACK_WEBHOOK_URL is not set",
        "pager: unknown alert channel 'pager' in QRL_ALERT_CHANNELS; known: log, slack, email, sms",
    ]
    env(QRL_SMTP_USER="me", QRL_SMTP_PORT="", QRL_EMAIL_MIN_LEVEL="LOUD")
    assert (
        configuration_problems(settings())[-1]
        == "email: QRL_EMAIL_MIN_LEVEL: unknown alert level 'LOUD': choose one of INFO, WARNING, ERROR, CRITICAL"
    )
    env(QRL_EMAIL_MIN_LEVEL="error")
    email = channels_from_settings(settings())[-1]
    assert (email.port, email.starttls) == (587, True)  # a login implies STARTTLS unless switched off


# ------------------------------------------------------------------------------------------------- slack


def test_slack_message_shape_and_level_filter(env, slack):
    env(QRL_ALERT_CHANNELS="log,slack", QRL_SLACK_WEBHOOK_URL=slack.url(SLACK_PATH))
    alerts = configured_resources()["alerts"]
    report = alerts.send("INFO", "Strategies done", "10 strategies ran", source="strategy_signals")
    assert _by_channel(report)["slack"].status == "skipped" and slack.requests == []

    at = dt.datetime(2024, 12, 24, 8, 50, tzinfo=dt.UTC)
    report = alerts.send(
        Level.WARNING,
        "M13 lag for 2024-12-24",
        "event not consumed after 31 min <check M13>",
        source="m13_lag_sensor",
        now=at,
        trade_date="2024-12-24",
    )
    assert [(r.channel, r.status) for r in report.results] == [("log", "sent"), ("slack", "sent")]
    [request] = slack.requests
    assert request.path == SLACK_PATH and request.headers["Content-Type"] == "application/json"
    body = request.json
    assert (
        body["text"] == ":warning: [WARNING] M13 lag for 2024-12-24: event not consumed after 31 min &lt;check M13&gt;"
    )
    assert body["blocks"] == [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": ":warning: [WARNING] M13 lag for 2024-12-24", "emoji": True},
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": "event not consumed after 31 min &lt;check M13&gt;"}},
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": "*Level* WARNING"},
                {"type": "mrkdwn", "text": "*Source* m13_lag_sensor"},
                {"type": "mrkdwn", "text": "trade_date=2024-12-24"},
                {"type": "mrkdwn", "text": "2024-12-24T16:50:00+08:00"},
            ],
        },
    ]


def test_slack_honours_retry_after_on_429():
    with WebhookServer() as server:
        server.responses.extend(
            [ScriptedResponse(429, "rate_limited", {"Retry-After": "2"}), ScriptedResponse(200, "ok")]
        )
        waits: list[float] = []
        channel = SlackChannel(server.url(SLACK_PATH), sleep=waits.append)
        report = send_alert(Alert(Level.ERROR, "t", "m"), [channel])
    assert _by_channel(report)["slack"].status == "sent" and _by_channel(report)["slack"].attempts == 2
    assert waits == [2.0] and len(server.requests) == 2


def test_slack_retries_are_bounded():
    with WebhookServer() as server:
        server.always = ScriptedResponse(500, "rollup_error")
        waits: list[float] = []
        report = send_alert(Alert(Level.ERROR, "t", "m"), [SlackChannel(server.url(SLACK_PATH), sleep=waits.append)])
        assert len(server.requests) == 3
        # Exponential backoff from 0.5 s plus up to 10 % jitter (the shared HTTP retry policy).
        assert len(waits) == 2 and 0.5 <= waits[0] <= 0.55 and 1.0 <= waits[1] <= 1.1
        assert _by_channel(report)["slack"].detail == "DeliveryError: HTTP 500: rollup_error (gave up after 3 attempts)"

        # A Retry-After longer than an alert may wait is a failure, not a stall.
        server.always = ScriptedResponse(429, "rate_limited", {"Retry-After": "600"})
        report = send_alert(Alert(Level.ERROR, "t", "m"), [SlackChannel(server.url(SLACK_PATH), sleep=waits.append)])
        assert _by_channel(report)["slack"].detail == "DeliveryError: rate limited: Retry-After 600s exceeds 30s"

        # A revoked webhook answers 403 invalid_token: final at once.
        server.requests.clear()
        server.always = ScriptedResponse(403, "invalid_token")
        report = send_alert(Alert(Level.ERROR, "t", "m"), [SlackChannel(server.url(SLACK_PATH), sleep=waits.append)])
        assert len(server.requests) == 1
        assert _by_channel(report)["slack"].detail == "DeliveryError: HTTP 403: invalid_token"


# ------------------------------------------------------------------------------------------ email, sms


def test_email_with_login_and_level_filter(env, smtp):
    env(
        QRL_ALERT_CHANNELS="email",
        QRL_SMTP_HOST="127.0.0.1",
        QRL_SMTP_PORT=smtp.port,
        QRL_SMTP_USER=SMTP_USER,
        QRL_SMTP_PASSWORD=SMTP_PASSWORD,
        QRL_SMTP_STARTTLS="false",
        QRL_ALERT_EMAIL_FROM="qrl-platform@desk.example",
        QRL_ALERT_EMAIL_TO="ops@desk.example,quant@desk.example",
    )
    alerts = configured_resources()["alerts"]
    assert _by_channel(alerts.send("WARNING", "slow job", "2x estimate"))["email"].status == "skipped"
    at = dt.datetime(2024, 12, 24, 9, 0, tzinfo=dt.UTC)
    report = alerts.send(
        "ERROR", "Strategy failure rate 40%", "4 of 10 strategies failed", source="strategy_signals", now=at, failed="4"
    )
    assert _by_channel(report)["email"].status == "sent"
    [mail] = smtp.messages
    assert smtp.logins == [SMTP_USER]
    assert mail.mail_from == "qrl-platform@desk.example"
    assert mail.rcpt_tos == ["ops@desk.example", "quant@desk.example"]
    message = mail.message
    assert message["Subject"] == "[QRL ERROR] Strategy failure rate 40%"
    assert message["To"] == "ops@desk.example, quant@desk.example"
    assert message["X-QRL-Alert-Level"] == "ERROR"
    assert message.get_content().replace("\r\n", "\n") == (
        "[ERROR] Strategy failure rate 40%\n\n4 of 10 strategies failed\n\n"
        "source=strategy_signals, failed=4, at 2024-12-24T17:00:00+08:00\n"
    )


def test_email_failures_are_reported_not_raised(env, smtp):
    wrong_password = EmailChannel("127.0.0.1", smtp.port, "a@b", ["c@d"], user=SMTP_USER, password="wrong-password-99")
    no_tls = EmailChannel("127.0.0.1", smtp.port, "a@b", ["c@d"], user=SMTP_USER, password=SMTP_PASSWORD, starttls=True)
    report = send_alert(Alert(Level.CRITICAL, "t", "m"), [wrong_password, no_tls])
    first, second = report.results
    assert first.status == "failed" and first.detail.startswith("DeliveryError: SMTP 535:")
    assert "wrong-password-99" not in first.detail
    assert second.status == "failed" and "STARTTLS extension not supported by server" in second.detail
    assert smtp.messages == []


def test_sms_webhook_with_bearer_token(env, sms):
    env(
        QRL_ALERT_CHANNELS="sms",
        QRL_SMS_WEBHOOK_URL=sms.url("/v1/sms/send"),
        QRL_SMS_TOKEN=SMS_TOKEN,
        QRL_SMS_TO="+886912345678, +886987654321",
    )
    alerts = configured_resources()["alerts"]
    assert _by_channel(alerts.send("ERROR", "t", "m"))["sms"].status == "skipped"
    report = alerts.send("CRITICAL", "daily_market_job failed 3 times", "schedule paused " + "x" * 600)
    assert _by_channel(report)["sms"].status == "sent"
    [request] = sms.requests
    assert request.path == "/v1/sms/send"
    assert request.headers["Authorization"] == f"Bearer {SMS_TOKEN}"
    assert request.json["to"] == ["+886912345678", "+886987654321"]
    message = request.json["message"]
    assert message.startswith("[CRITICAL] daily_market_job failed 3 times: schedule paused xxx")
    assert len(message) == alert_channels.SMS_MAX_CHARS and message.endswith("…")


# ---------------------------------------------------------------------------- failures and redaction


def test_one_channel_down_does_not_stop_the_others(env, slack, smtp, caplog):
    closed = WebhookServer()  # never started: its port refuses connections
    _all_channels(env, slack, closed, smtp, QRL_SMS_WEBHOOK_URL=f"http://127.0.0.1:{free_port()}/v1/sms/send")
    slack.always = ScriptedResponse(500, "rollup_error")
    caplog.set_level(logging.INFO)
    report = configured_resources()["alerts"].send("CRITICAL", "Kill switch", "drawdown limit hit")
    results = _by_channel(report)
    assert [results[name].status for name in ("log", "slack", "email", "sms")] == ["sent", "failed", "sent", "failed"]
    assert results["slack"].detail.endswith("(gave up after 3 attempts)")
    assert "ConnectError" in results["sms"].detail
    assert len(smtp.messages) == 1
    assert "ALERT [CRITICAL] Kill switch: drawdown limit hit" in caplog.text
    assert "alert channel slack failed for '[CRITICAL] Kill switch'" in caplog.text
    assert "alert channel sms failed" in caplog.text


def test_misconfigured_channel_is_reported_and_the_log_still_gets_the_alert(env, caplog):
    env(QRL_ALERT_CHANNELS="log,slack")
    caplog.set_level(logging.INFO)
    report = configured_resources()["alerts"].send("WARNING", "zero signals", "no strategy produced a signal")
    results = _by_channel(report)
    assert results["log"].status == "sent"
    assert results["slack"].status == "failed"
    assert "QRL_SLACK_WEBHOOK_URL is not set" in results["slack"].detail
    assert "ALERT [WARNING] zero signals" in caplog.text


def test_secrets_are_redacted_everywhere(env, slack, sms, smtp, monkeypatch, caplog):
    _all_channels(env, slack, sms, smtp)
    monkeypatch.setenv("MEXC_API_SECRET", MEXC_SECRET)
    slack_url = slack.url(SLACK_PATH)
    leaky = f"signature failed with {MEXC_SECRET}; webhook {slack_url}; smtp {SMTP_PASSWORD}; sms {SMS_TOKEN}"
    caplog.set_level(logging.DEBUG)  # including httpx's own request log, which prints the URL
    report = configured_resources()["alerts"].send(
        "CRITICAL", f"MEXC rejected key {MEXC_SECRET}", leaky, source="qrl_rebalance", detail=leaky
    )
    assert [r.status for r in report.results] == ["sent"] * 4

    secrets = [MEXC_SECRET, SLACK_PATH, "xoxbSecretWebhookToken123", SMTP_PASSWORD, SMS_TOKEN]
    slack_body = slack.requests[0].body.decode()
    sms_body = json.dumps(sms.requests[0].json)
    mail = smtp.messages[0].raw.decode()
    for secret in secrets:
        for where, text in [("slack", slack_body), ("sms", sms_body), ("email", mail), ("log", caplog.text)]:
            assert secret not in text, f"{where} leaked {secret!r}"
    assert f"MEXC rejected key {REDACTED}" in slack_body
    assert "HTTP Request: POST [REDACTED]" in caplog.text  # httpx's line, rewritten
    assert sms.requests[0].headers["Authorization"] == f"Bearer {SMS_TOKEN}"  # the token is still *used*
    assert report.alert.tags["detail"].startswith(f"signature failed with {REDACTED}")


def test_secrets_are_redacted_from_failure_texts(env, caplog):
    env(QRL_ALERT_CHANNELS="log,slack", QRL_SLACK_WEBHOOK_URL=f"http://127.0.0.1:{free_port()}{SLACK_PATH}")
    caplog.set_level(logging.DEBUG)
    report = configured_resources()["alerts"].send("ERROR", "t", "m")
    assert _by_channel(report)["slack"].status == "failed"
    assert (
        "xoxbSecretWebhookToken123" not in caplog.text and "xoxbSecretWebhookToken123" not in report.results[1].detail
    )


# -------------------------------------------------------------------------------------------- dedupe


def test_dedupe_key_sends_once_per_window(env, slack, tmp_path):
    env(QRL_ALERT_CHANNELS="slack", QRL_SLACK_WEBHOOK_URL=slack.url(SLACK_PATH))
    alerts = alerts_resource(settings(), default_dedupe_minutes=30)
    start = dt.datetime(2024, 12, 24, 9, 15, tzinfo=dt.UTC)
    key = "m13-lag:2024-12-24"
    first = alerts.send("WARNING", "M13 lag", "31 min", dedupe_key=key, now=start)
    again = alerts.send("WARNING", "M13 lag", "36 min", dedupe_key=key, now=start + dt.timedelta(minutes=5))
    other = alerts.send(
        "WARNING", "M13 lag", "31 min", dedupe_key="m13-lag:2024-12-25", now=start + dt.timedelta(minutes=5)
    )
    assert first.delivered and again.suppressed and not again.results and other.delivered
    assert len(slack.requests) == 2
    # The state is a file under QRL_HOME: a new process (a fresh deduper on the same file) remembers.
    state_file = tmp_path / "home" / "state" / "alert_dedupe.json"
    assert AlertDeduper(state_file).claim(key, dt.timedelta(minutes=30), start + dt.timedelta(minutes=10)) == start
    after_window = alerts.send("WARNING", "M13 lag", "61 min", dedupe_key=key, now=start + dt.timedelta(minutes=31))
    assert after_window.delivered and len(slack.requests) == 3
    assert alerts.send(
        "WARNING", "M13 lag", "x", dedupe_key=key, dedupe_minutes=60, now=start + dt.timedelta(minutes=61)
    ).suppressed


def test_dedupe_does_not_swallow_an_alert_that_reached_no_channel(env, slack, tmp_path):
    env(QRL_ALERT_CHANNELS="slack", QRL_SLACK_WEBHOOK_URL=slack.url(SLACK_PATH))
    slack.always = ScriptedResponse(403, "invalid_token")
    alerts = alerts_resource(settings(), dedupe_state_path=str(tmp_path / "dedupe.json"))
    start = dt.datetime(2024, 12, 24, 9, 15, tzinfo=dt.UTC)
    assert not alerts.send("ERROR", "t", "m", dedupe_key="k", now=start).delivered
    slack.always = None
    retry = alerts.send("ERROR", "t", "m", dedupe_key="k", now=start + dt.timedelta(minutes=1))
    assert retry.delivered and not retry.suppressed


# -------------------------------------------------------------------------------------------- dagster


def test_resource_inside_a_dagster_run(env, slack):
    env(QRL_ALERT_CHANNELS="log,slack", QRL_SLACK_WEBHOOK_URL=slack.url(SLACK_PATH))

    @dg.asset
    def noisy(alerts: AlertsResource) -> None:
        report = alerts.send("ERROR", "from an asset", "hello", source="noisy")
        assert report.delivered

    assert dg.materialize([noisy], resources={"alerts": configured_resources()["alerts"]}).success
    assert slack.requests[0].json["text"] == ":x: [ERROR] from an asset: hello"
