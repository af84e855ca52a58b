from __future__ import annotations

import outrider
import outrider.runners
import outrider.testing


def test_all_is_exactly_the_public_names_sorted() -> None:
    for module in (outrider, outrider.runners, outrider.testing):
        names = {n for n in vars(module) if not n.startswith("_")} - {"annotations"}
        names -= {"runners", "testing"}
        public = set(module.__all__) - {"__version__"}
        assert public == names, module.__name__
        assert list(module.__all__) == sorted(module.__all__, key=str.lower) or list(
            module.__all__
        ) == sorted(module.__all__)
