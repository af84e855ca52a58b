"""Agent hosts: the stdio MCP bridge, `outrider install HOST`, the hooks and the plugin.

Everything here that a host runs on its own start or turn (the bridge, the hooks) imports the
standard library and outrider's light modules only, so it answers in tens of milliseconds.
"""
