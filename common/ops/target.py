"""What an operator command talks to: a Settings and the clients built for it (a project, or the local stack).

The CLI builds one :class:`Target` and runs the reaper, the dead-letter tools and the schedule sync under
:meth:`Target.active`, which makes its settings the process's for the block: nothing edits ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.gcp import clients
from common.local.stack import StackState
from common.settings import Settings, settings, use_settings


@dataclass(frozen=True)
class Target:
    """A deployment to operate on: its settings, and (built on first use, cached per settings) its clients."""

    settings: Settings
    #: Where the settings came from, for messages: "environment" or the local stack's state folder.
    origin: str = "environment"

    @property
    def firestore(self) -> Any:
        return clients.firestore(self.settings)

    @property
    def publisher(self) -> Any:
        return clients.publisher(self.settings)

    @property
    def subscriber(self) -> Any:
        return clients.subscriber(self.settings)

    @property
    def tasks(self) -> Any:
        return clients.tasks(self.settings)

    @property
    def scheduler(self) -> Any:
        return clients.scheduler(self.settings)

    @contextmanager
    def active(self) -> Iterator[Target]:
        """Run a block against this target (``common.settings.settings()`` and every client follow it)."""
        with use_settings(self.settings):
            yield self


def resolve(state_dir: Path) -> Target:
    """The environment's target when it names one (an emulator host or a project), else the local stack
    recorded in ``state_dir`` when one runs, else the environment's defaults."""
    own = settings()
    if own.firestore_emulator_host or "project" in own.model_fields_set:
        return Target(own)
    state = StackState.load(state_dir.resolve())
    if state is None:
        return Target(own)
    return Target(Settings.from_env({**os.environ, **state.env}), origin=str(state_dir))
