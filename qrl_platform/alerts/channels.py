"""Alert channels: log, Slack incoming webhook, email (SMTP) and SMS through a generic webhook.

Two promises shape this module:

* **An alert never breaks the job that raises it.** ``send_alert`` tries every channel, catches each
  channel's failure, logs it and reports it per channel; it does not raise. Misconfiguration (a
  channel listed without its URL, an unknown channel name, a bad level) becomes a failing channel
  for the same reason — the log channel still gets the alert.
* **Secrets never leave in an alert or a log line.** Webhook URLs (Slack's path *is* its token), the
  SMTP password, the SMS token and every other secret of the settings (``Settings.secret_values``:
  MEXC key and secret, the passwords inside database and Redis URLs) are replaced by ``[REDACTED]``
  in titles, messages, tags, error texts and in the HTTP client's own request log lines.

The channels are built from a ``Settings`` (``channels_from_settings``); the alerts resource reads
the settings at send time, so secrets are never part of Dagster resource config shown in the UI.
A bad SMTP port or STARTTLS switch is a settings error naming its variable; a missing URL, an
unknown channel or a bad level stays a failing channel.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import json
import logging
import os
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
from pydantic import SecretStr

from qrl_platform.calendar import TAIPEI
from qrl_platform.http_retry import NotRetryable, RetriesExhausted, RetryAfterTooLong, RetryPolicy, send_with_retries
from qrl_platform.settings import Settings

log = logging.getLogger("qrl_platform.alerts")

REDACTED = "[REDACTED]"
# Shorter values cannot be told apart from ordinary text ("1", "on"); redacting them would mangle
# every message while protecting nothing a real credential looks like.
MIN_SECRET_LENGTH = 4
KNOWN_CHANNELS = ("log", "slack", "email", "sms")
HTTP_TIMEOUT_SECONDS = 10.0
SMS_MAX_CHARS = 480  # three concatenated SMS segments


class Level(enum.IntEnum):
    """Alert levels, numerically equal to the logging levels so the log channel maps 1:1."""

    INFO = logging.INFO
    WARNING = logging.WARNING
    ERROR = logging.ERROR
    CRITICAL = logging.CRITICAL

    @classmethod
    def parse(cls, value: Level | str | int) -> Level:
        if isinstance(value, Level):
            return value
        if isinstance(value, int):
            return cls(value)
        name = str(value).strip().upper()
        if name == "WARN":
            name = "WARNING"
        if name not in cls.__members__:
            raise ValueError(f"unknown alert level {value!r}: choose one of {', '.join(cls.__members__)}")
        return cls[name]


@dataclass(frozen=True)
class Alert:
    level: Level
    title: str
    message: str
    source: str | None = None  # the job / asset / sensor that raised it
    tags: Mapping[str, str] = field(default_factory=dict)
    timestamp: dt.datetime = field(default_factory=lambda: dt.datetime.now(TAIPEI))

    def redacted(self, secrets: Iterable[str]) -> Alert:
        secrets = list(secrets)
        return replace(
            self,
            title=redact(self.title, secrets),
            message=redact(self.message, secrets),
            source=redact(self.source, secrets) if self.source else self.source,
            tags={key: redact(str(value), secrets) for key, value in self.tags.items()},
        )

    @property
    def headline(self) -> str:
        return f"[{self.level.name}] {self.title}"

    def details(self) -> str:
        """Source, tags and time on one line, for channels without structure."""
        parts = [f"source={self.source}"] if self.source else []
        parts += [f"{key}={value}" for key, value in self.tags.items()]
        parts.append(f"at {self.timestamp.isoformat(timespec='seconds')}")
        return ", ".join(parts)

    def plain_text(self) -> str:
        return f"{self.headline}\n\n{self.message}\n\n{self.details()}\n"


# --------------------------------------------------------------------------------------------------
# Redaction


def secret_variants(secret: str) -> list[str]:
    """The secret plus the parts of it that leak on their own: for a URL, its path and query (a
    Slack webhook's token is its path), the password in its user info and its query values."""
    secret = secret.strip()
    variants = [secret]
    parts = urlsplit(secret)
    if parts.scheme and parts.netloc:
        path_and_query = parts.path + (f"?{parts.query}" if parts.query else "")
        if path_and_query.strip("/"):
            variants += [path_and_query, parts.path]
        variants += [segment for segment in parts.path.split("/") if len(segment) >= 16]
        if parts.password:
            variants.append(parts.password)
        variants += [value for _key, value in parse_qsl(parts.query)]
    return [variant for variant in variants if len(variant) >= MIN_SECRET_LENGTH]


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret (and its leaking parts, see ``secret_variants``) with [REDACTED]."""
    if not text:
        return text
    variants = {variant for secret in secrets if secret for variant in secret_variants(secret)}
    # Longest first, so a URL is replaced whole before its path would leave the host part dangling.
    for variant in sorted(variants, key=len, reverse=True):
        text = text.replace(variant, REDACTED)
    return text


class _RedactingLogFilter(logging.Filter):
    """Rewrites records of the HTTP client loggers: httpx logs every request URL at INFO, and a
    Slack webhook URL is a credential."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            try:
                message = record.getMessage()
            except Exception:  # a malformed record is the logging module's problem to report
                return True
            cleaned = redact(message, self.secrets)
            if cleaned != message:
                record.msg, record.args = cleaned, None
        return True


# A logger's filters see only records logged on that very logger: httpx logs on "httpx" itself.
# (httpcore's debug lines name host and port, never the path that carries a webhook token.)
_http_log_filter = _RedactingLogFilter()
logging.getLogger("httpx").addFilter(_http_log_filter)


# --------------------------------------------------------------------------------------------------
# Channels


class DeliveryError(RuntimeError):
    """A channel could not deliver (after its bounded retries)."""


class ChannelConfigError(ValueError):
    """A channel is listed in QRL_ALERT_CHANNELS but its settings are missing or invalid."""


class Channel:
    """One destination. ``deliver`` raises on failure and returns the number of attempts made."""

    name = "channel"

    def __init__(self, min_level: Level | str = Level.INFO):
        self.min_level = Level.parse(min_level)

    def secrets(self) -> list[str]:
        return []

    def deliver(self, alert: Alert) -> int:
        raise NotImplementedError


class LogChannel(Channel):
    name = "log"

    def __init__(self, min_level: Level | str = Level.INFO, logger: logging.Logger | None = None):
        super().__init__(min_level)
        self.logger = logger or log

    def deliver(self, alert: Alert) -> int:
        self.logger.log(int(alert.level), "ALERT %s: %s (%s)", alert.headline, alert.message, alert.details())
        return 1


def post_json(
    client: httpx.Client,
    url: str,
    payload: Mapping,
    *,
    headers: Mapping[str, str] | None = None,
    max_attempts: int = 3,
    backoff_seconds: float = 0.5,
    max_retry_after: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[httpx.Response, int]:
    """POST JSON with the shared retry policy: 429 (honouring Retry-After), 5xx and connection errors
    are retried; other 4xx answers are final (a revoked Slack token will not come back by retrying)."""
    policy = RetryPolicy(
        max_attempts=max_attempts, backoff_seconds=backoff_seconds, max_retry_after_seconds=max_retry_after
    )
    try:
        return send_with_retries(
            lambda: client.post(url, json=payload, headers=dict(headers or {})),
            policy,
            sleep=sleep,
            describe=lambda response: f"HTTP {response.status_code}: {response.text[:200]}",
        )
    except NotRetryable as final:
        raise DeliveryError(f"HTTP {final.response.status_code}: {final.response.text[:200]}") from None
    except RetryAfterTooLong as slow:
        raise DeliveryError(f"rate limited: Retry-After {slow.seconds:g}s exceeds {slow.limit:g}s") from None
    except RetriesExhausted as exhausted:
        raise DeliveryError(f"{exhausted.problem} (gave up after {exhausted.attempts} attempts)") from None


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn treats &, < and > as control characters (links, mentions).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_SLACK_EMOJI = {
    Level.INFO: ":information_source:",
    Level.WARNING: ":warning:",
    Level.ERROR: ":x:",
    Level.CRITICAL: ":rotating_light:",
}


def slack_payload(alert: Alert) -> dict:
    """An incoming-webhook message: `text` is the notification fallback, `blocks` the layout
    (header ≤ 150 chars, section and context texts ≤ 3000 chars, as Slack limits them)."""
    emoji = _SLACK_EMOJI[alert.level]
    context = [f"*Level* {alert.level.name}"]
    if alert.source:
        context.append(f"*Source* {_slack_escape(alert.source)}")
    if alert.tags:
        context.append(", ".join(f"{_slack_escape(k)}={_slack_escape(str(v))}" for k, v in alert.tags.items()))
    context.append(alert.timestamp.isoformat(timespec="seconds"))
    return {
        "text": _slack_escape(f"{emoji} {alert.headline}: {alert.message}")[:3000],
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": f"{emoji} {alert.headline}"[:150], "emoji": True},
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _slack_escape(alert.message or "(no details)")[:3000]},
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:3000]} for text in context]},
        ],
    }


