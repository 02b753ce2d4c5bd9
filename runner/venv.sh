#!/usr/bin/env bash
# Make the virtual environment of `make`: ./runner/venv.sh PYTHON DIR (python3 .venv).
#
# Python must be 3.11 or newer. Debian's python3 without the python3-venv package makes DIR and
# DIR/bin/python, then fails on pip; such a DIR is removed at once, so that the next `make` tries
# again instead of failing with "No module named pip". DIR/bin/pip, which the Makefile waits for,
# exists only when everything worked.
set -euo pipefail

python=$1
dir=$2

fail() {
    printf '%s\n' "$@" >&2
    exit 1
}

if ! command -v "$python" >/dev/null; then
    fail "venv: нет команды $python. Нужен Python 3.11 или новее:" \
         "      sudo apt install python3 python3-venv   (под root — без sudo)" \
         "venv: there is no $python command. Python 3.11 or newer is needed:" \
         "      sudo apt install python3 python3-venv   (as root, without sudo)"
fi

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    version=$("$python" -V 2>&1)
    fail "venv: нужен Python 3.11 или новее, а $python — это $version." \
         "      В Debian 12 и Ubuntu 24.04 он системный: sudo apt install python3 python3-venv;" \
         "      другой Python назовите так: make dev PYTHON3=python3.12" \
         "venv: Python 3.11 or newer is needed, but $python is $version." \
         "      Debian 12 and Ubuntu 24.04 ship one: sudo apt install python3 python3-venv;" \
         "      name another Python so: make dev PYTHON3=python3.12"
fi

rm -rf "$dir"
if ! "$python" -m venv "$dir"; then
    rm -rf "$dir"
    fail "venv: $python -m venv не создал $dir. В Debian и Ubuntu для этого нужен пакет python3-venv:" \
         "      sudo apt install python3-venv   (под root — без sudo), затем снова make" \
         "venv: $python -m venv could not make $dir. Debian and Ubuntu need the python3-venv package:" \
         "      sudo apt install python3-venv   (as root, without sudo), then make again"
fi
