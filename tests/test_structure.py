"""The boundaries between the parts: what the API process loads, and when settings are read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": os.environ.get("PATH", ""), **env}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=60, check=False)


def test_importing_the_api_reads_no_settings_and_loads_no_worker_code() -> None:
    # A broken RMQ_URL would fail any Settings.from_env(): importing must not call it.
    result = run_python(
        "import sys, api.app, api.__main__\n"
        "loaded = {'celery_app', 'celery_tasks', 'callback_client', 'task_lifecycle', 'consumer'} & set(sys.modules)\n"
        "assert not loaded, loaded\n",
        RMQ_URL="not a url",
    )
    assert result.returncode == 0, result.stderr


def test_celery_finds_its_app_in_celery_app_and_builds_it_from_the_environment() -> None:
    # What `celery -A celery_app` does: look up `app` in the module.
    result = run_python(
        "from celery.app.utils import find_app\n"
        "app = find_app('celery_app')\n"
        "print(app.conf.broker_url)\n",
        RMQ_URL="amqp://someone:pw@broker.example:5672/demo",
    )
    assert result.returncode == 0, result.stderr
    assert "broker.example" in result.stdout
