"""The process runner: it lives outside tests/, starts exactly the Procfile's lines, and the bench
that uses it runs from the files the Docker image gets."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pathspec
import pytest

from common.settings import Settings
from runner.client import ApiClient
from runner.procfile import read_procfile
from runner.services import QUICK_START, Service, Services

ROOT = Path(__file__).resolve().parent.parent
DOCKERIGNORE_PATH = ROOT / ".dockerignore"


def project_files() -> list[str]:
    """The files of this checkout: tracked ones, and new ones git does not ignore."""
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    # A tracked file deleted in the working tree is not there to read or to copy.
    return sorted(name for name in listing.split("\0") if name and (ROOT / name).is_file())


# --- the runner starts the Procfile's lines --------------------------------------------------------


def test_an_unknown_service_is_refused_naming_those_the_procfile_has(tmp_path: Path) -> None:
    services = Services(tmp_path)
    with pytest.raises(ValueError, match="'web'") as refused:
        services.start("web", Settings())
    for name in read_procfile():
        assert name in str(refused.value)
    assert services.started == []
    assert list(tmp_path.iterdir()) == []  # not even a log file


def test_extra_arguments_for_a_service_the_procfile_lacks_are_refused(tmp_path: Path) -> None:
    # A misspelt name would otherwise add nothing, silently.
    with pytest.raises(ValueError, match="celery-worker"):
        Services(tmp_path, extra_args={"celery-worker": ["--without-mingle"]})


def test_each_service_runs_its_procfile_line(
    settings: Settings,
    api: ApiClient,
    consumer: Service,
    celery_worker: Service,
    celery_beat: Service,
    flower: tuple[Service, str],
) -> None:
    running = {"api": api.service, "consumer": consumer, "celery_worker": celery_worker,
               "celery_beat": celery_beat, "flower": flower[0]}
    procfile = read_procfile()
    assert set(running) == set(procfile)  # a new Procfile line needs a process here
    venv_bin = str(Path(sys.executable).parent)
    for kind, service in running.items():
        assert service is not None
        proc = Path(f"/proc/{service.pid}")
        # The shell ran the line: `exec` made the program take over its pid, `$$` became that pid.
        words = shlex.split(procfile[kind].replace("$$", str(service.pid)))
        if words[0] == "exec":
            words = words[1:]
        program, args = words[0], [*words[1:], *QUICK_START.get(kind, ())]
        # A script's interpreter comes first (`python .../celery -A ...`), then the program.
        cmdline = (proc / "cmdline").read_bytes().decode().split("\0")[:-1]
        head, tail = cmdline[: -len(args)], cmdline[-len(args) :]
        assert tail == args, kind
        assert program in {PurePosixPath(word).name for word in head}, (kind, cmdline)
        assert (proc / "cwd").resolve() == ROOT, kind
        environ = dict(
            entry.split("=", 1) for entry in (proc / "environ").read_bytes().decode().split("\0")
            if "=" in entry
        )
        assert environ["RMQ_URL"] == settings.rmq_url, kind
        assert environ["PATH"].split(os.pathsep)[0] == venv_bin, kind


# --- bench runs from the Docker image's files ----------------------------------------------------


def dockerignore_spec(text: str) -> pathspec.PathSpec:
    """The build context's rule: Docker reads every pattern from the context's root, where
    gitignore lets a pattern without a slash match at any depth, so each one is anchored with
    ``/`` (``!`` exceptions too)."""
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            exception = line.startswith("!")
            line = ("!/" if exception else "/") + line.removeprefix("!").strip().lstrip("/")
        lines.append(line)
    return pathspec.PathSpec.from_lines("gitignore", lines)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("tests/conftest.py", True),  # a folder's name leaves out all it holds
        ("bench/results/latest.md", True),
        ("api/__pycache__/app.cpython-311.pyc", True),  # `**/` at any depth
        ("__pycache__/x.pyc", True),  # ... the top one included
        (".env.local", True),
        ("api/.env", False),  # a pattern without `**/` is about the top folder only
        ("testsuite.py", False),  # a name, not a prefix
        ("bench/__main__.py", False),
        ("runner/services.py", False),
        ("Procfile", False),
    ],
)
def test_dockerignore_reading(path: str, expected: bool) -> None:
    spec = dockerignore_spec(DOCKERIGNORE_PATH.read_text(encoding="utf-8"))
    assert spec.match_file(path) is expected


def test_dockerignore_exceptions_stay_exceptions_once_anchored() -> None:
    spec = dockerignore_spec("# comment\ndocs\n!docs/keep.md\n")
    assert spec.match_file("docs/other.md")
    assert not spec.match_file("docs/keep.md")


def test_bench_runs_from_the_docker_build_context(tmp_path: Path) -> None:
    spec = dockerignore_spec(DOCKERIGNORE_PATH.read_text(encoding="utf-8"))
    context = tmp_path / "app"
    for name in project_files():
        if not spec.match_file(name):
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, context / name)
    assert not (context / "tests").exists()
    # Modules come from the copy only: `-m` and `-c` put the working folder first on sys.path.
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args], cwd=context, env=env, capture_output=True, text=True,
            timeout=60, check=False,
        )

    bench = run("-m", "bench", "--help")
    assert bench.returncode == 0, bench.stderr
    assert bench.stdout.startswith("usage:")
    # The runner there reads the Procfile there: the image holds what the bench starts.
    probe = run(
        "-c",
        "import json, runner.procfile as p;"
        "print(json.dumps([str(p.ROOT), list(p.read_procfile())]))",
    )
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout) == [str(context), list(read_procfile())]
    # .importlinter checks the packages; the top-level modules it cannot check import here,
    # without tests/, as the services in the image import them.
    modules = sorted(path.stem for path in context.glob("*.py"))
    assert "celery_tasks" in modules
    imported = run("-c", f"import {', '.join(modules)}")
    assert imported.returncode == 0, imported.stderr
