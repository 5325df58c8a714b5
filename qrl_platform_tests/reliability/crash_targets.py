"""Writes that the crash test kills with SIGKILL, and how to read back what they left.

Each target has two complete versions of its data, A and B. `reset()` stores A; the child process
(`crash_child.py`) then writes B, A, B, … with the real core function until it is killed, so a kill
lands inside a write whatever the delay. `snapshot()` reads the stored state back as a digest per
store; after every kill each digest must equal the digest of A or of B, never anything else (a mix,
a torn file, rows missing). `converge()` is the re-run: it writes B once more, and the digests must
then equal those of a clean write of B.

The outbox target is different in shape: it publishes a fixed list of trading days once (each a
transaction plus the relay to the Redis stream), so its versions are "the first n days published".
"""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import json
import os
from collections import Counter
from typing import Any

import polars as pl
import sqlalchemy as sa

DAY = dt.date(2026, 11, 20)
PREVIOUS_DAY = dt.date(2026, 11, 19)
FIXED_NOW = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Target:
    name = ""
    CRASH_POINT: tuple[str, str] = ("", "")  # CRASH_AT for crash_child, and what it means

    def __init__(self, config: dict[str, str]):
        self.config = config

    def reset(self) -> None:
        """Store version A (and anything the write must leave alone)."""
        raise NotImplementedError

    def write(self, version: str) -> None:
        raise NotImplementedError

    def work(self, emit) -> None:
        """The child's loop: write B, A, B, … until killed."""
        turn = 0
        while True:
            version = "B" if turn % 2 == 0 else "A"
            self.write(version)
            emit(version)
            turn += 1

    def snapshot(self) -> dict[str, Any]:
        """{'stores': {store: digest}, 'duplicates': n, 'leftovers': n}."""
        raise NotImplementedError

    def converge(self) -> None:
        self.write("B")

    def close(self) -> None:
        pass


# ---- a Parquet partition (storage/frames.py) ------------------------------------------------------


class ParquetPartition(Target):
    name = "Parquet partition write"
    CRASH_POINT = ("os:replace:1:before", "the temporary file is complete, not yet renamed")
    ASSET, PARTITION = "crash_frame", DAY.isoformat()
    ROWS = int(os.environ.get("QRL_RELIABILITY_PARQUET_ROWS", "300000"))

    def __init__(self, config):
        super().__init__(config)
        from qrl_platform.storage.frames import FrameStore

        self.store = FrameStore(config["root"])

    def frame(self, version: str) -> pl.DataFrame:
        rows = self.ROWS
        offset = 0 if version == "A" else 1
        return pl.DataFrame(
            {
                "stock_id": [f"{i % 2000:04d}" for i in range(rows)],
                "row": list(range(rows)),
                "value": [float(i * 3 + offset) for i in range(rows)],
                "version": [version] * rows,
            }
        )

    def reset(self):
        self.store.write(self.ASSET, "2026-11-19", self.frame("A"))  # a neighbour that must not change
        self.store.write(self.ASSET, self.PARTITION, self.frame("A"))

    def write(self, version):
        self.store.write(self.ASSET, self.PARTITION, self._frames.setdefault(version, self.frame(version)))

    @property
    def _frames(self) -> dict[str, pl.DataFrame]:
        if not hasattr(self, "_cache"):
            self._cache: dict[str, pl.DataFrame] = {}
        return self._cache

    def snapshot(self):
        stores = {}
        duplicates = 0
        for partition in ("2026-11-19", self.PARTITION):
            try:
                frame = self.store.read(self.ASSET, partition)
            except KeyError:
                stores[partition] = "missing"
                continue
            except Exception as exc:  # a torn file is exactly what this test looks for
                stores[partition] = f"unreadable: {type(exc).__name__}"
                continue
            duplicates += frame.height - frame["row"].n_unique()
            stores[partition] = digest(frame.hash_rows(seed=1).to_list())
        pattern = f"{self.store.path(self.ASSET, self.PARTITION)}.*.tmp"
        return {"stores": stores, "duplicates": duplicates, "leftovers": len(glob.glob(pattern))}


# ---- the strategy_signals day replace (strategy/store.py) --------------------------------------------


