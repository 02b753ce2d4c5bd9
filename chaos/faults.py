"""Each fault of the schedule done to the running stand, and undone: every fault that stops
something (the broker, Redis, a worker, the port) starts it again in a ``finally``, so neither
an error nor Ctrl-C leaves the shared broker stopped."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import threading
import time

from chaos.schedule import Fault, Kind
from chaos.stand import Stand
from runner import cluster as rmq_cluster
from runner import proc
from runner.broker import rabbitmqctl
from runner.polling import wait_for

log = logging.getLogger(__name__)

# Supervisor starts a killed service again within seconds; a fault waits this long at most for
# its target to run (it may have been killed by the fault before).
RUNNING_WITHIN = 60.0
BLACKHOLE_COMMENT = "make chaos: api port blackholed"


class Unavailable(RuntimeError):
    """A tool a fault needs is missing or not allowed: the run cannot start."""


@dataclasses.dataclass
class Event:
    """A fault as it happened: epoch seconds, what it hit, and how."""

    kind: Kind
    target: str
    started: float
    ended: float = 0.0
    detail: str = ""
    error: str = ""  # the fault could not be done or undone: the run fails


def as_root(*command: str) -> subprocess.CompletedProcess[str]:
    """A root-only command (iptables), through sudo when not root, as rabbitmqctl is run."""
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    result = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=60,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stdout}{result.stderr}".strip())
    return result


def check_tools() -> None:
    """Fail before anything starts if a fault could not be done."""
    # rabbitmqctl restarts the native node, or asks the cluster's nodes who they are.
    needed = ["redis-server", "iptables", "rabbitmqctl"]
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if missing:
        raise Unavailable(f"make chaos needs {', '.join(missing)} (make chaos installs them)")
    try:
        as_root("iptables", "-S", "INPUT")
    except RuntimeError as exc:
        raise Unavailable(
            f"blackholing the API's port needs iptables as root (or sudo without a password;"
            f" id -u is {os.geteuid()}): {exc}") from None


def _blackhole_rule(port: int) -> list[str]:
    return ["INPUT", "-p", "tcp", "--dport", str(port), "-m", "comment", "--comment",
            BLACKHOLE_COMMENT, "-j", "DROP"]


class Injector:
    """Does the faults to one stand. ``stopping`` cuts every hold short (Ctrl-C, the run's end)."""

    def __init__(self, stand: Stand, stopping: threading.Event) -> None:
        self.stand = stand
        self.stopping = stopping

    def inject(self, fault: Fault) -> Event:
        event = Event(fault.kind, fault.target, time.time())
        log.info("fault %s %s for %.1f s", fault.kind, fault.target or "", fault.hold)
        try:
            event.detail = getattr(self, f"_{fault.kind}")(fault)
        except Exception as exc:
            log.exception("fault %s %s failed", fault.kind, fault.target)
            event.error = repr(exc)
        event.ended = time.time()
        log.info("fault %s %s over after %.1f s: %s", fault.kind, fault.target or "",
                 event.ended - event.started, event.error or event.detail)
        return event

    # --- the services under supervisor: kill -9, supervisor starts them again ---------------

    def _pid(self, program: str) -> int:
        return wait_for(lambda: self.stand.demo.pid(program), RUNNING_WITHIN, interval=0.5,
                        what=f"{program} to run")

    def _back(self, program: str, killed: int) -> str:
        """Wait for supervisor to run ``program`` again: the fault lasts until then."""

        def restarted() -> int:
            pid = self.stand.demo.pid(program)
            return 0 if pid == killed else pid

        pid = wait_for(restarted, RUNNING_WITHIN, interval=0.5,
                       what=f"supervisor to start {program} again")
        return f"pid {killed} killed, back as {pid}"

    def _kill(self, program: str, group: bool) -> str:
        pid = self._pid(program)
        # A Celery worker's pool processes share its process group: group=True kills them too.
        (os.killpg if group else os.kill)(pid, signal.SIGKILL)
        return self._back(program, pid)

    def _consumer_kill(self, fault: Fault) -> str:
        return self._kill(fault.target, group=False)

    def _worker_kill(self, fault: Fault) -> str:
        return self._kill(fault.target, group=True)

    def _api_kill(self, fault: Fault) -> str:
        return self._kill(fault.target, group=False)

    def _pool_kill(self, fault: Fault) -> str:
        """One pool process: the worker starts another, its task is redelivered."""
        worker = self._pid(fault.target)
        pool = wait_for(lambda: sorted(proc.children(worker)), RUNNING_WITHIN, interval=0.5,
                        what=f"{fault.target}'s pool")
        child = pool[int(fault.pick * len(pool))]
        os.kill(child, signal.SIGKILL)
        return f"pool process {child} of {worker} killed"

    # --- stopped for a while, then started again --------------------------------------------

    def _hold(self, fault: Fault) -> None:
        """The fault's length, or less if the run is stopping."""
        self.stopping.wait(fault.hold)

    def _broker_restart(self, fault: Fault) -> str:
        rabbitmqctl("stop_app")
        try:
            self._hold(fault)
        finally:
            try:
                rabbitmqctl("start_app")
                rabbitmqctl("await_startup")
            except AssertionError:
                # Other people's tests and demos share this broker: say so, loudly.
                log.critical("the local RabbitMQ may still be stopped: sudo rabbitmqctl start_app")
                raise
        return "stop_app, start_app"

    def _node_kill(self, fault: Fault) -> str:
        [node] = [node for node in rmq_cluster.NODES if node.name == fault.target]
        rmq_cluster.kill_node(node)
        try:
            self._hold(fault)
        finally:
            rmq_cluster.restart_node(node)
        return f"{node.erlang_name} killed, rejoined"

    def _redis_restart(self, fault: Fault) -> str:
        self.stand.redis.stop()
        try:
            self._hold(fault)
        finally:
            self.stand.redis.start()
        return "killed, started on its append-only file"

    def _worker_pause(self, fault: Fault) -> str:
        pid = self._pid(fault.target)
        # A Celery worker with its pool; a consumer is one process.
        send = os.killpg if fault.target.startswith("celery_worker") else os.kill
        send(pid, signal.SIGSTOP)
        try:
            self._hold(fault)
        finally:
            # Killed meanwhile by another fault: nothing to continue.
            with contextlib.suppress(ProcessLookupError):
                send(pid, signal.SIGCONT)
        return f"pid {pid} stopped, continued"

    def _api_blackhole(self, fault: Fault) -> str:
        rule = _blackhole_rule(self.stand.settings.api_port)
        as_root("iptables", "-I", *rule)
        try:
            self._hold(fault)
        finally:
            as_root("iptables", "-D", *rule)
        return f"port {self.stand.settings.api_port} dropped every packet"
