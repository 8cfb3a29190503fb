"""Every limit of the OAuth front door has a flag (parsed by the real CLI), a default matching `OAuthOptions`, and
a line in docs/oauth.md and the README; a flag's value reaches the running server."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from mogplex_mcp.emulator import DEMO_TOKEN
from mogplex_mcp.server.transport.oauth.limits import OAuthOptions
from tests.oauth.support import NOT_LIMITS, RawFlow, oauth_server, options_from_cli

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


def _limit_fields() -> list[dataclasses.Field[Any]]:
    return [field for field in dataclasses.fields(OAuthOptions) if field.name not in NOT_LIMITS]


def test_every_limit_has_a_flag_defaulting_to_its_setting_and_a_line_in_the_docs() -> None:
    parsed = options_from_cli()
    oauth_doc = (ROOT / "docs" / "oauth.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for field in _limit_fields():
        flag = "--oauth-" + field.name.replace("_", "-")
        assert parsed[field.name] == field.default, flag
        assert f"| `{flag}` |" in oauth_doc, f"{flag} is missing from docs/oauth.md's limits table"
        assert f"| `{flag} " in readme, f"{flag} is missing from the README's flags table"
    assert "(fixed)" not in oauth_doc


def test_limit_flags_parse_and_refuse_what_is_not_a_positive_number() -> None:
    set_ = options_from_cli(
        "--oauth-code-seconds", "30", "--oauth-pat-checks-in-flight", "2", "--oauth-metadata-max-bytes", "4096"
    )
    assert (set_["code_seconds"], set_["pat_checks_in_flight"], set_["metadata_max_bytes"]) == (30.0, 2, 4096)
    for flag, value in (("--oauth-pat-check-seconds", "0"), ("--oauth-metadata-fetches-in-flight", "1.5")):
        with pytest.raises(SystemExit):
            options_from_cli(flag, value)


async def test_a_code_outlives_its_flagged_lifetime_by_nothing(tmp_path: Path) -> None:
    flags = options_from_cli("--oauth-code-seconds", "1")
    async with oauth_server(tmp_path, **flags) as server, httpx2.AsyncClient(timeout=20) as http:
        raw = RawFlow(server, http)
        await raw.register()
        prompt = await raw.exchange(await raw.code(DEMO_TOKEN))
        assert prompt.status_code == 200, prompt.text
        late_code = await raw.code(DEMO_TOKEN)
        await anyio.sleep(1.5)  # past the flagged one-second life
        late = await raw.exchange(late_code)
        assert late.status_code == 400 and late.json()["error"] == "invalid_grant"
