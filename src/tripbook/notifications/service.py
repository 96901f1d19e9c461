"""Reservation emails, sent by the ``email.send`` task once per outbox event."""

from __future__ import annotations

import uuid
from functools import partial

import anyio
from sqlalchemy.ext.asyncio import AsyncSession

from tripbook.core.logging import get_logger
from tripbook.core.outbox import claim_processing
from tripbook.notifications import repository
from tripbook.notifications.mailer import build_message, send_message
from tripbook.notifications.rendering import EmailContext, render
from tripbook.settings import Settings

log = get_logger(__name__)

EMAIL_TASK = "email.send"


async def send_reservation_email(
    session: AsyncSession,
    *,
    settings: Settings,
    event_id: uuid.UUID,
    template: str,
    reservation_id: uuid.UUID,
) -> bool:
    """Send the email for ``event_id`` unless it was sent already; True when sent now.

    The event is claimed in the caller's transaction and the mail handed over before it
    commits: a failure to send rolls the claim back, so the retry sends it. (A crash
    between the SMTP "250" and the commit sends it twice, with the same Message-ID.)
    """
    if not await claim_processing(session, event_id, EMAIL_TASK):
        log.info("email_already_sent", template=template)
        return False
    details = await repository.reservation_details(session, reservation_id)
    if details is None:
        log.error("email_reservation_missing", reservation_id=str(reservation_id))
        return False
    reservation = details.reservation
    context = EmailContext(
        reservation_id=reservation.id,
        recipient_name=details.owner.full_name,
        status=reservation.status,
        seats=reservation.seats,
        passengers=[passenger.full_name for passenger in reservation.passengers],
        total_amount=reservation.total_amount,
        currency=reservation.currency,
        trip_title=details.trip.title,
        origin=details.trip.origin,
        destination=details.trip.destination,
        departs_at=details.departure.departs_at,
        expires_at=reservation.expires_at,
    )
    message = build_message(
        settings, to=details.owner.email, email=render(template, context), event_id=event_id
    )
    await anyio.to_thread.run_sync(partial(send_message, settings, message))
    log.info("email_sent", template=template, reservation_id=str(reservation_id))
    return True
