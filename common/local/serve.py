"""How the local stack's servers run as processes: serve until SIGTERM or SIGINT (Ctrl-C), then stop.

The Tasks and Scheduler emulators, the OIDC certs server, the replay server and ``tributary dev up`` in
the foreground all run this way; ``tributary dev down`` stops each with SIGTERM to its process group.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable

log = logging.getLogger("tributary.serve")


def log_to_stderr(level: str) -> None:
    """One log format for every server process (the stack keeps each process's stderr in its log file)."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def serve_until_signalled(stop: Callable[[], object], *, poll: float = 0.5) -> None:
    """Block until SIGTERM or SIGINT, then call ``stop`` (also when the wait itself fails)."""
    done = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        while not done.wait(poll):
            pass
    finally:
        stop()
