"""Real PostgreSQL and Redis servers for the test session, started from their binaries, and
dagster-webserver over this repository (the UI tests).

PostgreSQL refuses to run as root, so when the tests run as root the cluster is initialised and
started as the `postgres` system user (runuser) in a directory that user owns. Each server listens
on a free loopback port and is stopped when the session ends.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# A port found free may be taken before the server binds it (the test workers start their servers at
# the same moment); a server that did not get its port is started again on another.
PORT_ATTEMPTS = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start within {timeout}s")


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise RuntimeError(f"PostgreSQL binary {name!r} not found (install the postgresql package)")
    return candidates[-1]


@dataclass
class PostgresServer:
    port: int
    data_dir: Path
    process_user: str | None
    options: str = ""

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str, driver: str = "psycopg") -> str:
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = list(args)
        if self.process_user:
            command = ["runuser", "-u", self.process_user, "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True)

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def halt(self) -> None:
        """Stop the server like an outage would: open connections are cut and transactions in flight
        roll back, while every committed row stays (`-m fast`: a clean shutdown; on a `durable` server
        even an immediate stop, a crash, would keep them, since each commit is flushed to the WAL)."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the halted server again on the same port and data directory."""
        log = str(self.data_dir.parent / "log")
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data_dir), "-o", self.options, "-l", log, "-w", "start")
        _wait_for_port(self.port)

    def stop(self) -> None:
        try:
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


# Test speed: no disk flush of commits or pages. A server that is never stopped mid-test loses nothing.
FAST_SETTINGS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
# A server an outage test stops and restarts: a commit returns only once it is on disk, as in production.
DURABLE_SETTINGS = "-c fsync=on -c synchronous_commit=on -c full_page_writes=on"


def start_postgres(*, durable: bool = False) -> PostgresServer:
    """A PostgreSQL on a free port in a temp dir. `durable`: commits flushed to disk (for tests that stop
    the server, so a row committed just before the stop is never lost); otherwise the fast settings."""
    base = Path(tempfile.mkdtemp(prefix="qrl-pg-"))
    data_dir = base / "data"
    user = "postgres" if os.geteuid() == 0 else None
    if user:
        shutil.chown(base, user=user)
        os.chmod(base, 0o700)
    server = PostgresServer(port=free_port(), data_dir=data_dir, process_user=user)
    server._run(_pg_bin("initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    settings = DURABLE_SETTINGS if durable else FAST_SETTINGS
    for attempt in range(PORT_ATTEMPTS):
        if attempt:
            server.port = free_port()
        server.options = (
            f"-p {server.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={base} {settings} "
            "-c max_connections=200"
        )
        try:
            server._run(
                _pg_bin("pg_ctl"), "-D", str(data_dir), "-o", server.options, "-l", str(base / "log"), "-w", "start"
            )
            break
        except subprocess.CalledProcessError:
            # The free port was taken before the server bound it (another test process starting its own
            # servers at the same moment): try another one.
            if attempt == PORT_ATTEMPTS - 1:
                raise RuntimeError("PostgreSQL did not start:\n" + (base / "log").read_text()) from None
    _wait_for_port(server.port)
    return server


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen
    directory: Path
    command: list[str]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def halt(self) -> None:
        """Stop the server process like an outage would (with persistence on, the data stays)."""
        stop_process(self.process, timeout=10)

    def resume(self) -> None:
        """Start the halted server again on the same port and directory."""
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port)

    def stop(self) -> None:
        stop_process(self.process, timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def stop_process(process: subprocess.Popen, timeout: float) -> None:
    """Terminate, and kill what does not exit within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_redis(persistent: bool = False) -> RedisServer:
    """A Redis on a free port; `persistent` = append-only file fsynced on every write, so a halted
    and resumed server still has every acknowledged write (as a production Redis with AOF would)."""
    binary = shutil.which("redis-server")
    if not binary:
        raise RuntimeError("redis-server not found (install the redis-server package)")
    directory = Path(tempfile.mkdtemp(prefix="qrl-redis-"))
    for _ in range(PORT_ATTEMPTS):
        port = free_port()
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(directory)]
        command += ["--appendonly", "yes", "--appendfsync", "always"] if persistent else ["--appendonly", "no"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(port)
        # The port answers; make sure it is this server and not another test process's that took the
        # free port first (this one would then have exited): the server at the port must work in `directory`.
        if process.poll() is None and _redis_directory(port) == str(directory):
            return RedisServer(port=port, process=process, directory=directory, command=command)
        stop_process(process, timeout=10)
    raise RuntimeError(f"redis-server did not start on a free port in {PORT_ATTEMPTS} attempts")


def _redis_directory(port: int) -> str | None:
    import redis

    try:
        with redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) as client:
            return client.config_get("dir").get("dir")
    except redis.RedisError:
        return None


REPO_ROOT = Path(__file__).resolve().parents[1]
WEBSERVER_STARTUP_SECONDS = 120


def local_dagster_home(dagster_home: Path) -> Path:
    """A DAGSTER_HOME set up as the README says: the repository's dagster.yaml, storage under it."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = (
        (REPO_ROOT / "dagster.yaml")
        .read_text()
        .replace("base_dir: .qrl/dagster_storage", f"base_dir: {dagster_home}/storage")
    )
    (dagster_home / "dagster.yaml").write_text(config)
    return dagster_home


@contextlib.contextmanager
def dagster_webserver(dagster_home: Path, qrl_home: Path, log_path: Path) -> Iterator[str]:
    """dagster-webserver over this repository's workspace.yaml on a free loopback port; yields its base URL
    once /server_info answers, and stops it afterwards. The log is in `log_path` (shown if it fails to start)."""
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "QRL_HOME": str(qrl_home)}
    env.pop("QRL_WAREHOUSE_URL", None)
    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + WEBSERVER_STARTUP_SECONDS
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/server_info", timeout=5):
                        break
                except (urllib.error.URLError, ConnectionError):
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError("dagster-webserver did not start:\n" + log_path.read_text()) from None
                    time.sleep(0.5)
            yield base
        finally:
            stop_process(process, timeout=20)


def webserver_graphql_text(base: str, query: str, variables: dict | None = None) -> str:
    """The raw body of a GraphQL request to the webserver at `base` (asserting it reports no error)."""
    request = urllib.request.Request(
        f"{base}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        text = response.read().decode()
    assert '"errors"' not in text[:200], text[:2000]
    return text


def webserver_graphql(base: str, query: str, variables: dict | None = None) -> dict:
    """The `data` of a GraphQL request to the webserver at `base`."""
    return json.loads(webserver_graphql_text(base, query, variables))["data"]
