"""The HTTP API (FastAPI): REST, Server-Sent Events, and the MCP endpoint mounted at `/mcp`."""
