"""Cloud Tasks queue settings: the defaults and limits, the settable part of a queue, and UpdateQueue's mask."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.local.emulators.kit.masks import merge_masked
from common.local.emulators.kit.rpc import Code, RpcError
from common.local.emulators.kit.rpc import invalid as _invalid
from common.local.emulators.kit.timeconv import seconds as _from_dur
from common.local.emulators.tasks.override import check_target

# Defaults Cloud Tasks applies to a queue created without settings (docs.cloud.google.com/tasks/docs/
# creating-queues shows them in the `gcloud tasks queues describe` output of a new queue).
DEFAULT_MAX_DISPATCHES_PER_SECOND = 500.0
DEFAULT_MAX_CONCURRENT_DISPATCHES = 1000
DEFAULT_MAX_ATTEMPTS = 100
DEFAULT_MAX_RETRY_DURATION = 0.0  # unlimited
DEFAULT_MIN_BACKOFF = 0.1
DEFAULT_MAX_BACKOFF = 3600.0
DEFAULT_MAX_DOUBLINGS = 16
# Limits documented in the v2 protos (google/cloud/tasks_v2/types/*.py).
MAX_DISPATCHES_PER_SECOND = 500.0
MAX_CONCURRENT_DISPATCHES = 5000
DEFAULT_DISPATCH_DEADLINE = 600.0
MIN_DISPATCH_DEADLINE = 15.0
MAX_DISPATCH_DEADLINE = 1800.0
MAX_SCHEDULE_AHEAD = 30 * 24 * 3600.0
MAX_TASK_BYTES = 100 * 1024
MAX_HEADER_BYTES = 80 * 1024
MAX_URL_LENGTH = 2083
MAX_LIST_TASKS_PAGE = 1000
MAX_LIST_QUEUES_PAGE = 9800


# --- queue settings ------------------------------------------------------------------------------


@dataclass
class Config:
    """The settable part of a queue, with zero meaning "unset" on input as proto3 can't tell them apart."""

    rate: float = DEFAULT_MAX_DISPATCHES_PER_SECOND
    max_concurrent: int = DEFAULT_MAX_CONCURRENT_DISPATCHES
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_retry_duration: float = DEFAULT_MAX_RETRY_DURATION
    min_backoff: float = DEFAULT_MIN_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    max_doublings: int = DEFAULT_MAX_DOUBLINGS
    logging_ratio: float | None = None
    http_target: Any | None = None  # the queue-level HttpTarget (raw protobuf), see tasks/override.py


# Leaf field path → (attribute of Config, reader from a raw Queue, default when zero).
_LEAVES: dict[str, tuple[str, Callable[[Any], Any], Any]] = {
    "rate_limits.max_dispatches_per_second": (
        "rate",
        lambda q: q.rate_limits.max_dispatches_per_second,
        DEFAULT_MAX_DISPATCHES_PER_SECOND,
    ),
    "rate_limits.max_concurrent_dispatches": (
        "max_concurrent",
        lambda q: q.rate_limits.max_concurrent_dispatches,
        DEFAULT_MAX_CONCURRENT_DISPATCHES,
    ),
    "retry_config.max_attempts": ("max_attempts", lambda q: q.retry_config.max_attempts, DEFAULT_MAX_ATTEMPTS),
    "retry_config.max_retry_duration": (
        "max_retry_duration",
        lambda q: _from_dur(q.retry_config.max_retry_duration),
        DEFAULT_MAX_RETRY_DURATION,
    ),
    "retry_config.min_backoff": ("min_backoff", lambda q: _from_dur(q.retry_config.min_backoff), DEFAULT_MIN_BACKOFF),
    "retry_config.max_backoff": ("max_backoff", lambda q: _from_dur(q.retry_config.max_backoff), DEFAULT_MAX_BACKOFF),
    "retry_config.max_doublings": (
        "max_doublings",
        lambda q: q.retry_config.max_doublings,
        DEFAULT_MAX_DOUBLINGS,
    ),
}
_GROUPS = {
    "rate_limits": [p for p in _LEAVES if p.startswith("rate_limits.")],
    "retry_config": [p for p in _LEAVES if p.startswith("retry_config.")],
}
_OUTPUT_ONLY = {"state", "purge_time", "rate_limits.max_burst_size"}
_UNSUPPORTED = {"app_engine_routing_override"}


