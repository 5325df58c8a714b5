"""Fault storms: a 20-day live backfill of the daily raw tables against local exchange servers that
answer 10 % or 50 % of requests with 429 + Retry-After, 503, a timeout, an HTML error page, truncated
JSON or (TPEx) another day's data.

Each (table, day) is fetched through the real live source (retries, cache, checks) and, when it
succeeds, stored in a FrameStore the way the market assets store it. A fetch either returns content
identical to a clean run's, or fails with an error naming the endpoint and the date (and both dates
when the exchange answered another day). Partitions stored by a clean backfill beforehand are never
changed, and a calm re-run on the storm's cache converges to the clean content (nothing bad was
cached).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from qrl_platform.market.live import LiveMarketSource, tpex, twse
from qrl_platform.market.live.http import PoliteClient
from qrl_platform.market.sources import DAILY_TABLES
from qrl_platform.settings import MarketSourceSettings
from qrl_platform.storage.frames import FrameStore
from qrl_platform_tests.market.fake_exchanges import FakeExchanges
from qrl_platform_tests.reliability.figures import Figures

pytestmark = pytest.mark.reliability

FIRST_DAY = dt.date(2026, 9, 1)
DAYS = [day for day in (FIRST_DAY + dt.timedelta(days=n) for n in range(30)) if day.weekday() < 5][:20]
CLIENT_TIMEOUT = 0.2  # the storm's timeouts sleep 0.5 s


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setenv("QRL_HTTP_BACKOFF_SECONDS", "0.01")
    monkeypatch.setenv("QRL_HTTP_MIN_INTERVAL_SECONDS", "0")


def make_source(exchanges: FakeExchanges, cache_root: Path) -> LiveMarketSource:
    settings = MarketSourceSettings(
        source="live",
        twse_base_url=exchanges.twse_base_url,
        tpex_base_url=exchanges.tpex_base_url,
        demo_seed=7,
        demo_universe=10,
        http_min_interval_seconds=0,
        http_backoff_seconds=0.01,
    )
    source = LiveMarketSource(settings, cache_root=str(cache_root))
    source.http.close()
    source.http = PoliteClient(cache_root, min_interval=0, backoff=0.01, timeout=CLIENT_TIMEOUT)
    return source


def content(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_ipc(buffer)
    return buffer.getvalue()


def stored_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.parquet"))
    }


def clear_error(message: str, table: str, day: dt.date) -> bool:
    labels = {twse.ENDPOINTS[table].label, tpex.ENDPOINTS[table].label}
    return str(day) in message and any(label in message for label in labels)


def backfill(source: LiveMarketSource, store: FrameStore | None, clean: dict | None):
    outcomes: Counter[str] = Counter()
    unclear: list[str] = []
    for day in DAYS:
        for table in DAILY_TABLES:
            try:
                result = source.fetch_day(table, day)
            except Exception as exc:  # every failure must explain itself
                message = f"{type(exc).__name__}: {exc}"
                if clear_error(message, table, day):
                    outcomes["failed, naming endpoint and date"] += 1
                else:
                    unclear.append(message)
                continue
            if clean is not None and content(result.frame) != clean[(table, day)]:
                outcomes["WRONG CONTENT"] += 1
                continue
            outcomes["identical to the clean run"] += 1
            if store is not None:
                store.write(table, day.isoformat(), result.frame)
    return outcomes, unclear


@pytest.mark.parametrize("rate", [0.10, 0.50])
def test_a_live_backfill_in_a_fault_storm_is_identical_or_fails_clearly(tmp_path, rate, record):
    exchanges = FakeExchanges()
    try:
        clean_source = make_source(exchanges, tmp_path / "clean-cache")
        clean = {}
        for day in DAYS:
            for table in DAILY_TABLES:
                clean[(table, day)] = content(clean_source.fetch_day(table, day).frame)
        clean_source.close()
        # What a clean backfill stored before the storm; the storm's run must not change any of it.
        store = FrameStore(str(tmp_path / "store"))
        for (table, day), _ in clean.items():
            store.write(table, day.isoformat(), pl.read_ipc(io.BytesIO(clean[(table, day)])))
        before = stored_hashes(tmp_path / "store")

        exchanges.storm(rate, seed=int(rate * 100))
        requests_before = len(exchanges.requests)
        storm_source = make_source(exchanges, tmp_path / "storm-cache")
        started = time.perf_counter()
        outcomes, unclear = backfill(storm_source, store, clean)
        wall = time.perf_counter() - started
        requests = len(exchanges.requests) - requests_before
        attempts = storm_source.http.requests_made
        storm_source.close()
        after = stored_hashes(tmp_path / "store")

        exchanges.storm(0)
        calm_source = make_source(exchanges, tmp_path / "storm-cache")
        converged, calm_unclear = backfill(calm_source, None, clean)
        calm_source.close()
    finally:
        exchanges.stop()

    fetches = len(DAYS) * len(DAILY_TABLES)
    first_tries = 2 * fetches  # one TWSE and one TPEx request per fetch without faults
    record(
        Figures(
            target=f"live backfill, fault storm {rate:.0%}",
            faults=", ".join(f"{kind} ×{n}" for kind, n in sorted(exchanges.storm_served.items())),
            runs=fetches,
            lost=sum(1 for key in before if before[key] != after.get(key)),
            duplicated=0,
            notes=f"{len(DAYS)} days × {len(DAILY_TABLES)} tables: "
            + ", ".join(f"{n} {what}" for what, n in outcomes.items())
            + f"; {requests} requests ({max(0, attempts - first_tries)} beyond one per endpoint), {wall:.1f} s; "
            f"calm re-run identical {converged['identical to the clean run']}/{fetches}",
        )
    )
    assert unclear == [], unclear[:5]
    assert outcomes["WRONG CONTENT"] == 0
    assert after == before
    assert converged == Counter({"identical to the clean run": fetches}) and calm_unclear == []
    assert sum(exchanges.storm_served.values()) > 0
