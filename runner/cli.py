"""What the command-line tools that run the demo under load (``make bench``, ``make chaos``)
share: bounded arguments, and an interruption that still cleans up."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
from collections.abc import Callable

from common.logs import configure_logging
from common.settings import Settings


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def interrupt_on_signals() -> None:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt where the run is, so that every ``finally``
    stops its processes and deletes its vhost on the way out (and starts a stopped broker).

    Python's default for SIGTERM would skip them all. For Ctrl-C inside ``asyncio.run`` Python
    only cancels the running task, and a library that swallows that cancellation lets the run
    go on (seen once in the suite: a Ctrl-C while publishing was lost).
    """
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise_interrupt)


def bounded(low: float, high: float, whole: bool = True) -> Callable[[str], float]:
    """An argparse type: a number (a whole one unless ``whole`` is False) from ``low`` to
    ``high``. The bounds keep a run's load bounded in count and time."""

    def parse(text: str) -> float:
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            kind = "a whole number" if whole else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}, not {value:g}")
        return value

    return parse


def tool_settings() -> Settings:
    """The machine's broker and credentials (RMQ_URL etc. are honoured), with the tool's log at
    INFO."""
    base = Settings.from_env_or_exit()
    configure_logging(dataclasses.replace(base, log_level="INFO"))
    # The runner's helper connections: a line each, and a warning for a queue not declared yet.
    logging.getLogger("pika").setLevel(logging.ERROR)
    return base
