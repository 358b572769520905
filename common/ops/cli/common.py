"""What every ``tributary`` sub-command shares: the consoles, errors, the API it calls, the target it operates on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from common.core.errors import ConfigError
from common.ops.target import Target, resolve
from common.settings import settings
from common.sources import all_sources, get_source

console = Console(stderr=True, soft_wrap=True)  # one message, one line, whatever the width
out = Console()

StateDir = Annotated[Path, typer.Option("--state-dir", help="Where the stack keeps its state and logs.")]
DEFAULT_STATE = Path(".tributary/dev")


@dataclass
class Options:
    """The global options (``tributary --target P --debug ...``), set by the main callback for one invocation."""

    target: str | None = None
    debug: bool = False
    state_dir: Path = DEFAULT_STATE


#: The current invocation's global options (reset by each ``tributary`` invocation).
options = Options()


def fail(message: str, code: int = 1) -> None:
    """Print ``error: message`` on stderr and exit with ``code``.

    Raises:
        typer.Exit: always.
    """
    console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def target(state_dir: Path | None = None) -> Target:
    """The deployment to operate on (:func:`common.ops.target.resolve`), announced on stderr.

    Raises:
        typer.Exit: no target can be resolved (the reason is printed).
    """
    try:
        chosen = resolve(state_dir or options.state_dir, options.target)
    except ConfigError as exc:
        fail(exc.message)
        raise AssertionError from exc
    console.print(f"target: {escape(chosen.describe())}", highlight=False)
    return chosen


def api_url(explicit: str | None, state_dir: Path | None = None) -> str:
    """The API to talk to: ``--api-url``, else the target's (TRIBUTARY_API_URL, or the running local stack's).

    Raises:
        typer.Exit: the target's API URL is unknown (the message says how to give it).
    """
    if explicit:
        console.print(f"target: api {escape(explicit)}", highlight=False)
        return explicit.rstrip("/")
    chosen = target(state_dir)
    if not chosen.api_url:
        fail(
            f"the API of {chosen.describe()} is unknown: pass --api-url or set TRIBUTARY_API_URL "
            "(deploy.sh prints it), or start the local stack with `tributary dev up`"
        )
    return chosen.api_url.rstrip("/")


ApiUrl = Annotated[str | None, typer.Option("--api-url", help="The API's base URL (default: the target's).")]


def call(method: str, url: str, **kwargs: Any) -> Any:
    """One API call; an HTTP error status or an unreachable API ends the command with one line.

    Raises:
        typer.Exit: the API could not be reached or answered an error.
    """
    headers = kwargs.pop("headers", {})
    if key := settings().api_key:
        headers["X-API-Key"] = key
    try:
        response = httpx.request(method, url, timeout=30, headers=headers, **kwargs)
    except httpx.HTTPError as exc:
        fail(f"could not reach {url}: {exc} (is the target running? `tributary dev status` shows the local stack)")
        raise AssertionError from exc
    try:
        body = response.json() if response.content else {}
    except ValueError:
        body = {}
    if response.status_code >= 400:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        fail(f"{response.status_code} {err.get('code', '')}: {err.get('message', response.text[:200])}")
    return body


def _list_fields(source: str) -> set[str]:
    """The params of ``source`` that are lists (from the local registry; empty for a source it does not know)."""
    try:
        schema = get_source(source).params_model.model_json_schema()
    except KeyError:
        return set()
    lists = set()
    for name, prop in schema.get("properties", {}).items():
        kinds = [prop, *prop.get("anyOf", [])]
        if any(k.get("type") == "array" for k in kinds):
            lists.add(name)
    return lists


def parse_params(items: list[str], source: str | None = None) -> dict[str, Any]:
    """``KEY=VALUE`` pairs. A value stays a string (the source's params model converts "5" to 5 where a
    number is wanted, and keeps "20240115120000" a slot) unless it is a JSON list, object or quoted string,
    or ``true``/``false`` (a boolean field takes a JSON boolean only); for a list param of ``source``, ``a,b`` is
    the list ``["a", "b"]``.

    Raises:
        typer.Exit: a pair is not ``KEY=VALUE``, a key is given twice, or a JSON value is invalid.
    """
    lists = _list_fields(source) if source else set()
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--param takes KEY=VALUE, not {item!r}")
        if key in params:
            fail(f"--param {key} is given twice; give it once (a list param takes a,b,c)")
        if value[:1] in ("[", "{", '"'):
            try:
                params[key] = json.loads(value)
                continue
            except json.JSONDecodeError as exc:
                fail(f"--param {key}: {value!r} is not valid JSON ({exc.msg})")
        if key in lists:
            params[key] = [v.strip() for v in value.split(",") if v.strip()]
        else:
            params[key] = {"true": True, "false": False}.get(value, value)
    return params


def source_names(incomplete: str = "") -> list[str]:
    """Shell completion: the registered sources' names starting with ``incomplete``."""
    return [s.name for s in all_sources() if s.name.startswith(incomplete)]
