"""The trip catalogue and its departures' seat inventory."""
