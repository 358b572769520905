"""The operator console at ``/ui``: server-rendered page shells, a small same-origin script, and its JSON.

The api function imports this package only when a ``/ui`` path is asked for (its cold start never pays for
jinja2 or these modules). Every ``/ui`` request has already passed the api's own :func:`common.runtime.auth.guard`;
the pages read the public JSON API, plus the few read-only views under ``/ui/data/`` that the API has no route
for (a job's timeline, the batches, dead letters, the charts). State-changing buttons call the JSON API with
``Content-Type: application/json`` (or ``/ui/data/...`` POSTs that demand it too), never a form.
"""

from common.runtime.console.app import CONSOLE_PREFIX, is_console_path, serve

__all__ = ["CONSOLE_PREFIX", "is_console_path", "serve"]
