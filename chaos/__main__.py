"""Run the demo under a steady load while seeded faults hit it; then account for every task.

Two processes of the API, the consumer and the Celery worker under supervisor (``make dev``), in
a vhost of its own, with the tasks and Celery's results in a Redis of its own; traffic to
127.0.0.1 only. Writes chaos/results/latest.json, latest.md (the table) and latest.png (the
picture), prints the table, and exits 1 if any accepted task is not accounted for.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import sys
from pathlib import Path

from chaos import report
from chaos.faults import Unavailable
from chaos.run import Config, run
from runner.broker import management_session
from runner.cli import bounded, interrupt_on_signals, tool_settings

log = logging.getLogger("chaos")
RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--minutes", type=bounded(1, 60, whole=False), default=5, help="how long the load runs")
    parser.add_argument("--seed", type=int, default=None,
                        help="the faults' schedule; the same seed, the same faults (default: new)")
    parser.add_argument("--rate", type=bounded(1, 50, whole=False), default=10,
                        help="tasks per second, rmq and celery in turn")
    parser.add_argument("--cluster", action="store_true",
                        help="on the three-node cluster (rmq/cluster.sh), a node killed"
                             " instead of the native broker restarted")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the results go")
    args = parser.parse_args()
    interrupt_on_signals()
    base = tool_settings()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    config = Config(args.minutes * 60, seed, args.rate, args.cluster)
    # The services' logs (and Redis's file) of the last run stay here to be read.
    state = args.output / "state"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    with management_session(base) as management:
        try:
            results = run(config, base, management, state)
        except Unavailable as exc:
            parser.exit(2, f"{parser.prog}: {exc}\n")
    (args.output / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
    table = report.markdown(results)
    (args.output / "latest.md").write_text(table)
    report.plot(results, args.output / "latest.png")
    log.info("results in %s: latest.json, latest.md, latest.png; the services' logs in %s",
             args.output, state)
    print(table)  # the CLI's final table, to stdout
    if results["ledger"]["problems"]:
        log.error("seed %s: not every accepted task is accounted for (make chaos SEED=%s"
                  " runs the same faults again)", seed, seed)
        sys.exit(1)


if __name__ == "__main__":
    main()
