"""The MCP resources: run and event-log resources, and their live updates (subscriptions in both eras).

`run_resources.py` (templates, reads, resources/list), `uris.py` (the run URIs), `subscribers.py` (who listens
to which run), `subscriptions.py` (delivering each change to them, coalesced).
May import: the top level of `server/`, `runs/`, `api/`. Never `tools/` or `transport/`.
"""
