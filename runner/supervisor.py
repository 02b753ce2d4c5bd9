"""``make dev``: the Procfile's services under supervisor, a native run that heals.

Supervisor restarts a service that dies, as compose's ``restart: unless-stopped`` does, while the
others keep running; ``./ctl`` (supervisorctl) stops, starts, kills or shows one service by name.
The configuration is made from the Procfile, so the list of services is still written once.

    python -m runner.supervisor --scale consumer=2 --scale celery_worker=3   # run, Ctrl-C stops
"""

from __future__ import annotations

import argparse
import configparser
import io
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from common.settings import JSON_LOGS, LOCAL_REDIS_STORE, TEXT_LOGS, Settings
from runner.polling import wait_for
from runner.procfile import ROOT, read_procfile
from runner.services import service_env

STATE_DIR = ROOT / ".state"
CONFIG_NAME = "supervisord.conf"


def _literal(text: str) -> str:
    """Supervisor expands ``%(name)s`` in its values; a literal ``%`` (Celery's ``%h``) is ``%%``."""
    return text.replace("%", "%%")


def render(
    commands: Mapping[str, str], scale: Mapping[str, int], state_dir: Path, root: Path = ROOT,
    log_format: str = TEXT_LOGS,
) -> str:
    """The configuration text: one program per Procfile line, ``scale[name]`` copies of it.

    A scaled service's copies are named ``<name>-0``, ``<name>-1``...: ``consumer:consumer-0``.
    With ``log_format`` json, supervisord's own lines ("spawned: 'api'") go to its log file
    only, not to the terminal, where every line is then a service's JSON object.
    """
    unknown = set(scale) - set(commands)
    if unknown:
        raise ValueError(f"no service {', '.join(sorted(unknown))} in the Procfile: "
                         f"it lists {', '.join(commands)}")
    socket = state_dir / "supervisor.sock"
    config = configparser.ConfigParser(interpolation=None)
    config["unix_http_server"] = {"file": _literal(str(socket)), "chmod": "0700"}
    config["supervisorctl"] = {"serverurl": _literal(f"unix://{socket}")}
    config["rpcinterface:supervisor"] = {
        "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"
    }
    config["supervisord"] = {
        # In the foreground: `make dev` lives as long as the demo, and Ctrl-C stops everything.
        "nodaemon": "true",
        "logfile": _literal(str(state_dir / "supervisord.log")),
        "pidfile": _literal(str(state_dir / "supervisord.pid")),
        "childlogdir": _literal(str(state_dir)),
        # Log lines reach the terminal as they are written, not when a buffer fills.
        "environment": 'PYTHONUNBUFFERED="1"',
        # Its own lines are supervisor's text, not JSON.
        "silent": str(log_format == JSON_LOGS).lower(),
    }
    for name, command in commands.items():
        copies = scale.get(name)
        config[f"program:{name}"] = {
            # Through a shell, as honcho and the tests run Procfile lines: `exec` and `$$` work.
            "command": _literal(shlex.join(["/bin/sh", "-c", command])),
            "directory": _literal(str(root)),
            "numprocs": str(copies or 1),
            "process_name": "%(program_name)s" if copies is None
            else "%(program_name)s-%(process_num)d",
            # Restart whatever exits, and keep trying while, say, the broker is still starting.
            "autorestart": "true",
            "startsecs": "1",
            "startretries": "100",
            # The whole process group: Celery's pool processes stop with their worker.
            "stopasgroup": "true",
            "killasgroup": "true",
            "stopwaitsecs": "10",
            "redirect_stderr": "true",
            "stdout_logfile": "/dev/stdout",
            "stdout_logfile_maxbytes": "0",
        }
    text = io.StringIO()
    config.write(text)
    return text.getvalue()


class Supervised:
    """``make dev`` started from code (for the tests): the same configuration, given settings."""

    def __init__(self, settings: Settings, state_dir: Path, scale: Mapping[str, int]) -> None:
        self.config = state_dir / CONFIG_NAME
        args = [f"--scale={name}={count}" for name, count in scale.items()]
        self.log_path = state_dir / "make-dev.log"
        with self.log_path.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "runner.supervisor", "--state-dir", str(state_dir), *args],
                cwd=ROOT, env=service_env(settings.to_env()), stdout=output,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        wait_for(lambda: self.ctl("status").returncode in (0, 3), 20,
                 what="supervisord to answer")

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """What ``./ctl`` does; exit code 3 from ``status`` means "not all running"."""
        return subprocess.run(
            [str(Path(sys.executable).parent / "supervisorctl"), "--configuration",
             str(self.config), *args],
            capture_output=True, text=True, timeout=30, check=False,
        )

    def pid(self, name: str) -> int:
        """The pid of a running program, 0 while it is not running."""
        return int(self.ctl("pid", name).stdout.strip() or 0)

    def stop(self) -> None:
        """What Ctrl-C does: supervisord stops every service, then itself."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(60)


def parse_scale(values: list[str]) -> dict[str, int]:
    """``--scale consumer=2`` as compose spells it."""
    scale = {}
    for value in values:
        name, _, count = value.partition("=")
        if not count.isdigit() or int(count) < 1:
            raise argparse.ArgumentTypeError(f"--scale {value}: expected NAME=N with N >= 1")
        scale[name] = int(count)
    return scale


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the Procfile's services under supervisor.")
    parser.add_argument("--scale", action="append", default=[], metavar="NAME=N",
                        help="how many processes of a service (like docker compose --scale)")
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR,
                        help="where the configuration, the socket and supervisor's log go")
    parser.add_argument("--write-only", action="store_true",
                        help="write the configuration and exit, without starting anything")
    args = parser.parse_args(argv)
    settings = Settings.from_env_or_exit()
    try:
        scale = parse_scale(args.scale)
        text = render(read_procfile(), scale, args.state_dir.resolve(),
                      log_format=settings.log_format)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.error(str(exc))
    if scale.get("api", 1) > 1 and not settings.shared_store:
        # Each process would keep tasks of its own: a page would miss half of them, and a
        # worker's report reaching the other process would get 404.
        parser.error(f"{scale['api']} API processes need a shared task store, not their memory:"
                     f" TASK_STORE={LOCAL_REDIS_STORE} (make dev APIS=N sets it)")
    args.state_dir.mkdir(parents=True, exist_ok=True)
    config_path = args.state_dir / CONFIG_NAME
    config_path.write_text(text, encoding="utf-8")
    if args.write_only:
        return
    supervisord = Path(sys.executable).parent / "supervisord"
    os.execv(supervisord, [str(supervisord), "--configuration", str(config_path)])


if __name__ == "__main__":
    main()
