"""The mailer: messages handed to a real local SMTP server (aiosmtpd; plain with a login,
STARTTLS and implicit TLS, with a certificate the test makes) and read back; ``.eml`` files; the
console; and mail URLs that are not one of ours.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import ipaddress
import logging
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agentops_server import Settings
from agentops_server.backends import Email, create_mailer
from agentops_server.backends.mailer import ConsoleMailer
from tests.server.mail import Inbox, serving_smtp

SENDER = "AgentOps Hub <hub@agentops.test>"
RESET = Email(
    to="ada@example.com",
    subject="Reset your password",
    text="Open https://hub.example/reset?token=abc to choose a new password.",
    html="<p>Open <a href='https://hub.example/reset?token=abc'>this link</a>.</p>",
)


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def trusted_tls(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """The server's TLS context; the client trusts its certificate (``SSL_CERT_FILE``)."""
    cert_file, key_file = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


@pytest.fixture
def smtp_server(inbox: Inbox) -> Iterator[int]:
    """A plain SMTP server on 127.0.0.1 that accepts the login hub / "p@ss word"; its port."""
    with serving_smtp(inbox, authenticator=inbox.authenticate, auth_require_tls=False) as port:
        yield port


def mailer_settings(mail_url: str) -> Settings:
    return Settings(mail_url=mail_url, mail_from=SENDER)


def assert_is_the_reset_email(message: EmailMessage) -> None:
    assert message["From"] == SENDER
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Reset your password"
    assert message["Date"]
    assert message["Message-ID"]
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None
    assert html is not None
    assert plain.get_content().strip() == RESET.text
    assert "this link" in html.get_content()


# SMTP


async def test_smtp_mailer_logs_in_and_hands_the_message_to_the_server(
    smtp_server: int, inbox: Inbox
) -> None:
    mailer = create_mailer(mailer_settings(f"smtp://hub:p%40ss%20word@127.0.0.1:{smtp_server}"))

    await mailer.send(RESET)

    received = inbox.next_message()
    assert received.mail_from == "hub@agentops.test"
    assert received.rcpt_tos == ["ada@example.com"]
    assert received.login == "hub"
    assert_is_the_reset_email(received.message)


async def test_smtp_mailer_without_credentials_sends_without_logging_in(
    smtp_server: int, inbox: Inbox
) -> None:
    await create_mailer(mailer_settings(f"smtp://127.0.0.1:{smtp_server}")).send(RESET)

    received = inbox.next_message()
    assert received.login is None
    assert_is_the_reset_email(received.message)


async def test_smtp_mailer_upgrades_with_starttls_before_logging_in(
    inbox: Inbox, trusted_tls: ssl.SSLContext
) -> None:
    with serving_smtp(
        inbox, authenticator=inbox.authenticate, tls_context=trusted_tls, require_starttls=True
    ) as port:
        url = f"smtp+starttls://hub:p%40ss%20word@127.0.0.1:{port}"
        await create_mailer(mailer_settings(url)).send(RESET)

    received = inbox.next_message()
    assert received.login == "hub"
    assert_is_the_reset_email(received.message)


async def test_smtps_mailer_speaks_tls_from_the_first_byte(
    inbox: Inbox, trusted_tls: ssl.SSLContext
) -> None:
    with serving_smtp(inbox, ssl_context=trusted_tls) as port:
        await create_mailer(mailer_settings(f"smtps://127.0.0.1:{port}")).send(RESET)

    assert_is_the_reset_email(inbox.next_message().message)


async def test_smtp_mailer_refuses_a_server_whose_certificate_it_does_not_trust(
    inbox: Inbox, certificate: tuple[Path, Path]
) -> None:
    untrusted = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    untrusted.load_cert_chain(*certificate)
    with (
        serving_smtp(inbox, ssl_context=untrusted) as port,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        await create_mailer(mailer_settings(f"smtps://127.0.0.1:{port}")).send(RESET)

    assert inbox.received.empty()


async def test_a_header_with_a_line_break_is_refused_before_sending(
    smtp_server: int, inbox: Inbox
) -> None:
    mailer = create_mailer(mailer_settings(f"smtp://127.0.0.1:{smtp_server}"))
    injected = dataclasses.replace(RESET, subject="Hi\r\nBcc: everyone@example.com")

    with pytest.raises(ValueError, match="linefeed"):
        await mailer.send(injected)

    assert inbox.received.empty()


# File and console


async def test_file_mailer_writes_one_readable_eml_file_per_message(tmp_path: Path) -> None:
    folder = tmp_path / "mail" / "outbox"
    mailer = create_mailer(mailer_settings(f"file://{folder}"))

    await mailer.send(RESET)
    await mailer.send(dataclasses.replace(RESET, to="grace@example.com", html=None))

    first, second = sorted(folder.iterdir())
    assert [path.suffix for path in (first, second)] == [".eml", ".eml"]
    assert b"\r\n" in first.read_bytes()  # RFC 5322 line endings
    message = email.message_from_bytes(first.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert_is_the_reset_email(message)
    plain_only = email.message_from_bytes(second.read_bytes(), policy=email.policy.default)
    assert plain_only["To"] == "grace@example.com"
    assert not plain_only.is_multipart()


async def test_console_mailer_logs_the_message(caplog: pytest.LogCaptureFixture) -> None:
    mailer = create_mailer(mailer_settings("console"))

    with caplog.at_level(logging.INFO, logger="agentops_server.mail"):
        await mailer.send(RESET)

    [record] = [r for r in caplog.records if r.name == "agentops_server.mail"]
    shown = record.getMessage()
    assert "ada@example.com" in shown
    assert "Reset your password" in shown
    assert RESET.text in shown


def test_console_is_the_default_mailer() -> None:
    assert isinstance(create_mailer(Settings()), ConsoleMailer)


@pytest.mark.parametrize(
    ("mail_url", "message"),
    [
        ("sendmail:///usr/sbin/sendmail", "AGENTOPS_MAIL_URL must be console, file:///folder"),
        ("smtp://", "needs a host"),
        ("smtp://user:hunter2@mail.example:notaport", "bad port"),
        ("file://relative/folder", "file:///path"),
        ("consol", "AGENTOPS_MAIL_URL must be"),
    ],
)
def test_a_mail_url_that_is_not_ours_is_a_clear_error(mail_url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        create_mailer(mailer_settings(mail_url))

    assert "hunter2" not in str(raised.value)
