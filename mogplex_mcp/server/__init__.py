"""The MCP surface: the only package that imports `mcp`.

Top level: `app.py` (create_server, the composition), `state.py` (lifespan state, the upstream client per
token), and what every surface shares to answer about a run: `snapshots.py` (load a run's detail and events),
`outcomes.py` (judge its one outcome), `results.py` and `compact_views.py` (shape results), `guidance.py`
(next steps), `errors.py` (api errors → what the model is told), `prompts.py`.
Folders by concern: `tools/`, `resources/`, `transport/`, `viewer/`. Imports go one way: folders may import
the top-level modules and `runs/`, `api/`, `config`; the top level never imports a folder except in `app.py`
(composition) — `transport/` imports `app.py` to build the server it serves.
"""
