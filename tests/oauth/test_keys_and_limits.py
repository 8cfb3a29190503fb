"""The front door's key (where it comes from, rotation, refusal of a readable key file) and its rate limiter
(per address, overall, bounded memory)."""

from __future__ import annotations

import base64
import os
import secrets
import stat
from pathlib import Path

import pytest

from mogplex_mcp.config import ConfigError
from mogplex_mcp.server.transport.oauth.keys import KEY_ENV, KEY_FILE, load_keys
from mogplex_mcp.server.transport.oauth.limits import OAuthOptions, RateLimiter


def a_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def test_without_a_configured_key_one_is_made_in_the_state_dir_readable_only_by_its_owner(tmp_path: Path) -> None:
    first = load_keys(tmp_path, shared=False, env={})
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    sealed = first.seal(b"mog_secret", b"grant-1")
    assert load_keys(tmp_path, shared=False, env={}).open(sealed, b"grant-1") == b"mog_secret"  # same key on restart


def test_a_key_file_others_may_read_is_refused(tmp_path: Path) -> None:
    load_keys(tmp_path, shared=False, env={})
    os.chmod(tmp_path / KEY_FILE, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_keys(tmp_path, shared=False, env={})


def test_shared_state_needs_the_key_from_the_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=KEY_ENV):
        load_keys(tmp_path, shared=True, env={})
    assert load_keys(tmp_path, shared=True, env={KEY_ENV: a_key()}) is not None
    with pytest.raises(ConfigError, match="base64"):
        load_keys(tmp_path, shared=True, env={KEY_ENV: "not a key!"})


def test_rotation_opens_what_the_old_key_sealed_and_seals_with_the_new_one(tmp_path: Path) -> None:
    old, new = a_key(), a_key()
    before = load_keys(tmp_path, shared=True, env={KEY_ENV: old})
    sealed_before = before.seal(b"mog_pat", b"grant")
    during = load_keys(tmp_path, shared=True, env={KEY_ENV: f"{new},{old}"})
    assert during.open(sealed_before, b"grant") == b"mog_pat"
    sealed_during = during.seal(b"mog_pat", b"grant")
    after = load_keys(tmp_path, shared=True, env={KEY_ENV: new})
    assert after.open(sealed_during, b"grant") == b"mog_pat"
    assert after.open(sealed_before, b"grant") is None  # the old key is gone: such grants are dropped
    assert during.open(sealed_during, b"another grant") is None  # bound to what it was sealed for


def test_the_limiter_counts_per_address_and_overall_and_forgets_old_minutes() -> None:
    now = [0.0]
    limiter = RateLimiter(per_address=2, total=3, clock=lambda: now[0])
    assert [limiter.admit("a"), limiter.admit("a"), limiter.admit("a")] == [True, True, False]
    assert [limiter.admit("b"), limiter.admit("c")] == [True, False]  # the whole server's 3 are used
    now[0] += 61
    assert limiter.admit("a") and limiter.admit("c")


def test_the_limiter_remembers_a_bounded_number_of_addresses() -> None:
    limiter = RateLimiter(per_address=1, total=10**9, max_addresses=100)
    for number in range(10_000):
        assert limiter.admit(f"10.0.{number // 256}.{number % 256}")
    assert len(limiter) == 100


@pytest.mark.parametrize(
    "url",
    ["http://mcp.example.com", "https://mcp.example.com/mcp", "ftp://x", "https://mcp.example.com?x=1", "mcp"],
)
def test_a_public_url_must_be_an_https_origin(url: str) -> None:
    with pytest.raises(ConfigError):
        OAuthOptions(public_url=url)
