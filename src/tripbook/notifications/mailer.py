"""Build a multipart email and hand it to the configured SMTP server (stdlib smtplib)."""

from __future__ import annotations

import smtplib
import ssl
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from tripbook.notifications.rendering import RenderedEmail
from tripbook.settings import Settings


def message_id(settings: Settings, event_id: uuid.UUID) -> str:
    """Stable per outbox event, so a message sent twice is recognisably the same one."""
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "tripbook.local"
    return f"<{event_id}@{domain}>"


def build_message(
    settings: Settings, *, to: str, email: RenderedEmail, event_id: uuid.UUID
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = email.subject
    message["Message-ID"] = message_id(settings, event_id)
    message["Date"] = format_datetime(datetime.now(UTC))
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    return message


def send_message(settings: Settings, message: EmailMessage) -> None:
    """Blocking: call it from a worker (or a thread), never on a request's event loop."""
    with smtplib.SMTP(
        settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_s
    ) as smtp:
        if settings.smtp_starttls:
            # smtplib verifies nothing without a context: check the server's certificate
            # and name, against TRIPBOOK_SMTP_CA_FILE or the system's trust store.
            smtp.starttls(context=ssl.create_default_context(cafile=settings.smtp_ca_file))
        if settings.smtp_username and settings.smtp_password:
            smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
        smtp.send_message(message)
