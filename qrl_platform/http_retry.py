"""One retry policy for idempotent HTTP requests: exchange downloads (TWSE, TPEx, MOPS, TDCC) and the
alert webhooks (Slack, SMS).

What is retried: transport errors (timeouts, refused or reset connections), HTTP 429 and 5xx. What
is not: any other 4xx (a wrong path or a revoked token does not heal by asking again). Waits grow
exponentially from `backoff_seconds`, capped at `max_backoff_seconds`, with up to `jitter` × the wait
added at random so that many clients retrying together (several pods after an outage) spread out. A
`Retry-After` header — seconds or an HTTP date — is honoured; one longer than
`max_retry_after_seconds` fails at once rather than stalling a run for hours.

MEXC is deliberately not sent through `send_with_retries`: its requests are signed with a timestamp
and an order placement must never be blindly repeated (see `treasury/mexc_client.py`); it shares
only `retry_after_seconds`.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx


def retry_after_seconds(headers: Mapping[str, str], now: dt.datetime | None = None) -> float | None:
    """The wait a `Retry-After` header asks for: delta-seconds or an HTTP date; None when absent or
    unreadable."""
    raw = (headers.get("retry-after") or "").strip()
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


class RetryAfterTooLong(Exception):
    """The server asked for a longer wait than the policy allows."""

    def __init__(self, seconds: float, limit: float, problem: str):
        super().__init__(f"{problem} with Retry-After {seconds:g}s (more than {limit:g}s)")
        self.seconds, self.limit, self.problem = seconds, limit, problem


class NotRetryable(Exception):
    """A final HTTP answer (a 4xx other than 429)."""

    def __init__(self, response: httpx.Response):
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


class RetriesExhausted(Exception):
    """Every attempt failed; `problem` describes the last one."""

    def __init__(self, problem: str, attempts: int):
        super().__init__(f"{problem} (gave up after {attempts} attempts)")
        self.problem, self.attempts = problem, attempts


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0
    max_retry_after_seconds: float = 120.0
    jitter: float = 0.1  # up to this fraction of the wait is added at random

    def backoff(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """The wait after failed attempt number `attempt` (1-based), jitter included."""
        wait = min(self.backoff_seconds * 2 ** (attempt - 1), self.max_backoff_seconds)
        return wait * (1.0 + self.jitter * rng())


def describe_status(response: httpx.Response) -> str:
    return f"HTTP {response.status_code}"


def send_with_retries(
    send: Callable[[], httpx.Response],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    describe: Callable[[httpx.Response], str] = describe_status,
    on_retry: Callable[[int, str, float], None] | None = None,
    before_attempt: Callable[[], None] | None = None,
) -> tuple[httpx.Response, int]:
    """Call `send` until it answers below 400, then return (response, attempts).

    Raises `NotRetryable` for a final 4xx, `RetryAfterTooLong` when the server asks for too long a
    wait, and `RetriesExhausted` after `policy.max_attempts`. `on_retry(attempt, problem, wait)` is
    called before each wait (for logging and counting); `before_attempt` before every request (e.g.
    a per-host politeness gap)."""
    problem = ""
    for attempt in range(1, policy.max_attempts + 1):
        if before_attempt is not None:
            before_attempt()
        wait = policy.backoff(attempt)
        try:
            response = send()
        except httpx.TransportError as error:  # timeouts, refused/reset connections, protocol errors
            problem = f"{type(error).__name__}: {error}"
        else:
            status = response.status_code
            if status < 400:
                return response, attempt
            if status != 429 and status < 500:
                raise NotRetryable(response)
            problem = describe(response)
            asked = retry_after_seconds(response.headers)
            if asked is not None:
                if asked > policy.max_retry_after_seconds:
                    raise RetryAfterTooLong(asked, policy.max_retry_after_seconds, problem)
                wait = max(wait, asked)
        if attempt == policy.max_attempts:
            break
        if on_retry is not None:
            on_retry(attempt, problem, wait)
        sleep(wait)
    raise RetriesExhausted(problem, policy.max_attempts)