class SlackChannel(Channel):
    """Slack incoming webhook: POST JSON, answered `ok` with 200 (errors as text, e.g. 403
    invalid_token, 404 no_service, 429 with Retry-After)."""

    name = "slack"

    def __init__(
        self,
        webhook_url: str,
        min_level: Level | str = Level.WARNING,
        *,
        max_attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = HTTP_TIMEOUT_SECONDS,
    ):
        super().__init__(min_level)
        self.webhook_url = webhook_url
        self.max_attempts = max_attempts
        self.sleep = sleep
        self.timeout = timeout

    def secrets(self) -> list[str]:
        return [self.webhook_url]

    def deliver(self, alert: Alert) -> int:
        _http_log_filter.secrets.update(self.secrets())
        with httpx.Client(timeout=self.timeout) as client:
            _response, attempts = post_json(
                client, self.webhook_url, slack_payload(alert), max_attempts=self.max_attempts, sleep=self.sleep
            )
        return attempts


class SmsChannel(Channel):
    """A generic SMS gateway webhook: POST {"to": [...], "message": "..."} with an optional bearer token."""

    name = "sms"

    def __init__(
        self,
        webhook_url: str,
        recipients: list[str],
        min_level: Level | str = Level.CRITICAL,
        *,
        token: str = "",
        max_attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = HTTP_TIMEOUT_SECONDS,
    ):
        super().__init__(min_level)
        self.webhook_url = webhook_url
        self.recipients = recipients
        self.token = token
        self.max_attempts = max_attempts
        self.sleep = sleep
        self.timeout = timeout

    def secrets(self) -> list[str]:
        return [self.webhook_url, self.token]

    @staticmethod
    def text(alert: Alert) -> str:
        text = f"{alert.headline}: {alert.message}"
        return text if len(text) <= SMS_MAX_CHARS else text[: SMS_MAX_CHARS - 1] + "…"

    def deliver(self, alert: Alert) -> int:
        _http_log_filter.secrets.update(secret for secret in self.secrets() if secret)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        payload = {"to": list(self.recipients), "message": self.text(alert)}
        with httpx.Client(timeout=self.timeout) as client:
            _response, attempts = post_json(
                client, self.webhook_url, payload, headers=headers, max_attempts=self.max_attempts, sleep=self.sleep
            )
        return attempts


