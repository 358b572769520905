"""What the local stack is asked to start (:class:`StackConfig`) and what it recorded (:class:`StackState`),
so that ``tributary dev down`` from another shell stops exactly what ``up`` started."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from common.local.processes import stop_groups

#: TRIBUTARY_AUTH per function in the stack (docs/security.md): the emulators' tasks carry ID tokens, so ingest
#: verifies them; the Pub/Sub emulator sends none (docs/google-quirks.md), so status and load cannot; the api
#: stays open locally (the CLI, n8n and tests call it without credentials) unless StackConfig.auth turns it on,
#: or :func:`function_auth` does (TRIBUTARY_AUTH=on, or keys or allowed accounts configured).
LOCAL_AUTH = {"api": "off", "ingest": "on", "status": "off", "load": "off"}


@dataclass
class StackConfig:
    """What ``tributary dev up`` starts, and where it keeps its state."""

    state_dir: Path = Path(".tributary/dev")
    project: str = "tributary-local"
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=dict)
    #: Serve these recorded responses and point every source's base URL at them.
    replay_dir: Path | None = None
    #: Forward to the real upstreams and record their answers here (replayable with ``replay_dir``).
    record_dir: Path | None = None
    #: Also run the Cloud Scheduler emulator and sync the schedules into it.
    scheduler: bool = True
    #: Extra environment for the functions (e.g. fault injection in tests).
    env: dict[str, str] = field(default_factory=dict)
    #: Pick free ports instead of the defaults (tests).
    auto_ports: bool = False
    #: TRIBUTARY_AUTH ("on" | "off") per function; see LOCAL_AUTH.
    auth: dict[str, str] = field(default_factory=lambda: dict(LOCAL_AUTH))
    #: Also run the GCS and BigQuery emulators: outputs go to gs:// and the load stage to BigQuery.
    bigquery: bool = False
    #: Extra command-line flags per component, e.g. ``{"tasks": ["--duplicate-deliveries", "3"]}``.
    extra_args: dict[str, list[str]] = field(default_factory=dict)
    #: With ``replay_dir``, give every declared secret a placeholder value (recorded upstreams accept any key):
    #: the demo's choice. ``tributary dev up`` leaves them unset, so a source needing a key asks for one, as
    #: in the cloud, and ``tributary secrets set`` provides it.
    secret_placeholders: bool = True
    #: "local": queues dispatch fast and retry within seconds (common.local.provisioning.local_queue);
    #: "declared": each source's production limits.
    queue_rates: Literal["local", "declared"] = "local"


@dataclass
class StackState:
    """What ``up`` recorded: the endpoints, and each child's pid (= process group id)."""

    project: str
    endpoints: dict[str, str]
    env: dict[str, str]
    pids: dict[str, int]
    state_dir: str
    started_at: float

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, state_dir: Path) -> StackState | None:
        file = state_dir / "stack.json"
        if not file.exists():
            return None
        return cls(**json.loads(file.read_text()))


def function_auth(config: StackConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """TRIBUTARY_AUTH for each function of the stack: ``config.auth``, never weaker than what was asked for.

    ``TRIBUTARY_AUTH=on`` in the environment (or ``config.env``) turns the api and ingest on, and configured
    API keys or allowed accounts turn the api on: credentials someone set are enforced, not silently ignored.
    Status stays as configured: the Pub/Sub emulator pushes without a token (docs/google-quirks.md).
    """
    env = {**environ, **config.env}
    out = dict(config.auth)
    explicit_on = env.get("TRIBUTARY_AUTH", "").strip().lower() == "on"
    credentials = any(env.get(k, "").strip() for k in ("TRIBUTARY_API_KEYS", "TRIBUTARY_OIDC_ALLOWED_SERVICE_ACCOUNTS"))
    if explicit_on or credentials:
        out["api"] = "on"
    if explicit_on:
        out["ingest"] = "on"
    return out


def down(state_dir: Path) -> list[str]:
    """Stop the stack recorded in ``state_dir``; returns the names of what was running."""
    state = StackState.load(state_dir.resolve())
    if state is None:
        return []
    stopped = stop_groups(state.pids)
    (state_dir.resolve() / "stack.json").unlink(missing_ok=True)
    return stopped
