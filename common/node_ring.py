"""Which node of RMQ_URL (or RMQ_MANAGEMENT_URL) to try next, and how long to pause first.

The one policy of every client that knows the nodes itself (the API's publisher, the consumer,
the management reader): keep the node that answers; when it fails, go on to the next at once;
pause only when every node failed in a row, twice as long each round up to a cap, and start
again from the shortest pause once a node answers. The clients only connect and wait, each in
its own way (a thread, the event loop).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")

DELAY_MIN = 0.5  # seconds: the first pause, a broker restarting is often back by then
DELAY_MAX = 10.0  # seconds: the longest, so that a client notices a returned node soon


class NodeRing(Generic[T]):
    def __init__(self, nodes: Iterable[T], delay_min: float = DELAY_MIN,
                 delay_max: float = DELAY_MAX) -> None:
        self._nodes = collections.deque(nodes)
        if not self._nodes:
            raise ValueError("a node ring needs a node")
        self._delay_min, self._delay_max = delay_min, delay_max
        self._delay = delay_min
        self._failures = 0  # in a row, since a node last answered

    @property
    def current(self) -> T:
        """The node to try now: the one that answered last, or the next after a failure."""
        return self._nodes[0]

    def __len__(self) -> int:
        return len(self._nodes)

    def answered(self) -> None:
        """The current node answered: it stays current, and the next outage pauses briefly."""
        self._failures = 0
        self._delay = self._delay_min

    def failed(self) -> float:
        """The current node did not answer: the next one is current now. Returns how long to
        pause before trying it: 0 while this round has nodes left to try."""
        self._nodes.rotate(-1)
        self._failures += 1
        if self._failures % len(self._nodes):
            return 0.0
        pause, self._delay = self._delay, min(self._delay * 2, self._delay_max)
        return pause

    def lost(self) -> None:
        """The current node dropped a connection that worked: start again with the next one."""
        self._nodes.rotate(-1)
