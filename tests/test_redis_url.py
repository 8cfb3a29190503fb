"""`--redis-url` / MOGPLEX_REDIS_URL: parsed, masked everywhere, checked by doctor, required up at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from mogplex_mcp.config import ConfigError, Settings, mask_redis_url
from mogplex_mcp.doctor import redis_check, run_checks
from tests.redis_server import RedisServer, free_port, running_redis
from tests.test_cli import run_cli

SECRET = "s3cret-Redis-pass"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:{SECRET}@cache:6379/0", "redis://***@cache:6379/0"),
        (f"rediss://default:{SECRET}@cache.example:6380/1", "rediss://default:***@cache.example:6380/1"),
        (f"redis://{SECRET}@cache", "redis://***@cache"),  # a username to redis-py, often a password by mistake
        (f"redis://cache/0?password={SECRET}&db=1", "redis://cache/0?password=***&db=1"),
        ("redis://cache:6379", "redis://cache:6379"),
    ],
)
def test_the_password_is_masked(url: str, shown: str) -> None:
    assert mask_redis_url(url) == shown
    settings = Settings.from_env({"MOGPLEX_REDIS_URL": url})
    assert settings.redis_url == url
    assert SECRET not in repr(settings) and shown in repr(settings)


def test_the_flag_wins_and_a_bad_url_is_a_clear_error_without_the_password(tmp_path: Path) -> None:
    flag = "redis://127.0.0.1:7000/2"
    assert Settings.from_env({"MOGPLEX_REDIS_URL": "redis://other:1/0"}, redis_url=flag).redis_url == flag
    assert Settings.from_env({}).redis_url is None
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"MOGPLEX_REDIS_URL": f"http://:{SECRET}@cache:6379"})
    assert "MOGPLEX_REDIS_URL must be a Redis URL" in str(caught.value) and SECRET not in str(caught.value)


def test_serve_refuses_to_start_when_redis_is_unreachable(tmp_path: Path) -> None:
    url = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"
    result = run_cli("serve", "--redis-url", url, MOGPLEX_MCP_STATE_DIR=str(tmp_path))
    assert result.returncode == 2
    assert "cannot start" in result.stderr and "is unavailable" in result.stderr
    assert "Traceback" not in result.stderr and SECRET not in result.stderr + result.stdout


def test_doctor_checks_the_connection_and_never_shows_the_password(tmp_path: Path, redis_server: RedisServer) -> None:
    reachable = redis_check(Settings(redis_url=redis_server.url, state_dir=tmp_path), network=True)
    assert reachable.level == "ok" and "answers" in reachable.what
    offline, _ = run_checks({"MOGPLEX_REDIS_URL": f"redis://:{SECRET}@cache:6379"}, network=False)
    assert any(
        c.level == "skipped"
        and c.what.startswith("shared state in Redis at redis://***@cache")
        and "not checked" in c.what
        for c in offline
    ), "offline, Redis is reported as not checked, never as fine"

    down = {"MOGPLEX_MCP_STATE_DIR": str(tmp_path), "MOGPLEX_REDIS_URL": f"redis://:{SECRET}@127.0.0.1:{free_port()}"}
    result = run_cli("doctor", **down)
    assert result.returncode == 1
    assert "PROBLEM  Redis at redis://***@127.0.0.1" in result.stdout
    assert SECRET not in result.stdout + result.stderr


# ElastiCache AUTH tokens allow `#` and `?`; Azure Cache keys hold `/` (base64). Each piece must stay hidden.
ODD_SECRET = "Ab#Cd?Ef/Gh+Ij=Kl"
ODD_PIECES = ("Ab#Cd", "Cd?Ef", "Ef/Gh", "Gh+Ij", "Ab", "Kl")


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{ODD_SECRET}@cache:6379/0",
        f"rediss://default:{ODD_SECRET}@cache.example:6380/1",
        f"redis://{ODD_SECRET}@cache",
        f"redis://:p@ss{ODD_SECRET}@cache:6379",
        f"redis://cache:6379/0?password={ODD_SECRET}&db=1",
    ],
)
def test_a_password_with_url_delimiters_is_masked_without_parsing(url: str) -> None:
    shown = mask_redis_url(url)
    assert not any(piece in shown for piece in ODD_PIECES), shown
    assert "***" in shown and "cache" in shown


@pytest.mark.parametrize("command", [("serve",), ("doctor", "--no-network")])
def test_an_unparsable_url_is_a_clear_exit_2_error_that_shows_no_part_of_the_password(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    url = f"redis://:{ODD_SECRET}@127.0.0.1:6379/0"
    result = run_cli(*command, MOGPLEX_MCP_STATE_DIR=str(tmp_path), MOGPLEX_REDIS_URL=url)
    out = result.stdout + result.stderr
    assert "Traceback" not in out
    assert "Percent-encode it: # as %23, ? as %3F, / as %2F" in out
    assert not any(piece in out for piece in ODD_PIECES), out
    assert result.returncode == (2 if command == ("serve",) else 1)


def test_the_percent_encoded_password_reaches_a_real_redis(tmp_path: Path) -> None:
    from urllib.parse import quote

    with running_redis(extra=("--requirepass", ODD_SECRET)) as server:
        url = f"redis://:{quote(ODD_SECRET, safe='')}@127.0.0.1:{server.port}/0"
        settings = Settings.from_env({"MOGPLEX_REDIS_URL": url, "MOGPLEX_MCP_STATE_DIR": str(tmp_path)})
        check = redis_check(settings, network=True)
        assert check.level == "ok" and "answers" in check.what, check
        wrong = Settings(redis_url=f"redis://:wrong@127.0.0.1:{server.port}/0", state_dir=tmp_path)
        refused = redis_check(wrong, network=True)
        assert refused.level == "problem" and ODD_SECRET not in refused.what
