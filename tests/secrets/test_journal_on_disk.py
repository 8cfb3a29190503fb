"""Secrets in a prompt never reach the journal's bytes, and its fingerprints confirm nothing without the token."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mogplex_mcp.api.models import StartRunRequest
from mogplex_mcp.emulator import EmulatorConfig
from mogplex_mcp.emulator.config import default_tokens
from mogplex_mcp.runs.fingerprints import request_fingerprint
from mogplex_mcp.runs.local.journal import JOURNAL_FILE_NAME
from mogplex_mcp.runs.sanitize import REDACTED
from tests.server.harness import MODES, Mode, session

pytestmark = pytest.mark.anyio

PAT = "mog_JournalDiskPat7Vb3Nq8Kc1Wd"
GITHUB = "ghp_" + "Q" * 8 + "JournalDiskGithub0123456789ab"
REPO_ID = "8f3a2b1c-1234-4abc-9def-1234567890ab"
UPSTREAM = EmulatorConfig(speed=50.0, tokens={**default_tokens(), PAT: frozenset({"read", "write"})})


def journal_bytes(state_dir: Path) -> bytes:
    """The journal file, its -wal and -shm companions and its side lock file (for healing), raw."""
    files = sorted(state_dir.glob(JOURNAL_FILE_NAME + "*"))
    sqlite_files = [p for p in files if not p.name.endswith(".lock")]
    assert any(p.name.endswith("-wal") for p in sqlite_files) or not sqlite_files[1:], files
    return b"".join(p.read_bytes() for p in files)


def forbidden(secret: str) -> list[bytes]:
    """The secret as it could sit in the file: whole, without its prefix, or in UTF-16 (SQLite text encodings)."""
    return [secret.encode(), secret[4:].encode(), secret.encode("utf-16-le")]


@pytest.mark.parametrize("mode", MODES)
async def test_a_prompt_with_secrets_leaves_none_on_disk(tmp_path: Path, mode: Mode) -> None:
    prompt = f"Use token {PAT} and {GITHUB} to fix CI\nAlso: the deploy key is {GITHUB}."
    async with session(tmp_path, mode, config=UPSTREAM, token=PAT) as s:
        started = await s.ok("start_run", repoId=REPO_ID, prompt=prompt)
        await s.ok("start_run", repoId=REPO_ID, prompt="Fix it")  # a low-entropy prompt, easy to guess
        await s.ok("get_run", runId=started["run"]["runId"])
        while_running = journal_bytes(s.settings.state_dir)  # the WAL holds every write until a checkpoint
        listed = await s.client.list_resources()
    after_exit = journal_bytes(s.settings.state_dir)

    for stored in (while_running, after_exit):
        assert REDACTED.encode() in stored  # the title was stored, redacted: the grep looks at the right bytes
        for secret in (PAT, GITHUB):
            for shape in forbidden(secret):
                assert shape not in stored
    titles = [r.title or "" for r in listed.resources if started["run"]["runId"] in str(r.uri)]
    assert titles and all(PAT not in t and GITHUB not in t for t in titles)


async def test_request_fingerprints_cannot_be_confirmed_without_the_token(tmp_path: Path) -> None:
    async with session(tmp_path, "legacy", config=UPSTREAM, token=PAT) as s:
        await s.ok("start_run", repoId=REPO_ID, prompt="Fix it")
        base_url = s.settings.base_url
    stored = journal_bytes(s.settings.state_dir)
    body = StartRunRequest.model_validate({"repoId": REPO_ID, "prompt": "Fix it"}).to_wire()
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    guessable = [
        hashlib.sha256(f"{base_url}\x00{canonical}".encode()).hexdigest(),  # what an unkeyed hash would store
        hashlib.sha256(canonical.encode()).hexdigest(),
        hashlib.sha256(b"Fix it").hexdigest(),
    ]

    assert request_fingerprint(base_url, body, token=PAT).encode() in stored  # the token holder can confirm it
    assert request_fingerprint(base_url, body, token="mog_SomeoneElsesToken0000").encode() not in stored
    assert not [digest for digest in guessable if digest.encode() in stored]
