"""UN Comtrade's gateway errors: a refused key names the secret, a used-up quota waits for its refill."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from common.core.errors import UpstreamHTTPError, UpstreamPermanent, UpstreamTransient, upstream_message
from common.sources.base import redact
from common.sources.comtrade.params import REPLENISH_RE, SECRET


def describe(query: Mapping[str, str]) -> str:
    return " ".join(
        f"{k}={query[k]}" for k in ("reporterCode", "period", "flowCode", "partnerCode", "cmdCode") if k in query
    )


def _apim_message(detail: str) -> str:
    """The ``message`` of an Azure API Management error body, else the text itself."""
    try:
        body = orjson.loads(detail)
    except orjson.JSONDecodeError:
        return detail.strip()
    return str(body.get("message") or detail).strip() if isinstance(body, dict) else detail.strip()


def quota_wait(message: str) -> float | None:
    """Seconds until the quota refills, from "Quota will be replenished in [D.]HH:MM:SS"."""
    m = REPLENISH_RE.search(message)
    if not m:
        return None
    days, hours, minutes, seconds = (int(x or 0) for x in m.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def gateway_error(
    status: int,
    excerpt: str,
    *,
    url: str = "comtradeapi",
    key: str | None = None,
    label: str = "",
    retry_after: float | None = None,
) -> UpstreamHTTPError:
    """A readable error for a failed answer of the API gateway (the key's value never appears).

    401 (missing or invalid key) and 403 (key not allowed) are permanent and name the secret; a 403 for
    a used-up call quota is transient, retried after the quota refills.
    """
    where = f"{label}: " if label else ""
    secrets = (key,) if key else ()
    excerpt = redact(excerpt, secrets)
    detail = _apim_message(excerpt)
    if status == 403 and "quota" in detail.lower():
        return UpstreamTransient(
            status,
            url,
            excerpt=excerpt,
            retry_after=quota_wait(detail),
            message=f"{where}UN Comtrade: the daily call quota of the subscription key is used up ({detail})",
        )
    if status in (401, 403):
        message = (
            f"{where}UN Comtrade refused the subscription key ({status}: {detail or 'no detail'}); "
            f"check secret {SECRET} (env TRIBUTARY_SECRET_{SECRET}) holds a valid key of the comtrade - v1 product"
        )
    else:
        message = f"{where}UN Comtrade answered {status}: {upstream_message(status, url, excerpt)}"
    return UpstreamPermanent(status, url, excerpt=excerpt, retry_after=retry_after, message=message)
