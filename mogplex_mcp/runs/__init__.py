"""Run supervision on top of the API client: de-duplication, following, derived views (no MCP here).

`store.py` holds the store protocols (`grant_store.py` those of OAuth grants); `local/` (embedded, one
process) and `redis/` (shared by replicas) implement them; `backends.py` picks one and wraps it
(`mirrored_runs.py`, `token_pacer.py`, `shared_follow.py`). Starting a run once: `start.py`. Following:
`follower.py`, `followed_run.py`, `settled.py`. Derived views of a run: `views.py`, `review.py`,
`compact.py`, `sanitize.py`. Nothing here imports `mcp` or `mogplex_mcp.server` (tests/test_layers.py).
"""
