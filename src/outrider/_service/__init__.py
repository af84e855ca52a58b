"""The in-process service: the Orchestrator (composition and admin verbs) and its sessions."""
