"""The README's first Python example runs and prints what its `#>` lines say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def test_first_python_example_output_matches() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    code = blocks[0]
    expected = [line.split("#> ", 1)[1] for line in code.splitlines() if "#> " in line]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == expected
    assert len([line for line in code.strip().splitlines() if line.strip()]) <= 15


def test_quickstart_is_two_commands() -> None:
    text = README.read_text()
    quick = text.split("## Quickstart", 1)[1].split("##", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", quick, re.S)[0].strip().splitlines()
    assert [c.split("#")[0].strip() for c in commands] == ["uv run outrider demo", "uv run pytest"]
