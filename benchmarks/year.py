"""The whole 2024 daily chain from an empty home in one run, on SQLite and on PostgreSQL.

    python benchmarks/year.py                              # year on both warehouses + one day
    python benchmarks/year.py --warehouses sqlite          # one warehouse
    python benchmarks/year.py --hashes-out before.json     # record the stored tables' content hashes
    python benchmarks/year.py --hashes-in before.json      # ... and compare against a recording
    python benchmarks/year.py --scale-only --stocks 18000  # one day at 10x the universe

The year is `qrl backfill 2024-01-02 2024-12-31 --whole-chain` in a child process (so its peak RSS
is its own): the slower-cadence tables and 261 trading days of raw history, then raw -> M07/M08/M09
+ checks -> 10 strategies -> signals -> M13 -> stats over the year as ONE run. Printed: the wall
time of the command, each step's share (from the Dagster event log), the child's peak RSS, and two
floors measured in this process:

* a bare bulk write of the same signal frame (read back from the warehouse): PostgreSQL COPY,
  SQLite executemany in one transaction, into an empty table with the same DDL;
* a trivial one-asset Dagster run on the same instance (median of 5).

strategy_signals is reported against the bulk-write floor, every step against the trivial run.
Then one day end to end (`qrl run-all 2024-12-31`, history present) alternates with the trivial
run (3 each) and the ratio of the medians is printed. Figures are printed, never asserted; the
machine may be shared, so repeat and compare ratios.

Content hashes: every stored frame table and warehouse table, sorted, with the columns that differ
between any two runs by design (run ids, execution ids, timestamps, durations) left out. Equal
hashes before and after a speed change mean the same rows were stored. The hashes depend on the
polars version (row hashing), so compare recordings made with the same environment.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import isolated_home  # noqa: E402

START, END, DAY = "2024-01-02", "2024-12-31", "2024-12-31"
RAW_DAILY = ("daily_quotes", "institutional_flows", "margin_balances", "valuations")

# Columns that change between two runs of the same code by design.
VOLATILE = {
    "execution_id",
    "run_id",
    "event_id",
    "stream_id",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "duration_ms",
    "recorded_at",
    "computed_at",
    "last_execution_at",
    "published_at",
}
TIMESTAMP_IN_PAYLOAD = re.compile(r'"timestamp": "[^"]*"')


def canonical(frame: pl.DataFrame) -> pl.DataFrame:
    frame = frame.drop([c for c in frame.columns if c in VOLATILE])
    if "payload" in frame.columns:  # the M13 event's JSON carries its publication time
        frame = frame.with_columns(pl.col("payload").cast(pl.Utf8).str.replace_all(TIMESTAMP_IN_PAYLOAD.pattern, ""))
    if "consumed_at" in frame.columns:
        frame = frame.with_columns(pl.col("consumed_at").is_not_null())
    frame = frame.select(sorted(frame.columns))
    return frame


def content_hash(frame: pl.DataFrame) -> str:
    """Order-independent hash of the rows (and the column names)."""
    frame = canonical(frame)
    digest = hashlib.sha256(",".join(frame.columns).encode())
    digest.update(str(frame.height).encode())
    if frame.height:
        digest.update(frame.hash_rows(seed=0).sort().to_numpy().tobytes())
    return digest.hexdigest()[:16]


def stored_hashes(home: Path, url: str) -> dict[str, str]:
    """Content hash of every frame table under `home` and every warehouse table at `url`."""
    import sqlalchemy as sa

    from qrl_platform.warehouse import Warehouse
    from qrl_platform.warehouse.schema import TABLES

    hashes: dict[str, str] = {}
    frames = home / "frames"
    for table in sorted(p.name for p in frames.iterdir() if p.is_dir()):
        files = sorted((frames / table).glob("*.parquet"))
        parts = [pl.read_parquet(f) for f in files]
        parts = [p for p in parts if p.height]
        hashes[f"frames/{table}"] = content_hash(pl.concat(parts, how="diagonal_relaxed")) if parts else "empty"
    warehouse = Warehouse(url)
    for name, table in sorted(TABLES.items()):
        with warehouse.engine.connect() as connection:
            result = connection.execute(sa.select(table))
            rows = result.fetchall()
        frame = (
            pl.DataFrame(
                [tuple(r) for r in rows], schema=list(table.columns.keys()), orient="row", infer_schema_length=None
            )
            if rows
            else pl.DataFrame()
        )
        hashes[f"warehouse/{name}"] = content_hash(frame) if rows else "empty"
    warehouse.dispose()
    return hashes


# ------------------------------------------------------------------------------------------ floors
def trivial_run_seconds(instance, repeat: int = 5) -> float:
    """Median wall time of materialising one asset that does nothing, on `instance`."""
    import dagster as dg

    @dg.asset
    def trivial_asset() -> None:
        return None

    times = []
    for _ in range(repeat):
        tick = time.perf_counter()
        result = dg.materialize(
            [trivial_asset],
            instance=instance,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        times.append(time.perf_counter() - tick)
    global TRIVIAL_EVENTS
    TRIVIAL_EVENTS = len(instance.all_logs(result.run_id))
    return statistics.median(times)


TRIVIAL_EVENTS = 1  # events the trivial run writes to the instance (set by trivial_run_seconds)


def bulk_write_floor(url: str, scratch_url: str) -> tuple[float, int]:
    """Seconds to write the stored strategy_signals frame with the bare bulk path into an empty
    table with the same DDL (PostgreSQL COPY, SQLite executemany in one transaction)."""
    import sqlalchemy as sa

    from qrl_platform.warehouse import Warehouse
    from qrl_platform.warehouse.schema import strategy_signals

    warehouse = Warehouse(url)
    columns = [c.name for c in strategy_signals.columns]
    with warehouse.engine.connect() as connection:
        rows = connection.execute(sa.select(strategy_signals)).fetchall()
    warehouse.dispose()
    frame = pl.DataFrame([tuple(r) for r in rows], schema=columns, orient="row", infer_schema_length=None)
    del rows
    engine = sa.create_engine(scratch_url)
    meta = sa.MetaData()
    strategy_signals.to_metadata(meta)
    meta.create_all(engine)
    raw = engine.raw_connection()
    try:
        tick = time.perf_counter()
        if engine.dialect.name == "postgresql":
            with (
                raw.cursor() as cursor,
                cursor.copy(f"COPY strategy_signals ({', '.join(columns)}) FROM STDIN (FORMAT csv)") as copy,
            ):
                for chunk in frame.iter_slices(200_000):
                    copy.write(chunk.write_csv(include_header=False))
        else:
            cursor = raw.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            placeholders = ", ".join("?" * len(columns))
            cursor.executemany(
                f"INSERT INTO strategy_signals VALUES ({placeholders})",
                frame.with_columns(pl.col("trade_date").cast(pl.Utf8), pl.col("created_at").cast(pl.Utf8)).iter_rows(),
            )
        raw.commit()
        seconds = time.perf_counter() - tick
    finally:
        raw.close()
        engine.dispose()
    return seconds, frame.height


# ------------------------------------------------------------------------------------------ runs
class TreeMemory:
    """Samples the memory of all descendants of a process every `interval` seconds in a thread.

    Per process it keeps the kernel's own high-water mark (VmHWM in /proc/PID/status, exact whatever
    the sampling interval, read until the process is gone); for the tree it keeps the largest sum of
    the processes' resident sets seen at one sample (what the command holds at once). wait4's
    ru_maxrss, by contrast, is the largest single process among the command and its reaped
    descendants. The PostgreSQL server the benchmark starts is not a descendant of the command.

    A child of the command caught between its fork and its exec (Dagster starts `tail` processes
    for the compute logs) still shows the command's command line and memory, which are the
    command's own pages: it is left out."""

    def __init__(self, pid: int, interval: float = 0.1):
        import threading

        self.pid, self.interval = pid, interval
        self.peaks: dict[int, tuple[float, str, float]] = {}  # pid -> (VmHWM MiB, what it is, seconds in)
        self.tree_peak = 0.0
        self.tree_peak_parts: list[tuple[float, str]] = []  # (RSS MiB, what) of each process at the tree's peak
        self.timeline: list[tuple[float, float]] = []  # (epoch seconds, the tree's RSS MiB) per sample
        self._start = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        root = psutil.Process(self.pid)
        while not self._stop.wait(self.interval):
            try:
                processes = root.children(recursive=True)  # the command and its descendants, not the launcher
            except psutil.NoSuchProcess:
                return
            total = 0.0
            parts: list[tuple[float, str]] = []
            started = [process for process in processes if _parent(process) == self.pid]  # the command
            command = _cmdline(started[0]) if started else None
            for process in processes:
                if process not in started and _cmdline(process) == command:
                    continue  # a copy of the command about to exec another program
                high, current = _status_mib(process.pid)
                if high is None:
                    continue
                total += current
                known = self.peaks.get(process.pid)
                what = known[1] if known else _describe(process)
                parts.append((current, what))
                if known is None or high > known[0]:
                    self.peaks[process.pid] = (high, what, time.perf_counter() - self._start)
            self.timeline.append((time.time(), total))
            if total > self.tree_peak:
                self.tree_peak, self.tree_peak_parts = total, sorted(parts, reverse=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def largest(self, count: int = 4) -> list[tuple[float, str, float]]:
        return sorted(self.peaks.values(), reverse=True)[:count]


def _status_mib(pid: int) -> tuple[float | None, float]:
    """(VmHWM, VmRSS) of a live process in MiB; (None, 0) once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None, 0.0
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    if "VmHWM" not in fields:  # a zombie: its memory is already released
        return None, 0.0
    return int(fields["VmHWM"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024


def _parent(process) -> int | None:
    try:
        return process.ppid()
    except Exception:  # gone
        return None


def _cmdline(process) -> list[str] | None:
    try:
        return process.cmdline()
    except Exception:  # gone, or a zombie
        return None


def _describe(process) -> str:
    try:
        command = " ".join(process.cmdline())
    except Exception:  # gone or not readable: the pid is all there is
        return f"pid {process.pid}"
    if "forkserver" in command:
        return "forkserver / strategy worker"
    return command.replace(sys.executable, "python")[:80]


# Starts the command and reports wait4's figure for it. Why a launcher: Linux copies a process's
# memory high-water mark into a forked child and charges it to the child's ru_maxrss when the child
# execs, so a command started straight from this process (which holds the year's signals for the
# floor and the hashes: several GiB by the second warehouse) would be charged this process's peak.
# The launcher is a fresh, small interpreter; the command forked from it starts clean.
LAUNCHER = """
import os, subprocess, sys
process = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(process.pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def run_child(argv: list[str]) -> tuple[float, float, TreeMemory]:
    """Run `python -m qrl_platform.cli ARGV`; return (wall seconds, wait4 peak RSS MiB, sampled memory)."""
    import tempfile

    with tempfile.NamedTemporaryFile("r", suffix=".wait4") as report:
        tick = time.perf_counter()
        launcher = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, report.name, sys.executable, "-m", "qrl_platform.cli", *argv]
        )
        memory = TreeMemory(launcher.pid)
        launcher.wait()
        memory.stop()
        wall = time.perf_counter() - tick
        returncode, maxrss_kib = (int(field) for field in Path(report.name).read_text().split())
    if launcher.returncode or returncode:
        raise SystemExit(f"qrl {' '.join(argv)} failed ({returncode})")
    return wall, maxrss_kib / 1024, memory


