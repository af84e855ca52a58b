"""The `outrider` command line."""

from __future__ import annotations


def main() -> None:
    """Run the `outrider` command."""
