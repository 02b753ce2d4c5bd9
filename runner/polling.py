"""Waiting for a live system: poll a condition until a deadline, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.1, what: str = ""
) -> T:
    """Poll until ``predicate()`` is truthy and return it; fail with ``what`` at the deadline.

    Other exceptions count as "not yet" (a service still starting refuses connections), but a
    failed ``assert`` inside the predicate fails the wait at once.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except AssertionError:
            raise  # a failed assert in the predicate (a process died, say) ends the wait at once
        except Exception as exc:  # the service may not be up yet: keep polling
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}"
                         + (f" (last error: {last_error!r})" if last_error else ""))
