"""The faults of a run, drawn from a seed: which, when, on what, for how long.

Everything here is plain data made by ``random.Random(seed)``, so the same seed gives the same
schedule, and a run that found something can be made again (``make chaos SEED=...``).
"""

from __future__ import annotations

import dataclasses
import enum
import random

from runner.cluster import NODES

# The broker closes a connection that has been silent this long (RMQ_URL's ?heartbeat=): short,
# so that a paused worker loses its connection within the run, as it would after a minute with
# the default.
HEARTBEAT = 5
# No faults in the first seconds (the figures before them are the baseline) nor in the last
# ones (the picture shows the recovery under the same load).
WARM_UP = 10.0
COOL_DOWN = 20.0
MEAN_GAP = 15.0  # seconds between the starts of two faults, on average


class Kind(enum.StrEnum):
    CONSUMER_KILL = "consumer_kill"  # kill -9 of a consumer
    WORKER_KILL = "worker_kill"  # kill -9 of a Celery worker with its pool (the whole group)
    POOL_KILL = "pool_kill"  # kill -9 of one pool process of a Celery worker
    API_KILL = "api_kill"  # kill -9 of one of the API processes sharing the port
    BROKER_RESTART = "broker_restart"  # rabbitmqctl stop_app, then start_app (native node)
    NODE_KILL = "node_kill"  # --cluster: kill -9 of one node's Erlang VM, then started again
    REDIS_RESTART = "redis_restart"  # kill -9 of the task store's Redis, then started again
    WORKER_PAUSE = "worker_pause"  # SIGSTOP of a worker past the heartbeat, then SIGCONT
    API_BLACKHOLE = "api_blackhole"  # the API's port drops every packet (iptables)


# How long a fault lasts, in seconds (drawn from the range); a kill is over at once, and
# supervisor starts the process again.
HOLDS: dict[Kind, tuple[float, float]] = {
    Kind.CONSUMER_KILL: (0, 0),
    Kind.WORKER_KILL: (0, 0),
    Kind.POOL_KILL: (0, 0),
    Kind.API_KILL: (0, 0),
    Kind.BROKER_RESTART: (5, 15),
    Kind.NODE_KILL: (5, 15),
    Kind.REDIS_RESTART: (2, 8),
    Kind.WORKER_PAUSE: (3 * HEARTBEAT, 5 * HEARTBEAT),
    Kind.API_BLACKHOLE: (3, 8),
}
# Two processes of each service run (chaos.stand): a fault picks one of them.
COPIES = 2
TARGETS: dict[Kind, str] = {
    Kind.CONSUMER_KILL: "consumer:consumer-{}",
    Kind.WORKER_KILL: "celery_worker:celery_worker-{}",
    Kind.POOL_KILL: "celery_worker:celery_worker-{}",
    Kind.API_KILL: "api:api-{}",
}


def kinds(cluster: bool) -> list[Kind]:
    """The faults of a run: on the cluster a node is lost instead of the native broker."""
    broker = Kind.NODE_KILL if cluster else Kind.BROKER_RESTART
    return [kind for kind in Kind if kind not in (Kind.NODE_KILL, Kind.BROKER_RESTART)
            or kind is broker]


@dataclasses.dataclass(frozen=True)
class Fault:
    at: float  # seconds after the load started
    kind: Kind
    target: str  # a supervisor program, a cluster node, or "" (the broker, Redis, the port)
    hold: float  # seconds it lasts
    pick: float = 0.0  # a choice made when it happens: which pool process (0 <= pick < 1)

    @property
    def end(self) -> float:
        return self.at + self.hold


def _target(kind: Kind, rng: random.Random) -> str:
    if kind in TARGETS:
        return TARGETS[kind].format(rng.randrange(COPIES))
    if kind is Kind.WORKER_PAUSE:
        return rng.choice([TARGETS[Kind.CONSUMER_KILL], TARGETS[Kind.WORKER_KILL]]).format(
            rng.randrange(COPIES))
    if kind is Kind.NODE_KILL:
        return rng.choice(NODES).name
    return ""


def schedule(seed: int, seconds: float, cluster: bool = False) -> list[Fault]:
    """The faults of a run of ``seconds``, in the order they start.

    Every kind comes at least once, whatever the length (the first round is each kind in a
    shuffled order), then kinds at random. Faults of different kinds may overlap; one of the same
    kind waits until the last has ended (two broker restarts at once are one).
    """
    rng = random.Random(seed)
    window = max(seconds - WARM_UP - COOL_DOWN, 1.0)
    everything = kinds(cluster)
    count = max(len(everything), round(window / MEAN_GAP))
    starts = sorted(WARM_UP + rng.uniform(0, window) for _ in range(count))
    order = rng.sample(everything, len(everything))
    order += [rng.choice(everything) for _ in range(count - len(everything))]
    faults: list[Fault] = []
    ends: dict[Kind, float] = {}
    for at, kind in zip(starts, order, strict=True):
        at = max(at, ends.get(kind, 0.0) + 1.0)
        if at > WARM_UP + window and kind in ends:
            continue  # a repeat pushed out of the window: its kind has come already
        fault = Fault(round(at, 1), kind, _target(kind, rng), round(rng.uniform(*HOLDS[kind]), 1),
                      rng.random())
        ends[kind] = fault.end
        faults.append(fault)
    return sorted(faults, key=lambda fault: fault.at)
