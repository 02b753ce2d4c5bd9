"""``python -m consumer``: run one consumer process until SIGTERM or Ctrl-C."""

import logging
import signal

from callback_client import StatusReporter, make_worker_id
from common.logs import configure_logging
from common.settings import Settings
from consumer.consumer import Consumer


def main() -> None:
    settings = Settings.from_env_or_exit()
    configure_logging(settings)
    # pika logs every connection attempt at INFO, and a refused one as a screenful of ERRORs;
    # our own line ("broker unavailable at ..., retrying in N s") already says what happens.
    logging.getLogger("pika").setLevel(logging.WARNING)
    logging.getLogger("pika.adapters").setLevel(logging.CRITICAL)
    reporter = StatusReporter(settings, make_worker_id("consumer"))
    consumer = Consumer(settings, reporter)
    # `docker stop` sends SIGTERM: stop consuming; unacked messages return to the queue.
    signal.signal(signal.SIGTERM, lambda *_: consumer.stop())
    signal.signal(signal.SIGINT, lambda *_: consumer.stop())
    try:
        consumer.run()
    finally:
        reporter.close()


if __name__ == "__main__":
    main()
