from tripbook.core.errors import Conflict, InvalidInput, NotFound


class ReservationNotFound(NotFound):
    code = "RESERVATION_NOT_FOUND"
    title = "Reservation not found"


class SeatsUnavailable(Conflict):
    code = "SEATS_UNAVAILABLE"
    title = "Not enough seats available"


class InvalidReservationState(Conflict):
    code = "INVALID_RESERVATION_STATE"
    title = "The reservation cannot make that transition"


class DepartureClosed(InvalidInput):
    code = "DEPARTURE_CLOSED"
    title = "The departure has already left"


class InvalidPassengers(InvalidInput):
    code = "INVALID_PASSENGERS"
    title = "Passengers do not match the seats requested"


class TooManySeats(InvalidInput):
    code = "TOO_MANY_SEATS"
    title = "Too many seats for one reservation"


class CancellationClosed(Conflict):
    code = "CANCELLATION_CLOSED"
    title = "Too close to departure to cancel; contact us"
