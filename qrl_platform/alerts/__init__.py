"""Alerts: levels, channels (log, Slack, email, SMS webhook), redaction and dedupe.

Pure code in `channels` (no Dagster imports); `qrl_platform.defs.resources.AlertsResource` is the
Dagster face that builds the channels from the settings at send time.
"""

from qrl_platform.alerts.channels import (
    Alert,
    AlertDeduper,
    AlertReport,
    ChannelResult,
    Level,
    channels_from_settings,
    configuration_problems,
    redact,
    send_alert,
    send_with_dedupe,
)

__all__ = [
    "Alert",
    "AlertDeduper",
    "AlertReport",
    "ChannelResult",
    "Level",
    "channels_from_settings",
    "configuration_problems",
    "redact",
    "send_alert",
    "send_with_dedupe",
]
