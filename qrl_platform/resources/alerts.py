from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from qrl_platform.alerts.channels import (
    TAIPEI,
    Alert,
    AlertDeduper,
    AlertReport,
    Level,
    channels_from_env,
    configuration_problems,
    secrets_from_env,
    send_alert,
    send_with_dedupe,
)
from qrl_platform.settings import qrl_home

# One deduper per state file per process, so every resource instance in a process shares its memory.
_dedupers: dict[str, AlertDeduper] = {}


class AlertsResource(dg.ConfigurableResource):
    """M15 alerts (S10): log by default; Slack, email and SMS webhook as listed in QRL_ALERT_CHANNELS.

    Channels and their secrets are read from the environment at every send, so no webhook URL or
    password is ever resource config (which the Dagster UI displays). `send` does not raise for
    delivery or configuration problems (only for a programming error such as an unknown level).
    """

    # Where dedupe state lives: empty → <QRL_HOME>/state/alert_dedupe.json (in-process memory when
    # QRL_HOME is an object-store URL); "memory" → in-process only.
    dedupe_state_path: str = ""
    default_dedupe_minutes: float = 60.0

    def _deduper(self) -> AlertDeduper:
        path = self.dedupe_state_path.strip()
        if not path:
            home = qrl_home()
            path = "memory" if "://" in home else str(Path(home) / "state" / "alert_dedupe.json")
        if path not in _dedupers:
            _dedupers[path] = AlertDeduper(None if path == "memory" else path)
        return _dedupers[path]

    def send(
        self,
        level: Level | str,
        title: str,
        message: str,
        *,
        source: str | None = None,
        dedupe_key: str | None = None,
        dedupe_minutes: float | None = None,
        now: dt.datetime | None = None,
        **tags: object,
    ) -> AlertReport:
        """Send an alert to every configured channel whose minimum level it reaches.

        With `dedupe_key` (e.g. "m13-lag:2024-12-24") the same alert goes out at most once per
        `dedupe_minutes` (default `default_dedupe_minutes`); a suppressed send returns a report with
        `suppressed=True` and no channel results.
        """
        alert = Alert(
            level=Level.parse(level),
            title=title,
            message=message,
            source=source,
            tags={key: str(value) for key, value in tags.items()},
            timestamp=(now or dt.datetime.now(TAIPEI)).astimezone(TAIPEI),
        )
        channels = channels_from_env()
        secrets = secrets_from_env()
        if dedupe_key is None:
            return send_alert(alert, channels, secrets=secrets)
        minutes = self.default_dedupe_minutes if dedupe_minutes is None else dedupe_minutes
        return send_with_dedupe(
            alert,
            channels,
            deduper=self._deduper(),
            dedupe_key=dedupe_key,
            window=dt.timedelta(minutes=minutes),
            secrets=secrets,
            now=now,
        )

    def channel_names(self) -> list[str]:
        return [channel.name for channel in channels_from_env()]

    def configuration_problems(self) -> list[str]:
        """Misconfigured channels (missing URL, bad level, unknown name) — empty when all is well."""
        return configuration_problems()
