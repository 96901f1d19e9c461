"""The tasks, one module per domain; their names are stable: the API sends them by name."""