class SignalsDayReplace(Target):
    name = "strategy_signals day replace"
    CRASH_POINT = (
        "qrl_platform.strategies.store:_bulk_insert_signals:1:after",
        "old rows deleted, new inserted, not committed",
    )
    STRATEGIES = 10
    STOCKS = int(os.environ.get("QRL_RELIABILITY_SIGNAL_STOCKS", "1500"))

    def __init__(self, config):
        super().__init__(config)
        from qrl_platform.warehouse import Warehouse

        self.warehouse = Warehouse(config["url"])
        self.name = f"{SignalsDayReplace.name} ({self.warehouse.dialect})"

    def records(self, version: str, day: dt.date = DAY):
        from qrl_platform.strategies.store import RunRecords, make_signal_id

        rows = []
        for s in range(self.STRATEGIES):
            strategy_id = f"STG_CRASH_{s:03d}"
            for stock in range(self.STOCKS):
                stock_id = f"{1000 + stock}"
                flip = (stock + s + (version == "B")) % 3
                rows.append(
                    {
                        "signal_id": make_signal_id(strategy_id, stock_id, day),
                        "strategy_id": strategy_id,
                        "stock_id": stock_id,
                        "trade_date": day,
                        "execution_id": f"EXE-{version}-{s:03d}",
                        "signal": ("BUY", "SELL", "HOLD")[flip],
                        "confidence": 0.5 + flip / 10,
                        "score": float(stock) + (0.25 if version == "B" else 0.0),
                        "factor_values": json.dumps({"rsi_14": stock % 100, "version": version}),
                        "created_at": FIXED_NOW,
                    }
                )
        signals = pl.DataFrame(rows).with_columns(pl.col("created_at").dt.cast_time_unit("us"))
        return RunRecords(
            dates=[day],
            strategy_ids=[f"STG_CRASH_{s:03d}" for s in range(self.STRATEGIES)],
            signals=signals,
        )

    def reset(self):
        from qrl_platform.strategies.store import save_run

        save_run(self.warehouse, self.records("A", PREVIOUS_DAY))
        save_run(self.warehouse, self.records("A"))

    def write(self, version):
        from qrl_platform.strategies.store import save_run

        if not hasattr(self, "_records"):
            self._records = {v: self.records(v) for v in ("A", "B")}
        save_run(self.warehouse, self._records[version])

    def snapshot(self):
        from qrl_platform.warehouse.schema import strategy_signals as table

        stores = {}
        duplicates = 0
        with self.warehouse.engine.connect() as connection:
            for day in (PREVIOUS_DAY, DAY):
                rows = connection.execute(
                    sa.select(
                        table.c.signal_id, table.c.signal, table.c.score, table.c.execution_id, table.c.factor_values
                    )
                    .where(table.c.trade_date == day)
                    .order_by(table.c.signal_id)
                ).fetchall()
                duplicates += len(rows) - len({row[0] for row in rows})
                stores[day.isoformat()] = digest([tuple(row) for row in rows]) if rows else "missing"
        return {"stores": stores, "duplicates": duplicates, "leftovers": 0}

    def close(self):
        self.warehouse.dispose()


# ---- the QRL plan write: warehouse row, then Redis (qrl/rebalance.py) ---------------------------------


class QrlPlanWrite(Target):
    name = "QRL plan write (warehouse + Redis)"
    CRASH_POINT = (
        "qrl_platform.treasury.rebalance:store_plan:1:after",
        "warehouse row committed, Redis not yet written",
    )
    PARTITION, NEIGHBOUR = "2026-11-20-09:45", "2026-11-20-09:30"

    def __init__(self, config):
        super().__init__(config)
        import redis

        from qrl_platform.warehouse import Warehouse

        self.warehouse = Warehouse(config["url"])
        self.redis = redis.Redis.from_url(config["redis_url"], decode_responses=True)

    def row(self, version: str, partition: str | None = None) -> dict[str, Any]:
        partition = partition or self.PARTITION
        quantity = 10.0 if version == "A" else 20.0
        return {
            "partition_key": partition,
            "symbol": "QRLUSDT",
            "mode": "simulated",
            "timestamp": FIXED_NOW,
            "price": 0.5,
            "qrl_balance": 1000.0,
            "usdt_balance": 300.0 + quantity,
            "qrl_value": 500.0,
            "total_value": 800.0 + quantity,
            "target_ratio": 0.5,
            "current_ratio": 0.625,
            "action": "SELL",
            "quantity": quantity,
            "notional_usdt": quantity * 0.5,
            "reason": f"version {version}",
            "details": None,
            "client_order_id": None,
            "order_status": "NOT_EXECUTED",
            "order_id": None,
            "order_message": "execution disabled",
            "executed_at": None,
            "created_at": FIXED_NOW,
        }

    def write(self, version, partition=None):
        # What the rebalance_plan asset does after planning: the warehouse row, then Redis.
        from qrl_platform.treasury.rebalance import publish_plan, published_plan, store_plan

        row = self.row(version, partition)
        store_plan(self.warehouse, row)
        publish_plan(self.redis, published_plan(row))

    def reset(self):
        self.write("A", self.NEIGHBOUR)
        self.write("A")

    def snapshot(self):
        from qrl_platform.treasury.rebalance import REDIS_HISTORY_KEY, REDIS_LATEST_KEY, stored_plan

        stores = {}
        for partition in (self.NEIGHBOUR, self.PARTITION):
            row = stored_plan(self.warehouse, partition, "QRLUSDT")
            stores[f"warehouse {partition}"] = (
                digest({k: row[k] for k in ("quantity", "reason", "usdt_balance")}) if row else "missing"
            )
        history = [json.loads(entry) for entry in self.redis.lrange(REDIS_HISTORY_KEY, 0, -1)]
        keys = Counter(entry["partition_key"] for entry in history)
        for entry in history:
            if keys[entry["partition_key"]] == 1:
                stores[f"redis history {entry['partition_key']}"] = digest(
                    {k: entry[k] for k in ("quantity", "reason", "usdt_balance")}
                )
        latest = self.redis.get(REDIS_LATEST_KEY)
        latest = json.loads(latest) if latest else None
        stores["redis latest"] = (
            digest({k: latest[k] for k in ("partition_key", "quantity", "reason", "usdt_balance")})
            if latest
            else "missing"
        )
        return {"stores": stores, "duplicates": sum(n - 1 for n in keys.values()), "leftovers": 0}

    def close(self):
        self.redis.close()
        self.warehouse.dispose()


