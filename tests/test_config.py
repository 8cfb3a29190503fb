"""Settings: what the environment and flags turn into, what counts as unset, and that the token stays masked."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mogplex_mcp.config import DEFAULT_BASE_URL, ConfigError, Settings, clean_env_value, mask_token

TOKEN = "mog_Zq8RkT2vLm4Np6Xw9Yb3Cd5F"


def test_an_empty_environment_gives_the_documented_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env({"HOME": str(tmp_path)})
    assert settings.token is None
    assert settings.base_url == DEFAULT_BASE_URL == "https://mogplex.com"
    assert (settings.connect_timeout, settings.read_timeout) == (5.0, 30.0)
    assert settings.max_retries == 2
    assert settings.retry_budget_seconds < 25.0  # a tool call must not outlive a host's timeout
    assert settings.read_only is False


def test_token_and_base_url_are_read_and_cleaned() -> None:
    settings = Settings.from_env({"MOGPLEX_TOKEN": f"  {TOKEN}\n", "MOGPLEX_BASE_URL": " http://127.0.0.1:8080/ "})
    assert settings.token == TOKEN
    assert settings.base_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize("unset", ["", "   ", "${user_config.token}", " ${user_config.token} ", "${user_config.x}"])
def test_empty_values_and_unfilled_desktop_placeholders_count_as_unset(unset: str) -> None:
    settings = Settings.from_env({"MOGPLEX_TOKEN": unset, "MOGPLEX_BASE_URL": unset, "MOGPLEX_READ_ONLY": unset})
    assert settings.token is None
    assert settings.base_url == DEFAULT_BASE_URL
    assert settings.read_only is False
    assert clean_env_value(unset) is None


def test_a_placeholder_inside_a_real_value_is_kept() -> None:
    assert clean_env_value("mog_abc${user_config.token}") == "mog_abc${user_config.token}"


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("TRUE", True), ("on", True), ("no", False), ("0", False)])
def test_read_only_accepts_the_usual_spellings(raw: str, expected: bool) -> None:
    assert Settings.from_env({"MOGPLEX_READ_ONLY": raw}).read_only is expected


def test_numeric_settings_are_parsed() -> None:
    settings = Settings.from_env(
        {
            "MOGPLEX_MAX_RETRIES": "5",
            "MOGPLEX_RETRY_BUDGET_SECONDS": "12.5",
            "MOGPLEX_READ_TIMEOUT_SECONDS": "45",
            "MOGPLEX_DEDUPE_WINDOW_SECONDS": "0",
        }
    )
    assert settings.max_retries == 5
    assert settings.retry_budget_seconds == 12.5
    assert settings.read_timeout == 45.0
    assert settings.dedupe_window_seconds == 0.0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MOGPLEX_BASE_URL", "mogplex.com"),
        ("MOGPLEX_BASE_URL", "ftp://mogplex.com"),
        ("MOGPLEX_READ_ONLY", "maybe"),
        ("MOGPLEX_MAX_RETRIES", "-1"),
        ("MOGPLEX_MAX_RETRIES", "11"),
        ("MOGPLEX_MAX_RETRIES", "two"),
        ("MOGPLEX_MAX_RETRIES", "²"),
        ("MOGPLEX_RETRY_BUDGET_SECONDS", "soon"),
        ("MOGPLEX_RETRY_BUDGET_SECONDS", "-3"),
        ("MOGPLEX_RETRY_BUDGET_SECONDS", "nan"),
        ("MOGPLEX_RETRY_BUDGET_SECONDS", "inf"),
        ("MOGPLEX_READ_TIMEOUT_SECONDS", "1e999"),
        ("MOGPLEX_DEDUPE_WINDOW_SECONDS", "10m"),
    ],
)
def test_bad_values_raise_a_config_error_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: value})
    assert variable in str(caught.value)


def test_flags_win_over_the_environment_and_none_means_not_given() -> None:
    env = {"MOGPLEX_BASE_URL": "https://mogplex.com", "MOGPLEX_READ_ONLY": "true"}
    settings = Settings.from_env(env, base_url="http://localhost:9000/", read_only=None)
    assert settings.base_url == "http://localhost:9000"
    assert settings.read_only is True


def test_a_bad_base_url_flag_names_the_flag() -> None:
    with pytest.raises(ConfigError, match="--base-url"):
        Settings.from_env({}, base_url="not a url")


def test_the_state_dir_follows_the_explicit_variable_then_xdg(tmp_path: Path) -> None:
    explicit = Settings.from_env({"MOGPLEX_MCP_STATE_DIR": str(tmp_path / "state")})
    assert explicit.state_dir == tmp_path / "state"
    xdg = Settings.from_env({"XDG_STATE_HOME": str(tmp_path / "xdg")})
    assert xdg.state_dir == tmp_path / "xdg" / "mogplex-mcp"


def test_repr_and_str_mask_the_token() -> None:
    settings = Settings.from_env({"MOGPLEX_TOKEN": TOKEN})
    for text in (repr(settings), str(settings), settings.masked_token):
        assert TOKEN not in text
        assert TOKEN[4:-2] not in text
        assert "mog_…" in text
    assert "<unset>" in repr(Settings(token=None))


def test_dataclass_field_repr_is_off_for_the_token() -> None:
    token_field = next(f for f in dataclasses.fields(Settings) if f.name == "token")
    assert token_field.repr is False


@pytest.mark.parametrize("token", ["mog_x", "eyJhbGciOiJSUzI1NiJ9.payload.signature", "short"])
def test_mask_token_never_shows_a_usable_token(token: str) -> None:
    masked = mask_token(token)
    assert token not in masked
    assert str(len(token)) in masked


def test_settings_are_frozen_and_overridable_by_copy() -> None:
    settings = Settings(token=TOKEN)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.token = "mog_other"  # type: ignore[misc]
    changed = settings.with_overrides(read_only=True, base_url=None)
    assert changed.read_only is True
    assert changed.base_url == settings.base_url
    assert settings.read_only is False
