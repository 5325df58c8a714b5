"""Local servers speaking the real protocols of the alert channels.

* `WebhookServer` — an HTTP server recording JSON POSTs, answering like Slack's incoming webhook
  (`200 ok` as text/plain) or with scripted answers (429 + Retry-After, 500, 403 invalid_token…).
  Serves the SMS webhook too.
* `SmtpServer` — aiosmtpd on a free loopback port, capturing every message, optionally requiring
  AUTH LOGIN/PLAIN with one user.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from qrl_platform_tests.servers import free_port


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


@dataclass
class ScriptedResponse:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)


class WebhookServer:
    """Records requests; answers with the queued responses in order, then `200 ok` forever."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.responses: deque[ScriptedResponse] = deque()
        self.always: ScriptedResponse | None = None  # answer every request this way (e.g. a 500 outage)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 — the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                server.requests.append(RecordedRequest("POST", self.path, dict(self.headers.items()), body))
                response = server.always or (server.responses.popleft() if server.responses else ScriptedResponse())
                payload = response.body.encode()
                self.send_response(response.status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format, *args) -> None:  # keep test output quiet
                pass

        self.port = free_port()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> WebhookServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.raw, policy=policy.default)


class _Handler:
    def __init__(self, server: SmtpServer):
        self.server = server

    async def handle_DATA(self, _server, _session, envelope):  # noqa: N802 — the aiosmtpd API
        self.server.messages.append(
            ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        )
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self, user: str | None = None, password: str | None = None):
        self.messages: list[ReceivedMail] = []
        self.logins: list[str] = []
        self.port = free_port()
        options: dict = {}
        if user is not None:

            def authenticator(_server, _session, _envelope, _mechanism, auth_data):
                ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
                    user.encode(),
                    (password or "").encode(),
                )
                if ok:
                    self.logins.append(user)
                # handled=False: let aiosmtpd answer 235 / 535 itself.
                return AuthResult(success=ok, handled=False)

            # Plain-text AUTH over loopback for the test (aiosmtpd warns about it once per connection;
            # the test module filters that warning); production SMTP uses STARTTLS.
            options = {"authenticator": authenticator, "auth_required": True, "auth_require_tls": False}
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **options)

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self._controller.stop()
