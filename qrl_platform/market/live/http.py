"""A polite HTTP client for the exchanges: raw-response cache, per-host throttle, bounded retries.

TWSE bans clients that hammer it, so:

* every raw answer worth keeping is cached at `{cache_root}/<host>/<endpoint path>/<YYYY-MM-DD>.json`
  (each path is queried with one fixed set of parameters, so path + date is the key; an endpoint asked
  with several forms, like MOPS's POST summaries, adds a `variant` to the name), and a backfill never
  fetches a date twice. The cache root is a local path or an fsspec URL — by default
  `{QRL_HOME}/cache/raw`, so with an object-store home (`s3://…`) every pod of a Kubernetes backfill
  reads and fills the same cache;
* a request to a host starts at least `min_interval` seconds (default 2 s, env
  QRL_HTTP_MIN_INTERVAL_SECONDS) after the previous one to that host started *and* ended. The time
  lives in a lock file on local disk (under a local cache root, else in the temp directory), so the
  parallel processes of one Dagster run on one machine share the budget (an object store has no locks);
* timeouts, connection errors, 429 and 5xx are retried with exponential backoff (env
  QRL_HTTP_BACKOFF_SECONDS, default 1 s, doubling), honouring Retry-After, at most `max_attempts` times.

The cache is written only through `keep()`, which the source calls *after* the payload parsed: an
HTML page, a throttled or malformed answer, or TPEx answering another day never lands in the cache.
"No data" answers are kept only for dates older than a week (a closed day stays closed, but today's
"no data" just means "not published yet").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fsspec
import httpx

from qrl_platform.calendar import taipei_today
from qrl_platform.http_retry import NotRetryable, RetriesExhausted, RetryAfterTooLong, RetryPolicy, send_with_retries
from qrl_platform.market.schema import BadMarketData
from qrl_platform.settings import HTTP_BACKOFF_SECONDS, HTTP_MIN_INTERVAL_SECONDS

try:  # POSIX: share the throttle between processes; elsewhere only between threads
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

log = logging.getLogger(__name__)

NO_DATA_KEPT_AFTER = dt.timedelta(days=7)
# TWSE answers scripts with a default User-Agent less kindly than browsers.
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


class ExchangeUnavailable(RuntimeError):
    """The exchange did not give a usable HTTP answer (after the bounded retries, or a 4xx)."""


@dataclass
class JsonResponse:
    label: str  # e.g. "TWSE MI_INDEX"
    url: str
    date: dt.date
    payload: Any
    body: bytes
    from_cache: bool
    cache_file: str  # a path inside the cache's fsspec filesystem
    requests: int  # HTTP requests this answer cost (0 from the cache, >1 after retries)


def _safe(part: str) -> str:
    return part.replace(":", "_")


class PoliteClient:
    def __init__(
        self,
        cache_root: str | Path,
        *,
        min_interval: float = HTTP_MIN_INTERVAL_SECONDS,
        backoff: float = HTTP_BACKOFF_SECONDS,
        max_attempts: int = 4,
        max_retry_after: float = 120.0,
        timeout: float = 30.0,
    ):
        self.cache_root = str(cache_root).rstrip("/")
        self.fs, self._root = fsspec.core.url_to_fs(self.cache_root)
        self._local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        # Throttle stamps need a lockable local file; an object-store cache root cannot hold them.
        self._stamps = Path(self._root if self._local else tempfile.gettempdir()) / (
            ".throttle" if self._local else "qrl-throttle"
        )
        self.min_interval = min_interval
        self.backoff = backoff
        self.max_attempts = max_attempts
        self.max_retry_after = max_retry_after
        self.requests_made = 0
        self._http = httpx.Client(
            headers={
                "User-Agent": USER_AGENT,
                "Accept": "application/json, text/javascript, */*; q=0.01",
                "Accept-Language": "zh-TW,zh;q=0.9,en;q=0.8",
            },
            timeout=httpx.Timeout(timeout, connect=10.0),
            follow_redirects=True,
        )

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------------------------------ cache
    def cache_file(self, url: str, date: dt.date, variant: str = "") -> str:
        parts = urlsplit(url)
        name = f"{date.isoformat()}{'.' + _safe(variant) if variant else ''}.json"
        return f"{self._root}/{_safe(parts.netloc)}/{parts.path.strip('/')}/{name}"

    def keep(self, response: JsonResponse, *, no_data: bool = False, verified: bool = False) -> bool:
        """Cache a parsed answer. Call only after the payload parsed; returns whether it was written.

        `verified`: the caller checked the answer is the one for its date (payloads without a `stat`)."""
        if response.from_cache:
            return False
        if no_data:
            if response.date > taipei_today() - NO_DATA_KEPT_AFTER:
                return False  # today's (or a recent) "no data" may only mean "not published yet"
        elif not verified and not _stat_ok(response.payload):
            return False  # belt and braces: only OK answers are kept
        target = response.cache_file
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        if self._local:
            partial = f"{target}.{os.getpid()}.{threading.get_ident()}.tmp"
            Path(partial).write_bytes(response.body)
            os.replace(partial, target)  # atomic: a reader sees the old file or the whole new one
        else:
            self.fs.pipe_file(target, response.body)  # one PUT: an object appears whole or not at all
        return True

    def forget(self, response: JsonResponse) -> None:
        if self.fs.exists(response.cache_file):
            self.fs.rm_file(response.cache_file)

    def _read_cache(self, cache_file: str) -> bytes | None:
        try:
            return self.fs.cat_file(cache_file)
        except FileNotFoundError:
            return None

    # ------------------------------------------------------------------------------------------- fetch
    def get_json(
        self,
        base_url: str,
        path: str,
        params: dict[str, str],
        *,
        date: dt.date,
        label: str,
        decode: Callable[[bytes], Any] | None = None,
        kind: str = "JSON",
        form: dict[str, str] | None = None,
        variant: str = "",
    ) -> JsonResponse:
        """The decoded answer (JSON unless `decode` says otherwise) for one endpoint and date, from the
        cache when it holds one. `decode` raises ValueError on a body that is not `kind`.

        `form`: POST these form fields instead of a GET; `variant` names the cache entry when one path
        and date are asked with several forms (e.g. MOPS's TWSE and TPEx summaries)."""
        decode = decode or _decode
        url = base_url.rstrip("/") + path
        cache_file = self.cache_file(url, date, variant)
        body = self._read_cache(cache_file)
        if body is not None:
            try:
                return JsonResponse(label, url, date, decode(body), body, True, cache_file, 0)
            except ValueError:
                log.warning("discarding unreadable cache entry %s", cache_file)
                self.fs.rm_file(cache_file)
        response, attempts = self._request(url, params, label=label, date=date, form=form)
        try:
            payload = decode(response.content)
        except ValueError:
            snippet = response.content[:80].decode("utf-8", "replace").strip()
            raise BadMarketData(
                f"{label} {date}: the response body is not {kind} (HTTP {response.status_code}, content-type "
                f"{response.headers.get('content-type', '?')!r}, starts with {snippet!r})"
            ) from None
        return JsonResponse(label, str(response.url), date, payload, response.content, False, cache_file, attempts)

    def _request(
        self, url: str, params: dict[str, str], *, label: str, date: dt.date, form: dict[str, str] | None = None
    ) -> tuple[httpx.Response, int]:
        host = urlsplit(url).netloc
        policy = RetryPolicy(
            max_attempts=self.max_attempts, backoff_seconds=self.backoff, max_retry_after_seconds=self.max_retry_after
        )

        def attempt() -> httpx.Response:
            self._wait_turn(host)
            self.requests_made += 1
            return self._send(url, params, host, form)

        def log_retry(number: int, problem: str, wait: float) -> None:
            log.warning("%s %s: %s, retry %d/%d in %.1fs", label, date, problem, number, self.max_attempts - 1, wait)

        try:
            return send_with_retries(attempt, policy, on_retry=log_retry)
        except NotRetryable as final:
            status, where = final.response.status_code, final.response.url
            raise ExchangeUnavailable(f"{label} {date}: HTTP {status} from {where} (not retried)") from None
        except RetryAfterTooLong as slow:
            raise ExchangeUnavailable(
                f"{label} {date}: {slow.problem} with Retry-After {slow.seconds:.0f}s (more than the "
                f"{slow.limit:.0f}s we wait); try again later"
            ) from None
        except RetriesExhausted as exhausted:
            raise ExchangeUnavailable(
                f"{label} {date}: gave up after {exhausted.attempts} attempts ({exhausted.problem}) at {url}"
            ) from None

    def _send(self, url: str, params: dict[str, str], host: str, form: dict[str, str] | None) -> httpx.Response:
        try:
            if form is not None:
                return self._http.post(url, params=params, data=form)
            return self._http.get(url, params=params)
        finally:
            self._done(host)

    def _wait_turn(self, host: str) -> None:
        """Sleep until `min_interval` has passed since the previous request to `host` ended (any process)."""
        with self._stamp(host) as handle:
            delay = _read_stamp(handle) + self.min_interval - time.time()
            if delay > 0:
                time.sleep(delay)
            _write_stamp(handle, time.time())

    def _done(self, host: str) -> None:
        """Count the interval from the end of a request, so a slow answer does not shorten the pause."""
        with self._stamp(host) as handle:
            _write_stamp(handle, max(_read_stamp(handle), time.time()))

    @contextlib.contextmanager
    def _stamp(self, host: str):
        """The host's last-request time, locked against other threads and processes sharing the cache."""
        stamp = self._stamps / _safe(host)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        with _thread_lock(str(stamp)), open(stamp, "a+", encoding="ascii") as handle:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
            yield handle


def _read_stamp(handle) -> float:
    handle.seek(0)
    return float(handle.read().strip() or 0.0)


def _write_stamp(handle, value: float) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(f"{value:.6f}")
    handle.flush()


def _thread_lock(key: str) -> threading.Lock:
    with _thread_locks_guard:
        return _thread_locks.setdefault(key, threading.Lock())


def _decode(body: bytes) -> Any:
    return json.loads(body.decode("utf-8-sig"))


def _stat_ok(payload: Any) -> bool:
    return isinstance(payload, dict) and str(payload.get("stat", "")).strip().lower() == "ok"
