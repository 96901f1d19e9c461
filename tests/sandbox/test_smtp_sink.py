"""The SMTP sink over real SMTP and HTTP: what the email tests will read back."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import uuid
from collections.abc import Iterator
from datetime import datetime
from email.message import EmailMessage
from email.utils import make_msgid

import pytest

from tests.support.behaviour_smtp import TlsFiles, run_smtp_sink_on, self_signed_certificate
from tests.support.sandboxes import SmtpSink, free_port, run_smtp_sink
from tests.support.workers import eventually

SENDER = "bookings@tripbook.test"


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpSink]:
    with run_smtp_sink(tmp_path_factory.mktemp("smtp-sink")) as running:
        yield running


def new_address(name: str = "traveller") -> str:
    return f"{name}-{uuid.uuid4().hex[:12]}@example.com"


def plain_message(to: str, subject: str = "Plain") -> EmailMessage:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="tripbook.test")
    message.set_content("Just text.\n")
    return message


def send(sink: SmtpSink, message: EmailMessage, to_addrs: list[str] | None = None) -> None:
    with smtplib.SMTP(sink.smtp_host, sink.smtp_port, timeout=5) as smtp:
        smtp.send_message(message, to_addrs=to_addrs)


class TestReceive:
    def test_multipart_text_and_html(self, sink: SmtpSink) -> None:
        to = new_address()
        message = plain_message(to, subject="Réservation confirmée TB-1234")
        message.set_content("Total: 12,50 €\n")
        message.add_alternative("<p>Total: <strong>12,50 €</strong></p>\n", subtype="html")

        send(sink, message)

        [item] = sink.messages(to=to)
        assert item["mail_from"] == SENDER
        assert item["rcpt_tos"] == [to]
        assert item["subject"] == "Réservation confirmée TB-1234"
        assert item["message_id"] == message["Message-ID"]
        assert item["headers"]["To"] == to
        assert item["headers"]["Content-Type"].startswith("multipart/alternative")
        assert item["text"] == "Total: 12,50 €\n"
        assert item["html"] == "<p>Total: <strong>12,50 €</strong></p>\n"
        assert datetime.fromisoformat(item["received_at"]).tzinfo is not None

    def test_plain_only_has_no_html(self, sink: SmtpSink) -> None:
        to = new_address()

        send(sink, plain_message(to))

        [item] = sink.messages(to=to)
        assert (item["text"], item["html"]) == ("Just text.\n", None)

    def test_a_plain_session_is_recorded_as_such(self, sink: SmtpSink) -> None:
        to = new_address()

        send(sink, plain_message(to))

        [item] = sink.messages(to=to)
        assert (item["tls"], item["auth_login"]) == (False, None)

    def test_logs_each_message(self, sink: SmtpSink) -> None:
        message = plain_message(new_address())

        send(sink, message)

        # Logged before the sink answers 250, so it is in the file once send() returns.
        assert message["Message-ID"] in sink.log()


class TestFilterByRecipient:
    def test_only_that_recipient(self, sink: SmtpSink) -> None:
        alice, bob = new_address("alice"), new_address("bob")
        send(sink, plain_message(alice, subject="for alice"))
        send(sink, plain_message(bob, subject="for bob"))

        assert [m["subject"] for m in sink.messages(to=alice)] == ["for alice"]
        assert [m["subject"] for m in sink.messages(to=bob.upper())] == ["for bob"]
        assert sink.messages(to=new_address("nobody")) == []

    def test_matches_envelope_recipients(self, sink: SmtpSink) -> None:
        to, hidden = new_address("to"), new_address("bcc")

        send(sink, plain_message(to, subject="with bcc"), to_addrs=[to, hidden])

        [item] = sink.messages(to=hidden)
        assert item["subject"] == "with bcc"
        assert item["rcpt_tos"] == [to, hidden]


class TestClear:
    def test_delete_clears(self, sink: SmtpSink) -> None:
        send(sink, plain_message(new_address()))
        assert sink.messages() != []

        sink.clear()

        assert sink.messages() == []


class TestHold:
    @pytest.fixture
    def held_sink(self, sink: SmtpSink) -> Iterator[SmtpSink]:
        try:
            yield sink
        finally:
            sink.release()

    async def test_stalls_until_released(self, held_sink: SmtpSink) -> None:
        to, other = new_address("held"), new_address("free")
        held_sink.hold(to)

        sending = asyncio.create_task(asyncio.to_thread(send, held_sink, plain_message(to)))
        await eventually(lambda: held_sink.waiting() == [to], what="the message to stall")
        send(held_sink, plain_message(other))  # mail to anyone else flows as usual

        assert held_sink.messages(to=to) == []
        assert len(held_sink.messages(to=other)) == 1
        held_sink.release()
        await sending
        assert len(held_sink.messages(to=to)) == 1
        assert held_sink.waiting() == []

    async def test_a_sender_gone_while_stalled_delivers_nothing(self, held_sink: SmtpSink) -> None:
        to = new_address("gone")
        held_sink.hold(to)

        def send_and_give_up() -> None:
            smtp = smtplib.SMTP(held_sink.smtp_host, held_sink.smtp_port, timeout=5)
            assert smtp.sock is not None
            smtp.sock.settimeout(0.3)
            # smtplib hangs up when the answer to DATA does not come in time.
            with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
                smtp.send_message(plain_message(to))
            assert smtp.sock is None

        await asyncio.to_thread(send_and_give_up)
        await eventually(lambda: held_sink.waiting() == [], what="the sink to notice")
        held_sink.release()

        assert held_sink.messages(to=to) == []


USER, PASSWORD = "tripbook-mailer", "sink-password-1"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return self_signed_certificate(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture(scope="module")
def secure_sink(
    tmp_path_factory: pytest.TempPathFactory, certificate: TlsFiles
) -> Iterator[SmtpSink]:
    """The sink requiring STARTTLS and a login."""
    log_dir = tmp_path_factory.mktemp("smtp-sink-secure")
    with run_smtp_sink_on(log_dir, free_port(), tls=certificate, login=(USER, PASSWORD)) as running:
        yield running


def connect(sink: SmtpSink, certificate: TlsFiles, *, starttls: bool = True) -> smtplib.SMTP:
    smtp = smtplib.SMTP(sink.smtp_host, sink.smtp_port, timeout=5)
    if starttls:
        # Verified against the certificate itself, as a client trusting it would.
        smtp.starttls(context=ssl.create_default_context(cafile=str(certificate.cert)))
    return smtp


class TestStartTlsAndLogin:
    def test_records_an_authenticated_tls_session(
        self, secure_sink: SmtpSink, certificate: TlsFiles
    ) -> None:
        to = new_address()

        with connect(secure_sink, certificate) as smtp:
            smtp.login(USER, PASSWORD)
            smtp.send_message(plain_message(to))

        [item] = secure_sink.messages(to=to)
        assert (item["tls"], item["auth_login"]) == (True, USER)
        assert f"tls=True auth_login={USER}" in secure_sink.log()

    def test_refuses_mail_without_starttls(
        self, secure_sink: SmtpSink, certificate: TlsFiles
    ) -> None:
        to = new_address()

        with (
            connect(secure_sink, certificate, starttls=False) as smtp,
            pytest.raises(smtplib.SMTPSenderRefused) as refused,
        ):
            smtp.send_message(plain_message(to))

        assert refused.value.smtp_code == 530
        assert secure_sink.messages(to=to) == []

    def test_refuses_mail_without_login(self, secure_sink: SmtpSink, certificate: TlsFiles) -> None:
        to = new_address()

        with (
            connect(secure_sink, certificate) as smtp,
            pytest.raises(smtplib.SMTPSenderRefused) as refused,
        ):
            smtp.send_message(plain_message(to))

        assert refused.value.smtp_code == 530
        assert secure_sink.messages(to=to) == []

    def test_refuses_a_wrong_password(self, secure_sink: SmtpSink, certificate: TlsFiles) -> None:
        with (
            connect(secure_sink, certificate) as smtp,
            pytest.raises(smtplib.SMTPAuthenticationError) as refused,
        ):
            smtp.login(USER, "not-the-password")

        assert refused.value.smtp_code == 535
