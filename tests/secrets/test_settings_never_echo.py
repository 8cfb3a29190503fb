"""A token pasted into the wrong setting is never printed back: start-up errors, doctor, and its config snippets."""

from __future__ import annotations

import pytest

from mogplex_mcp.config import ConfigError, Settings, mask_secrets
from tests.test_cli import run_cli

PAT = "mog_PastedIntoTheWrongPlace7Qx9Lm2Vb"
GITHUB = "ghp_" + "Z" * 36
BASE_URLS = [
    pytest.param(PAT, id="the-token-itself"),
    pytest.param(f"Bearer {PAT}", id="a-bearer-header"),
    pytest.param(f"https://{PAT}@mogplex.com", id="userinfo"),
    pytest.param(f"https://user:{PAT}@mogplex.com", id="password"),
    pytest.param(f"https://mogplex.com/?token={PAT}", id="query"),
    pytest.param(f"https://mogplex.com/#{PAT}", id="fragment"),
    pytest.param(f"https://mogplex.com/api/{PAT}", id="path"),
    pytest.param(f"mogplex.com/{PAT}", id="no-scheme"),
    pytest.param(f"https://{GITHUB}@mogplex.com", id="github-userinfo"),
]


def assert_never_shown(text: str) -> None:
    for secret in (PAT, GITHUB):
        assert secret not in text and secret[4:] not in text and secret[4:20] not in text


@pytest.mark.parametrize("base_url", BASE_URLS)
def test_serve_refuses_the_base_url_without_echoing_the_token(base_url: str) -> None:
    result = run_cli("serve", MOGPLEX_BASE_URL=base_url, MOGPLEX_TOKEN="mog_SomeRealLookingToken123456")

    assert result.returncode == 2
    assert "MOGPLEX_BASE_URL" in result.stderr and "configuration error" in result.stderr
    assert_never_shown(result.stdout + result.stderr)


@pytest.mark.parametrize("base_url", BASE_URLS)
def test_doctor_names_the_problem_without_echoing_the_token(base_url: str) -> None:
    result = run_cli("doctor", "--no-network", MOGPLEX_BASE_URL=base_url)

    assert result.returncode == 1
    assert "PROBLEM  MOGPLEX_BASE_URL" in result.stdout
    assert "claude_desktop_config.json" in result.stdout and "mog_YOUR_TOKEN" in result.stdout  # snippets shown
    assert_never_shown(result.stdout + result.stderr)


def test_the_base_url_flag_is_checked_the_same_way() -> None:
    result = run_cli("doctor", "--no-network", "--base-url", f"https://{PAT}@mogplex.com")

    assert result.returncode == 1 and "user name or password" in result.stdout
    assert_never_shown(result.stdout + result.stderr)


@pytest.mark.parametrize("name", ["MOGPLEX_READ_ONLY", "MOGPLEX_MAX_RETRIES", "MOGPLEX_READ_TIMEOUT_SECONDS"])
def test_a_token_in_any_other_setting_is_masked_too(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: PAT})

    assert name in str(caught.value)
    assert_never_shown(str(caught.value))


def test_a_plain_address_still_works_and_masking_spares_placeholders() -> None:
    assert Settings.from_env({"MOGPLEX_BASE_URL": "https://mogplex.example:8443/"}).base_url == (
        "https://mogplex.example:8443"
    )
    assert mask_secrets("MOGPLEX_TOKEN=mog_YOUR_TOKEN") == "MOGPLEX_TOKEN=mog_YOUR_TOKEN"
    assert mask_secrets(f"MOGPLEX_TOKEN_{PAT}") == "MOGPLEX_TOKEN_<mog_…Vb (36 chars)>"
