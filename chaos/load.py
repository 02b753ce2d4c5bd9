"""A steady, bounded load of both async methods, and the record of every answer.

Open loop, as a stream of users would send: a task every ``1 / rate`` seconds whatever the
answers are doing, so a fault shows as a dip in what is accepted, not as a slower client. Each
request goes on a new connection, so that the kernel spreads them over the API processes that
share the port, and a killed process costs only the requests it was answering.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from common import routes
from common.tasks import Method

log = logging.getLogger(__name__)

# A task's simulated work: short, so the workers have room to catch up after a fault.
WORK = 0.2
# A request unanswered this long counts as "no answer" (the port blackholed, say): the task may
# or may not have been accepted, and the ledger counts only those with a 202.
ANSWER_TIMEOUT = 15.0
# Requests waiting for an answer at once, at most: the load stays bounded while the API is away.
IN_FLIGHT = 64
FAIL_SHARE = 0.05  # tasks sent with fail=true: the ERROR a ledger must tell from a lost task


@dataclasses.dataclass(frozen=True)
class Answer:
    sent_at: float  # epoch seconds, as the API's created_at
    method: str
    fail: bool
    status: int  # 0: no answer (timed out, connection refused or reset)
    latency: float  # seconds
    tasks: tuple[int, ...]  # the numbers the API gave (a 202; a partial 503 lists some too)


class Load:
    """``rate`` tasks a second, ``methods`` in turn, ``fail_share`` of them sent with fail."""

    def __init__(self, base_url: str, rate: float, seed: int,
                 methods: tuple[Method, ...] = (Method.RMQ, Method.CELERY),
                 fail_share: float = FAIL_SHARE) -> None:
        self.url = f"{base_url}{routes.TASKS}"
        self.rate = rate
        self._methods = methods
        self._fail_share = fail_share
        self._rng = random.Random(seed)  # which tasks fail: the same for the same seed
        self.answers: list[Answer] = []
        self.dropped = 0  # ticks with IN_FLIGHT requests already waiting: not sent
        self._lock = threading.Lock()
        self._in_flight = threading.BoundedSemaphore(IN_FLIGHT)
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="load")
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop sending and wait for the answers still on their way."""
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)

    def _run(self) -> None:
        methods = self._methods
        started, tick = time.monotonic(), 0
        while not self._stop.wait(max(0.0, started + tick / self.rate - time.monotonic())):
            method, fail = methods[tick % len(methods)], self._rng.random() < self._fail_share
            tick += 1
            if not self._in_flight.acquire(blocking=False):
                self.dropped += 1
                continue
            self._pool.submit(self._send, method, fail)

    def _send(self, method: Method, fail: bool) -> None:
        body = {"method": method, "timeout": WORK, "fail": fail}
        sent_at, started = time.time(), time.monotonic()
        status, tasks = 0, ()
        try:
            response = requests.post(self.url, json=body, timeout=ANSWER_TIMEOUT,
                                     headers={"Connection": "close"})
            status = response.status_code
            if status in (202, 503):
                tasks = tuple(task["task_num"] for task in response.json().get("tasks", ()))
        except (requests.RequestException, ValueError) as exc:
            log.debug("no answer to a %s task: %r", method, exc)
        finally:
            self._in_flight.release()
        answer = Answer(sent_at, str(method), fail, status, time.monotonic() - started, tasks)
        with self._lock:
            self.answers.append(answer)

    def accepted(self) -> dict[int, Answer]:
        """Every task the API said it has (its number), with the request that made it."""
        with self._lock:
            return {number: answer for answer in self.answers for number in answer.tasks}
