"""Retries with exponential backoff and jitter, and which failures deserve one."""

from __future__ import annotations

import random
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from celery import Task
from celery.exceptions import Retry

from tripbook.core.db import is_transient
from tripbook.settings import get_settings
from workers import runtime

T = TypeVar("T")


def backoff_s(retries: int, *, base: float, cap: float) -> float:
    """``base * 2**retries`` capped at ``cap``, half of it random ("equal jitter"), so
    a crowd of retries spreads out yet none comes back at once."""
    delay = min(cap, base * 2.0**retries)
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - timing, not secrets


def is_retryable(exc: BaseException) -> bool:
    """A dependency that may well answer next time: the network, the database, Redis."""
    return isinstance(exc, OSError | TimeoutError) or is_transient(exc)


def retry_later(task: Task[Any, Any], exc: Exception | None = None) -> Retry:
    """Schedule the next attempt; raises ``exc`` itself once the retries are spent."""
    settings = get_settings()
    countdown = backoff_s(
        task.request.retries,
        base=settings.task_retry_backoff_s,
        cap=settings.task_retry_backoff_max_s,
    )
    return task.retry(exc=exc, countdown=countdown)


def is_final_attempt(task: Task[Any, Any]) -> bool:
    return task.max_retries is not None and task.request.retries >= task.max_retries


def run_or_retry(
    task: Task[Any, Any],
    work: Coroutine[Any, Any, T],
    *,
    retryable: Callable[[BaseException], bool] = is_retryable,
) -> T:
    """Run a task's coroutine on the worker's loop; a ``retryable`` failure schedules the
    next attempt with backoff (and is raised itself once the retries are spent)."""
    try:
        return runtime.run(work)
    except Exception as exc:
        if retryable(exc):
            raise retry_later(task, exc) from exc
        raise