class EmailChannel(Channel):
    """SMTP with optional STARTTLS and login. Connection problems and 4xx replies are retried once;
    authentication and 5xx rejections are final."""

    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: list[str],
        min_level: Level | str = Level.ERROR,
        *,
        user: str = "",
        password: str = "",
        starttls: bool = False,
        max_attempts: int = 2,
        timeout: float = HTTP_TIMEOUT_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ):
        super().__init__(min_level)
        self.host, self.port = host, port
        self.sender, self.recipients = sender, recipients
        self.user, self.password = user, password
        self.starttls = starttls
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.sleep = sleep

    def secrets(self) -> list[str]:
        return [self.password]

    def message(self, alert: Alert) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = f"[QRL {alert.level.name}] {alert.title}"
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Date"] = format_datetime(alert.timestamp)
        message["Message-ID"] = make_msgid(domain="qrl-platform")
        message["X-QRL-Alert-Level"] = alert.level.name
        message.set_content(alert.plain_text())
        return message

    def deliver(self, alert: Alert) -> int:
        message = self.message(alert)
        for attempt in range(1, self.max_attempts + 1):
            try:
                with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                    smtp.ehlo()
                    if self.starttls:
                        smtp.starttls(context=ssl.create_default_context())
                        smtp.ehlo()
                    if self.user:
                        smtp.login(self.user, self.password)
                    smtp.send_message(message)
                return attempt
            except smtplib.SMTPResponseException as error:
                transient = 400 <= error.smtp_code < 500 and not isinstance(error, smtplib.SMTPAuthenticationError)
                problem = f"SMTP {error.smtp_code}: {error.smtp_error!r}"
            except smtplib.SMTPServerDisconnected as error:
                transient = True
                problem = f"{type(error).__name__}: {error}"
            except smtplib.SMTPException as error:  # e.g. STARTTLS not offered, all recipients refused
                transient = False
                problem = f"{type(error).__name__}: {error}"
            except OSError as error:  # refused, timed out, TLS handshake (after SMTPException: its base)
                transient = True
                problem = f"{type(error).__name__}: {error}"
            if not transient or attempt == self.max_attempts:
                raise DeliveryError(f"{problem} ({self.host}:{self.port}, attempt {attempt})")
            self.sleep(1.0)
        raise AssertionError("unreachable")


