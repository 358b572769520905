"""What every ``tributary`` sub-command shares: the consoles, errors, the API it calls, the target it operates on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from common.local.stack import StackState
from common.ops.target import Target, resolve
from common.settings import settings

console = Console(stderr=True)
out = Console()

StateDir = Annotated[Path, typer.Option("--state-dir", help="Where the stack keeps its state and logs.")]
DEFAULT_STATE = Path(".tributary/dev")


def fail(message: str, code: int = 1) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def api_url(explicit: str | None, state_dir: Path = DEFAULT_STATE) -> str:
    """The API to talk to: --api-url, TRIBUTARY_API_URL, or the running local stack."""
    if explicit:
        return explicit.rstrip("/")
    if configured := settings().api_url:
        return configured.rstrip("/")
    state = StackState.load(state_dir.resolve())
    if state is None:
        fail("no API given: pass --api-url, set TRIBUTARY_API_URL, or start the local stack")
        raise AssertionError
    return state.endpoints["api_url"]


ApiUrl = Annotated[str | None, typer.Option("--api-url", help="The API's base URL (default: the local stack).")]


def call(method: str, url: str, **kwargs: Any) -> Any:
    headers = kwargs.pop("headers", {})
    if key := settings().api_key:
        headers["X-API-Key"] = key
    try:
        response = httpx.request(method, url, timeout=30, headers=headers, **kwargs)
    except httpx.HTTPError as exc:
        fail(f"could not reach {url}: {exc}")
        raise AssertionError from exc
    body = response.json() if response.content else {}
    if response.status_code >= 400:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        fail(f"{response.status_code} {err.get('code', '')}: {err.get('message', response.text)}")
    return body


def parse_params(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs. A value stays a string (the source's params model converts "5" to 5 where a
    number is wanted, and keeps "20240115120000" a slot) unless it is a JSON list, object or quoted string,
    or ``true``/``false`` (a boolean field takes a JSON boolean only)."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--param takes KEY=VALUE, not {item!r}")
        if value[:1] in ("[", "{", '"'):
            try:
                params[key] = json.loads(value)
                continue
            except json.JSONDecodeError as exc:
                fail(f"--param {key}: {value!r} is not valid JSON ({exc.msg})")
        params[key] = {"true": True, "false": False}.get(value, value)
    return params


def target(state_dir: Path = DEFAULT_STATE) -> Target:
    """The deployment to operate on: the one this shell's settings name, else the running local stack."""
    return resolve(state_dir)
