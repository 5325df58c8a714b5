"""`qrl status DATE`: one screen on a trading day's stages, from Dagster's event log and QRL_HOME.

Raw tables (stored? rows), the indicators (rows, and the blocking checks of the run that last
materialised the partition: passed, or the failures with the first line of their description), the
day's signals (count, BUY/SELL/HOLD, strategies), the order module's event (published? relayed? consumed?) and
the stats. A partition is stored when Dagster's event log holds a materialisation of it
(`defs/stored.py`), asked where the CLI's runs go: the local instance, or the deployment's webserver
with QRL_DAGSTER_URL set. A frame file that no materialisation records shows as not stored, and says
so. Rows come from the frames (QRL_HOME), the signals and events from the warehouse
(QRL_WAREHOUSE_URL), and check results from the local instance.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl

from qrl_platform.calendar import day_status
from qrl_platform.defs.stored import stored_partitions
from qrl_platform.factors import families
from qrl_platform.factors.compute_range import StoredKeys
from qrl_platform.market import tables
from qrl_platform.settings import settings
from qrl_platform.storage.frames import FrameStore

RAW_TABLES = tables.names(cadence="daily")  # the raw tables partitioned by trading day
INDICATOR_ASSETS = families.ASSETS
CHECKS = ("missing_rate", "coverage", "no_infinities", "within_ranges")
WIDTH = 24
UNRECORDED_FILE = (
    "not stored: its frame file is there, but no materialisation records it "
    "(report one or re-ingest the day; docs/architecture.md, Where data lives)"
)


def _rows(store: FrameStore, stored: StoredKeys | None, asset: str, day: str) -> str:
    """Rows of a stored partition; stored means materialised (`defs/stored.py`), whatever files exist."""
    if stored is None:
        return "stored? no Dagster instance (DAGSTER_HOME unset)"
    if day not in stored(asset, [day]):
        return UNRECORDED_FILE if store.exists(asset, day) else "not stored"
    return f"{store.read(asset, day).height} rows"


def _checks(instance: dg.DagsterInstance | None, asset: str, day: str) -> str:
    """The check evaluations logged by the run of the partition's latest materialisation."""
    if instance is None:
        return "checks: no Dagster instance (DAGSTER_HOME unset)"
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day]), limit=1
    ).records
    if not records:
        return "checks: not materialised in this instance"
    latest: dict[str, object] = {}
    for entry in instance.all_logs(records[0].run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        if evaluation.asset_key == dg.AssetKey(asset) and evaluation.partition in (None, day):
            latest[evaluation.check_name] = evaluation  # logs are oldest first: the last one wins
    if not latest:
        return "checks: none ran"
    failed = [name for name in CHECKS if name in latest and not latest[name].passed]
    text = f"checks {len(latest) - len(failed)}/{len(latest)} passed"
    for name in failed:
        first_line = (latest[name].description or "").splitlines()[0] if latest[name].description else ""
        text += f"\n{'':{WIDTH + 4}}{name} FAILED: {first_line}"
    return text


def _warehouse(asset: str, day: str) -> pl.DataFrame:
    import qrl_platform

    return qrl_platform.load(asset, day)


def _signals(day: str) -> str:
    signals = _warehouse("strategy_signals", day)
    if not signals.height:
        return "none"
    counts = dict(signals.group_by("signal").len().iter_rows())
    mix = ", ".join(f"{kind} {counts.get(kind, 0)}" for kind in ("BUY", "SELL", "HOLD"))
    return f"{signals.height} from {signals['strategy_id'].n_unique()} strategies: {mix}"


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "no"


def _m13(day: str) -> str:
    events = _warehouse("m13_notification", day)
    if not events.height:
        return "not published"
    latest = events.sort("created_at").row(-1, named=True)
    text = f"published {_when(latest['created_at'])} (event {latest['event_id'][:12]})"
    if events.height > 1:
        text += f", {events.height} events (re-notified)"
    if latest["stream_id"] or latest["published_at"]:
        text += f", relayed to Redis {_when(latest['published_at'])}"
    consumed = _when(latest["consumed_at"])
    return text + (f", consumed {consumed} by {latest['consumer']}" if latest["consumed_at"] else ", consumed: no")


def _stats(day: str) -> str:
    stats = _warehouse("strategy_stats", day)
    if not stats.height:
        return "not computed"
    return f"{stats.height} rows, {stats['strategy_id'].n_unique()} strategies"


def status_lines(day: dt.date, instance: dg.DagsterInstance | None, stored: StoredKeys | None = None) -> list[str]:
    """The screen of `qrl status` for `day`, line by line. `stored` answers which partitions are stored
    (default: materialised in `instance`); check results come from `instance`."""
    if stored is None and instance is not None:
        stored = lambda asset, keys: stored_partitions(instance, asset, keys)  # noqa: E731
    key = day.isoformat()
    status = day_status(day)
    store = FrameStore(settings().qrl_home)
    lines = [f"{key}: {'trading day' if status.is_open else 'market closed — ' + status.reason}", "raw tables"]
    lines += [f"  {table:{WIDTH}}{_rows(store, stored, table, key)}" for table in RAW_TABLES]
    lines.append("indicators")
    for asset in INDICATOR_ASSETS:
        lines.append(f"  {asset:{WIDTH}}{_rows(store, stored, asset, key)}; {_checks(instance, asset, key)}")
    lines.append(f"{'signals':{WIDTH + 2}}{_signals(key)}")
    lines.append(f"{'M13 event':{WIDTH + 2}}{_m13(key)}")
    lines.append(f"{'stats':{WIDTH + 2}}{_stats(key)}")
    return "\n".join(lines).splitlines()
