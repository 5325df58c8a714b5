from __future__ import annotations

import os

import dagster as dg
import redis


class RedisResource(dg.ConfigurableResource):
    """Redis (QRL plan/position, M13 event stream). URL from QRL_REDIS_URL; empty means not configured."""

    url: str = ""

    def resolved_url(self) -> str:
        return self.url or os.environ.get("QRL_REDIS_URL", "").strip()

    @property
    def configured(self) -> bool:
        return bool(self.resolved_url())

    def client(self) -> redis.Redis:
        url = self.resolved_url()
        if not url:
            raise RuntimeError("Redis is not configured: set QRL_REDIS_URL (e.g. redis://localhost:6379/0)")
        # Short timeouts and bounded retries: Redis being down must fail a step fast and clearly.
        return redis.Redis.from_url(
            url,
            socket_timeout=5,
            socket_connect_timeout=5,
            retry_on_timeout=True,
            health_check_interval=30,
            decode_responses=True,
        )
