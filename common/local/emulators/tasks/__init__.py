"""A local Cloud Tasks emulator that speaks Google's real gRPC API (``google.cloud.tasks.v2.CloudTasks``).

The stock ``google-cloud-tasks`` client works against it unchanged (see
:func:`common.gcp.clients.tasks_client_for`). It keeps queues and tasks in memory and dispatches HTTP target
tasks to their URLs with the ``X-CloudTasks-*`` headers, per-queue rate limits (token bucket), concurrency
limits, Cloud Tasks' retry backoff, named-task de-duplication, and OIDC tokens from a
:class:`~common.local.emulators.oidc.LocalSigner`.

Modules: ``config`` (queue settings), ``model`` (queue, task, retry policy), ``engine`` (the calls' rules,
no transport), ``delivery`` (scheduling loop and dispatch), ``server`` (gRPC), ``admin`` (time control over
HTTP) and ``__main__`` (the command line). In process::

    with TasksEmulator() as emu:
        client = tasks_client_for(emu.address)
        ...

In the foreground::

    python -m common.local.emulators.tasks --host 127.0.0.1 --port 8123

See ``docs/tasks-emulator.md`` for what is supported and how it differs from Cloud Tasks.
"""

from common.local.emulators.kit.clock import Clock, FrozenClock, SystemClock
from common.local.emulators.kit.timeconv import micros_text as _eta_header
from common.local.emulators.kit.timeconv import timestamp as _ts
from common.local.emulators.tasks.engine import TasksEngine
from common.local.emulators.tasks.server import SERVICE, TasksEmulator

__all__ = ["SERVICE", "Clock", "FrozenClock", "SystemClock", "TasksEmulator", "TasksEngine", "_eta_header", "_ts"]
