"""The MCP tools: each tool's definition next to its handler, with its argument checking and result shaping.

`run_tools.py` (list_repos, start_run, get_run, cancel_run), `event_tools.py` (list_run_events, wait_for_run),
`orchestration.py` (list_runs, wait_for_runs, continue_run) with `multi_wait.py`, `run_list.py` and
`orchestration_results.py` behind it; `definitions.py` (the `tool` decorator, READ_ONLY, RunId);
`arguments.py` (strict arguments, lean schemas); `repo_names.py` (a repository name given as repoId).
May import: the top level of `server/` (state, outcomes, snapshots, results, errors, guidance), `runs/`, `api/`.
Never `resources/` or `transport/`.
"""
