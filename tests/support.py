"""Helpers for the integration tests: real processes, a real broker, polling with deadlines."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import pika
import requests

from common import topology
from common.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SCRATCH_PREFIX = "test-"
STALE_AFTER = 3600.0  # seconds: no test run lasts this long
T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.1, what: str = ""
) -> T:
    """Poll until ``predicate()`` is truthy and return it; fail with ``what`` at the deadline.

    Other exceptions count as "not yet" (a service still starting refuses connections), but a
    failed ``assert`` inside the predicate fails the wait at once.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except AssertionError:
            raise  # a failed assert in the predicate (a process died, say) ends the wait at once
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


def rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    """Run rabbitmqctl against the local node (through sudo when not root); fail with its output."""
    as_root = [] if os.geteuid() == 0 else ["sudo", "-n"]
    result = subprocess.run(
        [*as_root, "rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"rabbitmqctl {' '.join(args)}: {result.stdout}{result.stderr}"
    return result


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


def with_vhost(rmq_url: str, vhost: str) -> str:
    return urlunsplit(urlsplit(rmq_url)._replace(path="/" + quote(vhost, safe="")))


def management_url(settings: Settings, path: str) -> str:
    return settings.rmq_management_url.rstrip("/") + "/api/" + path


@contextlib.contextmanager
def scratch_vhost(base_settings: Settings, management: requests.Session) -> Iterator[str]:
    """A new, empty vhost on the real broker, deleted afterwards with everything in it.

    Its name carries its birth time, so that vhosts left by a run that was killed can be swept
    away later (see :func:`sweep_stale_vhosts`).
    """
    name = f"{SCRATCH_PREFIX}{int(time.time())}-{uuid.uuid4().hex[:6]}"
    quoted = quote(name, safe="")
    management.put(management_url(base_settings, f"vhosts/{quoted}"), timeout=10).raise_for_status()
    management.put(
        management_url(base_settings, f"permissions/{quoted}/{quote(base_settings.rmq_user)}"),
        json={"configure": ".*", "write": ".*", "read": ".*"},
        timeout=10,
    ).raise_for_status()
    try:
        yield name
    finally:
        management.delete(management_url(base_settings, f"vhosts/{quoted}"), timeout=30)


def sweep_stale_vhosts(base_settings: Settings, management: requests.Session) -> list[str]:
    """Delete scratch vhosts older than an hour: a test run killed midway leaves its own."""
    response = management.get(management_url(base_settings, "vhosts"), timeout=10)
    response.raise_for_status()
    stale = []
    for vhost in response.json():
        name = vhost["name"]
        born = name.removeprefix(SCRATCH_PREFIX).split("-")[0]
        old = born.isdigit() and time.time() - int(born) > STALE_AFTER
        if name.startswith(SCRATCH_PREFIX) and old:
            management.delete(
                management_url(base_settings, f"vhosts/{quote(name, safe='')}"), timeout=30
            )
            stale.append(name)
    return stale


def demo_settings(base_settings: Settings, vhost: str, state_dir: Path) -> Settings:
    """Settings of one demo under test: its own vhost, its own port, its own task counter."""
    port = free_port()
    return dataclasses.replace(
        base_settings,
        rmq_url=with_vhost(base_settings.rmq_url, vhost),
        api_host="127.0.0.1",
        api_port=port,
        callback_url=f"http://127.0.0.1:{port}/update_task_status_api/",
        task_counter_path=str(state_dir / "task_counter"),
        log_level="INFO",
    )


class Services:
    """Starts the demo's processes the way the Procfile does and stops them all at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Service] = []

    def start(self, kind: str, settings: Settings) -> Service:
        commands = {
            "api": [sys.executable, "-m", "api"],
            "consumer": [sys.executable, "-m", "consumer"],
            "celery_worker": [
                str(Path(sys.executable).parent / "celery"), "-A", "celery_app", "worker",
                "--concurrency=3", "--loglevel=INFO", f"--hostname={kind}-{uuid.uuid4().hex[:6]}@%h",
                # Mingle and gossip add seconds of start-up and nothing these tests look at.
                "--without-mingle", "--without-gossip",
            ],
        }
        name = f"{kind}-{len(self.started)}"
        service = Service(name, commands[kind], service_env(settings.to_env()), self.log_dir)
        self.started.append(service)
        return service

    def start_api(self, settings: Settings) -> ApiClient:
        service = self.start("api", settings)
        client = ApiClient(f"http://127.0.0.1:{settings.api_port}", service)

        def ready() -> bool:
            assert service.alive(), service.log()
            health = client.session.get(client.url("/healthz"), timeout=2).json()
            return health["broker"] == "connected"

        wait_for(ready, 30, what="the api to connect to the broker")
        return client

    def start_workers(self, kind: str, settings: Settings, count: int = 1) -> list[Service]:
        """Start ``count`` consumers or Celery workers and wait until the broker sees them."""
        queue = topology.QUEUE if kind == "consumer" else topology.CELERY_QUEUE
        try:
            before = queue_state(settings.rmq_url, queue)[1]
        except Exception:  # the queue does not exist until the first worker declares it
            before = 0
        services = [self.start(kind, settings) for _ in range(count)]

        def ready() -> bool:
            for service in services:
                assert service.alive(), service.log()
            return queue_state(settings.rmq_url, queue)[1] >= before + count

        wait_for(ready, 40, interval=0.3, what=f"{count} {kind} to consume {queue}")
        return services

    def stop_all(self) -> None:
        for service in reversed(self.started):
            service.stop()
        self.started.clear()
