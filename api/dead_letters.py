"""The dead-letter queue: look at what died and why, replay it, or throw it away.

A message lands in ``test_direct_rejected`` when the consumer rejects it (``requeue=False``):
the task failed, or the body was not a task at all. RabbitMQ adds an ``x-death`` header saying
from which queue, why and when. Looking goes through the management API (it leaves the messages
in place); replaying and purging go over the API's own AMQP connection.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from api.connection import AMQP_ERRORS, BrokerConnection
from api.dispatch import Dispatcher
from api.errors import ApiError, BrokerUnavailable, describe
from api.management import ManagementClient
from api.model import TaskRequest
from api.queues import QueueAdmin
from api.store import StoreFull
from common import topology
from common.logs import task_log
from common.messages import InvalidField, TaskMessage
from common.tasks import Method

log = logging.getLogger(__name__)

SHOWN_BODY = 300  # characters of a body the panel shows
MAX_REPLAY = 1000  # messages one replay takes, so that a click always ends
GET_TIMEOUT = 5.0


@dataclasses.dataclass(frozen=True)
class Death:
    """The newest ``x-death`` entry: where and why the message died, and how often."""

    reason: str
    queue: str
    count: int
    time: float | None


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    body: str
    body_bytes: int
    death: Death | None
    task_num: int | None  # the task that died, if the body is a task message
    problem: str | None  # why the body is not a task message (so it cannot be replayed)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ReplayReport:
    replayed: list[dict[str, int]] = dataclasses.field(default_factory=list)
    kept: list[dict[str, str]] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "replayed": self.replayed,
            "kept": self.kept,
            "replayed_count": len(self.replayed),
            "kept_count": len(self.kept),
        }


class ReplayFailed(ApiError):
    """The replay stopped halfway (the broker went away, the store is full): told as ``cause``
    is, with ``report`` saying what was done before."""

    def __init__(self, cause: ApiError, report: ReplayReport) -> None:
        super().__init__(cause.error, cause.message_ru, **report.to_dict())
        self.status = cause.status
        self.report = report


def shown(body: bytes) -> str:
    """A body as the panel shows it: text, cut short, undecodable bytes replaced."""
    head = body[: SHOWN_BODY * 4]  # enough bytes for SHOWN_BODY characters: no more is decoded
    text = head.decode("utf-8", errors="replace")
    if len(text) <= SHOWN_BODY and len(head) == len(body):
        return text
    return text[:SHOWN_BODY] + "…"


def problem_with(body: bytes) -> str | None:
    """Why the body is no task message (the consumer's own check), or None if it is one."""
    try:
        TaskMessage.from_json(body)
    except InvalidField as exc:
        return str(exc)
    return None


def dead_letter(message: dict[str, Any]) -> DeadLetter:
    """One message as the management API's ``/get`` returns it, made fit for the panel."""
    payload = message.get("payload", "")
    if message.get("payload_encoding") == "base64":
        try:
            body = base64.b64decode(payload)
        except (binascii.Error, ValueError):
            body = b""
    else:
        body = payload.encode()
    size = message.get("payload_bytes", len(body))
    if len(body) < size:
        # The broker cut it (PEEK_TRUNCATE): a message that long is no task message anyway.
        problem: str | None = f"body: too long to be a task message ({size} bytes)"
        task_num = None
    else:
        problem = problem_with(body)
        task_num = None if problem else TaskMessage.from_json(body).task_num
    properties = message.get("properties")
    headers = properties.get("headers") if isinstance(properties, dict) else None
    return DeadLetter(shown(body), size, _death(headers), task_num, problem)


def _death(headers: Any) -> Death | None:
    # Any publisher may set headers, x-death included: trust no type here.
    deaths = headers.get("x-death") if isinstance(headers, dict) else None
    if not isinstance(deaths, list) or not deaths or not isinstance(deaths[0], dict):
        return None
    newest = deaths[0]  # RabbitMQ keeps the most recent death first
    count, died_at = newest.get("count"), newest.get("time")
    return Death(
        reason=str(newest.get("reason", "")),
        queue=str(newest.get("queue", "")),
        count=count if isinstance(count, int) else 1,
        time=died_at if isinstance(died_at, int | float) else None,
    )


class DeadLetters:
    """The dead-letter panel's three actions, on the API's own connections."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        connection: BrokerConnection,
        queues: QueueAdmin,
        management: ManagementClient,
    ) -> None:
        self._dispatcher = dispatcher
        self._connection = connection
        self._queues = queues
        self._management = management

    async def peek(self, limit: int) -> tuple[list[DeadLetter], int]:
        """Up to ``limit`` dead letters and how many the queue holds in all."""
        raw = await self._management.peek(topology.DEAD_LETTER_QUEUE, limit)
        # Each message carries how many were left behind it when it was taken.
        total = raw[0].get("message_count", len(raw) - 1) + 1 if raw else 0
        return [dead_letter(message) for message in raw], total

    async def replay(self) -> ReplayReport:
        """Publish every dead task message again as a new task; leave the rest where they are.

        "The bug is fixed": a replayed task gets a new number, ``fail=False`` and ``replay_of`` =
        the number of the task that died. Its dead letter is acked only after the broker has
        confirmed the new message, so a crash in between replays it twice rather than never.
        """
        report = ReplayReport()
        # Messages that are no task stay unacked until the end, so that the loop does not get
        # them again; only the last one is held here (a body may be megabytes): one nack with
        # ``multiple`` puts it and every one before it back (the task messages are acked).
        last_kept: AbstractIncomingMessage | None = None
        try:
            async with self._connection.channel() as channel:
                queue = await channel.get_queue(topology.DEAD_LETTER_QUEUE)
                for _ in range(MAX_REPLAY):
                    message = await queue.get(no_ack=False, fail=False, timeout=GET_TIMEOUT)
                    if message is None:
                        break  # the queue is empty
                    try:
                        dead = TaskMessage.from_json(message.body)
                    except InvalidField as exc:
                        last_kept = message
                        report.kept.append({"body": shown(message.body), "problem": str(exc)})
                        continue
                    [task] = await self._dispatcher.submit(
                        TaskRequest(Method.RMQ, dead.timeout, replay_of=dead.task_num)
                    )
                    await message.ack()
                    report.replayed.append({"task_num": task.task_num, "replay_of": dead.task_num})
                    task_log(log, task.task_num).info("replays dead task %s", dead.task_num)
                if last_kept is not None:
                    await last_kept.nack(multiple=True, requeue=True)
        # Whatever was taken and not acked goes back to the queue when the channel closes.
        except (StoreFull, BrokerUnavailable) as exc:  # DispatchFailed is a BrokerUnavailable
            raise ReplayFailed(exc, report) from exc
        except AMQP_ERRORS as exc:
            raise ReplayFailed(BrokerUnavailable(describe(exc)), report) from exc
        return report

    async def purge(self) -> int:
        """Delete every message in the dead-letter queue; return how many there were."""
        return await self._queues.purge(topology.DEAD_LETTER_QUEUE)
