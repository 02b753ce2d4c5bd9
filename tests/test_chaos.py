"""make chaos in CI: a seeded two-minute run with every kind of fault, then the ledger; and a run
interrupted mid-fault still starts the broker again and leaves nothing behind.

Like tests/test_broker_restart.py this stops the local RabbitMQ application (every vhost on it
is interrupted for seconds), and it blackholes the run's own API port with iptables (root).
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from chaos import report
from chaos.faults import BLACKHOLE_COMMENT, as_root
from chaos.run import Config, run
from chaos.schedule import kinds
from common.settings import Settings
from runner.broker import rabbitmqctl
from runner.polling import wait_for
from runner.procfile import ROOT
from tests.test_bench import processes_in_vhost, vhosts_on_broker

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("rabbitmqctl", "iptables", "redis-server")),
    reason="needs the local RabbitMQ node's rabbitmqctl, iptables and redis-server",
)

# Its two minutes bring each kind of fault once (schedule.schedule), the broker restart and the
# worker's pause overlapping.
SEED = 22


def assert_left_nothing(base_settings: Settings, management: requests.Session, vhost: str,
                        task_store: str) -> None:
    assert vhost not in vhosts_on_broker(base_settings, management)
    assert processes_in_vhost(vhost) == []
    with pytest.raises(OSError):  # the run's own Redis is stopped
        socket.create_connection(("127.0.0.1", int(task_store.rpartition(":")[2].split("/")[0])),
                                 timeout=2)
    assert BLACKHOLE_COMMENT not in as_root("iptables", "-S", "INPUT").stdout
    rabbitmqctl("await_startup")  # the broker runs (an app stopped by stop_app fails this)


@pytest.mark.timeout(900)
def test_a_seeded_two_minute_run_accounts_for_every_accepted_task(
    base_settings: Settings, management: requests.Session, tmp_path: Path
) -> None:
    results = run(Config(seconds=120, seed=SEED, rate=10), base_settings, management,
                  tmp_path / "state")

    book = results["ledger"]
    assert book["problems"] == [], report.markdown(results)
    assert {fault["kind"] for fault in results["faults"]} == set(kinds(cluster=False))
    # About ten a second, less while the broker was away. (How many ran twice or were delivered
    # again depends on what was in flight at each fault: counted, not asserted.)
    assert book["accepted"] >= 600 and book["done"] + book["error"] == book["accepted"]
    stand = results["stand"]
    assert_left_nothing(base_settings, management, stand["vhost"], stand["task_store"])
    report.plot(results, tmp_path / "chaos.png")
    assert (tmp_path / "chaos.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.timeout(300)
def test_a_run_interrupted_while_the_broker_is_stopped_starts_it_and_cleans_up(
    base_settings: Settings, management: requests.Session, tmp_path: Path
) -> None:
    log_path = tmp_path / "chaos.log"
    with log_path.open("wb") as output:
        chaos = subprocess.Popen(
            [sys.executable, "-m", "chaos", "--minutes=1", f"--seed={SEED}",
             f"--output={tmp_path}"], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "fault broker_restart" in log_path.read_text(), 120,
                 what="the run to stop the broker")
        chaos.send_signal(signal.SIGINT)
        assert chaos.wait(120) != 0
    finally:
        if chaos.poll() is None:  # the signal was lost: SIGTERM still cleans up
            chaos.terminate()
            chaos.wait(120)
    text = log_path.read_text()
    stand = re.search(r"demo in vhost (\S+), api on :\d+, redis on :(\d+)", text)
    assert stand, text
    assert_left_nothing(base_settings, management, stand.group(1),
                        f"redis://127.0.0.1:{stand.group(2)}/0")
    assert not (tmp_path / "latest.json").exists()
