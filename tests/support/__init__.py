"""Helpers shared by the test-suite, each defined once here: test modules import them from
here, never from one another."""
