"""Expected failures as one line each (what happened, what to do) instead of a traceback; ``--debug`` keeps it.

:class:`FriendlyGroup` is the ``tributary`` command's class: it runs the command and maps what escapes it.
Google's exception classes are imported only once something failed, so ``tributary --help`` stays cheap.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import httpx
import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from common.core.errors import ConfigError
from common.ops.cli.common import options

NO_CREDENTIALS = (
    "no Google credentials: run `gcloud auth application-default login`, "
    "or work on the local stack (`tributary dev up`, then `--target local`)"
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes, outermost first (bounded: chains can loop)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 20:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _google(exc: BaseException) -> str | None:
    """The line for one of Google's client errors, or None when ``exc`` is not one."""
    module = type(exc).__module__
    if not module.startswith(("google.", "grpc")):
        return None
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    if isinstance(exc, auth.DefaultCredentialsError | auth.RefreshError | api.Unauthenticated):
        return NO_CREDENTIALS
    if isinstance(exc, api.PermissionDenied | api.Forbidden):
        return f"permission denied: {_first_line(exc)} (check the account's roles, docs/deploy.md)"
    if isinstance(exc, api.ServiceUnavailable | api.DeadlineExceeded | api.RetryError | auth.TransportError):
        return (
            f"the service did not answer: {_first_line(exc)} "
            "(for the local stack, `tributary dev status` shows what runs; else try again)"
        )
    if isinstance(exc, api.NotFound):
        return f"not found: {_first_line(exc)} (is it deployed in this project? deploy.sh creates it)"
    if isinstance(exc, api.GoogleAPICallError):
        return f"{exc.code} {type(exc).__name__}: {_first_line(exc)}"
    return None


def explain(exc: BaseException) -> str:
    """One line saying what went wrong and what to do."""
    for link in _chain(exc):
        if isinstance(link, ConfigError):
            return link.message
        if (line := _google(link)) is not None:
            return line
        if isinstance(link, httpx.HTTPError):
            return f"HTTP request failed: {_first_line(link)} (is the target running? `tributary dev status`)"
        if isinstance(link, ConnectionError | TimeoutError):
            return f"could not connect: {_first_line(link)} (is the target running? `tributary dev status`)"
    return f"unexpected {type(exc).__name__}: {_first_line(exc)} (run with --debug for the traceback)"


class FriendlyGroup(TyperGroup):
    """The ``tributary`` group: usage errors and failures end in one line on stderr and a non-zero exit."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Run the command line; exit with its code.

        Raises:
            SystemExit: always, with the command's exit code (1 for a failure, 2 for a usage error).
        """
        kwargs["standalone_mode"] = False
        options.debug = "--debug" in (kwargs.get("args") or (args[0] if args else None) or sys.argv[1:])
        try:
            code = super().main(*args, **kwargs)
        except TyperException as exc:  # usage errors: a typo, a missing argument
            if type(exc).__name__ == "NoArgsIsHelpError":  # `tributary jobs` alone: the help is the answer
                typer.echo(exc.format_message(), err=True)
            else:
                typer.echo(f"error: {exc.format_message()} (see --help)", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        except Exception as exc:
            if options.debug:
                raise
            typer.echo(f"error: {explain(exc)}", err=True)
            sys.exit(1)
        finally:  # the next invocation in this process (tests, scheduler.cli on its own) starts afresh
            options.target, options.debug = None, False
        sys.exit(code if isinstance(code, int) else 0)
