"""Write the MCP tools as the daemon serves them into the stdio bridge's manifest.

`outrider mcp` answers a host's `initialize` and `tools/list` itself, without the daemon (so it
answers at once, even while it starts one): from `src/outrider/_hosts/mcp_tools.json`, which this
script writes from the daemon's own MCP server. `make lint` fails when the file is stale.

    uv run python scripts/mcp_manifest.py           # write the manifest
    uv run python scripts/mcp_manifest.py --check   # exit 1 if it is stale
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_MODERN_VERSION

from outrider._daemon._config import DEFAULT_MCP_TOOLS, MCP_TOOLS
from outrider._mcp._server import INSTRUCTIONS, build_server

TARGET = Path(__file__).resolve().parent.parent / "src" / "outrider" / "_hosts" / "mcp_tools.json"


async def manifest() -> dict[str, Any]:
    """The protocol versions, the instructions, the default tool set, every tool's definition.

    The bridge negotiates one of `protocol_versions` with its host (an `initialize`
    handshake) and sends each request on to the daemon in `daemon_protocol_version`'s
    self-contained form (no MCP session to lose when the daemon restarts).
    """

    async def refuse(_: object) -> Any:
        raise AssertionError("the manifest calls no tool")

    server, _ = build_server(refuse, tools=MCP_TOOLS, listed=MCP_TOOLS, max_wait=50)
    async with Client(server) as client:
        listed = (await client.list_tools()).tools
    tools = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed]
    return {
        "protocol_versions": list(HANDSHAKE_PROTOCOL_VERSIONS),
        "daemon_protocol_version": LATEST_MODERN_VERSION,
        "instructions": INSTRUCTIONS,
        "default_tools": list(DEFAULT_MCP_TOOLS),
        "tools": tools,
    }


def render() -> str:
    """The manifest file's text."""
    return json.dumps(anyio.run(manifest), indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    """Write the manifest, or with `--check` exit 1 if it is stale."""
    text = render()
    if "--check" in sys.argv:
        if TARGET.read_text() != text:
            sys.stderr.write(f"{TARGET} is stale: run `uv run python scripts/mcp_manifest.py`.\n")
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
