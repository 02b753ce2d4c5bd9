"""The Makefile on a fresh machine: the virtual environment is made whole or not at all, each
command installs only what it needs, and apt-get goes through sudo for a user.

make runs for real, on an environment of the test's own; a fake python3 plays the interpreter a
fresh box may have. Nothing is installed: where pip would run, ``make -n`` only shows it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common.settings import LOCAL_REDIS_STORE
from runner.procfile import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def make(*args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    as_user = ["runuser", "-u", user, "--"] if user else []
    return subprocess.run([*as_user, "make", "--no-print-directory", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def fake_python(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "bin" / "python3"
    path.parent.mkdir()
    path.write_text(f"#!/bin/sh\n{script}", encoding="utf-8")
    path.chmod(0o755)
    return path


# Debian's python3 without the python3-venv package: venv makes the directory and bin/python,
# then stops where it would install pip (ensurepip).
WITHOUT_PYTHON3_VENV = f"""\
if [ "$1" = -m ] && [ "$2" = venv ]; then
    {sys.executable} -m venv --without-pip "$3"
    echo "The virtual environment was not created successfully because ensurepip is not available" >&2
    exit 1
fi
exec {sys.executable} "$@"
"""

# An interpreter too old for the demo (Debian 11's): it says its version, and fails the check.
PYTHON_3_9 = """\
if [ "$1" = -V ]; then echo "Python 3.9.2"; exit 0; fi
exit 1
"""


def test_a_venv_that_python3_could_not_finish_is_removed_and_python3_venv_named(
    tmp_path: Path,
) -> None:
    venv = tmp_path / "venv"
    python = fake_python(tmp_path, WITHOUT_PYTHON3_VENV)

    for _ in range(2):  # the second run meets no leftovers: it fails the same clear way
        result = make("venv", f"VENV={venv}", f"PYTHON3={python}")

        assert result.returncode != 0
        assert "sudo apt install python3-venv" in result.stderr
        assert "No module named pip" not in result.stderr
        assert not venv.exists()


def test_a_python_older_than_3_11_is_refused_with_what_to_do(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python = fake_python(tmp_path, PYTHON_3_9)

    result = make("venv", f"VENV={venv}", f"PYTHON3={python}")

    assert result.returncode != 0
    assert "нужен Python 3.11 или новее" in result.stderr
    assert "Python 3.11 or newer is needed" in result.stderr
    assert "Python 3.9.2" in result.stderr
    assert "PYTHON3=" in result.stderr
    assert not venv.exists()


def test_a_venv_left_without_pip_is_made_again(tmp_path: Path) -> None:
    # What the old Makefile kept: bin/python there, so `test -x` passed, and pip missing.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)

    result = make(f"{venv}/bin/pip", f"VENV={venv}", f"PYTHON3={sys.executable}")

    assert result.returncode == 0, result.stderr
    pip = subprocess.run([venv / "bin" / "python", "-m", "pip", "--version"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert pip.returncode == 0, pip.stderr


def pip_installs(target: str, venv: Path) -> list[str]:
    """The requirements files `make TARGET` would install into ``venv``, by a dry run."""
    result = make("-n", target, f"VENV={venv}")
    assert result.returncode == 0, result.stderr
    return [line.split(" -r ")[1] for line in result.stdout.splitlines() if "pip install" in line]


def stamped(venv: Path) -> None:
    """A complete environment: pip there, both sets of packages installed after the files."""
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "pip").touch()
    for stamp in (".installed-runtime", ".installed-dev"):
        (venv / stamp).touch()


def test_make_dev_installs_what_the_demo_runs_and_the_tools_come_with_test(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    stamped(venv)
    assert pip_installs("dev", venv) == pip_installs("test", venv) == []

    # A requirements file changed since its install: that install runs again, and only that one.
    os.utime(venv / ".installed-runtime", (0, 0))
    assert pip_installs("dev", venv) == ["requirements.txt"]
    assert pip_installs("test", venv) == []

    os.utime(venv / ".installed-dev", (0, 0))
    for target in ("test", "lint", "bench", "chaos", "venv"):
        assert pip_installs(target, venv) == ["requirements-dev.txt"], target
    assert pip_installs("dev", venv) == ["requirements.txt"]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None,
                    reason="runs make as root and as another user")
def test_apt_get_goes_through_sudo_for_a_user_and_not_for_root() -> None:
    # A dry run: `make -n` shows the commands of browser and wrk without running them.
    as_root = make("-n", "browser", "wrk")
    as_user = make("-n", "browser", "wrk", user="nobody")

    assert as_root.returncode == as_user.returncode == 0, as_root.stderr + as_user.stderr
    assert "sudo" not in as_root.stdout
    for package in ("chromium", "wrk"):
        assert f"sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {package}" in (
            as_user.stdout)
    assert as_user.stdout.count("sudo apt-get update") == 2


@pytest.mark.parametrize(("apis", "store"), [("1", ""), ("2", LOCAL_REDIS_STORE)])
def test_make_dev_apis_hands_over_the_shared_store_the_settings_name(apis: str, store: str) -> None:
    # The Makefile cannot import common.settings: ask it which store it exports for APIS.
    env = {name: value for name, value in os.environ.items() if name != "TASK_STORE"}
    result = subprocess.run(
        ["make", "--no-print-directory", "--eval=print-store: ; @echo store=$$TASK_STORE",
         "print-store", f"APIS={apis}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"store={store}"
