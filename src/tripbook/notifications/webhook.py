"""The loss-tolerant "seats held" ping, sent from a BackgroundTask after the response.

Nothing depends on it arriving (DESIGN §6): a failure is logged, never raised, and never
retried. Durable notifications are emails, sent by workers from the outbox.
"""

from __future__ import annotations

import ssl
import uuid
from functools import cache

import httpx

from tripbook.core.logging import get_logger

log = get_logger(__name__)


@cache
def _ssl_context() -> ssl.SSLContext:
    # Built once: creating it is the costly part of a client made per ping.
    return ssl.create_default_context()


async def ping_seats_held(
    url: str,
    *,
    timeout_s: float,
    reservation_id: uuid.UUID,
    departure_id: int,
    seats: int,
    request_id: str | None,
) -> None:
    headers = {"X-Request-ID": request_id} if request_id else {}
    body = {
        "event": "seats_held",
        "reservation_id": str(reservation_id),
        "departure_id": departure_id,
        "seats": seats,
    }
    try:
        async with httpx.AsyncClient(timeout=timeout_s, verify=_ssl_context()) as client:
            response = await client.post(url, json=body, headers=headers)
            response.raise_for_status()
    except Exception as exc:  # whatever goes wrong, the booking already stands
        log.warning(
            "webhook_ping_failed",
            reservation_id=str(reservation_id),
            error=f"{type(exc).__name__}: {exc}"[:300],
        )
    else:
        log.info("webhook_ping_sent", reservation_id=str(reservation_id))
