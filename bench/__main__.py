"""Measure the demo under load, each figure beside its baseline from the same run.

Real api, consumers and Celery workers on the local broker, each stage in a vhost of its own
(deleted afterwards, on Ctrl-C too); traffic to 127.0.0.1 only. Writes bench/results/latest.json,
latest.md (the table) and latest.png (the plot), and prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

from bench import report, stages
from runner.broker import management_session, management_url
from runner.cli import bounded, interrupt_on_signals, tool_settings

log = logging.getLogger("bench")
RESULTS = Path(__file__).parent / "results"


def machine(bench: stages.Bench) -> dict[str, Any]:
    """What the figures were measured on: they mean little without it."""
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )
    overview = bench.management.get(management_url(bench.base, "overview"), timeout=10).json()
    return {
        "cores": os.cpu_count(), "cpu": cpu, "rabbitmq": overview["rabbitmq_version"],
        "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
    }


def run(bench: stages.Bench, args: argparse.Namespace) -> dict[str, Any]:
    plan = [
        ("accept", lambda: stages.accept(bench, args.connections, args.seconds)),
        ("stores", lambda: stages.stores(bench, args.connections, args.seconds)),
        ("secure", lambda: stages.secure_mode(bench, args.connections, args.seconds)),
        ("e2e", lambda: stages.end_to_end(bench, args.tasks, args.connections)),
        ("scaling", lambda: stages.scaling(bench, args.rounds, report.WORKER_COUNTS)),
        ("healthz", lambda: stages.healthz(bench)),
        ("memory", lambda: stages.memory(bench, args.memory_tasks, batch=1000)),
    ]
    settings = {name: value for name, value in vars(args).items() if name != "output"}
    results: dict[str, Any] = {"machine": machine(bench), "settings": settings}
    for number, (name, stage) in enumerate(plan, start=1):
        log.info("stage %s/%s: %s", number, len(plan), name)
        started = time.monotonic()
        results[name] = stage()
        log.info("stage %s done in %.0f s", name, time.monotonic() - started)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--connections", type=bounded(1, 1000), default=32,
                        help="concurrent connections (and confirms in flight) on the accept path")
    parser.add_argument("--seconds", type=bounded(1, 60), default=8,
                        help="length of each load run, whole seconds")
    parser.add_argument("--tasks", type=bounded(1, 100_000), default=2000,
                        help="zero-work tasks end to end")
    parser.add_argument("--rounds", type=bounded(1, 100), default=10,
                        help="one-second tasks per worker slot in the scaling stage")
    parser.add_argument("--memory-tasks", type=bounded(1, 1_000_000), default=100_000,
                        help="tasks accepted before the api's memory is read")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the results go")
    args = parser.parse_args()
    interrupt_on_signals()
    base = tool_settings()
    logging.getLogger("aio_pika").setLevel(logging.WARNING)  # "Deleting <Queue ...>" and the like
    logging.getLogger("runner").setLevel(logging.WARNING)  # a line per process started

    with management_session(base) as management:
        results = run(stages.Bench(base, management), args)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    table = report.markdown(results)
    (args.output / "latest.md").write_text(table)
    report.plot(results, args.output / "latest.png")
    log.info("results in %s: latest.json, latest.md, latest.png", args.output)
    print(table)  # the CLI's final table, to stdout


if __name__ == "__main__":
    main()
