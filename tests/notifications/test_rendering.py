"""Reservation emails: every template renders a subject, a text part and an HTML part."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from tripbook.notifications.mailer import build_message
from tripbook.notifications.rendering import (
    SUBJECTS,
    EmailContext,
    UnknownTemplate,
    format_money,
    render,
)
from tripbook.settings import Settings

RESERVATION_ID = uuid.UUID("6f1c1f4e-8d2a-4c55-9a57-0f5b8f7e2a10")


def context(**overrides: object) -> EmailContext:
    values: dict[str, object] = {
        "reservation_id": RESERVATION_ID,
        "recipient_name": "Ada Lovelace",
        "status": "held",
        "seats": 2,
        "passengers": ["Ada Lovelace", "Charles <b>Babbage</b>"],
        "total_amount": 123450,
        "currency": "EUR",
        "trip_title": "Douro Valley",
        "origin": "Lisbon",
        "destination": "Porto",
        "departs_at": datetime(2027, 5, 1, 8, 30, tzinfo=UTC),
        "expires_at": datetime(2027, 4, 1, 12, 0, tzinfo=UTC),
    }
    values.update(overrides)
    return EmailContext(**values)  # type: ignore[arg-type]


class TestRender:
    @pytest.mark.parametrize("template", sorted(SUBJECTS))
    def test_every_template_has_both_parts(self, template: str) -> None:
        email = render(template, context())

        assert str(RESERVATION_ID) in email.subject
        for part in (email.text, email.html):
            assert str(RESERVATION_ID) in part
            assert "Hello Ada Lovelace" in part
            assert "Douro Valley (Lisbon to Porto)" in part
            assert "2027-05-01 08:30 UTC" in part
            assert "EUR 1,234.50" in part
        assert email.html.lstrip().startswith("<!doctype html>")
        assert "<p>" not in email.text

    def test_held_says_until_when(self) -> None:
        email = render("reservation_held", context())

        assert email.subject == f"Seats held: reservation {RESERVATION_ID}"
        assert "held until 2027-04-01 12:00 UTC" in email.text
        assert "<strong>2027-04-01 12:00 UTC</strong>" in email.html

    def test_html_is_escaped_and_text_is_not(self) -> None:
        email = render("reservation_confirmed", context())

        assert "Charles &lt;b&gt;Babbage&lt;/b&gt;" in email.html
        assert "<b>Babbage</b>" not in email.html
        assert "Charles <b>Babbage</b>" in email.text

    def test_unknown_template(self) -> None:
        with pytest.raises(UnknownTemplate):
            render("reservation_teleported", context())

    @pytest.mark.parametrize(
        ("amount", "expected"), [(0, "EUR 0.00"), (5, "EUR 0.05"), (250000, "EUR 2,500.00")]
    )
    def test_money(self, amount: int, expected: str) -> None:
        assert format_money(amount, "EUR") == expected


class TestBuildMessage:
    def test_multipart_with_a_stable_message_id(self, settings: Settings) -> None:
        event_id = uuid.uuid4()
        email = render("reservation_confirmed", context())

        built = build_message(settings, to="ada@example.com", email=email, event_id=event_id)
        parsed = message_from_bytes(built.as_bytes(), policy=policy.default)

        assert isinstance(parsed, EmailMessage)
        assert parsed["Message-ID"] == f"<{event_id}@tripbook.local>"
        assert parsed["To"] == "ada@example.com"
        assert parsed["Subject"] == f"Booking confirmed: reservation {RESERVATION_ID}"
        assert parsed.get_content_type() == "multipart/alternative"
        text = parsed.get_body(preferencelist=("plain",))
        html = parsed.get_body(preferencelist=("html",))
        assert text is not None
        assert html is not None
        assert text.get_content() == email.text
        assert html.get_content() == email.html
