"""wrk, Debian's HTTP load generator: one run against a URL, and what it measured.

wrk sends a body and reports percentiles only through a Lua script. Ours sets the method, body
and headers, and at the end writes one line of JSON that :func:`parse` reads: no parsing of the
human-readable summary, whose units change with the figures (us, ms, s).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

RESULT_MARK = "BENCH_RESULT "

# latency:percentile() and summary.duration are in microseconds. errors.status counts answers
# with a status of 400 and above; the socket errors are connect, read, write and timeout.
SCRIPT = """
wrk.method = "%(method)s"
wrk.body = [[%(body)s]]
wrk.headers["Content-Type"] = "application/json"
%(headers)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests": %%d, "duration_us": %%d, "bad_status": %%d, "socket_errors": %%d,'
    .. ' "p50_us": %%d, "p99_us": %%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclasses.dataclass(frozen=True)
class LoadResult:
    """Requests per second and latency percentiles of one load run."""

    rate: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # answers of 400 and above, and socket errors: a clean run has none


def script(method: str, body: str, headers: Mapping[str, str] | None = None) -> str:
    """The Lua script; ``headers`` are sent beside Content-Type (in the file, not on wrk's
    command line, where every process of the machine could read a token)."""
    headers = dict(headers or {})
    if any("]]" in text for text in (body, *headers, *headers.values())):
        raise ValueError("the body and headers must not contain ']]' (it ends a Lua string)")
    lines = "".join(f"wrk.headers[ [[{name}]] ] = [[{value}]]\n"
                    for name, value in headers.items())
    return SCRIPT % {"method": method, "body": body, "headers": lines, "mark": RESULT_MARK}


def parse(output: str) -> LoadResult:
    """The result line our script's ``done`` wrote, among wrk's own lines."""
    for line in output.splitlines():
        if line.startswith(RESULT_MARK):
            figures = json.loads(line.removeprefix(RESULT_MARK))
            return LoadResult(
                rate=figures["requests"] / (figures["duration_us"] / 1e6),
                p50_ms=figures["p50_us"] / 1000,
                p99_ms=figures["p99_us"] / 1000,
                requests=figures["requests"],
                errors=figures["bad_status"] + figures["socket_errors"],
            )
    raise ValueError(f"no {RESULT_MARK.strip()} line in wrk's output:\n{output}")


def run(
    url: str, body: str, *, connections: int, seconds: float, method: str = "POST",
    headers: Mapping[str, str] | None = None,
) -> LoadResult:
    """``connections`` keep-alive connections from one wrk thread, for ``seconds``."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: `make bench` installs it (apt-get install wrk)")
    with tempfile.TemporaryDirectory() as folder:
        lua = Path(folder) / "post.lua"
        lua.write_text(script(method, body, headers), encoding="utf-8")
        completed = subprocess.run(
            [wrk, "--threads=1", f"--connections={connections}", f"--duration={seconds:.0f}s",
             f"--script={lua}", url],
            capture_output=True, text=True, timeout=seconds + 30, check=True,
        )
    result = parse(completed.stdout)
    log.debug("wrk %s: %s", url, result)
    return result
