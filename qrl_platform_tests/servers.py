"""Real PostgreSQL and Redis servers for the test session, started from their binaries.

PostgreSQL refuses to run as root, so when the tests run as root the cluster is initialised and
started as the `postgres` system user (runuser) in a directory that user owns. Each server listens
on a free loopback port and is stopped when the session ends.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


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
        """Stop the server like an outage would (open connections are cut); the data stays."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")

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


def start_postgres() -> PostgresServer:
    base = Path(tempfile.mkdtemp(prefix="qrl-pg-"))
    data_dir = base / "data"
    user = "postgres" if os.geteuid() == 0 else None
    if user:
        shutil.chown(base, user=user)
        os.chmod(base, 0o700)
    server = PostgresServer(port=free_port(), data_dir=data_dir, process_user=user)
    server._run(_pg_bin("initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    options = f"-p {server.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={base} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    server.options = options
    server._run(_pg_bin("pg_ctl"), "-D", str(data_dir), "-o", options, "-l", str(base / "log"), "-w", "start")
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
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(directory)]
    command += ["--appendonly", "yes", "--appendfsync", "always"] if persistent else ["--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_port(port)
    return RedisServer(port=port, process=process, directory=directory, command=command)
