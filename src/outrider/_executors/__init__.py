"""Executors: where a started task's attempt runs (in the daemon's process, or in a worker)."""
