"""The local stack: Google's Pub/Sub and Firestore emulators, our Tasks (and Scheduler) emulators, and
every function under functions-framework, all on 127.0.0.1.

Each child runs in its own process group (killing ``gcloud`` would leave the Java child alive), logs
to ``<state>/logs/<name>.log``, and is recorded in ``<state>/stack.json`` so that ``tributary dev down``
from another shell stops exactly what ``up`` started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.core.errors import ConfigError
from common.gcp import clients, names
from common.gcp.pubsub import status_push_subscription
from common.gcp.secrets import env_name, local_file
from common.local.celery_stack import celery_dispatch, start_redis, start_worker, worker_ready
from common.local.deliveries import PUSHED
from common.local.emulators.oidc import LocalSigner
from common.local.ports import DEFAULT_PORTS, free_port, port_free
from common.local.processes import (
    alive,
    emulator_commands,
    grpc_ready,
    http_ready,
    sdk_root,
    stop_groups,
    tcp_ready,
    wait_until,
)
from common.local.provisioning import provision
from common.local.state import LOCAL_AUTH, StackConfig, StackState, down, function_auth
from common.local.warehouse_stack import start_warehouse_emulators
from common.settings import Settings, reset_settings, use_settings
from common.sources import all_sources

__all__ = [  # the stack, and what its callers (tests, bench) have always imported from here
    "DEFAULT_PORTS",
    "LOCAL_AUTH",
    "Stack",
    "StackConfig",
    "StackState",
    "alive",
    "client_env",
    "down",
    "emulator_commands",
    "free_port",
    "grpc_ready",
    "http_ready",
    "port_free",
    "provision",
    "sdk_root",
    "status_push_subscription",
    "stop_groups",
    "tcp_ready",
    "wait_until",
]

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"
STARTUP_TIMEOUT = 60.0
SIGNATURES = {"api": "http", "ingest": "http", "status": "cloudevent", "load": "cloudevent"}  # Pub/Sub: cloudevent


class Stack:
    """Start, describe and stop the local stack."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.state_dir = config.state_dir.resolve()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._commands: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.ports: dict[str, int] = {}
        self.env: dict[str, str] = {}

    @property
    def _replay(self) -> bool:
        """Whether the recorded-response server runs (replaying, or recording)."""
        return self.config.replay_dir is not None or self.config.record_dir is not None

    # ---- start -------------------------------------------------------------------------------
    def _choose_ports(self) -> None:
        wanted = {**DEFAULT_PORTS, **self.config.ports}
        for name, port in wanted.items():
            if self.config.auto_ports and name not in self.config.ports:
                port = free_port(self.config.host)
            elif not port_free(port, self.config.host):
                if name in self.config.ports:
                    raise ConfigError(f"port {port} for {name} is in use; choose another or stop what uses it")
                port = free_port(self.config.host)
            self.ports[name] = port

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        self._commands[name] = (list(argv), dict(env or {}))  # for restart()
        argv = [*argv, *self.config.extra_args.get(name, [])]
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = (logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=self.state_dir,
            start_new_session=True,  # own process group: stop() kills the whole tree
        )
        log.close()
        self.procs[name] = proc
        return proc

    def _log(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def start_google_emulators(self) -> dict[str, str]:
        """Start Google's Pub/Sub and Firestore emulators and wait until both answer; returns their hosts.

        Raises:
            ConfigError: an emulator is missing or did not start.
        """
        if not self.ports:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._choose_ports()
        host, p = self.config.host, self.ports
        commands = emulator_commands(host, p)
        emu_env = {"CLOUDSDK_CORE_CHECK_GCE_METADATA": "false", "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
        for name in ("pubsub", "firestore"):
            self._spawn(name, commands[name], emu_env)
        for name in ("pubsub", "firestore"):
            self._wait(name, http_ready(f"http://{host}:{p[name]}/"), f"the {name} emulator")
        return {"PUBSUB_EMULATOR_HOST": f"{host}:{p['pubsub']}", "FIRESTORE_EMULATOR_HOST": f"{host}:{p['firestore']}"}

    def _wait(self, name: str, check: Callable[[], bool], what: str) -> None:
        wait_until(check, what, STARTUP_TIMEOUT, self.procs[name], self._log(name))

    def _python(self, name: str, module: str, *args: str, env: dict[str, str] | None = None) -> None:
        self._spawn(name, [sys.executable, "-m", module, *args], env)

    def up(self, *, progress: Callable[[str], None] = lambda _: None) -> StackState:
        """Start everything, wire it together, and return once every part answers.

        Raises:
            ConfigError: something is missing or did not start (the stack is stopped again).
        """
        if (existing := StackState.load(self.state_dir)) and any(alive(pid) for pid in existing.pids.values()):
            raise ConfigError(f"a stack is already running from {self.state_dir}; `tributary dev down` first")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._choose_ports()
        host, p = self.config.host, self.ports
        key = str(self.state_dir / "oidc-key.pem")
        LocalSigner(key)  # create the shared key once, before any child loads it
        try:
            progress("starting the Pub/Sub and Firestore emulators")
            self.start_google_emulators()
            progress("starting the Cloud Tasks emulator")
            self._python(
                "tasks",
                "common.local.emulators.tasks",
                "--host",
                host,
                "--port",
                str(p["tasks"]),
                "--rest-port",
                str(p["tasks_rest"]),
                "--oidc-key-file",
                key,
            )
            if (folder := self.config.record_dir or self.config.replay_dir) is not None:
                mode = "--record" if self.config.record_dir is not None else "--root"
                self._python("replay", "common.local.recorded", mode, str(folder.resolve()), "--port", str(p["replay"]))
            self._python(
                "certs",
                "common.local.emulators.certs",
                "--host",
                host,
                "--port",
                str(p["certs"]),
                "--oidc-key-file",
                key,
            )
            self.env = self._function_env(Path(key))
            if celery_dispatch({**os.environ, **self.env}):  # the rollback flag: Celery on Redis, not Cloud Tasks
                progress("starting Redis for the Celery executor")
                self.env.update(start_redis(self, host))
            self._wait("tasks", grpc_ready(p["tasks"]), "the Tasks emulator")
            self._wait("certs", tcp_ready(p["certs"]), "the OIDC certs server")
            if self.config.bigquery:
                progress("starting the GCS and BigQuery emulators")
                self.env.update(start_warehouse_emulators(self, host, self.config.project))
            if self.config.scheduler:
                progress("starting the Cloud Scheduler emulator")
                self._python(
                    "scheduler",
                    "common.local.emulators.scheduler",
                    "--host",
                    host,
                    "--port",
                    str(p["scheduler"]),
                    "--admin-port",
                    str(p["scheduler_admin"]),
                    "--rest-port",
                    str(p["scheduler_rest"]),
                    "--pubsub-emulator-host",
                    f"{host}:{p['pubsub']}",
                    "--oidc-key-file",
                    key,
                )
                self._wait("scheduler", grpc_ready(p["scheduler"]), "the Scheduler emulator")
            progress("starting the functions (api, ingest, status, load)")
            ff = str(Path(sys.executable).parent / "functions-framework")
            auth = function_auth(self.config, os.environ)
            for name, signature in SIGNATURES.items():
                argv = [
                    ff,
                    "--source",
                    str(PUSHED if signature == "cloudevent" else FUNCTIONS_DIR / f"{name}.py"),  # pushes: bounded
                    "--target",
                    name,
                    "--signature-type",
                    signature,
                    "--host",
                    host,
                    "--port",
                    str(p[name]),
                ]
                self._spawn(name, argv, {**self.env, "TRIBUTARY_AUTH": auth.get(name, "on")})
            progress("creating the topic, the push subscription and the queues")
            self._provision()
            for name in ("ingest", "status", "load"):
                self._wait(name, tcp_ready(p[name]), f"the {name} function")
            self._wait("api", http_ready(f"http://{host}:{p['api']}/healthz"), "the api function")
            if self._replay:
                self._wait("replay", tcp_ready(p["replay"]), "the replay server")
            if celery_dispatch(self.env):
                progress("starting the Celery worker")
                start_worker(self, self.env)
            if self.config.scheduler:
                progress("syncing the schedules into the Scheduler emulator")
                self._sync_schedules()
        except BaseException:
            self._stop_procs()
            raise
        state = StackState(
            project=self.config.project,
            endpoints=self.endpoints(),
            env=self.env,
            pids={name: proc.pid for name, proc in self.procs.items()},
            state_dir=str(self.state_dir),
            started_at=time.time(),
        )
        state.save(self.state_dir / "stack.json")
        return state

    def endpoints(self) -> dict[str, str]:
        host, p = self.config.host, self.ports
        out = {
            "api_url": f"http://{host}:{p['api']}",
            "ingest_url": f"http://{host}:{p['ingest']}",
            "status_url": f"http://{host}:{p['status']}",
            "load_url": f"http://{host}:{p['load']}",
            "pubsub_emulator_host": f"{host}:{p['pubsub']}",
            "firestore_emulator_host": f"{host}:{p['firestore']}",
            "tasks_emulator_host": f"{host}:{p['tasks']}",
            "tasks_rest_url": f"http://{host}:{p['tasks_rest']}",
            "oidc_certs_url": f"http://{host}:{p['certs']}/oauth2/v3/certs",
            "output_uri": self.env.get("TRIBUTARY_OUTPUT_URI", ""),
        }
        if self.config.scheduler:
            out["scheduler_emulator_host"] = f"{host}:{p['scheduler']}"
            out["scheduler_admin_url"] = f"http://{host}:{p['scheduler_admin']}"
            out["scheduler_rest_url"] = f"http://{host}:{p['scheduler_rest']}"
        if self._replay:
            out["replay_url"] = f"http://{host}:{p['replay']}"
        if "TRIBUTARY_CELERY_BROKER_URL" in self.env:
            out["celery_broker_url"] = self.env["TRIBUTARY_CELERY_BROKER_URL"]
        return out

    def _function_env(self, key_file: Path) -> dict[str, str]:
        host, p = self.config.host, self.ports
        env = {
            "TRIBUTARY_PROJECT": self.config.project,
            "GOOGLE_CLOUD_PROJECT": self.config.project,
            "PUBSUB_EMULATOR_HOST": f"{host}:{p['pubsub']}",
            "FIRESTORE_EMULATOR_HOST": f"{host}:{p['firestore']}",
            "CLOUD_TASKS_EMULATOR_HOST": f"{host}:{p['tasks']}",
            "TRIBUTARY_INGEST_URL": f"http://{host}:{p['ingest']}/{{source}}",
            "TRIBUTARY_OUTPUT_URI": (self.state_dir / "data").as_uri(),
            # The load stage's embedded warehouse (TRIBUTARY_WAREHOUSE=bigquery in config.env picks BigQuery).
            "TRIBUTARY_WAREHOUSE_PATH": str(self.state_dir / "warehouse.duckdb"),
            "TRIBUTARY_OIDC_KEY_FILE": str(key_file),
            # Tasks and schedules carry ID tokens of this account, verified against the stack's certs server.
            "TRIBUTARY_INVOKER_SERVICE_ACCOUNT": names.invoker_account(self.config.project),
            "TRIBUTARY_OIDC_CERTS_URL": f"http://{host}:{p['certs']}/oauth2/v3/certs",
            "TRIBUTARY_API_URL": f"http://{host}:{p['api']}",
            "TRIBUTARY_NO_SECRET_MANAGER": "1",
            # One absolute path, for the functions (whose working folder is the state folder) and, through the
            # recorded env, for `tributary secrets set` on this target: both sides name the same file.
            "TRIBUTARY_SECRETS_FILE": str(local_file()),
        }
        if self.config.scheduler:
            env["CLOUD_SCHEDULER_EMULATOR_HOST"] = f"{host}:{p['scheduler']}"
        if self._replay:
            for s in all_sources():
                env[f"TRIBUTARY_{s.name.upper()}_BASE_URL"] = f"http://{host}:{p['replay']}/{s.name}"
                if self.config.secret_placeholders and self.config.record_dir is None:
                    # recorded upstreams accept any key; recording forwards the real key and never writes it
                    for secret in s.secrets:
                        env.setdefault(env_name(secret), "replay-placeholder")
        env.update(self.config.env)
        return env

    def settings(self, **extra: str) -> Settings:
        """The settings the stack's functions run with (plus ``extra`` variables), for clients in this process.

        The children inherit this process's environment under the stack's own (:meth:`_spawn`), and so do these.
        """
        return Settings.from_env({**os.environ, **self.env, **extra})

    def _provision(self) -> None:
        """Topic, dead-letter topic, push subscriptions to the status and load functions, one queue per source."""
        with use_settings(self.settings()):
            host = self.config.host
            status, load = f"http://{host}:{self.ports['status']}", f"http://{host}:{self.ports['load']}"
            provision(status, load, self.config.queue_rates)

    def _sync_schedules(self) -> None:
        api_url = self.endpoints()["api_url"]
        from scheduler.sync import sync_schedules  # imports the Cloud Scheduler client library

        with use_settings(self.settings(TRIBUTARY_API_URL=api_url)):
            sync_schedules(api_url=api_url)

    # ---- one component (fault injection: kill an instance, restart an emulator) ----------------
    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to one component's process group and reap it (SIGKILL: no chance to clean up)."""
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def start_again(self, name: str, extra_args: list[str] | None = None) -> None:
        """Start a stopped component again, same command and port (plus ``extra_args``), and wait until it
        answers. An emulator that keeps state in memory comes back empty: the topic, subscriptions and
        queues are provisioned again (Firestore documents are not: they are lost).

        Raises:
            ConfigError: it did not come back within the startup timeout.
        """
        argv, env = self._commands[name]
        ready = worker_ready(self._log(name)) if name == "worker" else None  # no port: its log says when
        self._spawn(name, [*argv, *(extra_args or [])], env)
        self._commands[name] = (argv, env)  # extra_args are for this run only
        host, port = self.config.host, self.ports.get(name, 0)
        if ready is not None:
            check = ready
        elif name in ("pubsub", "firestore"):
            check = http_ready(f"http://{host}:{port}/")
        elif name == "api":
            check = http_ready(f"http://{host}:{port}/healthz")
        else:
            check = tcp_ready(port, host)
        self._wait(name, check, f"the {name} component")
        if name in ("pubsub", "tasks"):
            self._provision()
        if name == "scheduler":
            self._sync_schedules()
        if (state := StackState.load(self.state_dir)) is not None:
            state.pids = {n: p.pid for n, p in self.procs.items()}
            state.save(self.state_dir / "stack.json")

    def restart(self, name: str, *, sig: int = signal.SIGTERM, extra_args: list[str] | None = None) -> None:
        """:meth:`kill` one component with ``sig``, then :meth:`start_again` it."""
        self.kill(name, sig)
        self.start_again(name, extra_args)

    # ---- stop --------------------------------------------------------------------------------
    def _stop_procs(self) -> None:
        stop_groups({name: proc.pid for name, proc in self.procs.items()})
        for proc in self.procs.values():
            with contextlib.suppress(Exception):
                proc.wait(timeout=1)
        self.procs.clear()

    def down(self) -> None:
        self._stop_procs()
        down(self.state_dir)


@contextlib.contextmanager
def client_env(env: dict[str, str]) -> Any:
    """Point this process's settings and cached clients at the stack in ``env`` for a block."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    reset_settings()
    clients.reset_clients()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset_settings()
        clients.reset_clients()
