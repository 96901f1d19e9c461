from tripbook.core.errors import InvalidInput, NotFound


class TripNotFound(NotFound):
    code = "TRIP_NOT_FOUND"
    title = "Trip not found"


class DepartureNotFound(NotFound):
    code = "DEPARTURE_NOT_FOUND"
    title = "Departure not found"


class InvalidSchedule(InvalidInput):
    code = "INVALID_SCHEDULE"
    title = "Invalid departure schedule"