def step_seconds(instance) -> dict[str, list[float]]:
    """[seconds, own work seconds, Dagster events written] per step of every run on the instance.

    Own work is STEP_START -> STEP_OUTPUT (what the asset's function did before Dagster records the
    per-partition materialisations); NaN for check steps (they yield their evaluations as they go).
    The raw history run's steps are summed into 'raw history', the slower-cadence and unpartitioned
    runs into 'slower-cadence + metadata'."""
    import dagster as dg

    steps: dict[str, list[float]] = {}
    for run in instance.get_runs():
        start = run.tags.get("dagster/asset_partition_range_start")
        begun: dict[str, float] = {}
        work: dict[str, float] = {}
        events: dict[str, int] = {}
        for record in instance.all_logs(run.run_id):
            event = record.dagster_event
            if event is None or event.step_key is None:
                continue
            key = event.step_key
            events[key] = events.get(key, 0) + 1
            if event.event_type == dg.DagsterEventType.STEP_START:
                begun[key] = record.timestamp
            elif event.event_type == dg.DagsterEventType.STEP_OUTPUT and key not in work:
                work[key] = record.timestamp - begun[key]
            elif (
                event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
                and key == "strategy_signals"
                and start == START
                and "compute_ms" in (metadata := event.step_materialization_data.materialization.metadata)
            ):
                SIGNAL_SPLIT.update(
                    compute=metadata["compute_ms"].value / 1000, write=metadata["write_ms"].value / 1000
                )
            elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                if start == START:
                    label = key
                elif start is not None and start < START and len(start) == 10 and key in RAW_DAILY:
                    label = "raw history (261 days, 4 tables)"
                else:
                    label = "slower-cadence + metadata"
                STEP_WINDOWS.append((label, begun.get(key, record.timestamp), record.timestamp))
                total = steps.setdefault(label, [0.0, 0.0, 0])
                total[0] += event.event_specific_data.duration_ms / 1000
                total[1] += work.get(key, float("nan"))
                total[2] += events[key]
    return steps


