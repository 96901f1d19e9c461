"""Reservation emails from Jinja2 templates: a subject, a text part and an HTML part.

Each template name (the outbox payload's ``template``) has ``<name>.txt`` and
``<name>.html`` in ``templates/``; the HTML is autoescaped, and a missing variable is an
error rather than a blank in a customer's inbox.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from tripbook.core.errors import InvalidInput

SUBJECTS = {
    "reservation_held": "Seats held: reservation {reservation_id}",
    "reservation_confirmed": "Booking confirmed: reservation {reservation_id}",
    "payment_failed": "Payment failed: reservation {reservation_id}",
    "reservation_cancelled": "Reservation {reservation_id} cancelled",
    "reservation_expired": "Hold expired: reservation {reservation_id}",
    "refund_issued": "Refund issued: reservation {reservation_id}",
}


class UnknownTemplate(InvalidInput):
    code = "UNKNOWN_EMAIL_TEMPLATE"
    title = "No such email template"


@dataclass(frozen=True, slots=True)
class EmailContext:
    reservation_id: uuid.UUID
    recipient_name: str
    status: str
    seats: int
    passengers: list[str]
    total_amount: int
    currency: str
    trip_title: str
    origin: str
    destination: str
    departs_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def format_money(amount: int, currency: str) -> str:
    # Minor units with two decimals, which covers the currencies trips are sold in.
    return f"{currency} {amount // 100:,}.{amount % 100:02d}"


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["money"] = format_money
    environment.filters["time"] = format_time
    return environment


_ENVIRONMENT = _environment()


def render(template: str, context: EmailContext) -> RenderedEmail:
    if template not in SUBJECTS:
        raise UnknownTemplate(template=template)
    variables = {"r": context}
    return RenderedEmail(
        subject=SUBJECTS[template].format(reservation_id=context.reservation_id),
        text=_ENVIRONMENT.get_template(f"{template}.txt").render(variables),
        html=_ENVIRONMENT.get_template(f"{template}.html").render(variables),
    )
