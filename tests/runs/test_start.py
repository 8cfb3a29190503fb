"""runs/start.py against the emulator on loopback: a start is claimed, sent and recorded so a retry never
becomes a second run, while a start the service definitely refused does not pin its key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from mogplex_mcp.api.client import API_PREFIX, MogplexClient
from mogplex_mcp.api.errors import MogplexError, PermissionDeniedError
from mogplex_mcp.api.models import StartRunRequest
from mogplex_mcp.api.retry import RetryPolicy
from mogplex_mcp.config import Settings
from mogplex_mcp.emulator import EmulatorConfig, EmulatorHandle, running_emulator
from mogplex_mcp.runs.fingerprints import request_fingerprint, token_fingerprint
from mogplex_mcp.runs.local import LocalStartClaims
from mogplex_mcp.runs.local.journal import StartJournal
from mogplex_mcp.runs.start import StartRequest, start_once
from mogplex_mcp.runs.store import StartClaims, StartClaimsUnavailableError
from tests.server.journal_faults import holding_open, smash_index

pytestmark = pytest.mark.anyio

REPO_ID = "8f3a2b1c-1234-4abc-9def-1234567890ab"
BODY = StartRunRequest(repo_id=REPO_ID, prompt="Add a README [scenario:success]")


@dataclass
class Rig:
    emu: EmulatorHandle
    claims: StartClaims

    async def start(self, token: str | None = None, explicit_key: str | None = None) -> MogplexError | str:
        """Start BODY once through the use-case; the run id, or the client's error."""
        token = token or self.emu.token
        settings = Settings(token=token, base_url=self.emu.base_url, state_dir=Path("/nonexistent"))
        body_hash = request_fingerprint(self.emu.base_url, BODY.to_wire(), token=token)
        start = StartRequest(BODY, token_fingerprint(token), body_hash, explicit_key)
        no_retries = RetryPolicy(max_retries=0)
        try:
            sent = await start_once(
                self.claims,
                start,
                window=window,
                client=lambda: MogplexClient.from_settings(settings, retry=no_retries),
            )
        except MogplexError as exc:
            return exc
        return sent.started.run.run_id

    def sent_keys(self) -> list[str | None]:
        return [
            r.idempotency_key for r in self.emu.emulator.requests if r.method == "POST" and r.path.endswith("/runs")
        ]

    def runs(self) -> int:
        return len(self.emu.emulator.store.runs())


def window() -> AbstractAsyncContextManager[float]:
    @asynccontextmanager
    async def bounded() -> AsyncIterator[float]:
        yield float("inf")  # the client's own budget bounds each call here

    return bounded()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with running_emulator(EmulatorConfig()) as emu:
        with StartJournal(tmp_path / "journal.sqlite3") as journal:
            yield Rig(emu, LocalStartClaims(journal))


async def test_a_retry_after_a_lost_answer_reuses_the_key_and_makes_one_run(rig: Rig) -> None:
    rig.emu.emulator.inject_fault("unavailable_503", method="POST", path=f"{API_PREFIX}/runs")
    first = await rig.start()
    assert isinstance(first, MogplexError)  # the host saw a failure; the start may or may not exist
    second = await rig.start()
    assert isinstance(second, str)
    keys = rig.sent_keys()
    assert len(keys) == 2 and keys[0] == keys[1], "the retry must send the first attempt's Idempotency-Key"
    assert rig.runs() == 1


async def test_an_identical_start_replays_the_recorded_run(rig: Rig) -> None:
    first = await rig.start()
    again = await rig.start()
    assert isinstance(first, str) and again == first
    assert rig.runs() == 1


async def test_a_start_the_service_refused_does_not_pin_its_key(rig: Rig) -> None:
    refused = await rig.start(token=rig.emu.read_only_token)
    assert isinstance(refused, PermissionDeniedError)
    await rig.start(token=rig.emu.read_only_token)
    keys = rig.sent_keys()
    assert len(keys) == 2 and keys[0] != keys[1], "no run exists under a refused start's key: the next gets a new one"


async def test_an_explicit_key_is_sent_as_given_without_a_claim(rig: Rig) -> None:
    run_id = await rig.start(explicit_key="  my-own-key-0001  ")
    assert isinstance(run_id, str)
    assert rig.sent_keys() == ["my-own-key-0001"]
    assert isinstance(await rig.start(), str)  # the claimed path did not see the explicit one
    assert rig.sent_keys()[1] != "my-own-key-0001"


async def test_nothing_is_sent_when_no_key_can_be_vouched_for(rig: Rig, tmp_path: Path) -> None:
    # A damaged journal another process still has open cannot be replaced, and may hide an earlier claim:
    # a fresh key could start a second run, so nothing is sent.
    damaged = tmp_path / "damaged.sqlite3"
    with StartJournal(damaged) as journal:
        journal.remember_run("someone", "run-1")
    smash_index(damaged)
    with holding_open(damaged), StartJournal(damaged) as journal:
        rig.claims = LocalStartClaims(journal)
        with pytest.raises(StartClaimsUnavailableError, match="damaged"):
            await rig.start()
    assert rig.sent_keys() == []
    assert rig.runs() == 0