SIGNAL_SPLIT: dict[str, float] = {}  # strategy_signals' own account: evaluation vs write seconds (overlapped)
STEP_WINDOWS: list[tuple[str, float, float]] = []  # (step label, start, end) in epoch seconds, every run's steps


def memory_by_step(memory: TreeMemory, windows: list[tuple[str, float, float]]) -> dict[str, float]:
    """The largest sampled RSS of the whole process tree while each step ran (steps of one label merged);
    samples outside every step count as '(between steps: start, imports, run set-up)'."""
    peaks: dict[str, float] = {}
    for at, total in memory.timeline:
        labels = [label for label, start, end in windows if start <= at <= end] or [
            "(between steps: start, imports, run set-up)"
        ]
        for label in labels:
            peaks[label] = max(peaks.get(label, 0.0), total)
    return peaks


def year(backend: str, args, server, hashes_in: dict | None) -> dict:
    with isolated_home(args.stocks) as root:
        import dagster as dg

        if backend == "postgresql":
            url = server.create_database(f"year_{int(time.time())}")
            os.environ["QRL_WAREHOUSE_URL"] = url
            scratch = server.create_database(f"floor_{int(time.time())}")
            if not args.sqlite_instance:
                # As in production (deploy/dagster.yaml): run and event-log storage in PostgreSQL too.
                instance_url = server.create_database(f"dagster_{int(time.time())}").replace("+psycopg", "+psycopg2")
                (root / "dagster" / "dagster.yaml").write_text(
                    f"telemetry:\n  enabled: false\nstorage:\n  postgres:\n    postgres_url: {instance_url}\n"
                )
        else:
            url = f"sqlite:///{root / 'qrl' / 'warehouse.sqlite'}"
            scratch = f"sqlite:///{root / 'floor.sqlite'}"
        wall, peak, memory = run_child(["backfill", START, END, "--whole-chain"])
        instance = dg.DagsterInstance.get()
        STEP_WINDOWS.clear()
        steps = step_seconds(instance)
        step_memory = memory_by_step(memory, STEP_WINDOWS)
        trivial = trivial_run_seconds(instance)
        per_event = trivial / TRIVIAL_EVENTS
        write_floor, signals = bulk_write_floor(url, scratch)
        from qrl_platform.warehouse import Warehouse

        Warehouse(url).dispose()  # migrations are applied (and counted) once
        # Hashes first: the one-day run-all below adds executions on purpose.
        hashes = stored_hashes(root / "qrl", url) if not args.no_hashes else {}
        day = one_day(instance) if not args.no_day else None
        os.environ.pop("QRL_WAREHOUSE_URL", None)
    return {
        "backend": backend,
        "wall": wall,
        "peak": peak,
        "memory": memory,
        "steps": steps,
        "step_memory": step_memory,
        "trivial": trivial,
        "per_event": per_event,
        "write_floor": write_floor,
        "signals": signals,
        "day": day,
        "hashes": hashes,
    }


