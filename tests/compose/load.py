"""A steady load on the demo while a fault is made, every answer kept (the ledger)."""

from __future__ import annotations

import threading
import time

import requests

from runner.client import ApiClient


class Load:
    """Both async methods sent in turn at a steady pace, one request at a time."""

    def __init__(self, api: ApiClient, pause: float = 0.25) -> None:
        self.api = api
        self.pause = pause
        self.accepted: list[int] = []
        self.refused: list[str] = []
        # When each answer came, and whether it was a 202: what the demo looked like meanwhile.
        self.answers: list[tuple[float, bool]] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._thread.join()

    def answered_between(self, start: float, end: float) -> list[bool]:
        """Whether each request answered between two moments (``time.monotonic``) was a 202."""
        return [accepted for at, accepted in self.answers if start <= at <= end]

    def _run(self) -> None:
        methods = ("rmq", "celery")
        sent = 0
        while not self._stopped.wait(self.pause):
            method = methods[sent % 2]
            sent += 1
            try:
                response = self.api.session.post(
                    self.api.url("/api/tasks"), json={"method": method, "timeout": 0.1},
                    timeout=30,
                )
            except requests.RequestException as exc:
                self.refused.append(f"{method}: {exc!r}")
                self.answers.append((time.monotonic(), False))
                continue
            self.answers.append((time.monotonic(), response.status_code == 202))
            if response.status_code == 202:
                self.accepted.extend(task["task_num"] for task in response.json()["tasks"])
            else:
                self.refused.append(f"{method}: {response.status_code} {response.text[:200]}")
