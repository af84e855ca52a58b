"""`python -m outrider._cli`."""

from __future__ import annotations

from . import main

main()
