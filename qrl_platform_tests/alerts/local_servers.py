"""Local servers speaking the real protocols of the alert channels.

* `WebhookServer` — an HTTP server recording JSON POSTs, answering like Slack's incoming webhook
  (`200 ok` as text/plain) or with scripted answers (429 + Retry-After, 500, 403 invalid_token…).
  Serves the SMS webhook too.
* `SmtpServer` — aiosmtpd on a free loopback port, capturing every message, optionally requiring
  AUTH LOGIN/PLAIN with one user.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from qrl_platform_tests.local_http import LocalHttpServer, Reply, Request
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


class WebhookServer(LocalHttpServer):
    """Records requests; answers with the queued responses in order, then `200 ok` forever."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[RecordedRequest] = []
        self.responses: deque[ScriptedResponse] = deque()
        self.always: ScriptedResponse | None = None  # answer every request this way (e.g. a 500 outage)

    def answer(self, request: Request) -> Reply:
        self.requests.append(RecordedRequest(request.method, request.path, dict(request.headers.items()), request.body))
        response = self.always or (self.responses.popleft() if self.responses else ScriptedResponse())
        return Reply(response.status, response.body, dict(response.headers))


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
