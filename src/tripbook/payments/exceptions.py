"""Payment attempts, settlement and refunds through the payment gateway."""

from tripbook.core.errors import Conflict, NotFound


class HoldExpired(Conflict):
    code = "HOLD_EXPIRED"
    title = "The hold has expired; reserve the seats again"


class PaymentNotFound(NotFound):
    code = "PAYMENT_NOT_FOUND"
    title = "No payment has been made for this reservation"


class RefundNotFound(NotFound):
    code = "REFUND_NOT_FOUND"
    title = "Refund not found"


class InvalidPaymentState(Conflict):
    code = "INVALID_PAYMENT_STATE"
    title = "The payment cannot make that transition"
