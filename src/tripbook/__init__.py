"""tripbook: a reservation backend for booking trips."""
