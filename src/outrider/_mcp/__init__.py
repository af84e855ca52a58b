"""The MCP server: tools for agent hosts, over stdio (`outrider mcp`) and at `/mcp`."""
