"""A redis-server of a run's own, on a free port, that the run may kill and start again (tests,
``make chaos``): a restart of Redis disturbs nobody else's tasks or Celery results."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis

from runner.polling import wait_for
from runner.services import free_port


class RedisServer:
    """It keeps its data in ``directory`` (an append-only file written on every command), so a
    restart, even after a kill, finds what was stored, as the demo's own Redis does.
    """

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
        )
        with redis.Redis.from_url(self.url) as client:
            wait_for(client.ping, 10, what=f"redis-server on {self.port}")

    def stop(self) -> None:
        """kill -9: what a crash, or `docker kill`, does."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
