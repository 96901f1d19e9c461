"""Helpers shared by the test-suite: processes for the local stand-ins of external services."""
