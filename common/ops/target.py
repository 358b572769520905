"""What an operator command talks to: a Settings and the clients built for it (a project, or the local stack).

Every ``tributary`` command that reaches a deployment resolves its :class:`Target` with :func:`resolve`, in one
order: the ``--target``/``--project`` flag, the environment (an emulator host, ``TRIBUTARY_PROJECT`` or
``GOOGLE_CLOUD_PROJECT``, ``TRIBUTARY_API_URL``), the running local stack, then the project the Google Cloud CLI
is configured with. The command runs under :meth:`Target.active`, which makes its settings the process's for the
block: nothing edits ``os.environ``.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from common.core.errors import ConfigError
from common.gcp import clients
from common.local.stack import StackState
from common.settings import Settings, settings, use_settings

#: The ``--target`` value naming the local stack.
LOCAL = "local"
#: Settings fields that point Google's clients at emulators (a target with one is local).
EMULATOR_FIELDS = ("pubsub_emulator_host", "firestore_emulator_host", "tasks_emulator_host", "scheduler_emulator_host")


@dataclass(frozen=True)
class Target:
    """A deployment to operate on: its settings, and (built on first use, cached per settings) its clients."""

    settings: Settings
    #: Where the settings came from, for messages: "environment", "flag", "gcloud config" or the stack's folder.
    origin: str = "environment"
    #: "local": the local stack or emulators; "project": a real Google Cloud project.
    kind: Literal["local", "project"] = "project"
    #: The api function's base URL, when known (the stack's, or TRIBUTARY_API_URL).
    api_url: str = ""

    @property
    def local(self) -> bool:
        return self.kind == "local"

    def describe(self) -> str:
        """One line for stderr: which deployment a command acts on."""
        if self.kind == "project":
            return f"project {self.settings.project}"
        if self.origin not in ("environment", "flag"):
            return f"local stack ({self.origin})"
        return f"local emulators (project {self.settings.project}, from the environment)"

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


def _emulated(s: Settings) -> bool:
    return any(getattr(s, f) for f in EMULATOR_FIELDS)


def _from_stack(state_dir: Path, environ: Mapping[str, str]) -> Target | None:
    state = StackState.load(state_dir.resolve())
    if state is None:
        return None
    s = Settings.from_env({**environ, **state.env})
    return Target(s, origin=str(state_dir), kind="local", api_url=state.endpoints.get("api_url", ""))


def _for_project(project: str, environ: Mapping[str, str], origin: str) -> Target:
    """Settings for a real project: the environment's, with ``project`` and no emulator."""
    drop = {name for f in (*EMULATOR_FIELDS, "project") for name in Settings.env_names(f)}
    env = {k: v for k, v in environ.items() if k not in drop}
    s = Settings.from_env({**env, "TRIBUTARY_PROJECT": project})
    return Target(s, origin=origin, kind="project", api_url=s.api_url)


def configured_project(environ: Mapping[str, str]) -> str:
    """The project the Google Cloud CLI is set to (``CLOUDSDK_CORE_PROJECT``, else its active configuration)."""
    if project := environ.get("CLOUDSDK_CORE_PROJECT", "").strip():
        return project
    config_dir = Path(environ.get("CLOUDSDK_CONFIG") or Path(environ.get("HOME", "~")) / ".config" / "gcloud")
    try:
        active = (config_dir / "active_config").read_text(encoding="utf-8").strip() or "default"
    except OSError:
        active = "default"
    parser = configparser.ConfigParser()
    try:
        parser.read(config_dir.expanduser() / "configurations" / f"config_{active}", encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return ""
    return parser.get("core", "project", fallback="").strip()


def resolve(state_dir: Path, flag: str | None = None, environ: Mapping[str, str] | None = None) -> Target:
    """The deployment to act on: ``flag`` ("local" or a project id), else the environment's when it names one
    (an emulator host, a project or an API URL), else the local stack running from ``state_dir``, else the
    Google Cloud CLI's configured project.

    Raises:
        ConfigError: ``--target local`` with no stack running, an invalid setting, or no target at all.
    """
    env = os.environ if environ is None else environ
    if flag == LOCAL:
        if (stack := _from_stack(state_dir, env)) is None:
            raise ConfigError(
                f"--target local: no local stack runs from {state_dir}; start one with `tributary dev up`"
            )
        return stack
    if flag:
        return _for_project(flag, env, "flag")
    own = settings() if environ is None else Settings.from_env(env)
    if _emulated(own):
        return Target(own, kind="local", api_url=own.api_url)
    if own.model_fields_set & {"project", "api_url"}:
        return Target(own, kind="project", api_url=own.api_url)
    if (stack := _from_stack(state_dir, env)) is not None:
        return stack
    if project := configured_project(env):
        return _for_project(project, env, "gcloud config")
    raise ConfigError(
        "no target: pass --project P (or --target local), set TRIBUTARY_PROJECT (and TRIBUTARY_API_URL), "
        "or start the local stack with `tributary dev up`"
    )
