"""The local stack's TRIBUTARY_AUTH per function: never weaker than the environment or configured keys ask."""

from __future__ import annotations

from common.local.state import LOCAL_AUTH, StackConfig, function_auth


def test_by_default_the_local_api_is_open_and_ingest_verifies_tokens() -> None:
    assert function_auth(StackConfig(), {}) == LOCAL_AUTH


def test_an_explicit_auth_on_is_never_overridden() -> None:
    auth = function_auth(StackConfig(), {"TRIBUTARY_AUTH": "on"})
    assert auth["api"] == "on" and auth["ingest"] == "on"
    assert function_auth(StackConfig(env={"TRIBUTARY_AUTH": "on"}), {})["api"] == "on"


def test_configured_keys_or_accounts_turn_the_api_on() -> None:
    for env in ({"TRIBUTARY_API_KEYS": "sha256:" + "0" * 64}, {"TRIBUTARY_OIDC_ALLOWED_SERVICE_ACCOUNTS": "a@b"}):
        assert function_auth(StackConfig(), env)["api"] == "on"
        assert function_auth(StackConfig(auth={"api": "off"}), env)["api"] == "on"
        assert function_auth(StackConfig(env=env), {})["api"] == "on"
    assert function_auth(StackConfig(), {"TRIBUTARY_API_KEYS": " "})["api"] == "off"
