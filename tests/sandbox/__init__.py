"""Tests for the local payment gateway and SMTP sink in deploy/sandbox."""
