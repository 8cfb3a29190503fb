"""The MCP resources: run and event-log resources, and their live updates (subscriptions in both eras).

`run_resources.py` (templates, reads, resources/list), `subscriptions.py` (who hears which run's changes).
May import: the top level of `server/`, `runs/`, `api/`. Never `tools/` or `transport/`.
"""
