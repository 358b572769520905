"""A local Cloud Scheduler emulator that speaks Google's real gRPC API.

There is no official Cloud Scheduler emulator. This one serves
``google.cloud.scheduler.v1.CloudScheduler`` with a generic gRPC handler and the proto-plus message
classes of ``google-cloud-scheduler``, so the stock ``scheduler_v1.CloudSchedulerClient`` works
against it unchanged (build it with :func:`common.gcp.clients.scheduler_client_for`).

What it does (details and differences from Cloud Scheduler: ``docs/scheduler-emulator.md``):

* CRUD, pause, resume and run of jobs, with Cloud Scheduler's gRPC status codes and its output
  fields (``state``, ``user_update_time``, ``schedule_time``, ``last_attempt_time``, ``status``);
* 5-field unix cron evaluated on wall-clock time in the job's IANA time zone;
* HTTP targets are fired with httpx, with the ``X-CloudScheduler-*`` headers, an OIDC token from
  :class:`common.local.emulators.oidc.LocalSigner`, the attempt deadline and the job's retry config;
  Pub/Sub and App Engine targets are stored but never fired;
* time control: :meth:`SchedulerEmulator.advance` moves the emulator's clock and fires every job due
  in the interval, synchronously and in order, and returns what it fired. With a real clock a
  background thread fires jobs when they are due. ``--admin-port`` serves ``POST /advance`` and
  ``GET /healthz`` for tests that run the emulator in another process.

Modules: ``cron`` (schedules and time zones), ``jobs`` (job state and checks), ``engine`` (the calls' rules
and time control, no transport), ``firing`` (one attempt and its retry), ``server`` (gRPC), ``admin`` (time
control over HTTP) and ``__main__`` (the command line).

Run it: ``python -m common.local.emulators.scheduler --host 127.0.0.1 --port 8085 [--admin-port 8086]``.
"""

from common.local.emulators.kit.backoff import backoff
from common.local.emulators.kit.clock import Clock, FrozenClock, SystemClock
from common.local.emulators.kit.rpc import RpcError
from common.local.emulators.scheduler.cron import ScheduleError, next_fire_time, rfc3339, validate_schedule, zone
from common.local.emulators.scheduler.engine import SchedulerEngine
from common.local.emulators.scheduler.jobs import FireRecord
from common.local.emulators.scheduler.server import SERVICE, SchedulerEmulator

__all__ = [
    "SERVICE",
    "Clock",
    "FireRecord",
    "FrozenClock",
    "RpcError",
    "ScheduleError",
    "SchedulerEmulator",
    "SchedulerEngine",
    "SystemClock",
    "backoff",
    "next_fire_time",
    "rfc3339",
    "validate_schedule",
    "zone",
]
