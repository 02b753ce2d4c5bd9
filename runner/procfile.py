"""The Procfile: the one list of the demo's services and the command line of each."""

from __future__ import annotations

from pathlib import Path

from honcho.environ import parse_procfile

# The repository root: where the Procfile lies and where honcho runs its lines.
ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"


def read_procfile(path: Path = PROCFILE) -> dict[str, str]:
    """Service name -> its command line, read by the parser `make dev` (honcho) uses."""
    return dict(parse_procfile(path.read_text(encoding="utf-8")).processes)
