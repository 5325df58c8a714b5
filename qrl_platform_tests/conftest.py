"""Session fixtures: real PostgreSQL and Redis servers, an isolated QRL_HOME per test, and a
warehouse fixture parametrised over SQLite and PostgreSQL."""

from __future__ import annotations

import gc
import itertools
import json
import os

import pytest

from qrl_platform_tests.reliability.figures import FIGURES_PROPERTY, Figures, table
from qrl_platform_tests.servers import start_postgres, start_redis

_db_counter = itertools.count()
_reliability_figures: list[Figures] = []


@pytest.fixture(scope="session")
def postgres_server():
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server():
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the session's PostgreSQL server."""
    return postgres_server.create_database(f"qrl_test_{os.getpid()}_{next(_db_counter)}")


@pytest.fixture
def qrl_home(tmp_path, monkeypatch):
    """An isolated QRL_HOME with the embedded defaults (demo market, SQLite warehouse)."""
    home = tmp_path / "qrl_home"
    home.mkdir()
    monkeypatch.setenv("QRL_HOME", str(home))
    monkeypatch.delenv("QRL_WAREHOUSE_URL", raising=False)
    monkeypatch.setenv("QRL_MARKET_SOURCE", "demo")
    # A smaller demo universe keeps Dagster-level tests quick; domain tests choose their own size.
    monkeypatch.setenv("QRL_DEMO_UNIVERSE", os.environ.get("QRL_TEST_DEMO_UNIVERSE", "120"))
    return home


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse_url(request, tmp_path):
    """A warehouse URL on each backend; tests using it run once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def warehouse(warehouse_url):
    from qrl_platform.warehouse import Warehouse

    wh = Warehouse(warehouse_url)
    yield wh
    wh.dispose()


# The test files that take longest (a minute or more under a full run's load; `--durations`). When
# pytest-xdist shares the files among workers (`scripts/test`: `--dist loadfile --no-loadscope-reorder`),
# these are handed out first, so that no worker starts one of them when the other is nearly done.
LONGEST_FILES_FIRST = (
    "qrl_platform_tests/test_cli_deployment.py",
    "qrl_platform_tests/market/test_live_week.py",
    "qrl_platform_tests/test_cli_backfill.py",
    "qrl_platform_tests/reliability/test_secrets.py",
    "qrl_platform_tests/test_daily_chain.py",
    "qrl_platform_tests/test_backfill_whole_chain.py",
    "qrl_platform_tests/test_architecture.py",
    "qrl_platform_tests/market/test_market_assets.py",
    "qrl_platform_tests/indicators/test_indicator_assets.py",
    "qrl_platform_tests/reliability/test_crash.py",
    "qrl_platform_tests/strategies/test_builtin_strategies_on_demo_chain.py",
    "qrl_platform_tests/reliability/test_bad_input.py",
)


def pytest_collection_modifyitems(config, items):
    """In a pytest-xdist worker (it has `workerinput`), the longest files first, every other test in its
    collected order (a stable sort: each file's tests stay together and in order). Every worker sorts
    the same collection the same way, as pytest-xdist requires; a serial run keeps pytest's order."""
    if not hasattr(config, "workerinput"):
        return
    rank = {path: position for position, path in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


def pytest_collection_finish(session):
    """Moves everything alive once the tests are collected (imported modules, Dagster definitions) out of
    the garbage collector's reach (`gc.freeze`), so that the collection each test ends with (below)
    walks only what the tests created since. A full collection over the imported packages takes about a
    tenth of a second; a thousand tests paid it once each."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _dagster_defs_state_storage_is_per_test():
    """Each test starts without a "current" Dagster defs-state storage and ends by restoring the one it
    found. A DagsterInstance entered with `with` publishes its storage in a context variable; when some
    test's instance is left entered (seen only in full-suite runs, after in-process runs whose blocking
    checks failed), later tests would read a storage whose instance is gone ("Attempted to resolve
    undefined DagsterInstance weakref"). Dagster offers no public switch for this, so the test suite
    uses its context manager directly; the package itself never does."""
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield
        # A Dagster instance context left suspended by this test (a generator not run to its end)
        # restores, when the garbage collector finalises it, the storage that was current when it was
        # entered, whose instance may be gone by then. Seen once in a full run: a later test's
        # `dg.materialize` failed on "Attempted to resolve undefined DagsterInstance weakref". Finalise
        # such leftovers here, inside this test's reset, so they can only restore into this test.
        gc.collect()


def configured_resources(**values) -> dict:
    """The shared resources as the code location builds them, from the environment of this moment (a
    test's monkeypatched variables included), with `values` replacing settings fields by name
    (`configured_resources(market_source="live", mops_base_url=url)`), validated like the environment."""
    from qrl_platform.defs.resources import shared_resources
    from qrl_platform.settings import settings

    current = settings()
    return shared_resources(current.with_values(**values) if values else current)


def pytest_runtest_logreport(report):
    """Gathers the rows of figures the reliability tests recorded on their reports (see reliability/figures.py)."""
    if report.when == "call":
        _reliability_figures.extend(
            Figures(**json.loads(value)) for name, value in report.user_properties if name == FIGURES_PROPERTY
        )


def pytest_terminal_summary(terminalreporter, config):
    """The reliability figures as the table in docs/reliability.md, and as JSON in QRL_RELIABILITY_REPORT if set.
    Only the process that reports the run writes them (a pytest-xdist worker has `workerinput`)."""
    if not _reliability_figures or hasattr(config, "workerinput"):
        return
    terminalreporter.write_sep("=", "reliability figures")
    terminalreporter.write_line(table(_reliability_figures))
    target = os.environ.get("QRL_RELIABILITY_REPORT", "").strip()
    if target:
        with open(target, "w") as handle:
            json.dump([row.as_dict() for row in _reliability_figures], handle, indent=2, default=str)
