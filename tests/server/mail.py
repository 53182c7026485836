"""What the hub mailed: the ``.eml`` files its file mailer writes (the ``settings`` fixture's hub
writes to ``mail_dir``), the tokens in its messages, and a real SMTP server (aiosmtpd) that
keeps what it receives::

    [message] = mailbox(mail_dir)
    token = invitation_token(message)

    inbox = Inbox()
    with serving_smtp(inbox) as port:
        ...  # a hub with mail_url=f"smtp://127.0.0.1:{port}"
        received = inbox.next_message()
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import queue
import re
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword

from tests.sdk.fake_hub import free_port

RESET_TOKEN = re.compile(r"\bpr_[0-9a-f]{32}_[0-9a-f]{32}_[A-Za-z0-9_-]{32,}")
INVITATION_TOKEN = re.compile(r"token=(inv_[A-Za-z0-9_-]+)")


def mailbox(directory: Path) -> list[EmailMessage]:
    """Every message the file mailer wrote to ``directory``, oldest first."""
    if not directory.exists():
        return []
    return [
        _parse(path.read_bytes())
        for path in sorted(directory.iterdir())
        if path.suffix == ".eml" and not path.name.startswith(".")
    ]


def reset_token_in(message: EmailMessage) -> str:
    """The password-reset token a message carries (fails the test if there is none)."""
    return _search(RESET_TOKEN, message).group(0)


def invitation_token(message: EmailMessage) -> str:
    """The invitation token in an invitation email's link (fails the test if there is none)."""
    return _search(INVITATION_TOKEN, message).group(1)


@dataclasses.dataclass
class Received:
    """A message as the SMTP server got it."""

    mail_from: str
    rcpt_tos: list[str]
    login: str | None
    message: EmailMessage


class Inbox:
    """An aiosmtpd handler keeping what it receives, and an authenticator for one account."""

    def __init__(self) -> None:
        self.received: queue.Queue[Received] = queue.Queue()

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        login = session.auth_data.login.decode() if session.authenticated else None
        self.received.put(
            Received(
                str(envelope.mail_from), list(envelope.rcpt_tos), login, _parse(envelope.content)
            )
        )
        return "250 Message accepted"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        accepted = isinstance(auth_data, LoginPassword) and (
            auth_data.login,
            auth_data.password,
        ) == (b"hub", b"p@ss word")
        return AuthResult(success=accepted, auth_data=auth_data)

    def next_message(self) -> Received:
        """The next message received; fails if none arrives within 10 s."""
        try:
            return self.received.get(timeout=10)
        except queue.Empty:
            pytest.fail("the SMTP server received nothing within 10 s")


@contextmanager
def serving_smtp(inbox: Inbox, **options: Any) -> Iterator[int]:
    """An aiosmtpd server delivering to ``inbox`` on a free port of 127.0.0.1; its port."""
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def _search(pattern: re.Pattern[str], message: EmailMessage) -> re.Match[str]:
    body = message.get_body(("plain",))
    assert body is not None
    found = pattern.search(body.get_content())
    assert found is not None, body.get_content()
    return found


def _parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message
