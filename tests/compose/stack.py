"""The project's own docker-compose.yml, booted with Docker Compose on Podman and seen from outside.

Tests drive it as a user with a browser and curl would: through the ports it publishes on this
machine (each on a free port through the file's ``*_HOST_PORT`` variables, since a native demo
may hold the defaults). Faults are made the way a user makes them: Compose commands, or a signal
to a container's process.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from common.settings import Settings
from containers import engine
from runner import proc
from runner.client import ApiClient
from runner.polling import wait_for
from runner.procfile import ROOT
from runner.services import free_port

log = logging.getLogger(__name__)

# Every host port the compose file publishes, by the variable that moves it.
PORT_VARIABLES = (
    "RMQ_HOST_PORT", "RMQ_MANAGEMENT_HOST_PORT", "API_HOST_PORT", "PROXY_STATS_HOST_PORT",
    "FLOWER_HOST_PORT",
    "RMQ_1_HOST_PORT", "RMQ_2_HOST_PORT", "RMQ_3_HOST_PORT",
    "RMQ_1_MANAGEMENT_HOST_PORT", "RMQ_2_MANAGEMENT_HOST_PORT", "RMQ_3_MANAGEMENT_HOST_PORT",
    "CLUSTER_API_HOST_PORT", "CLUSTER_FLOWER_HOST_PORT", "PROMETHEUS_HOST_PORT",
    "RMQ_TLS_HOST_PORT", "RMQ_MANAGEMENT_TLS_HOST_PORT",
)
# The course's credentials: the default RMQ_URL's, which the compose file's defaults and
# rmq/definitions.json share.
_DEFAULTS = Settings()
COURSE_USER, COURSE_PASSWORD = _DEFAULTS.rmq_user, _DEFAULTS.rmq_password


def _service_variables() -> set[str]:
    """The variables the services read: a value exported for a native run would override the
    compose file's container defaults, as docs/setup.md warns; the test starts without them."""
    return {field.metadata["env"] for field in dataclasses.fields(Settings)}


class Stack:
    """One Compose project of the repository's docker-compose.yml on a running engine."""

    def __init__(self, service: engine.ApiService, project: str, log_dir: Path,
                 options: tuple[str, ...] = ()) -> None:
        """``options``: Compose's own, before every command (``-f`` an override, say)."""
        self.project = project
        self.options = options
        self.log_dir = log_dir
        self.ports = {variable: free_port() for variable in PORT_VARIABLES}
        unset = _service_variables()
        self.env = {
            **{name: value for name, value in service.client_env().items() if name not in unset},
            **{variable: str(port) for variable, port in self.ports.items()},
            "COMPOSE_PROJECT_NAME": project,
        }

    def compose(self, *args: str, timeout: float = 600.0,
                env: dict[str, str] | None = None) -> str:
        """``docker compose <args>`` in the repository, with ``env`` set on the host beside the
        stack's own variables; its output, or a failure that shows it."""
        started = time.monotonic()
        result = subprocess.run(
            [*engine.COMPOSE, *self.options, *args], cwd=ROOT, env={**self.env, **(env or {})},
            capture_output=True, text=True, timeout=timeout,
        )
        log.info("compose %s: exit %s in %.1f s", " ".join(args), result.returncode,
                 time.monotonic() - started)
        assert result.returncode == 0, f"compose {' '.join(args)}:\n{result.stdout}{result.stderr}"
        return result.stdout

    def up(self, *args: str) -> str:
        """``docker compose up --detach <args>`` that leaves running containers be, as Docker's
        engine does. Podman 4.3's API names a container's network by name where Compose expects
        the network's id, so a plain ``up`` would recreate every running container, brokers
        included, each time it is run."""
        return self.compose("up", "--detach", "--no-recreate", *args)

    def url(self, variable: str) -> str:
        return f"http://127.0.0.1:{self.ports[variable]}"

    def amqp_url(self, variable: str = "RMQ_HOST_PORT") -> str:
        return f"amqp://{COURSE_USER}:{COURSE_PASSWORD}@127.0.0.1:{self.ports[variable]}/"

    def api(self, variable: str = "API_HOST_PORT") -> ApiClient:
        return ApiClient(self.url(variable))

    def prometheus(self, path: str, **params: str) -> Any:
        """The data of an answer of the monitoring profile's Prometheus (``/api/v1/<path>``)."""
        response = requests.get(f"{self.url('PROMETHEUS_HOST_PORT')}/api/v1/{path}",
                                params=params, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", body
        return body["data"]

    def scraped(self) -> set[tuple[str, str]]:
        """The targets Prometheus scraped last time with success, as (job, instance)."""
        targets = self.prometheus("targets", state="active")["activeTargets"]
        return {(target["labels"]["job"], target["labels"]["instance"]) for target in targets
                if target["health"] == "up"}

    def containers(self, *services: str) -> list[dict]:
        """The containers of ``services`` (of every service if none) as ``docker compose ps``
        sees them, running or not: ``Name``, ``Service``, ``State``, ``Health``..."""
        output = self.compose("ps", "--all", "--format", "json", *services)
        # Compose prints one JSON object per line.
        return [json.loads(line) for line in output.splitlines() if line.strip()]

    def wait_running(self, service: str, replicas: int, timeout: float = 120.0) -> list[dict]:
        """Wait until ``replicas`` containers of the service run (healthy, if it has a check)."""

        def ready() -> list[dict] | None:
            running = [c for c in self.containers(service)
                       if c["State"] == "running" and c.get("Health", "") in ("", "healthy")]
            return running if len(running) == replicas else None

        return wait_for(ready, timeout, interval=1.0, what=f"{replicas} {service} running")

    def process_pid(self, container: str) -> int:
        """The host pid of the service's own process in ``container``: the child of its init
        (``init: true`` makes PID 1 an init that only forwards signals and reaps)."""
        init_pid = int(engine.podman("inspect", "--format", "{{.State.Pid}}", container).stdout)
        children = proc.children(init_pid)
        assert len(children) == 1, f"{container}: init {init_pid} has children {children}"
        return children[0]

    def addresses(self, service: str) -> set[str]:
        """The network addresses of the service's running containers."""
        names = [c["Name"] for c in self.containers(service) if c["State"] == "running"]
        output = engine.podman("inspect", "--format",
                               "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", *names)
        return set(output.stdout.split())

    def started_at(self, container: str) -> str:
        """When the container last started: a restart by its policy changes it."""
        return engine.podman("inspect", "--format", "{{.State.StartedAt}}", container).stdout

    def kill_process(self, container: str) -> int:
        """SIGKILL the service's process, as a crash would: the container's restart policy, not
        a person, must bring it back. Returns the pid killed."""
        pid = self.process_pid(container)
        os.kill(pid, signal.SIGKILL)
        log.info("killed %s's process %s", container, pid)
        return pid

    def disconnect(self, network: str, container: str) -> None:
        """Cut ``container`` off ``network``: a partition. Harsher than a pulled cable: Podman
        gives it a new address when it comes back, so its old connections fall silent."""
        engine.podman("network", "disconnect", network, container)
        log.info("%s disconnected from %s", container, network)

    def reconnect(self, network: str, container: str) -> None:
        engine.podman("network", "connect", network, container)
        log.info("%s connected to %s again", container, network)

    def save_logs(self) -> None:
        """Every container's output into the log folder, for a failure to be read after ``down``
        (a second call after ``down`` finds nothing and keeps what the first one saved)."""
        output = self.compose("--profile", "*", "logs", "--no-color", "--timestamps", timeout=120)
        if output:
            (self.log_dir / f"{self.project}.log").write_text(output)