class MisconfiguredChannel(Channel):
    """Stands in for a channel whose settings are wrong, so the problem shows up in every send
    result and log instead of silently dropping alerts (or crashing the job that alerts)."""

    def __init__(self, name: str, problem: str):
        super().__init__(Level.INFO)
        self.name = name
        self.problem = problem

    def deliver(self, alert: Alert) -> int:
        raise ChannelConfigError(self.problem)


# --------------------------------------------------------------------------------------------------
# Configuration from the settings


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _level(current: Settings, field_name: str, default: Level) -> Level:
    value = getattr(current, field_name)
    if not value:
        return default
    try:
        return Level.parse(value)
    except ValueError as error:
        raise ChannelConfigError(f"{Settings.variable(field_name)}: {error}") from None


def _required(current: Settings, field_name: str, channel: str) -> str:
    value = getattr(current, field_name)
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not text:
        variable = Settings.variable(field_name)
        raise ChannelConfigError(
            f"alert channel {channel!r} is enabled in QRL_ALERT_CHANNELS but {variable} is not set"
        )
    return text


def _log_channel(current: Settings) -> Channel:
    return LogChannel(_level(current, "log_min_level", Level.INFO))


def _slack_channel(current: Settings) -> Channel:
    url = _required(current, "slack_webhook_url", "slack")
    return SlackChannel(url, _level(current, "slack_min_level", Level.WARNING))


def _email_channel(current: Settings) -> Channel:
    host = _required(current, "smtp_host", "email")
    recipients = _split_list(_required(current, "alert_email_to", "email"))
    user = current.smtp_user
    # Never send a password in clear by default: with a login, STARTTLS is on unless switched off.
    starttls = bool(user) if current.smtp_starttls is None else current.smtp_starttls
    return EmailChannel(
        host,
        current.smtp_port or (587 if starttls else 25),
        current.alert_email_from or user or "qrl-platform@localhost",
        recipients,
        _level(current, "email_min_level", Level.ERROR),
        user=user,
        password=current.smtp_password.get_secret_value(),
        starttls=starttls,
    )


def _sms_channel(current: Settings) -> Channel:
    url = _required(current, "sms_webhook_url", "sms")
    recipients = _split_list(_required(current, "sms_to", "sms"))
    return SmsChannel(
        url,
        recipients,
        _level(current, "sms_min_level", Level.CRITICAL),
        token=current.sms_token.get_secret_value(),
    )


_BUILDERS: dict[str, Callable[[Settings], Channel]] = {
    "log": _log_channel,
    "slack": _slack_channel,
    "email": _email_channel,
    "sms": _sms_channel,
}


def channels_from_settings(current: Settings) -> list[Channel]:
    """The channels named in QRL_ALERT_CHANNELS (default `log`), each configured from its settings.
    A channel that cannot be configured is returned as a MisconfiguredChannel, never raised."""
    names = [name.lower() for name in _split_list(current.alert_channels)] or ["log"]
    channels: list[Channel] = []
    for name in dict.fromkeys(names):
        builder = _BUILDERS.get(name)
        if builder is None:
            problem = f"unknown alert channel {name!r} in QRL_ALERT_CHANNELS; known: {', '.join(KNOWN_CHANNELS)}"
            channels.append(MisconfiguredChannel(name, problem))
            continue
        try:
            channels.append(builder(current))
        except ChannelConfigError as error:
            channels.append(MisconfiguredChannel(name, str(error)))
    return channels


def configuration_problems(current: Settings) -> list[str]:
    """What is wrong with the alert settings (empty when all is well) — for a startup check."""
    return [f"{c.name}: {c.problem}" for c in channels_from_settings(current) if isinstance(c, MisconfiguredChannel)]


# --------------------------------------------------------------------------------------------------
# Sending


@dataclass(frozen=True)
class ChannelResult:
    channel: str
    status: str  # sent | skipped (below the channel's minimum level) | failed
    detail: str = ""
    attempts: int = 0


@dataclass(frozen=True)
class AlertReport:
    alert: Alert  # as sent, i.e. redacted
    results: list[ChannelResult]
    suppressed: bool = False  # same dedupe key sent recently: nothing was sent

    @property
    def delivered(self) -> bool:
        return any(result.status == "sent" for result in self.results)

    @property
    def failures(self) -> list[ChannelResult]:
        return [result for result in self.results if result.status == "failed"]


