"""Consume ``test_direct`` with manual acks, doing the work off the connection's thread.

pika is not thread-safe, and a ``BlockingConnection`` sends heartbeats only while its own thread
runs pika code. So the connection's thread only receives and acks; the work runs in a pool of
task threads (one per prefetched message), and each ack is handed back to the connection's
thread with ``add_callback_threadsafe``. A task of any length keeps its connection alive.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from callback_client import StatusReporter
from common import topology
from common.logs import task_log
from common.messages import InvalidField, TaskMessage
from common.node_ring import NodeRing
from common.settings import Settings
from common.statuses import TaskStatus
from common.tls import pika_parameters
from task_lifecycle import REFUSED_PAUSE, Ending, run_task

log = logging.getLogger(__name__)


class Verdict(enum.Enum):
    """What becomes of a delivered message once its task thread is done with it."""

    ACK = "ack"  # done, or nobody waits for it: gone from the queue
    REJECT = "reject"  # failed for good: to the dead-letter queue
    REQUEUE = "requeue"  # not recorded (the token was refused): back to the queue, for later


def declare_topology(channel: BlockingChannel, queue_type: str) -> None:
    """Declare exactly what ``common.topology`` describes (the API declares the same)."""
    for exchange in topology.EXCHANGES:
        channel.exchange_declare(exchange.name, exchange.type, durable=exchange.durable)
    for queue in topology.queues(queue_type):
        channel.queue_declare(queue.name, durable=queue.durable, arguments=queue.arguments)
    for binding in topology.BINDINGS:
        channel.queue_bind(binding.queue, binding.exchange, binding.routing_key)


class Consumer:
    def __init__(self, settings: Settings, reporter: StatusReporter) -> None:
        self._settings = settings
        self._reporter = reporter
        self._stopping = threading.Event()
        self._connection: pika.BlockingConnection | None = None
        self._nodes = NodeRing(pika_parameters(url, settings.rmq_ca_file) for url in settings.rmq_urls)
        self._channel: BlockingChannel | None = None
        self._pool = ThreadPoolExecutor(
            max_workers=topology.CONCURRENCY, thread_name_prefix="task"
        )
        # This consumer's own lines, each with its worker id.
        self._log = task_log(log, worker_id=reporter.worker_id)

    @property
    def worker_id(self) -> str:
        return self._reporter.worker_id

    def run(self) -> None:
        """Consume until :meth:`stop`. A node that refuses or drops the connection gives way to
        the next (common.node_ring: a pause only once every node failed in a row)."""
        while not self._stopping.is_set():
            node = self._nodes.current
            try:
                channel = self._open(node)
            except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError,
                    ssl.SSLError) as exc:
                pause = self._nodes.failed()
                # A channel error is the broker refusing our topology, and a TLS error its
                # certificate failing the check (RMQ_CA_FILE): a mistake to fix, not an outage.
                level = (logging.ERROR if isinstance(exc, (pika.exceptions.AMQPChannelError,
                                                           ssl.SSLError))
                         else logging.WARNING)
                self._log.log(level, "broker unavailable at %s:%s (%r), %s", node.host,
                              node.port, exc, f"retrying in {pause:.1f} s" if pause else
                              "trying the next node")
                if self._stopping.wait(pause):
                    break
                continue
            self._nodes.answered()
            self._log.info("consuming %s from %s:%s", topology.QUEUE, node.host, node.port)
            pause = 0.0
            try:
                channel.start_consuming()
            except pika.exceptions.AMQPConnectionError as exc:
                self._log.warning("broker unavailable: lost %s:%s (%r), connecting again",
                                  node.host, node.port, exc)
                self._nodes.lost()
            except pika.exceptions.AMQPChannelError as exc:
                self._log.error("channel closed by the broker (%r), connecting again", exc)
                # Counted as a failure: a channel the broker keeps closing must not spin.
                pause = self._nodes.failed()
            finally:
                self._close()
            self._stopping.wait(pause)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._log.info("consumer stopped")

    def _open(self, node: pika.URLParameters) -> BlockingChannel:
        """A connection to ``node`` with the topology declared and consuming set up."""
        self._connection = connection = pika.BlockingConnection(node)
        try:
            self._channel = channel = connection.channel()
            declare_topology(channel, self._settings.rmq_queue_type)
            # At most PREFETCH_COUNT unacked messages at a time: the rest go to other consumers.
            channel.basic_qos(prefetch_count=topology.PREFETCH_COUNT)
            channel.basic_consume(topology.QUEUE, self._on_message)
        except BaseException:
            self._close()
            raise
        return channel

    def _close(self) -> None:
        connection = self._connection
        # Unacked messages go back to the queue when the connection closes: none is lost.
        if connection is not None and connection.is_open:
            connection.close()
        self._connection = self._channel = None

    def stop(self) -> None:
        """Stop consuming; safe to call from a signal handler or another thread."""
        self._stopping.set()
        connection = self._connection
        if connection is not None and connection.is_open:
            # The connection may close between the check and the call: then there is no
            # consuming left to stop.
            with contextlib.suppress(pika.exceptions.ConnectionWrongStateError):
                connection.add_callback_threadsafe(self._stop_consuming)

    def _stop_consuming(self) -> None:
        if self._channel is not None and self._channel.is_open:
            self._channel.stop_consuming()

    def _on_message(
        self, channel: BlockingChannel, method: Basic.Deliver, _props: BasicProperties, body: bytes
    ) -> None:
        try:
            message = TaskMessage.from_json(body)
        except InvalidField as exc:
            # A message we can never process: dead-letter it instead of requeueing it forever.
            self._log.error("bad message %r rejected to %s: %s",
                            body[:200], topology.DEAD_LETTER_QUEUE, exc)
            channel.basic_reject(method.delivery_tag, requeue=False)
            return
        except Exception:
            # A poison message must not kill the consumer (and then the next one, on redelivery).
            self._log.exception("unreadable message %r rejected to %s",
                                body[:200], topology.DEAD_LETTER_QUEUE)
            channel.basic_reject(method.delivery_tag, requeue=False)
            return
        connection = self._connection
        self._pool.submit(
            self._work, connection, channel, method.delivery_tag, message, method.redelivered
        )

    def _work(
        self,
        connection: pika.BlockingConnection,
        channel: BlockingChannel,
        delivery_tag: int,
        message: TaskMessage,
        redelivered: bool,
    ) -> None:
        """Runs in a task thread: never touches the channel except through ``_settle``."""
        ending = run_task(
            message, self._reporter, self._wait_unless_stopping, redelivered=redelivered
        )
        if ending is Ending.INTERRUPTED:
            return  # no ack: the broker redelivers it to another consumer
        verdict = Verdict.ACK
        if ending is Ending.FAILED:
            # No retries here: the failure is final, and the message goes to the dead letters,
            # once the API has recorded the ERROR.
            if self._reporter.report(message.task_num, TaskStatus.ERROR).not_recorded:
                ending = Ending.UNRECORDED
            else:
                verdict = Verdict.REJECT
                task_log(log, message.task_num, self.worker_id).warning(
                    "rejected to %s", topology.DEAD_LETTER_QUEUE)
        if ending is Ending.UNRECORDED:
            # Nothing is lost while CALLBACK_TOKEN is fixed or the API comes back: the message
            # goes back to the queue.
            # The pause is this task thread's; the connection's thread goes on (heartbeats).
            if not self._wait_unless_stopping(REFUSED_PAUSE):
                return  # stopping: unsettled, the broker requeues it
            verdict = Verdict.REQUEUE
        self._settle(connection, channel, delivery_tag, verdict)

    def _wait_unless_stopping(self, seconds: float) -> bool:
        """The simulated work, or a pause: False if a shutdown cut it short."""
        return not self._stopping.wait(seconds)

    @staticmethod
    def _settle(
        connection: pika.BlockingConnection,
        channel: BlockingChannel,
        delivery_tag: int,
        verdict: Verdict,
    ) -> None:
        """Ack, reject or requeue the message from the connection's own thread."""

        def settle() -> None:
            # The delivery tag belongs to this channel: after a reconnect it means nothing, and
            # the broker has already requeued the message.
            if not channel.is_open:
                return
            if verdict is Verdict.ACK:
                channel.basic_ack(delivery_tag)
            elif verdict is Verdict.REJECT:
                channel.basic_reject(delivery_tag, requeue=False)
            else:
                channel.basic_nack(delivery_tag, requeue=True)

        try:
            connection.add_callback_threadsafe(settle)
        except pika.exceptions.ConnectionWrongStateError:
            log.info("connection closed before settling delivery %s: it will be redelivered",
                     delivery_tag)


