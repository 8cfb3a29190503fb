"""mogplex-mcp: an MCP server that starts and supervises Mogplex coding-agent runs."""

__version__ = "0.1.0"

__all__ = ["__version__"]
