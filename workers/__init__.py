"""Celery: the app, beat's schedule and the tasks, which call tripbook services (DESIGN §6)."""
