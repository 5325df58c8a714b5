"""The test servers start on a port of their own even when the free port they were handed is taken
before they bind it (two test workers start their servers at the same moment)."""

import psycopg
import redis

from qrl_platform_tests import servers


def _first_port_taken(monkeypatch, taken: int) -> None:
    handed = iter([taken])
    monkeypatch.setattr(servers, "free_port", lambda real=servers.free_port: next(handed, None) or real())


def test_a_redis_whose_port_was_taken_starts_on_another_and_answers_from_its_own_directory(monkeypatch):
    other = servers.start_redis()
    try:
        redis.Redis(port=other.port).set("owner", "other")
        _first_port_taken(monkeypatch, other.port)
        mine = servers.start_redis()
        try:
            assert mine.port != other.port
            assert redis.Redis(port=mine.port).config_get("dir")["dir"] == str(mine.directory)
            assert redis.Redis(port=mine.port).get("owner") is None  # not the other server's data
        finally:
            mine.stop()
    finally:
        other.stop()


def test_a_postgres_whose_port_was_taken_starts_on_another(monkeypatch):
    other = servers.start_postgres()
    try:
        _first_port_taken(monkeypatch, other.port)
        mine = servers.start_postgres()
        try:
            assert mine.port != other.port
            with psycopg.connect(f"host=127.0.0.1 port={mine.port} user=postgres dbname=postgres") as conn:
                data_directory = conn.execute("SHOW data_directory").fetchone()[0]
            assert data_directory == str(mine.data_dir)
        finally:
            mine.stop()
    finally:
        other.stop()