def one_day(instance) -> dict:
    """`qrl run-all DAY` (history present) alternating with the trivial run, 3 times each."""
    import contextlib
    import io

    from qrl_platform import cli

    days, trivials = [], []
    for _ in range(3):
        tick = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli.main(["run-all", DAY]) == 0
        days.append(time.perf_counter() - tick)
        trivials.append(trivial_run_seconds(instance, repeat=1))
    return {"run_all": statistics.median(days), "trivial": statistics.median(trivials)}


def report(result: dict) -> None:
    wall, steps = result["wall"], result["steps"]
    print(f"\n== {result['backend']}: qrl backfill {START} {END} --whole-chain, {result['signals']:,} signals")
    print(
        f"wall {wall:.1f} s, peak RSS {result['peak']:.0f} MiB; floors: bulk write of the signal frame "
        f"{result['write_floor']:.1f} s, trivial one-asset Dagster run {result['trivial']:.2f} s"
    )
    memory = result["memory"]
    print(
        f"memory: wait4 peak {result['peak']:.0f} MiB (largest single process incl. reaped descendants); "
        f"largest sampled sum over the process tree {memory.tree_peak:.0f} MiB; per process (VmHWM):"
    )
    for high, what, seconds in memory.largest():
        print(f"  {high:8.0f} MiB  {what} (reached {seconds:.0f} s into the command)")
    print("  at the tree's peak: " + ", ".join(f"{rss:.0f} MiB {what}" for rss, what in memory.tree_peak_parts[:4]))
    print("  the process tree's largest sampled RSS while each step ran (the five largest):")
    for label, mib in sorted(result["step_memory"].items(), key=lambda item: -item[1])[:5]:
        print(f"  {mib:8.0f} MiB  {label}")
    print(
        f"  (a trivial run writes {TRIVIAL_EVENTS} events: {result['per_event'] * 1000:.0f} ms per event; "
        "'/ events floor' = seconds / (the step's events x that cost))"
    )
    print(
        f"  {'step':<36} {'seconds':>8} {'share':>6} {'own work':>9} {'events':>7} {'/ trivial run':>14}"
        f" {'/ events floor':>15} {'/ bulk write':>13}"
    )
    for step, (seconds, work, events) in sorted(steps.items(), key=lambda item: -item[1][0]):
        write = f"{seconds / result['write_floor']:12.1f}x" if step == "strategy_signals" else ""
        own = f"{work:9.1f}" if work == work else f"{'-':>9}"
        print(
            f"  {step:<36} {seconds:8.1f} {seconds / wall:6.1%} {own} {events:7d}"
            f" {seconds / result['trivial']:13.0f}x {seconds / (events * result['per_event']):14.1f}x {write:>13}"
        )
    if SIGNAL_SPLIT:
        print(
            f"  strategy_signals by its own account: evaluation {SIGNAL_SPLIT['compute']:.1f} s, write "
            f"{SIGNAL_SPLIT['write']:.1f} s (the write of a chunk overlaps the evaluation of the next)"
        )
    other = wall - sum(v[0] for v in steps.values())
    print(f"  {'(process start, imports, run set-up)':<36} {other:8.1f} {other / wall:6.1%}")
    if result["day"]:
        day = result["day"]
        print(
            f"one day end to end (qrl run-all {DAY}, history present): {day['run_all']:.2f} s; trivial run "
            f"{day['trivial']:.2f} s; ratio {day['run_all'] / day['trivial']:.2f}"
        )


