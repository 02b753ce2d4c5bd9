"""How a worker tells the API what happened to a task: one pool of HTTP connections, bounded retries.

The consumer and the Celery task both report through :class:`StatusReporter`, so the rules
(token header, retries, what a 404 or 409 means) live in one place.
"""

from __future__ import annotations

import enum
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

import urllib3
from urllib3.util.retry import Retry

from common import routes
from common.logs import task_log
from common.settings import Settings
from common.statuses import TaskStatus
from common.tasks import Method, Source

log = logging.getLogger(__name__)


def make_worker_id(kind: str) -> str:
    """Unique per process, readable on the page: which container or host, which process."""
    return f"{kind}@{socket.gethostname()}:{os.getpid()}"


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    # The API does not know the task (it restarted, or evicted it): nobody waits for the result.
    UNKNOWN_TASK = "unknown task"
    # The task already ended: a redelivered message must not run the work again.
    ALREADY_FINAL = "already final"
    # The API refused the worker's token (401): nothing reported is recorded until the API and
    # the worker have the same CALLBACK_TOKEN. The work must wait, its message must not be lost.
    UNAUTHORIZED = "unauthorized"
    # The API could not be reached, or answered 5xx (its store away, say), even after the
    # retries: the report is not recorded, though the same report may well be later.
    UNREACHABLE = "unreachable"
    # The API refused the report as malformed (another 4xx): sending it again changes nothing.
    FAILED = "failed"

    @property
    def work_unwanted(self) -> bool:
        """After an IN_PROGRESS report: skip the work and settle the message, nobody waits.

        The task ended before this (re)delivery, or the API no longer knows it. A failed report
        is not a reason to skip: the API may just be restarting, the result still counts.
        """
        return self in (Outcome.ALREADY_FINAL, Outcome.UNKNOWN_TASK)

    @property
    def not_recorded(self) -> bool:
        """After a final report: the result is not recorded, and the task must run again later
        (a wrong token, or an API or store that is away), or it would stay unfinished forever."""
        return self in (Outcome.UNAUTHORIZED, Outcome.UNREACHABLE)


POOL_SIZE = 10  # as requests' default: more than the consumer's task threads
REFUSED_LOG_EVERY = 60.0  # seconds: how often a refused token is told in the log, at most


class StatusReporter:
    def __init__(
        self,
        settings: Settings,
        worker_id: str,
        *,
        retries: int = 4,
        backoff: float = 0.25,
        timeout: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = settings.callback_url
        # The JSON API lives on the same server as the callback.
        self._orders_url = urljoin(settings.callback_url, routes.TASKS)
        self._timeout = timeout
        self.worker_id = worker_id
        self._clock = clock
        # The consumer reports from several task threads: one ERROR a minute among them all.
        self._refusal_lock = threading.Lock()
        self._refusal_logged_at: float | None = None
        # urllib3 retries connection errors and 5xx answers with exponential backoff (urllib3 2
        # waits nothing before the first retry, then 0.5 s, 1 s, 2 s): an API restart of a few
        # seconds is ridden out, a dead API costs the worker about 3.5 s per report, never a wedge.
        retry = Retry(
            total=retries,
            backoff_factor=backoff,
            status_forcelist=(500, 502, 503, 504),
            allowed_methods=frozenset({"POST"}),
            raise_on_status=False,
        )
        # A report carries the workers' CALLBACK_TOKEN; Beat's order is a request like any
        # client's to the JSON API, so it carries API_TOKEN.
        self._report_headers = _bearer(settings.callback_token)
        self._order_headers = _bearer(settings.api_token)
        # urllib3 itself, the HTTP client under requests: a report costs half the CPU without
        # requests' layer (sessions, hooks, environment lookups), and every task makes two.
        # Up to POOL_SIZE kept-alive connections, one for each thread that reports at once (the
        # consumer's task threads): with fewer, a thread's connection is closed after its report.
        self._http = urllib3.PoolManager(
            POOL_SIZE, retries=retry, maxsize=POOL_SIZE,
        )

    def report(self, task_num: int, status: TaskStatus, **details: Any) -> Outcome:
        """Tell the API the task's new status, with the report's optional fields: ``redelivered``
        (the broker delivered it again), ``attempt``, ``max_attempts``, ``next_try_at``."""
        payload = {"task_num": task_num, "task_status": str(status), "worker_id": self.worker_id}
        payload.update((name, value) for name, value in details.items() if value is not None)
        task = task_log(log, task_num, self.worker_id)
        try:
            response = self._post(self._url, payload, self._report_headers)
        except urllib3.exceptions.HTTPError as exc:
            task.warning("%s report failed: %s", status, exc)
            return Outcome.UNREACHABLE
        if response.status == 404:
            task.warning("unknown to the API")
            return Outcome.UNKNOWN_TASK
        if response.status == 409:
            task.info("already final, %s ignored", status)
            return Outcome.ALREADY_FINAL
        if response.status == 401:
            self._tell_refused()
            task.debug("%s report refused with 401", status)
            return Outcome.UNAUTHORIZED
        if response.status >= 500:
            task.warning("%s report not recorded (HTTP %s after retries)", status, response.status)
            return Outcome.UNREACHABLE
        if response.status >= 400:
            task.warning("%s report refused with HTTP %s", status, response.status)
            return Outcome.FAILED
        task.debug("reported %s", status)
        return Outcome.ACCEPTED

    def order_task(self, timeout: float) -> int:
        """Ask the API for one new Celery task (Celery Beat's tick); return its number."""
        body = {"method": Method.CELERY, "timeout": timeout, "source": Source.BEAT}
        response = self._post(self._orders_url, body, self._order_headers)
        if response.status != 202:
            raise urllib3.exceptions.HTTPError(
                f"POST {self._orders_url}: HTTP {response.status} {response.data[:200]!r}"
            )
        return response.json()["tasks"][0]["task_num"]

    def _post(self, url: str, body: dict[str, Any],
              headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        return self._http.request("POST", url, json=body, headers=headers, timeout=self._timeout)

    def _tell_refused(self) -> None:
        """Loud, but once a minute: every task meets the same 401 until the token is fixed."""
        with self._refusal_lock:
            now, last = self._clock(), self._refusal_logged_at
            if last is not None and now - last < REFUSED_LOG_EVERY:
                return
            self._refusal_logged_at = now
        task_log(log, worker_id=self.worker_id).error(
            "the API at %s refuses this worker's status reports (401): set the same"
            " CALLBACK_TOKEN for the API and every worker. Until then no task is worked on;"
            " each goes back to its queue", self._url,
        )

    def close(self) -> None:
        self._http.clear()


def _bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``; none when it is empty (the course's open API)."""
    return {"Authorization": f"Bearer {token}"} if token else {}
