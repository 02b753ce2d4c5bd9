"""The demo's processes: started from the Procfile with given settings, awaited, stopped."""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from common import routes, topology
from common.settings import Settings
from runner.broker import queue_state, with_vhost
from runner.client import ApiClient
from runner.polling import wait_for
from runner.procfile import PROCFILE, ROOT, read_procfile

log = logging.getLogger(__name__)

# Extra arguments for a quick start: mingle and gossip add seconds to a Celery worker's start-up
# and nothing the tests or the bench look at.
QUICK_START: Mapping[str, Sequence[str]] = {
    "celery_worker": ("--without-mingle", "--without-gossip"),
}


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
        log.info("%s started, pid %s, output in %s", name, self.pid, self.log_path)

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
        log.info("%s stopped, exit code %s", self.name, self.process.returncode)
        return self.process.returncode


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(settings_env: dict[str, str]) -> dict[str, str]:
    """This process's environment with the demo's own variables replaced by ``settings_env``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RMQ_", "API_", "CALLBACK_"))}
    env.update(settings_env)
    env["PYTHONUNBUFFERED"] = "1"
    # The venv's bin first, so that the Procfile's `python` and `celery` are the project's.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def demo_settings(base_settings: Settings, vhost: str, state_dir: Path) -> Settings:
    """Settings of one demo under test: its own vhost, its own port, its own task counter."""
    port = free_port()
    return dataclasses.replace(
        base_settings,
        rmq_url=with_vhost(base_settings.rmq_url, vhost),
        api_host="127.0.0.1",
        api_port=port,
        callback_url=f"http://127.0.0.1:{port}{routes.CALLBACK}",
        task_counter_path=str(state_dir / "task_counter"),
        log_level="INFO",
    )


class Services:
    """Starts the demo's processes from the Procfile's lines and stops them all at the end.

    ``extra_args`` maps a service to arguments appended to its Procfile line (see QUICK_START).
    """

    def __init__(self, log_dir: Path, extra_args: Mapping[str, Sequence[str]] | None = None) -> None:
        self.log_dir = log_dir
        self.commands = read_procfile()
        self.extra_args = dict(extra_args or {})
        unknown = set(self.extra_args) - set(self.commands)
        if unknown:  # a misspelt name would silently add nothing
            raise ValueError(f"extra_args for {sorted(unknown)}: {self._not_listed()}")
        self.started: list[Service] = []

    def _not_listed(self) -> str:
        return f"{PROCFILE.name} lists only {', '.join(self.commands)}"

    def command(self, kind: str) -> list[str]:
        """The argv that starts ``kind``: its Procfile line through a shell, as honcho runs it.

        The shell is what makes the line's ``exec`` and ``$$`` work, as under `make dev`.
        """
        if kind not in self.commands:
            raise ValueError(f"no service {kind!r}: {self._not_listed()}")
        extra = " ".join(shlex.quote(arg) for arg in self.extra_args.get(kind, ()))
        return ["/bin/sh", "-c", f"{self.commands[kind]} {extra}".rstrip()]

    def start(
        self, kind: str, settings: Settings, env: Mapping[str, str] | None = None
    ) -> Service:
        """Start ``kind`` with ``settings``; ``env`` adds variables a program reads itself
        (Flower's FLOWER_PORT, say)."""
        args = self.command(kind)
        name = f"{kind}-{len(self.started)}"
        service = Service(name, args, {**service_env(settings.to_env()), **(env or {})},
                          self.log_dir)
        self.started.append(service)
        return service

    def start_api(self, settings: Settings) -> ApiClient:
        service = self.start("api", settings)
        client = ApiClient(f"http://127.0.0.1:{settings.api_port}", service, settings.api_token)

        def ready() -> bool:
            assert service.alive(), service.log()
            health = client.session.get(client.url(routes.HEALTHZ), timeout=2).json()
            return health["broker"] == "connected"

        wait_for(ready, 30, what="the api to connect to the broker")
        return client

    def start_workers(self, kind: str, settings: Settings, count: int = 1) -> list[Service]:
        """Start ``count`` consumers or Celery workers and wait until the broker sees them."""
        queue = topology.QUEUE if kind == "consumer" else topology.CELERY_QUEUE
        try:
            before = queue_state(settings.rmq_url, queue, settings.rmq_ca_file)[1]
        except Exception:  # the queue does not exist until the first worker declares it
            before = 0
        services = [self.start(kind, settings) for _ in range(count)]

        def ready() -> bool:
            for service in services:
                assert service.alive(), service.log()
            return queue_state(settings.rmq_url, queue, settings.rmq_ca_file)[1] >= before + count

        wait_for(ready, 40, interval=0.3, what=f"{count} {kind} to consume {queue}")
        return services

    def stop_all(self) -> None:
        for service in reversed(self.started):
            service.stop()
        self.started.clear()
