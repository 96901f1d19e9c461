from tripbook.core.errors import Conflict, NotFound


class HoldExpired(Conflict):
    code = "HOLD_EXPIRED"
    title = "The hold has expired; reserve the seats again"


class PaymentNotFound(NotFound):
    code = "PAYMENT_NOT_FOUND"
    title = "No payment has been made for this reservation"
