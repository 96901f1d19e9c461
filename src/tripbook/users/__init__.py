"""Accounts, authentication and roles."""
