"""Run supervision on top of the API client: de-duplication, following, derived views (no MCP here)."""
