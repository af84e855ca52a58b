"""The engine: every unfinished task in memory, driven to exactly one end."""
