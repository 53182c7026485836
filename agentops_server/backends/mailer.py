"""Outgoing email: one small interface, chosen by ``AGENTOPS_MAIL_URL``.

============================  ================================================================
``mail_url``                  where messages go
============================  ================================================================
``console`` (default)         the log (development: the reset link shows in the hub's output)
``file:///var/mail/hub``      one RFC 5322 ``.eml`` file per message in that folder
``smtp://user:pass@host:25``  an SMTP server, plain (port 25 by default)
``smtp+starttls://…``         SMTP upgraded with STARTTLS (port 587 by default)
``smtps://…``                 SMTP over implicit TLS (port 465 by default)
============================  ================================================================

    mailer = create_mailer(settings)
    await mailer.send(Email(to="ada@example.com", subject="Reset your password", text=body))

Every message is ``From: settings.mail_from``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import smtplib
import ssl
import uuid
from abc import ABC, abstractmethod
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread

from agentops_server.settings import Settings

__all__ = ["ConsoleMailer", "Email", "FileMailer", "Mailer", "SmtpMailer", "create_mailer"]

logger = logging.getLogger("agentops_server.mail")

_SMTP_SCHEMES = {"smtp": ("none", 25), "smtp+starttls": ("starttls", 587), "smtps": ("tls", 465)}
"""URL scheme: (security, default port)."""
_SMTP_TIMEOUT = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class Email:
    """A message to one recipient: plain text, and optionally an HTML alternative."""

    to: str
    subject: str
    text: str
    html: str | None = None


class Mailer(ABC):
    """Sends :class:`Email`\\ s from ``sender``."""

    def __init__(self, sender: str) -> None:
        self.sender = sender

    @abstractmethod
    async def send(self, message: Email) -> None:
        """Deliver ``message``; raises when it cannot be handed over."""

    def compose(self, message: Email) -> EmailMessage:
        """``message`` as an RFC 5322 message (``ValueError`` on a header with a line break)."""
        composed = EmailMessage(policy=SMTP)
        composed["From"] = self.sender
        composed["To"] = message.to
        composed["Subject"] = message.subject
        composed["Date"] = format_datetime(dt.datetime.now(dt.UTC))
        composed["Message-ID"] = make_msgid(domain=_domain_of(self.sender))
        composed.set_content(message.text)
        if message.html is not None:
            composed.add_alternative(message.html, subtype="html")
        return composed


class ConsoleMailer(Mailer):
    """Logs each message (development only: the log then holds what the message holds)."""

    async def send(self, message: Email) -> None:
        """Log ``message`` on the ``agentops_server.mail`` logger."""
        self.compose(message)  # refuse what a real mailer would refuse
        logger.info("email to %s: %s\n%s", message.to, message.subject, message.text)


class FileMailer(Mailer):
    """Writes each message to ``directory`` as a ``.eml`` file, named to sort by time."""

    def __init__(self, sender: str, directory: Path) -> None:
        super().__init__(sender)
        self.directory = directory

    async def send(self, message: Email) -> None:
        """Write ``message`` to a new file; readers never see it half-written."""
        data = self.compose(message).as_bytes()
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
        directory = anyio.Path(self.directory)
        await directory.mkdir(parents=True, exist_ok=True)
        partial = directory / f".{name}.partial"
        await partial.write_bytes(data)
        await partial.rename(directory / name)


class SmtpMailer(Mailer):
    """Hands each message to an SMTP server (smtplib, in a worker thread)."""

    def __init__(
        self,
        sender: str,
        *,
        host: str,
        port: int,
        security: str = "none",
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if security not in ("none", "starttls", "tls"):
            raise ValueError(f"security must be none, starttls or tls, got {security!r}")
        super().__init__(sender)
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self._password = password

    async def send(self, message: Email) -> None:
        """Send ``message``; raises ``smtplib.SMTPException`` or ``OSError`` on failure."""
        composed = self.compose(message)
        await anyio.to_thread.run_sync(self._send, composed)

    def _send(self, message: EmailMessage) -> None:
        context = ssl.create_default_context()
        connection = (
            smtplib.SMTP_SSL(self.host, self.port, timeout=_SMTP_TIMEOUT, context=context)
            if self.security == "tls"
            else smtplib.SMTP(self.host, self.port, timeout=_SMTP_TIMEOUT)
        )
        with connection:
            if self.security == "starttls":
                connection.starttls(context=context)
            if self.username is not None:
                connection.login(self.username, self._password or "")
            connection.send_message(message)


def create_mailer(settings: Settings) -> Mailer:
    """The mailer ``settings.mail_url`` names (see the module docstring); ``ValueError`` if
    the URL is not one of those forms."""
    url = settings.mail_url.strip()
    if url == "console":
        return ConsoleMailer(settings.mail_from)
    parts = urlsplit(url)
    if parts.scheme == "file":
        if not parts.path or parts.netloc:
            raise ValueError(f"AGENTOPS_MAIL_URL: write a folder as file:///path, got {url!r}")
        return FileMailer(settings.mail_from, Path(unquote(parts.path)))
    if parts.scheme in _SMTP_SCHEMES:
        security, default_port = _SMTP_SCHEMES[parts.scheme]
        if not parts.hostname:
            raise ValueError(f"AGENTOPS_MAIL_URL: {parts.scheme}:// needs a host")
        try:
            port = parts.port or default_port
        except ValueError as exc:  # the URL may hold a password: never echo it
            raise ValueError(f"AGENTOPS_MAIL_URL: {parts.scheme}:// has a bad port") from exc
        return SmtpMailer(
            settings.mail_from,
            host=parts.hostname,
            port=port,
            security=security,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )
    raise ValueError(
        "AGENTOPS_MAIL_URL must be console, file:///folder, smtp://host:port, "
        f"smtp+starttls://host:port or smtps://host:port; got a {parts.scheme or url!r} URL"
    )


def _domain_of(address: str) -> str | None:
    _, _, domain = address.rpartition("@")
    return domain.rstrip(">").strip() or None
