"""`make dev` heals: under supervisor a killed service comes back and its tasks are redelivered.

The demo runs exactly as `make dev` runs it (`python -m runner.supervisor`, configured from the
Procfile), in a vhost of its own; the tests kill what a student would kill, with work in flight.
"""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.settings import Settings
from runner.client import ApiClient
from runner.polling import wait_for
from runner.procfile import ROOT
from runner.supervisor import Supervised, render

BACK_WITHIN = 10.0  # seconds for supervisor to bring a killed service back


@pytest.fixture
def supervised(fresh_settings: Settings, tmp_path: Path) -> Iterator[tuple[Supervised, ApiClient]]:
    demo = Supervised(fresh_settings, tmp_path, {"consumer": 1, "celery_worker": 1})
    api = ApiClient(f"http://127.0.0.1:{fresh_settings.api_port}")
    try:
        wait_for(lambda: api.session.get(api.url("/healthz"), timeout=2).json()["broker"]
                 == "connected", 30, what="the api under supervisor")
        yield demo, api
    finally:
        demo.stop()
    assert demo.process.returncode == 0, demo.log_path.read_text(errors="replace")


def answering(api: ApiClient) -> bool:
    """The API keeps answering while a worker is down: asserted on every poll."""
    assert api.session.get(api.url("/healthz"), timeout=2).status_code == 200
    return True


def kill_mid_task(demo: Supervised, api: ApiClient, method: str, program: str, *, group: bool):
    tasks = api.send(method, timeout=3, count=3)
    numbers = [task["task_num"] for task in tasks]
    wait_for(lambda: all(api.task(n)["status"] == "IN_PROGRESS" for n in numbers), 30,
             what=f"{program} to start all three tasks")
    killed = demo.pid(program)

    # kill -9, of the whole process group for Celery (its pool processes too).
    if group:
        os.killpg(killed, signal.SIGKILL)
    else:
        os.kill(killed, signal.SIGKILL)

    wait_for(lambda: answering(api) and demo.pid(program) not in (0, killed), BACK_WITHIN,
             interval=0.2, what=f"supervisor to restart {program}")
    finished = api.wait_final(numbers, timeout=60)
    assert [task["status"] for task in finished] == ["DONE"] * 3
    # Each was in flight, unacked, when its worker died: the broker delivered it again.
    assert all(task["redeliveries"] >= 1 for task in finished), finished
    assert "RUNNING" in demo.ctl("status", program).stdout


def test_a_killed_consumer_comes_back_and_its_tasks_are_redelivered(supervised) -> None:
    demo, api = supervised
    kill_mid_task(demo, api, "rmq", "consumer:consumer-0", group=False)


def test_a_killed_celery_worker_comes_back_and_its_tasks_are_redelivered(supervised) -> None:
    demo, api = supervised
    kill_mid_task(demo, api, "celery", "celery_worker:celery_worker-0", group=True)


# ---------------------------------------------------------------- the configuration itself


def test_the_configuration_runs_every_procfile_line_through_a_shell(tmp_path: Path) -> None:
    commands = {"api": "exec python -m api", "celery_worker": "exec celery --hostname=w-$$@%h"}

    config = configparser.ConfigParser(interpolation=None)
    config.read_string(render(commands, {"celery_worker": 2}, tmp_path))

    assert config["program:api"]["process_name"] == "%(program_name)s"
    worker = config["program:celery_worker"]
    # Supervisor expands %(...)s itself: Celery's own %h must reach the shell as it was.
    assert worker["command"] == "/bin/sh -c 'exec celery --hostname=w-$$@%%h'"
    assert (worker["numprocs"], worker["process_name"]) == ("2", "%(program_name)s-%(process_num)d")
    assert worker["autorestart"] == "true" and worker["stopasgroup"] == "true"


def test_with_json_logs_supervisord_keeps_its_own_text_lines_off_the_terminal(
    tmp_path: Path,
) -> None:
    config = configparser.ConfigParser(interpolation=None)

    config.read_string(render({"api": "exec python -m api"}, {}, tmp_path, log_format="json"))
    assert config["supervisord"]["silent"] == "true"
    config.read_string(render({"api": "exec python -m api"}, {}, tmp_path))
    assert config["supervisord"]["silent"] == "false"


def test_scaling_a_service_the_procfile_lacks_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no service web in the Procfile"):
        render({"api": "exec python -m api"}, {"web": 2}, tmp_path)


def test_ctl_says_when_make_dev_is_not_running(tmp_path: Path) -> None:
    copy = tmp_path / "ctl"
    shutil.copy(ROOT / "ctl", copy)

    result = subprocess.run([str(copy), "status"], capture_output=True, text=True, timeout=10)

    assert result.returncode == 1
    assert "make dev is not running" in result.stderr
