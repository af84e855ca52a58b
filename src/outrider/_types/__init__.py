"""The vocabulary of outrider: value types, the session API, events and errors; no I/O."""
