"""Name an outage in the error a step fails with: which server, during which operation, no secret.

A step wrapped in `naming_outages(...)` that loses the warehouse, Redis or an exchange host raises
`ServerUnavailable`: an ordinary exception, so the job's `RetryPolicy` (job_tags.STEP_RETRY) retries
the step; when the retries are used up, its message is the run's final error and what the failure
alert says. URLs are shown without their password.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import redis as redis_lib
import sqlalchemy as sa
from sqlalchemy.engine import make_url


class ServerUnavailable(RuntimeError):
    """The warehouse, Redis or an exchange could not be reached while doing `operation`."""


def redacted_url(url: str) -> str:
    """`url` with any password replaced by ***; an unparsable URL is not shown at all."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 — never echo what could not be parsed (it may hold a secret)
        return "<unparsable URL>"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextmanager
def naming_outages(operation: str, *, warehouse_url: str = "", redis_url: str = "") -> Iterator[None]:
    """Re-raise connection failures of the warehouse / Redis / an HTTP host as `ServerUnavailable`."""
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as error:
        where = redacted_url(warehouse_url) if warehouse_url else "the warehouse"
        reason = _first_line(error.orig if error.orig is not None else error)
        raise ServerUnavailable(f"warehouse {where} unavailable during {operation}: {reason}") from error
    except (redis_lib.ConnectionError, redis_lib.TimeoutError) as error:
        where = redacted_url(redis_url) if redis_url else "Redis"
        raise ServerUnavailable(f"Redis {where} unavailable during {operation}: {_first_line(error)}") from error
    except httpx.TransportError as error:
        try:
            host = error.request.url.host
        except RuntimeError:  # no request attached
            host = "an exchange host"
        raise ServerUnavailable(f"{host} unreachable during {operation}: {type(error).__name__}") from error
