"""The one base of every local HTTP fake in the tests (exchanges, MOPS, TDCC, MEXC, webhooks).

A fake says what it answers by implementing `answer(request) -> Reply`; this base owns the socket,
the thread, the request log and the start/stop life cycle, so the fakes differ only in the
protocol they speak. Everything listens on a free loopback port and stops with the test.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from qrl_platform_tests.servers import free_port


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Message  # case-insensitive, as HTTP headers are
    body: bytes
    at: float  # time.time() when it arrived
    raw_query: str = ""  # exactly as sent (a signature covers these bytes)


@dataclass
class Reply:
    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/plain; charset=utf-8"

    def encoded(self) -> bytes:
        return self.body.encode("utf-8") if isinstance(self.body, str) else self.body


class LocalHttpServer:
    """Serve `answer(request)` on 127.0.0.1; record every request in `self.received`."""

    def __init__(self) -> None:
        self.received: list[Request] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        # Chosen now, bound at start: a fake that is never started is a port that refuses connections.
        self.port = free_port()

    def answer(self, request: Request) -> Reply:
        raise NotImplementedError

    # ------------------------------------------------------------------ life cycle

    def start(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real servers answer
            # Headers and body leave in separate writes; without this, Nagle + delayed ACK add ~40 ms per answer.
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    self.command,
                    url.path,
                    dict(parse_qsl(url.query, keep_blank_values=True)),
                    self.headers,
                    self.rfile.read(length) if length else b"",
                    time.time(),
                    url.query,
                )
                with fake._lock:
                    fake.received.append(request)
                reply = fake.answer(request)
                body = reply.encoded()
                try:
                    self.send_response(reply.status)
                    headers = {"Content-Type": reply.content_type, **reply.headers}
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout injection)
                    pass

            do_GET = do_POST = do_DELETE = do_PUT = _serve  # noqa: N815 (http.server's naming)

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "") -> str:
        return f"{self.base_url}{path}"