def _snake(path: str) -> str:
    """``rateLimits.maxDispatchesPerSecond`` → ``rate_limits.max_dispatches_per_second`` (REST masks)."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", path).lower()


def burst_for(rate: float) -> int:
    """max_burst_size (output only) that Cloud Tasks picks for a rate: rate/5, at least 1 (500/s → 100)."""
    return max(1, int(rate // 5))


def _validate_config(c: Config) -> None:
    if not 0 < c.rate <= MAX_DISPATCHES_PER_SECOND:
        raise _invalid(f"rate_limits.max_dispatches_per_second must be in (0, 500], got {c.rate}")
    if not 0 < c.max_concurrent <= MAX_CONCURRENT_DISPATCHES:
        raise _invalid(f"rate_limits.max_concurrent_dispatches must be in [1, 5000], got {c.max_concurrent}")
    validate_retry(c.max_attempts, c.max_retry_duration, c.min_backoff, c.max_backoff, c.max_doublings)
    if c.logging_ratio is not None and not 0.0 <= c.logging_ratio <= 1.0:
        raise _invalid(f"stackdriver_logging_config.sampling_ratio must be in [0, 1], got {c.logging_ratio}")


def validate_retry(max_attempts: int, max_retry: float, min_b: float, max_b: float, doublings: int) -> None:
    if max_attempts < -1:
        raise _invalid(f"retry_config.max_attempts must be >= -1, got {max_attempts}")
    for name, value in (("max_retry_duration", max_retry), ("min_backoff", min_b), ("max_backoff", max_b)):
        if value < 0:
            raise _invalid(f"retry_config.{name} must not be negative, got {value}s")
    if min_b > max_b:
        raise _invalid(f"retry_config.min_backoff ({min_b}s) must not exceed max_backoff ({max_b}s)")
    if doublings < 0:
        raise _invalid(f"retry_config.max_doublings must not be negative, got {doublings}")


def _set_leaf(cfg: Config, qpb: Any, path: str) -> None:
    attr, read, default = _LEAVES[path]
    value = read(qpb)
    setattr(cfg, attr, value if value else default)


def apply_mask(current: Config | None, qpb: Any, mask: list[str]) -> Config:
    """The queue settings after applying a request queue ``qpb`` through ``mask`` (empty: what is given)."""
    for name in _UNSUPPORTED:
        if qpb.HasField(name):
            raise RpcError(Code.UNIMPLEMENTED, f"the Cloud Tasks emulator does not support Queue.{name}")
    cfg = Config(**vars(current)) if current else Config()
    if not mask:
        for group, leaves in _GROUPS.items():
            if qpb.HasField(group):
                for leaf in leaves:
                    attr, read, _ = _LEAVES[leaf]
                    if read(qpb):
                        setattr(cfg, attr, read(qpb))
        if qpb.HasField("stackdriver_logging_config"):
            cfg.logging_ratio = qpb.stackdriver_logging_config.sampling_ratio
        if qpb.HasField("http_target"):
            cfg.http_target = check_target(qpb.http_target)
    else:
        target_paths: list[str] = []
        for raw in mask:
            path = _snake(raw)
            if path in _LEAVES:
                _set_leaf(cfg, qpb, path)
            elif path in _GROUPS:
                for leaf in _GROUPS[path]:
                    _set_leaf(cfg, qpb, leaf)
            elif path in ("stackdriver_logging_config", "stackdriver_logging_config.sampling_ratio"):
                has = qpb.HasField("stackdriver_logging_config")
                cfg.logging_ratio = qpb.stackdriver_logging_config.sampling_ratio if has else None
            elif path == "http_target" or path.startswith("http_target."):
                target_paths.append(path)
            elif path in _OUTPUT_ONLY or path == "name":
                continue  # output-only fields are ignored; the name can't change
            elif path in _UNSUPPORTED:
                raise RpcError(Code.UNIMPLEMENTED, f"the Cloud Tasks emulator does not support {path}")
            else:
                raise _invalid(f"update_mask has an unknown Queue field path: {raw!r}")
        if target_paths:
            cfg.http_target = _merge_target(cfg.http_target, qpb, target_paths)
    _validate_config(cfg)
    return cfg


def _merge_target(current: Any | None, qpb: Any, paths: list[str]) -> Any | None:
    """The queue's ``http_target`` after the ``http_target…`` paths of a mask (gcloud's ``--clear-http-*``
    sends one sub-path, such as ``http_target.uri_override``, and the others must stay)."""
    merged = type(qpb)()
    if current is not None:
        merged.http_target.CopyFrom(current)
    merge_masked(paths, qpb, merged)
    if not merged.HasField("http_target") or not merged.http_target.ListFields():
        return None
    return check_target(merged.http_target)
