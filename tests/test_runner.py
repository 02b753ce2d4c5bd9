"""The process runner: it lives outside tests/, starts exactly the Procfile's lines, and the bench
that uses it runs from the files the Docker image gets."""

from __future__ import annotations

import ast
import json
import os
import shlex
import shutil
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

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


# --- nothing outside tests/ imports tests ---------------------------------------------------------


def imported_modules(source: str, path: str) -> set[str]:
    """Every module a file imports by statement, relative imports resolved against its package."""
    package = PurePosixPath(path).parent.parts
    modules = set()
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join([*base, *(node.module or "").split(".")]).strip(".")
            modules.add(module)
            # `from package import name` may import the submodule package.name.
            modules.update(f"{module}.{alias.name}".strip(".") for alias in node.names)
    return modules


def imports_tests(modules: set[str]) -> bool:
    return any(module == "tests" or module.startswith("tests.") for module in modules)


@pytest.mark.parametrize(
    ("source", "path", "found"),
    [
        ("import tests.support", "bench/__main__.py", True),
        ("import os, tests", "bench/__main__.py", True),
        ("from tests import support", "runner/services.py", True),
        ("from tests.support import wait_for", "bench/__main__.py", True),
        ("from .support import wait_for", "tests/helper.py", True),
        ("from .. import tests", "bench/sub/tool.py", False),  # that is bench.tests
        ("from runner.services import Services", "bench/__main__.py", False),
        ("import testsuite", "bench/__main__.py", False),
    ],
)
def test_import_finder_sees_every_form_of_import(source: str, path: str, found: bool) -> None:
    assert imports_tests(imported_modules(source, path)) is found


def test_nothing_outside_tests_imports_tests() -> None:
    # The Docker image leaves tests/ out: whatever a tool needs must live elsewhere.
    outside = [
        name for name in project_files() if name.endswith(".py") and not name.startswith("tests/")
    ]
    assert "bench/__main__.py" in outside and "runner/services.py" in outside
    offenders = [
        name
        for name in outside
        if imports_tests(imported_modules((ROOT / name).read_text(encoding="utf-8"), name))
    ]
    assert offenders == []


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


def dockerignore_patterns(text: str) -> list[tuple[bool, list[str]]]:
    """(is an exception ``!...``, the pattern's path segments) per line of a .dockerignore."""
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = line.removeprefix("!").strip().strip("/")
        patterns.append((exception, pattern.split("/")))
    return patterns


def segments_match(pattern: list[str], path: list[str]) -> bool:
    """Docker's matching: ``**`` is any number of folders (none too), other segments fnmatch."""
    if not pattern:
        return not path
    if pattern[0] == "**":
        return any(segments_match(pattern[1:], path[start:]) for start in range(len(path) + 1))
    return (
        bool(path) and fnmatchcase(path[0], pattern[0]) and segments_match(pattern[1:], path[1:])
    )


def left_out(path: str, patterns: list[tuple[bool, list[str]]]) -> bool:
    """Whether the build context leaves ``path`` out: the last pattern that matches decides."""
    parts = path.split("/")
    excluded = False
    for exception, pattern in patterns:
        # A pattern that matches a folder leaves out everything in it.
        if any(segments_match(pattern, parts[:depth]) for depth in range(1, len(parts) + 1)):
            excluded = not exception
    return excluded


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
    patterns = dockerignore_patterns(DOCKERIGNORE_PATH.read_text(encoding="utf-8"))
    assert left_out(path, patterns) is expected


def test_dockerignore_exceptions_bring_a_file_back() -> None:
    patterns = dockerignore_patterns("# comment\ndocs\n!docs/keep.md\n")
    assert left_out("docs/other.md", patterns)
    assert not left_out("docs/keep.md", patterns)


def test_bench_runs_from_the_docker_build_context(tmp_path: Path) -> None:
    patterns = dockerignore_patterns(DOCKERIGNORE_PATH.read_text(encoding="utf-8"))
    context = tmp_path / "app"
    for name in project_files():
        if not left_out(name, patterns):
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
