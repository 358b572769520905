"""The retry delay both services document on ``RetryConfig.max_doublings``."""

from __future__ import annotations


def backoff(retry_number: int, min_backoff: float, max_backoff: float, max_doublings: int) -> float:
    """Seconds before retry ``retry_number`` (1-based): ``min_backoff`` doubled ``max_doublings`` times, then
    growing linearly by ``min_backoff * 2**max_doublings``, capped at ``max_backoff``.

    With min 10 s, max 300 s and 3 doublings: 10, 20, 40, 80, 160, 240, 300, 300, ...
    """
    exponent = max(0, retry_number - 1)
    if min(exponent, max_doublings) > 60:  # 2**61 times any backoff is past every max_backoff
        return max_backoff
    if exponent <= max_doublings:
        delay = min_backoff * (2**exponent)
    else:
        delay = min_backoff * (2**max_doublings) * (1 + exponent - max_doublings)
    return min(delay, max_backoff)
