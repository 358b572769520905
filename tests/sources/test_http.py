"""The shared HTTP client: a source's ``classify`` hook runs inside the retry loop; secrets never reach an error."""

from __future__ import annotations

import httpx
import pytest

from common.core.errors import IngestError, UpstreamPermanent, UpstreamTransient
from common.sources.http import Http, response_error

KEY = "abcdef0123456789abcdef0123456789"


def scripted(*answers: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[min(len(seen), len(answers)) - 1]

    return httpx.MockTransport(handler), seen


def busy_400(response: httpx.Response) -> IngestError | None:
    """A made-up upstream whose 400 "busy" passes, and whose 200 may carry an error body."""
    if response.status_code == 400 and b"busy" in response.content:
        return response_error(response, transient=True)
    if response.status_code == 200 and response.content.startswith(b'{"error"'):
        return response_error(response, transient=False, message=f"the upstream refused: {response.text}")
    return None


def test_the_hook_makes_a_400_transient_and_the_loop_retries_it() -> None:
    transport, seen = scripted(httpx.Response(400, text="busy"), httpx.Response(200, text="ok"))
    with Http(transport=transport, max_tries=2) as http:
        assert http.get("https://up.example/x", classify=busy_400).text == "ok"
    assert len(seen) == 2


def test_the_hook_makes_a_200_with_an_error_body_permanent_and_it_is_not_retried() -> None:
    transport, seen = scripted(httpx.Response(200, text='{"error": "no such series"}'))
    with Http(transport=transport, max_tries=3) as http, pytest.raises(UpstreamPermanent) as info:
        http.get("https://up.example/x", classify=busy_400)
    assert len(seen) == 1 and info.value.status == 200
    assert str(info.value) == 'the upstream refused: {"error": "no such series"}'


def test_the_client_wide_hook_applies_and_a_request_hook_replaces_it() -> None:
    transport, seen = scripted(httpx.Response(400, text="busy"))
    with Http(transport=transport, max_tries=2, classify=busy_400) as http:
        with pytest.raises(UpstreamTransient):
            http.get("https://up.example/x")
        assert len(seen) == 2
        with pytest.raises(UpstreamPermanent):
            http.get("https://up.example/x", classify=lambda response: None)
        assert len(seen) == 3  # the status alone: a permanent 400, asked once


def test_without_a_hook_the_status_decides_and_retry_after_is_a_field() -> None:
    transport, seen = scripted(httpx.Response(429, text="slow down", headers={"Retry-After": "120"}))
    with Http(transport=transport) as http, pytest.raises(UpstreamTransient) as info:
        http.get("https://up.example/x")
    assert len(seen) == 1  # 120 s is longer than a task should sleep: back to the queue at once
    assert (info.value.status, info.value.retry_after, info.value.excerpt) == (429, 120.0, "slow down")


def test_secrets_are_redacted_from_the_errors_url_excerpt_and_message() -> None:
    transport, _ = scripted(httpx.Response(403, text=f"key {KEY} is not allowed"))
    with Http(transport=transport) as http, pytest.raises(UpstreamPermanent) as info:
        http.get(f"https://up.example/{KEY}/data", params={"api_key": KEY}, secrets=[KEY])
    error = info.value
    assert error.url == "https://up.example/***/data" and error.excerpt == "key *** is not allowed"
    assert KEY not in str(error) and "?" not in str(error)


def test_a_connection_error_names_the_url_without_its_query_or_secrets() -> None:
    with Http(max_tries=1) as http, pytest.raises(IngestError) as info:
        http.get(f"http://127.0.0.1:9/{KEY}/data", params={"api_key": KEY}, secrets=[KEY])
    assert info.value.kind == "transient" and KEY not in str(info.value)
    assert "127.0.0.1:9/***/data" in str(info.value)