# ---- the outbox insert + XADD (notify/relay.py) ---------------------------------------------------


class OutboxPublish(Target):
    """Publishes STRATEGY_SIGNALS_READY for DAYS trading days, one after the other, on the Redis backend."""

    name = "outbox insert + XADD publish"
    DAYS = [DAY - dt.timedelta(days=offset) for offset in range(8, 0, -1)]

    def __init__(self, config):
        super().__init__(config)
        import redis

        from qrl_platform.warehouse import Warehouse

        self.warehouse = Warehouse(config["url"])
        self.redis = redis.Redis.from_url(config["redis_url"], decode_responses=True)
        self.stream = config["stream"]

    def publish(self, day: dt.date):
        from qrl_platform.notify.relay import publish_signals_ready

        summary = {
            "total_signals": 100 + day.day,
            "buy_signals": day.day,
            "sell_signals": 3,
            "hold_signals": 0,
            "strategies_executed": 10,
        }
        result = publish_signals_ready(
            self.warehouse, day, summary, backend="redis", redis=self.redis, now=FIXED_NOW, stream=self.stream
        )
        if result.relay_error:
            raise RuntimeError(result.relay_error)

    def reset(self):
        pass  # a fresh database and stream per kill

    def work(self, emit):
        for day in self.DAYS:
            self.publish(day)
            emit(day.isoformat())
        emit("done")

    def converge(self):
        from qrl_platform.notify.relay import relay_pending

        relay_pending(self.warehouse, self.redis, stream=self.stream, now=FIXED_NOW)  # what was left pending
        for day in self.DAYS:
            self.publish(day)

    def snapshot(self):
        from qrl_platform.warehouse.schema import event_outbox as table

        with self.warehouse.engine.connect() as connection:
            rows = connection.execute(
                sa.select(table.c.event_id, table.c.dedupe_key, table.c.payload, table.c.published_at).order_by(
                    table.c.dedupe_key
                )
            ).fetchall()
        entries = self.redis.xrange(self.stream)
        on_stream = Counter(fields["event_id"] for _, fields in entries)
        published = {row.event_id for row in rows if row.published_at is not None}
        stores = {
            "outbox": digest([(row.dedupe_key, row.payload) for row in rows]),
            "stream": digest(sorted(json.loads(fields["payload"])["trade_date"] for _, fields in entries)),
        }
        # Published in the outbox but not on the stream would be an event the order module never sees.
        lost = len(published - set(on_stream))
        # On the stream but not in the outbox would be an event nobody can account for.
        lost += len(set(on_stream) - {row.event_id for row in rows})
        return {
            "stores": stores,
            "duplicates": sum(n - 1 for n in on_stream.values()),
            "leftovers": 0,
            "lost": lost,
            "events": len(rows),
        }

    def close(self):
        self.redis.close()
        self.warehouse.dispose()


TARGETS: dict[str, type[Target]] = {
    "parquet": ParquetPartition,
    "signals": SignalsDayReplace,
    "plan": QrlPlanWrite,
    "outbox": OutboxPublish,
}


def make(kind: str, config: dict[str, str]) -> Target:
    return TARGETS[kind](config)
