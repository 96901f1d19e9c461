"""Seat holds and the reservation state machine."""
