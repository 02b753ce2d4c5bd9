"""What Linux's /proc tells about a process: its state, children, CPU time and memory (tests and
bench)."""

from __future__ import annotations

import os
from pathlib import Path


def stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name, from the state on (field 3).

    The name is in parentheses and may itself hold spaces and parentheses: the last ")" ends it.
    """
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def state(pid: int) -> str:
    """"R", "S", "Z" (exited, not yet reaped by its parent) ...; FileNotFoundError once gone."""
    return stat_fields(pid)[0]


def children(pid: int) -> list[int]:
    """The pids of the process's children (those of its main thread)."""
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def cpu_seconds(pid: int) -> float:
    """CPU time the process has used so far, user and system (utime and stime)."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of /proc/PID/status in MiB: VmRSS now, VmHWM the most held at once."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # the file gives kB
    raise LookupError(f"no {field} for pid {pid}")
