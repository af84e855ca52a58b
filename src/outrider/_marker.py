"""The marker that ends every notice line a model reads: `⟦outrider seq=N⟧`.

A notice reaches a model through several channels (a tool answer, a woken turn, context added
to a prompt); the marker lets whatever sees the model's input later (a hook reading the prompt,
a plugin reading a message) tell which notices it carried, and acknowledge exactly those. The
brackets are not ASCII, so a marker does not occur in ordinary text by chance.
"""

from __future__ import annotations

import re

__all__ = ["marker", "seqs_in"]

_MARKER = re.compile(r"⟦outrider seq=([0-9]{1,19})⟧")


def marker(seq: int) -> str:
    """The marker of the notice `seq`."""
    return f"⟦outrider seq={seq}⟧"


def seqs_in(text: str) -> list[int]:
    """The notice seqs whose markers occur in `text`, in order."""
    return [int(found) for found in _MARKER.findall(text)]
