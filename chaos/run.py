"""One chaos run: the stand, the load, the faults on their schedule, the settling, the ledger.

The result is plain data (the run's JSON): the report draws the table and the picture from it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any

import requests

from chaos import ledger
from chaos.faults import Event, Injector, check_tools
from chaos.load import FAIL_SHARE, WORK, Load
from chaos.schedule import HEARTBEAT, Fault, schedule
from chaos.stand import Stand, stand
from common import routes
from common.settings import Settings
from common.statuses import TaskStatus
from runner.polling import wait_for

log = logging.getLogger(__name__)

# After the load and the last fault: every service back and connected within this, and then
# every accepted task DONE or ERROR within SETTLE_WITHIN more.
BACK_WITHIN = 120.0
SETTLE_WITHIN = 240.0


@dataclasses.dataclass(frozen=True)
class Config:
    seconds: float  # how long the load runs; the faults come within it
    seed: int
    rate: float  # tasks per second, both methods in turn
    cluster: bool = False


def _inject_on_schedule(injector: Injector, plan: list[Fault], started: float,
                        stopping: threading.Event, events: list[Event],
                        threads: list[threading.Thread]) -> None:
    """Start each fault at its time, in a thread of its own (faults may overlap)."""
    for fault in plan:
        if stopping.wait(max(0.0, started + fault.at - time.monotonic())):
            break
        thread = threading.Thread(target=lambda f=fault: events.append(injector.inject(f)),
                                  name=f"fault-{fault.kind}")
        thread.start()
        threads.append(thread)


def _read(stand: Stand, session: requests.Session, number: int) -> dict[str, Any] | None:
    """``GET /api/tasks/N``: the task, or None if the store does not know it."""
    response = session.get(stand.api.url(routes.TASK.format(task_num=number)), timeout=10)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()


def final_states(stand: Stand, numbers: list[int]) -> dict[int, dict[str, Any] | None]:
    """Poll the store until every task is DONE or ERROR (or the deadline passes): what it says
    about each, None for a task it does not know."""
    known: dict[int, dict[str, Any] | None] = {}
    waiting = sorted(numbers)
    session = requests.Session()

    def all_final() -> bool:
        nonlocal waiting
        for number in waiting:
            known[number] = _read(stand, session, number)
        waiting = [number for number in waiting
                   if known[number] and not TaskStatus(known[number]["status"]).is_final]
        log.info("settling: %d of %d tasks not finished yet", len(waiting), len(numbers))
        return not waiting

    try:
        wait_for(all_final, SETTLE_WITHIN, interval=2.0, what="every accepted task to finish")
    except AssertionError as exc:
        log.error("%s", exc)  # the ledger names each task still waiting
    return known


def unacknowledged(stand: Stand, numbers: list[int]) -> dict[int, dict[str, Any]]:
    """The tasks the store has among ``numbers`` (none of them got a 202): a request that timed
    out, or an API process killed, after its task was made. Read once, after the settling."""
    session = requests.Session()
    found = {number: _read(stand, session, number) for number in numbers}
    return {number: task for number, task in found.items() if task is not None}


def run(config: Config, base: Settings, management: requests.Session, state_dir: Path
        ) -> dict[str, Any]:
    check_tools()
    plan = schedule(config.seed, config.seconds, config.cluster)
    log.info("seed %s: %d faults in %.0f s: %s", config.seed, len(plan), config.seconds,
             ", ".join(f"{fault.at:.0f}s {fault.kind}" for fault in plan))
    events: list[Event] = []
    with stand(base, management, state_dir, config.cluster, HEARTBEAT) as demo:
        stopping = threading.Event()
        load = Load(demo.api.base_url, config.rate, config.seed)
        started_at, started = time.time(), time.monotonic()
        load.start()
        threads: list[threading.Thread] = []
        try:
            _inject_on_schedule(Injector(demo, stopping), plan, started, stopping, events,
                                threads)
            stopping.wait(max(0.0, started + config.seconds - time.monotonic()))
        except BaseException:
            stopping.set()  # Ctrl-C: every fault still held is cut short, and undone
            raise
        finally:
            load.stop()
            for thread in threads:
                thread.join()
        faults_over = time.time()
        log.info("load and faults over: %d requests, %d faults", len(load.answers), len(events))
        wait_for(lambda: set(demo.programs()) <= demo.running() and demo.connected(),
                 BACK_WITHIN, interval=1.0, what="every service to run and connect again")
        accepted = load.accepted()
        tasks = final_states(demo, list(accepted))
        settled = time.time()
        # Numbers the API gave out but no client heard of (a 503 discards its task).
        given = range(min(accepted, default=1), max(accepted, default=0) + 1)
        others = unacknowledged(demo, [number for number in given if number not in accepted])
        log_text = demo.demo.log_path.read_text(errors="replace")
    checked = ledger.check(list(accepted), tasks, log_text)
    return results(config, demo.settings, started_at, load, events, tasks, others, log_text,
                   checked, faults_over, settled)


def results(config: Config, settings: Settings, started_at: float, load: Load,
            events: list[Event], tasks: dict[int, dict[str, Any] | None],
            others: dict[int, dict[str, Any]], log_text: str, checked: ledger.Ledger,
            faults_over: float, settled: float) -> dict[str, Any]:
    """The run as JSON data: times in seconds from the start of the load."""

    def since(moment: float | None) -> float | None:
        return None if moment is None else round(moment - started_at, 3)

    runs = ledger.count(ledger.WORKING, log_text)
    statuses: dict[str, int] = {}
    for answer in load.answers:
        statuses[str(answer.status)] = statuses.get(str(answer.status), 0) + 1
    finished = [task["finished_at"] for task in tasks.values() if task and task["finished_at"]]
    return {
        "settings": {"seconds": config.seconds, "seed": config.seed, "rate": config.rate,
                     "cluster": config.cluster, "work": WORK, "fail_share": FAIL_SHARE,
                     "heartbeat": HEARTBEAT},
        # Where it ran: to find what it left, if anything.
        "stand": {"vhost": settings.rmq_vhost, "api_port": settings.api_port,
                  "task_store": settings.task_store},
        "started_at": started_at,
        "faults": [
            {"kind": str(event.kind), "target": event.target, "at": since(event.started),
             "until": since(event.ended), "detail": event.detail, "error": event.error}
            for event in sorted(events, key=lambda event: event.started)
        ],
        "answers": statuses,
        "dropped": load.dropped,
        "requests": [[since(a.sent_at), round(a.latency, 4), a.status] for a in load.answers],
        "tasks": [
            [number, task["method"], task["fail"], since(task["created_at"]),
             since(task["finished_at"]), task["status"], task["redeliveries"], runs[number]]
            for number, task in sorted(tasks.items()) if task is not None
        ],
        "ledger": {
            **{field.name: getattr(checked, field.name)
               for field in dataclasses.fields(checked)},
            "problems": checked.problems()
            + [f"fault {event.kind} {event.target}: {event.error}"
               for event in events if event.error],
        },
        # Tasks the store has though no client got their 202: not the ledger's to account for,
        # but one never finished stays on the page as PENDING.
        "unacknowledged": {
            "finished": sorted(n for n, task in others.items()
                               if TaskStatus(task["status"]).is_final),
            "unfinished": sorted(n for n, task in others.items()
                                 if not TaskStatus(task["status"]).is_final),
        },
        # From the end of the last fault to the last task's end.
        "recovered_in": round(max(finished, default=faults_over) - faults_over, 1),
        "settled_in": round(settled - faults_over, 1),
    }
