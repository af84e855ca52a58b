from __future__ import annotations

import subprocess
import sys

import outrider
import outrider.runners
import outrider.testing


def test_all_is_exactly_the_public_names_sorted() -> None:
    for module in (outrider, outrider.runners, outrider.testing):
        names = {n for n in dir(module) if not n.startswith("_")} - {"annotations"}
        names -= {"runners", "testing"}
        public = set(module.__all__) - {"__version__"}
        assert public == names, module.__name__
        assert list(module.__all__) == sorted(module.__all__, key=str.lower) or list(
            module.__all__
        ) == sorted(module.__all__)


def test_every_public_name_is_there() -> None:
    for module in (outrider, outrider.runners, outrider.testing):
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{module.__name__}.{name}"


def test_importing_outrider_loads_no_engine() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import outrider, sys; print(sorted(sys.modules))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    loaded = done.stdout
    for heavy in ("pydantic", "httpx", "anyio", "outrider._service", "outrider._engine"):
        assert f"'{heavy}'" not in loaded, heavy
