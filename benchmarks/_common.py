"""Shared set-up for the benchmarks: an isolated QRL_HOME / DAGSTER_HOME and a timer."""

from __future__ import annotations

import contextlib
import os
import resource
import tempfile
import time
from pathlib import Path


@contextlib.contextmanager
def isolated_home(universe: int):
    """Fresh data and Dagster directories (the repository's local dagster.yaml) with the demo market at
    `universe` stocks."""
    with tempfile.TemporaryDirectory(prefix="qrl-bench-") as tmp:
        root = Path(tmp)
        (root / "dagster").mkdir()
        os.environ.update({
            "QRL_HOME": str(root / "qrl"), "DAGSTER_HOME": str(root / "dagster"),
            "QRL_MARKET_SOURCE": "demo", "QRL_DEMO_UNIVERSE": str(universe),
        })
        os.environ.pop("QRL_WAREHOUSE_URL", None)
        # The local instance as the README sets it up: the repository's dagster.yaml, storage under it.
        config = (Path(__file__).resolve().parents[1] / "dagster.yaml").read_text()
        storage = root / "dagster" / "storage"
        (root / "dagster" / "dagster.yaml").write_text(config.replace("base_dir: .qrl/dagster_storage", f"base_dir: {storage}"))
        yield root


@contextlib.contextmanager
def timed(label: str, results: dict):
    start = time.perf_counter()
    yield
    results[label] = time.perf_counter() - start


def peak_rss_mib() -> tuple[float, float]:
    """Peak resident memory of this process and of its largest finished child process, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children
