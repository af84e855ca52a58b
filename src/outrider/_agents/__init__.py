"""Sub-agents: their definitions, loaded from markdown files."""