def send_alert(alert: Alert, channels: Iterable[Channel], *, secrets: Iterable[str] = ()) -> AlertReport:
    """Deliver to every channel whose minimum level the alert reaches. Never raises: each channel's
    failure is logged (redacted) and reported in its ChannelResult."""
    channels = list(channels)
    all_secrets = [secret for secret in [*secrets, *(s for c in channels for s in c.secrets())] if secret]
    safe_alert = alert.redacted(all_secrets)
    results: list[ChannelResult] = []
    for channel in channels:
        if safe_alert.level < channel.min_level:
            results.append(ChannelResult(channel.name, "skipped", f"below {channel.min_level.name}"))
            continue
        try:
            attempts = channel.deliver(safe_alert)
        except Exception as error:  # one broken channel must not silence the others
            detail = redact(f"{type(error).__name__}: {error}", all_secrets)
            log.error("alert channel %s failed for %r: %s", channel.name, safe_alert.headline, detail)
            results.append(ChannelResult(channel.name, "failed", detail))
        else:
            results.append(ChannelResult(channel.name, "sent", attempts=attempts))
    return AlertReport(alert=safe_alert, results=results)


# --------------------------------------------------------------------------------------------------
# Not the same alert every five minutes


class AlertDeduper:
    """Remembers when each dedupe key was last sent, so a sensor that re-detects the same problem
    every tick alerts once per window.

    State is a dict in memory, mirrored to a small JSON file when a path is given: Dagster runs each
    run (and may run sensors) in a fresh process, so memory alone would forget between runs. The file
    is read-modified-written under an exclusive lock so two processes cannot both claim a key.
    Losing the file (a new pod) costs at most one repeated alert — acceptable for alerts, which is
    why this is not a warehouse table.
    """

    RETENTION = dt.timedelta(days=7)

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path else None
        self._memory: dict[str, str] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _state(self):
        with self._lock:
            if self.path is None:
                yield self._memory
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_suffix(self.path.suffix + ".lock"), "a+") as lock_file:
                _lock_file(lock_file)
                try:
                    state = json.loads(self.path.read_text()) if self.path.exists() else {}
                except (OSError, ValueError):
                    state = {}  # a corrupt state file must not stop alerts
                yield state
                temporary = self.path.with_suffix(self.path.suffix + ".tmp")
                temporary.write_text(json.dumps(state, indent=0, sort_keys=True))
                os.replace(temporary, self.path)

    def claim(self, key: str, window: dt.timedelta, now: dt.datetime | None = None) -> dt.datetime | None:
        """Record `key` as sent now and return None — or, if it was sent within `window`, leave it
        and return when it was sent."""
        now = now or dt.datetime.now(dt.UTC)
        with self._state() as state:
            for stale in [k for k, sent in state.items() if now - dt.datetime.fromisoformat(sent) > self.RETENTION]:
                del state[stale]
            previous = state.get(key)
            if previous is not None:
                sent_at = dt.datetime.fromisoformat(previous)
                if now - sent_at < window:
                    return sent_at
            state[key] = now.isoformat()
            return None

    def release(self, key: str) -> None:
        """Forget a claim whose alert reached no channel, so the next attempt is not suppressed."""
        with self._state() as state:
            state.pop(key, None)


def _lock_file(handle) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: the in-process lock is all we get
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # released when the file is closed


def send_with_dedupe(
    alert: Alert,
    channels: Iterable[Channel],
    *,
    deduper: AlertDeduper,
    dedupe_key: str,
    window: dt.timedelta,
    secrets: Iterable[str] = (),
    now: dt.datetime | None = None,
) -> AlertReport:
    """``send_alert`` at most once per `window` for `dedupe_key` (a claim that reached no channel is
    released so the next try is not suppressed)."""
    channels = list(channels)
    secrets = [*secrets, *(secret for channel in channels for secret in channel.secrets())]
    try:
        sent_at = deduper.claim(dedupe_key, window, now)
    except OSError as error:  # an unwritable state file costs a possible repeat, never the alert
        log.warning("alert dedupe state unavailable, sending anyway: %s", redact(str(error), secrets))
        return send_alert(alert, channels, secrets=secrets)
    if sent_at is not None:
        safe_alert = alert.redacted(secrets)
        log.info(
            "alert %r suppressed: dedupe key %r already sent at %s",
            safe_alert.headline,
            dedupe_key,
            sent_at.isoformat(),
        )
        return AlertReport(alert=safe_alert, results=[], suppressed=True)
    report = send_alert(alert, channels, secrets=secrets)
    if not report.delivered:
        with contextlib.suppress(OSError):
            deduper.release(dedupe_key)
    return report
