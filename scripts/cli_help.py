"""Write `outrider --help` as the command line prints it into the text the fast path prints.

`outrider --help` answers from `src/outrider/_cli/help.txt` without importing typer or any
command module (they cost ten times the answer); this script writes that file from the typer
application itself, at the width the help has on any terminal of 80 columns or more (narrower
ones get the application's own help). `make lint` fails when the file is stale.

    uv run python scripts/cli_help.py           # write the help
    uv run python scripts/cli_help.py --check   # exit 1 if it is stale
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from outrider._cli import HELP_FILE, HELP_WIDTH

BUILT = "from outrider._cli import build_app; build_app()(prog_name='outrider', args=['--help'])"
"""The application's own help, in a process of its own: click's test runner fixes the width."""


def render() -> str:
    """`outrider --help` as the typer application prints it on a wide terminal."""
    env = {**os.environ, "COLUMNS": str(HELP_WIDTH)}
    shown = subprocess.run([sys.executable, "-c", BUILT], env=env, capture_output=True, text=True)
    if shown.returncode != 0:
        raise RuntimeError(f"`outrider --help` failed: {shown.stderr}")
    return shown.stdout


def main() -> int:
    """Write the help, or with `--check` exit 1 if it is stale."""
    text = render()
    if "--check" in sys.argv:
        if Path(HELP_FILE).read_text() != text:
            sys.stderr.write(f"{HELP_FILE} is stale: run `uv run python scripts/cli_help.py`.\n")
            return 1
        return 0
    Path(HELP_FILE).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