def scale(args) -> None:
    """One trading day at `--stocks` (history materialised first, in the same child process)."""
    with isolated_home(args.stocks):
        import dagster as dg

        wall, peak, memory = run_child(["backfill", DAY, DAY, "--whole-chain"])
        instance = dg.DagsterInstance.get()
        day_run = next(r for r in instance.get_runs() if r.tags.get("dagster/partition") == DAY)
        stats = instance.get_run_stats(day_run.run_id)
        steps = {}
        for record in instance.all_logs(day_run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS):
            steps[record.dagster_event.step_key] = record.dagster_event.event_specific_data.duration_ms / 1000
    print(
        f"\n== {args.stocks:,} stocks: one trading day {DAY} end to end (raw -> stats) in one run: "
        f"{stats.end_time - stats.start_time:.1f} s; whole command incl. history {wall:.1f} s; "
        f"peak RSS {peak:.0f} MiB (wait4), process tree at once {memory.tree_peak:.0f} MiB"
    )
    for step, seconds in sorted(steps.items(), key=lambda item: -item[1]):
        print(f"  {step:<32} {seconds:7.2f} s")


def main() -> None:
    global START
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stocks", type=int, default=1800)
    parser.add_argument("--start", default=START, help="first day of the backfill (a shorter smoke run)")
    parser.add_argument("--warehouses", default="sqlite,postgresql")
    parser.add_argument("--hashes-out", help="write the content hashes (per warehouse) to this JSON file")
    parser.add_argument("--hashes-in", help="compare the content hashes with this JSON file")
    parser.add_argument("--no-day", action="store_true", help="skip the one-day run-all figure")
    parser.add_argument("--no-hashes", action="store_true")
    parser.add_argument(
        "--sqlite-instance",
        action="store_true",
        help="keep the Dagster instance on SQLite for the PostgreSQL warehouse too (default: PostgreSQL, as deployed)",
    )
    parser.add_argument("--scale-only", action="store_true", help="only the one-day run at --stocks")
    args = parser.parse_args()
    START = args.start
    if args.scale_only:
        scale(args)
        return
    expected = json.loads(Path(args.hashes_in).read_text()) if args.hashes_in else None
    from qrl_platform_tests.servers import start_postgres

    server = start_postgres() if "postgresql" in args.warehouses else None
    results = []
    try:
        for backend in args.warehouses.split(","):
            result = year(backend, args, server, expected)
            report(result)
            results.append(result)
            if expected and backend in expected:
                differ = {
                    k: (v, result["hashes"].get(k))
                    for k, v in expected[backend].items()
                    if result["hashes"].get(k) != v
                }
                print(f"content hashes vs {args.hashes_in}: " + ("all equal" if not differ else f"DIFFER: {differ}"))
    finally:
        if server:
            server.stop()
    if args.hashes_out:
        Path(args.hashes_out).write_text(json.dumps({r["backend"]: r["hashes"] for r in results}, indent=1))
    for result in results:
        if result["hashes"]:
            print(f"\ncontent hashes ({result['backend']}):")
            for key, value in result["hashes"].items():
                print(f"  {key:<40} {value}")


if __name__ == "__main__":
    main()
