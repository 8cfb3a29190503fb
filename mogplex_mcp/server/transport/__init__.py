"""How callers reach the server over HTTP: the gateway in front of MCP, sessions, connection limits.

`http.py` (the streamable HTTP app and its uvicorn server), `gateway.py` (who is calling: bearer → token
fingerprint, session binding, per-caller limits), `sessions.py` (the session registry and its caps),
`connections.py` (connection and header/body limits), `metrics.py` (the metrics port), `oauth/` (the OAuth
sign-in front door, `--public-url`). stdio needs nothing here: `cli.py` runs the SDK's.
May import: `server/app.py` and the top level, `runs/`, `config`. Never `tools/` or `resources/`.
"""
