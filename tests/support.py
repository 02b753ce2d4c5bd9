"""Helpers for the integration tests: real processes, a real broker, polling with deadlines."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pika
import requests

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.1, what: str = ""
) -> T:
    """Poll until ``predicate()`` is truthy and return it; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except Exception as exc:  # the service may not be up yet: keep polling
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}"
                         + (f" (last error: {last_error!r})" if last_error else ""))


class Service:
    """One of the demo's processes, started as a user would start it, output kept in a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole process group: no cleanup, no goodbye (Celery's pool children too)."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, as `docker stop` does; SIGKILL if it does not exit in time."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return self.process.returncode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(settings_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RMQ_", "API_", "CALLBACK_"))}
    env.update(settings_env)
    env["PYTHONUNBUFFERED"] = "1"
    # The venv's bin first, so that `celery` is the project's.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def queue_state(rmq_url: str, queue: str) -> tuple[int, int]:
    """(messages ready, consumers) of a queue, exact and immediate: a passive declare."""
    connection = pika.BlockingConnection(pika.URLParameters(rmq_url))
    try:
        result = connection.channel().queue_declare(queue, passive=True)
        return result.method.message_count, result.method.consumer_count
    finally:
        connection.close()


def purge(rmq_url: str, *queues: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(rmq_url))
    try:
        channel = connection.channel()
        for queue in queues:
            try:
                channel.queue_purge(queue)
            except pika.exceptions.ChannelClosedByBroker:  # not declared yet: nothing to purge
                channel = connection.channel()
    finally:
        connection.close()


class ApiClient:
    """The JSON API as a script would use it."""

    def __init__(self, base_url: str, service: Service | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.service = service

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def send(self, method: str, timeout: float, count: int = 1, fail: bool = False) -> list[dict]:
        response = self.session.post(
            self.url("/api/tasks"),
            json={"method": method, "timeout": timeout, "count": count, "fail": fail},
            timeout=30,
        )
        assert response.status_code == 202, response.text
        return response.json()["tasks"]

    def task(self, task_num: int) -> dict:
        response = self.session.get(self.url(f"/api/tasks/{task_num}"), timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def wait_final(self, task_nums: list[int], timeout: float = 30.0) -> list[dict]:
        """Poll until every task is DONE or ERROR; return them in the order asked."""

        def all_final() -> list[dict] | None:
            tasks = [self.task(n) for n in task_nums]
            return tasks if all(t["status"] in ("DONE", "ERROR") for t in tasks) else None

        return wait_for(all_final, timeout, interval=0.2, what=f"tasks {task_nums} to finish")
