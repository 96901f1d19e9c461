"""Payment attempts, settlement and refunds through the payment gateway."""
