"""Every model, imported once so the metadata is complete (Alembic, tests)."""

from tripbook.core.db import Base
from tripbook.core.idempotency import IdempotencyRecord
from tripbook.core.outbox import OutboxEvent, ProcessedEvent
from tripbook.payments.models import Payment
from tripbook.reservations.models import Passenger, Reservation
from tripbook.trips.models import Departure, Trip
from tripbook.users.models import User

metadata = Base.metadata

__all__ = [
    "Departure",
    "IdempotencyRecord",
    "OutboxEvent",
    "Passenger",
    "Payment",
    "ProcessedEvent",
    "Reservation",
    "Trip",
    "User",
    "metadata",
]
