"""Order safety soak: hundreds of quarter hours with execution on against a fake MEXC in a fault storm.

Each simulated quarter hour drives the code the `rebalance_plan` asset runs (stored plan → the
treasury's `plan_and_execute` → `store_plan`, failing on an unknown outcome), with a controlled clock:
`now` advances 15 minutes per quarter hour, and the client records its waits (Retry-After, backoff)
instead of sleeping. A failed quarter hour is retried once, as a run retry would. The fake accepts a
repeated client order id, so any re-placement would be counted as a duplicate rather than refused.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import ssl
import time
from collections import Counter
from decimal import Decimal

import dagster as dg
import httpx
import pytest

from qrl_platform.defs.treasury.resources import MexcResource
from qrl_platform.treasury.cycle import plan_and_execute
from qrl_platform.treasury.execution import BLOCKED, KILL_SWITCH, PLACED, UNKNOWN
from qrl_platform.treasury.mexc_client import MexcClient, MexcError
from qrl_platform.treasury.rebalance import recent_plans, store_plan, stored_plan
from qrl_platform.warehouse import Warehouse
from qrl_platform_tests.reliability.figures import Figures, count
from qrl_platform_tests.treasury.fake_mexc import FakeMexc

pytestmark = pytest.mark.reliability

QUARTER_HOURS = count("QRL_RELIABILITY_QUARTER_HOURS", ci=200, full=500)
START = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
CAP = 8
MAX_NOTIONAL = Decimal("40")
FAULT_RATE = 0.08
ORDER_FAULT_RATE = 0.5  # placements are rare; fault half of them so unknown outcomes are common
RETRY_AFTER_SECONDS = (1, 2, 3)
STORM = [
    *({"kind": "429", "retry_after": seconds} for seconds in RETRY_AFTER_SECONDS),
    {"kind": "500", "status": 502},
    {"kind": "500", "status": 503},
    {"kind": "timeout", "seconds": 0.5},
    {"kind": "code", "code": 700003, "msg": "Timestamp for this request is outside of the recvWindow."},
    {"kind": "500_after", "path": "/api/v3/order", "method": "POST"},
    # The order is accepted, then the exchange is unreachable long enough for every lookup to fail.
    {"kind": "500_after", "path": "/api/v3/order", "method": "POST", "outage": 12},
]
TLS = ssl.create_default_context()  # one context for every run's client: loading CA files costs ~70 ms


class RecordingSleep:
    def __init__(self):
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def key_of(start: dt.datetime) -> str:
    return start.strftime("%Y-%m-%d-%H:%M")


def execution_day(coid: str) -> dt.date:
    """The UTC day the guards count an order in: its quarter hour runs just after the partition ends."""
    partition_start = dt.datetime.strptime(coid.split("-")[1], "%Y%m%d%H%M")
    return (partition_start + dt.timedelta(minutes=15)).date()


def test_no_order_is_placed_twice_or_beyond_the_guards_in_a_fault_storm(tmp_path, record):
    rng = random.Random(13)
    store = Warehouse(f"sqlite:///{tmp_path / 'warehouse.sqlite'}")
    resource = MexcResource(
        mode="live",
        execute_orders=True,
        daily_trade_cap=CAP,
        min_trade_interval_minutes=30,
        max_order_notional=float(MAX_NOTIONAL),
        max_drawdown=0.2,
        threshold=0.01,
        timeout_seconds=0.25,
        max_retries=2,
        backoff_seconds=0.001,
        min_request_interval_seconds=0.0,
    )
    sleep = RecordingSleep()
    drop_at, recover_at, reset_at = int(QUARTER_HOURS * 0.6), int(QUARTER_HOURS * 0.7), int(QUARTER_HOURS * 0.8)
    # The operator resets the switch just before the quarter hour `reset_at` runs.
    reset_time = (START + dt.timedelta(minutes=15 * (reset_at + 1))).isoformat()
    outcomes: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    seen_before_planning: list[bool] = []
    resyncs = skewed = 0
    started = time.perf_counter()

    with FakeMexc() as fake:
        fake.allow_duplicate_client_ids = True
        fake.balances["USDT"]["free"] = Decimal("500")
        resource = resource.model_copy(update={"base_url": fake.url})

        def run_quarter_hour(index: int, now: dt.datetime, settings) -> str:
            """What the rebalance_plan asset does for one partition; returns the stored order status."""
            nonlocal resyncs
            window = dg.TimeWindow(
                START + dt.timedelta(minutes=15 * index), START + dt.timedelta(minutes=15 * (index + 1))
            )
            key = key_of(window.start)
            previous = stored_plan(store, key, settings.symbol)
            if previous and previous["order_status"] == PLACED:
                return PLACED
            unknown_before = {
                row["client_order_id"]
                for row in recent_plans(store, symbol=settings.symbol, mode="live", since=START)
                if row["order_status"] == UNKNOWN
            }
            first_request = len(fake.requests)
            client = MexcClient(
                settings.client,
                api_key=fake.api_key,
                api_secret=fake.api_secret,
                sleep=sleep,
                transport=httpx.HTTPTransport(verify=TLS),
            )
            try:
                row, _ = plan_and_execute(
                    client, settings, store, partition_key=key, window_end=window.end, now=now, previous=previous
                )
            finally:
                resyncs += client.clock_resyncs
                client.close()
                # An unknown order that exists must have been looked up before this run read the account.
                requests = fake.requests[first_request:]
                account_reads = [i for i, r in enumerate(requests) if r["path"] == "/api/v3/account"]
                for coid in unknown_before & set(fake.orders):
                    lookups = [
                        i
                        for i, r in enumerate(requests)
                        if r["method"] == "GET" and r["path"] == "/api/v3/order" and coid in r["query"]
                    ]
                    if account_reads:
                        seen_before_planning.append(bool(lookups) and lookups[0] < account_reads[0])
            store_plan(store, row)
            if row["order_status"] == UNKNOWN:
                raise RuntimeError(f"order outcome unknown: {row['order_message']}")
            return row["order_status"]

        fake.storm(FAULT_RATE, STORM, seed=13, rates={"POST /api/v3/order": ORDER_FAULT_RATE})
        price = 0.5
        for index in range(QUARTER_HOURS):
            if index == drop_at:
                price *= 0.45  # the scripted crash: total value falls ~27 % with half of it in QRL
            elif index == recover_at:
                price *= 3.0  # well above the old peak: the fresh drawdown is gone, the latch is not
            else:
                price *= math.exp(rng.gauss(0, 0.02))
            fake.price = Decimal(f"{price:.4f}")
            fake.clock_offset_ms = rng.choice([0, 0, 0, 0, 12_000, -6_000])  # our clock drifts now and then
            skewed += fake.clock_offset_ms != 0
            now = START + dt.timedelta(minutes=15 * (index + 1), seconds=30)
            settings = resource.model_copy(
                update={"kill_switch_reset_at": reset_time if index >= reset_at else ""}
            ).treasury_config()
            for attempt in range(2):  # the run, then one retry of the same partition
                try:
                    outcomes[run_quarter_hour(index, now + dt.timedelta(minutes=2 * attempt), settings)] += 1
                    break
                except (MexcError, RuntimeError) as exc:
                    failures["unknown outcome" if "outcome unknown" in str(exc) else type(exc).__name__] += 1

        # A last, calm quarter hour reconciles whatever is still unknown.
        fake.storm(0, [])
        fake.clock_offset_ms = 0
        final_now = START + dt.timedelta(minutes=15 * (QUARTER_HOURS + 1), seconds=30)
        settings = resource.model_copy(update={"kill_switch_reset_at": reset_time}).treasury_config()
        run_quarter_hour(QUARTER_HOURS, final_now, settings)
        wall = time.perf_counter() - started

        rows = recent_plans(store, symbol="QRLUSDT", mode="live", since=START)
        placed = fake.placed
        by_coid = Counter(order["clientOrderId"] for order in placed)
        duplicates = sum(n - 1 for n in by_coid.values())
        per_day = Counter(execution_day(order["clientOrderId"]) for order in placed)
        beyond_cap = sum(max(0, n - CAP) for n in per_day.values())
        beyond_notional = sum(1 for order in placed if order["notional"] > MAX_NOTIONAL)
        placed_rows = {row["client_order_id"]: row for row in rows if row["order_status"] == PLACED}
        lost = [coid for coid in by_coid if coid not in placed_rows]  # on the exchange, not known as PLACED
        wrong_id = [c for c in by_coid if c in placed_rows and placed_rows[c]["order_id"] != fake.orders[c]["orderId"]]
        reconciled = [
            row for row in rows if "outcome was unknown; found on the exchange" in (row["order_message"] or "")
        ]

        def in_phase(row, first, last):
            return (
                key_of(START + dt.timedelta(minutes=15 * first))
                <= row["partition_key"]
                < key_of(START + dt.timedelta(minutes=15 * last))
            )

        kill_blocks = [
            r for r in rows if r["order_status"] == BLOCKED and (r["order_message"] or "").startswith(KILL_SWITCH)
        ]
        latched_after_recovery = [r for r in kill_blocks if in_phase(r, recover_at, reset_at)]
        orders_while_tripped = [
            o
            for o in placed
            if key_of(START + dt.timedelta(minutes=15 * drop_at)).replace("-", "").replace(":", "")
            <= o["clientOrderId"].split("-")[1]
            < key_of(START + dt.timedelta(minutes=15 * reset_at)).replace("-", "").replace(":", "")
        ]
        trading_after_reset = [r for r in rows if in_phase(r, reset_at, QUARTER_HOURS + 1) and r["action"] != "HOLD"]
        retry_after_waits = [w for w in sleep.waits if w in RETRY_AFTER_SECONDS]

    faults = dict(fake.faults_served)
    record(
        Figures(
            target="order safety soak (fake MEXC)",
            faults=", ".join(f"{kind} ×{n}" for kind, n in sorted(faults.items()))
            + f"; clock skew in {skewed} quarter hours",
            runs=QUARTER_HOURS,
            lost=len(lost),
            duplicated=duplicates,
            placed_twice=duplicates,
            notes=f"{len(placed)} orders placed, {beyond_cap} beyond the daily cap, {beyond_notional} beyond the max "
            f"notional; {len(reconciled)} unknown outcomes found by client id later; {resyncs} clock resyncs; "
            f"kill switch blocked {len(kill_blocks)} plans; {wall:.1f} s",
            extra={"outcomes": dict(outcomes), "failures": dict(failures)},
        )
    )
    assert placed, "the soak placed no order at all: it would prove nothing"
    assert duplicates == 0 and beyond_cap == 0 and beyond_notional == 0
    assert lost == [] and wrong_id == []
    assert faults.get("500_after", 0) > 0 and reconciled, "no lost answer was reconciled: raise the fault rates"
    assert seen_before_planning and all(seen_before_planning)
    assert resyncs > 0 and retry_after_waits
    assert latched_after_recovery, "the kill switch did not stay tripped after the value recovered"
    assert orders_while_tripped == []
    # After the reset, plans that want to trade meet the other guards again, never the kill switch.
    assert trading_after_reset, "no plan wanted to trade after the reset: the check below would prove nothing"
    assert not [r for r in kill_blocks if in_phase(r, reset_at, QUARTER_HOURS + 1)]
