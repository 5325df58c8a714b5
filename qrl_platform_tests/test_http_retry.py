"""The shared retry policy for idempotent HTTP: what is retried, Retry-After in both forms, jitter."""

import datetime as dt
import email.utils

import httpx
import pytest

from qrl_platform.http_retry import (
    NotRetryable,
    RetriesExhausted,
    RetryAfterTooLong,
    RetryPolicy,
    retry_after_seconds,
    send_with_retries,
)

NOW = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


def test_retry_after_in_seconds_and_as_an_http_date():
    assert retry_after_seconds({"retry-after": "7"}) == 7.0
    assert retry_after_seconds({"retry-after": "-3"}) == 0.0
    date = email.utils.format_datetime(NOW + dt.timedelta(seconds=90), usegmt=True)
    assert retry_after_seconds({"retry-after": date}, now=NOW) == 90.0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_backoff_doubles_is_capped_and_jitter_stays_within_its_fraction():
    policy = RetryPolicy(backoff_seconds=1.0, max_backoff_seconds=5.0, jitter=0.2)
    assert [policy.backoff(n, rng=lambda: 0.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert [policy.backoff(n, rng=lambda: 1.0) for n in (1, 2)] == [1.2, 2.4]
    spread = {round(policy.backoff(1), 6) for _ in range(50)}
    assert len(spread) > 10 and all(1.0 <= wait <= 1.2 for wait in spread)


def _scripted(*answers):
    calls = []

    def send():
        answer = answers[len(calls)]
        calls.append(answer)
        if isinstance(answer, Exception):
            raise answer
        status, headers = answer
        return httpx.Response(status, headers=headers, request=httpx.Request("GET", "http://x/"))

    return send, calls


def test_transport_errors_429_and_5xx_are_retried_and_retry_after_is_honoured():
    send, calls = _scripted(httpx.ConnectTimeout("slow"), (503, {}), (429, {"Retry-After": "3"}), (200, {}))
    waits, retries = [], []
    policy = RetryPolicy(max_attempts=4, backoff_seconds=0.1, jitter=0.0)
    response, attempts = send_with_retries(
        send, policy, sleep=waits.append, on_retry=lambda n, problem, wait: retries.append((n, problem))
    )
    assert (response.status_code, attempts, len(calls)) == (200, 4, 4)
    assert waits == [0.1, 0.2, 3.0]
    assert retries == [(1, "ConnectTimeout: slow"), (2, "HTTP 503"), (3, "HTTP 429")]


def test_final_answers_and_limits():
    send, calls = _scripted((404, {}))
    with pytest.raises(NotRetryable) as final:
        send_with_retries(send, RetryPolicy(), sleep=lambda s: None)
    assert final.value.response.status_code == 404 and len(calls) == 1

    send, _ = _scripted((429, {"Retry-After": "600"}))
    with pytest.raises(RetryAfterTooLong, match=r"HTTP 429 with Retry-After 600s \(more than 120s\)"):
        send_with_retries(send, RetryPolicy(), sleep=lambda s: None)

    send, calls = _scripted((500, {}), (500, {}), (500, {}))
    with pytest.raises(RetriesExhausted, match=r"HTTP 500 \(gave up after 3 attempts\)"):
        send_with_retries(send, RetryPolicy(max_attempts=3), sleep=lambda s: None)
    assert len(calls) == 3
