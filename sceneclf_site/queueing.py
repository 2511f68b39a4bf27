"""Sending Celery tasks from requests and services.

Every send is one connection attempt bounded by `BROKER_CONNECT_TIMEOUT` (see settings), and tasks store no
result (`task_ignore_result`), so an unreachable broker costs a request at most about a second, never the
result backend's 20 reconnect attempts. The rows that tasks work on live in the database: when a send fails,
the row stays "waiting for the queue" and the requeue sweep (beat) sends it again."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task

from sceneclf_site.api_errors import BROKER_DOWN_MESSAGE, BrokerUnavailable, is_broker_error

logger = logging.getLogger(__name__)


def send_task(task: Task, *, args: list[Any], task_id: str | None = None) -> str:
    """Publishes `task` now; raises BrokerUnavailable (HTTP 503) when the broker does not answer."""
    try:
        result = task.apply_async(args=args, task_id=task_id)
    except Exception as exc:
        if not is_broker_error(exc):
            raise
        logger.warning("broker unreachable: task %s not sent (%s)", task.name, type(exc).__name__)
        raise BrokerUnavailable(BROKER_DOWN_MESSAGE) from exc
    return result.id


# After a failed quiet send, further quiet sends from this process are skipped for a while: a burst of
# annotations during an outage does not pay one connection attempt each.
QUIET_BACKOFF_SECONDS = 10.0
_quiet_skip_until = 0.0


def send_task_quietly(task: Task, *, args: list[Any]) -> bool:
    """For work that a periodic job or the next request catches up on anyway: a broker outage is logged,
    never raised. Returns whether the task was sent."""
    global _quiet_skip_until
    if time.monotonic() < _quiet_skip_until:
        return False
    try:
        send_task(task, args=args)
    except BrokerUnavailable:
        _quiet_skip_until = time.monotonic() + QUIET_BACKOFF_SECONDS
        return False
    return True
