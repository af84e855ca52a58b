"""Names a caller chooses: sessions and notice readers (the standard library only)."""

from __future__ import annotations

from ._errors import UserError

__all__ = ["check_session_name"]


def check_session_name(name: str, *, field: str = "session") -> str:
    """`name` if it is a valid session (or reader) name, else a UserError naming the rule."""
    if not (0 < len(name) <= 64) or not all(c.isalnum() or c in "._:-" for c in name):
        raise UserError(
            f"Invalid {field} name {name!r}: use 1-64 letters, digits and . _ : -.", field=field
        )
    return name
