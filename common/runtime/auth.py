"""Authentication of incoming requests: Google-signed OIDC ID tokens, and API keys on the public API.

Who calls what (docs/security.md):

- Cloud Tasks calls ``ingest`` with ``Authorization: Bearer <ID token>`` minted for the invoker service
  account, audience the task URL (``ingest_url`` with the source).
- Pub/Sub pushes to ``status`` with an ID token when the push subscription has ``oidc_token``.
- Cloud Scheduler calls the ``api`` (``POST /v1/jobs``) with an ID token whose audience is the api's base URL;
  operators, n8n and the CLI call it with an ID token of an allowed service account or an ``X-API-Key``.

A token passes when its RS256 signature verifies against Google's published keys (``oidc_certs_url``, cached
for at most ``oidc_certs_ttl``), it is within its ``iat``/``exp`` window (10 s of clock skew), its issuer is
Google's, its audience is one this function accepts, ``email_verified`` is true and its ``email`` is on the
allow-list. Locally the emulators sign with the stack's key and ``common.local.emulators.certs`` serves the public
half, so this same code runs there.

Each entry point calls :func:`guard` first; it answers ``None`` (go on) or the error answer, so nothing else
runs for a refused request. The verification functions raise :class:`Unauthorized`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from common.core.identity import Answer, Identity, Unauthorized
from common.gcp.idtokens import verify_id_token
from common.settings import Settings, settings

log = logging.getLogger("tributary.auth")

API_KEY_HEADER = "x-api-key"
#: Routes of the api that never need credentials.
OPEN_PATHS = frozenset({"/healthz"})
#: Longest Authorization or X-API-Key value looked at (a Google ID token is about 1 KB).
MAX_CREDENTIAL = 8192

Function = Literal["api", "ingest", "status", "load"]


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of ``Authorization: Bearer <token>``; None when there is no Authorization header.

    Raises:
        Unauthorized: malformed_token, the header is not a bearer token.
    """
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_CREDENTIAL:
        raise Unauthorized("malformed_token", "Authorization must be 'Bearer <Google ID token>'")
    return token


def allowed_service_accounts(s: Settings) -> frozenset[str]:
    """``oidc_allowed_service_accounts`` plus the invoker (the identity of our own tasks and schedules)."""
    accounts = {a.lower() for a in s.oidc_allowed_service_accounts}
    if s.invoker_service_account:
        accounts.add(s.invoker_service_account.lower())
    return frozenset(accounts)


def verify_internal(headers: Mapping[str, str], *, audience: str | Sequence[str]) -> Identity:
    """An internal call (Cloud Tasks, Pub/Sub push, Cloud Scheduler): a valid ID token is required.

    ``headers`` keys are lower-case.

    Raises:
        Unauthorized: missing_token or any failure of :func:`verify_id_token`.
    """
    token = bearer_token(headers)
    if token is None:
        raise Unauthorized("missing_token", "this endpoint needs 'Authorization: Bearer <Google ID token>'")
    s = settings()
    return verify_id_token(
        token,
        audience=audience,
        allowed=allowed_service_accounts(s),
        certs_url=s.oidc_certs_url,
        certs_ttl=s.oidc_certs_ttl,
    )


# ---- API keys ------------------------------------------------------------------------------------
def hash_api_key(key: str) -> str:
    """The form to store a key in (``TRIBUTARY_API_KEYS``): ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def api_key_digests(entries: Iterable[str]) -> tuple[str, ...]:
    """The SHA-256 hex digests of the configured keys: ``sha256:<hex>`` entries as they are, others hashed."""
    out = []
    for entry in entries:
        if entry.startswith("sha256:"):
            digest = entry.removeprefix("sha256:").lower()
            if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
                out.append(digest)
            else:
                log.error("ignoring a malformed TRIBUTARY_API_KEYS entry (sha256: needs 64 hex digits)")
        else:
            out.append(hashlib.sha256(entry.encode()).hexdigest())
    return tuple(out)


def verify_api_key(key: str, entries: Iterable[str]) -> Identity:
    """Accept ``key`` when its hash is among the configured ones (constant-time compares, no early exit).

    Raises:
        Unauthorized: invalid_api_key.
    """
    digest = hashlib.sha256(key.encode()).hexdigest()
    match = None
    for stored in api_key_digests(entries):
        if hmac.compare_digest(digest, stored):
            match = stored
    if match is None or not key:
        raise Unauthorized("invalid_api_key", "the X-API-Key is not valid")
    return Identity("api_key", f"sha256:{match[:12]}")


def verify_public(headers: Mapping[str, str], *, audience: str | Sequence[str]) -> Identity:
    """A call to the public API: an ID token of an allowed identity, or a valid ``X-API-Key``.

    When an ``Authorization`` header is present the token decides; otherwise the API key does.
    ``headers`` keys are lower-case.

    Raises:
        Unauthorized: missing_credentials, invalid_api_key, or any failure of :func:`verify_id_token`.
    """
    if "authorization" in headers:
        return verify_internal(headers, audience=audience)
    key = headers.get(API_KEY_HEADER)
    if key is None:
        raise Unauthorized(
            "missing_credentials", "send an X-API-Key header or 'Authorization: Bearer <Google ID token>'"
        )
    if len(key) > MAX_CREDENTIAL:
        raise Unauthorized("invalid_api_key", "the X-API-Key is not valid")
    return verify_api_key(key.strip(), settings().api_keys)


# ---- per function --------------------------------------------------------------------------------
def credentials_configured(s: Settings | None = None) -> bool:
    """Whether API keys or allowed service accounts are configured: credentials someone means to be checked."""
    s = s or settings()
    return bool(s.api_keys or s.oidc_allowed_service_accounts)


def auth_enabled(s: Settings | None = None) -> bool:
    """``auth`` is "on"; or "auto" on Google Cloud (Cloud Run and Cloud Functions set ``K_SERVICE``) or
    wherever API keys or allowed accounts are configured: configured credentials are never silently ignored.

    ``K_SERVICE`` is the platform's signal, not a Tributary setting, and is read at each call.
    """
    s = s or settings()
    if s.auth == "on":
        return True
    return s.auth == "auto" and (bool(os.environ.get("K_SERVICE")) or credentials_configured(s))


#: The answer of an api whose auth is "off" although API keys are configured (it refuses everything).
MISCONFIGURED = (
    "auth is off (TRIBUTARY_AUTH=off) but API keys are configured (TRIBUTARY_API_KEYS): refusing every request; "
    "set TRIBUTARY_AUTH=on (or auto) to enforce the keys, or remove them"
)


def audiences_for(function: Function, path: str, s: Settings | None = None) -> tuple[str, ...]:
    """The token audiences ``function`` accepts: ``oidc_audience`` when set, else its own URL as its callers
    mint it: ``api_url`` (Cloud Scheduler's audience), ``ingest_url`` for the source (the task URL, Cloud
    Tasks' default audience); the status function has no default (set ``oidc_audience`` to the push
    subscription's audience)."""
    s = s or settings()
    if s.oidc_audience:
        return tuple(s.oidc_audience)
    if function == "api":
        return (s.api_url,) if s.api_url else ()
    if function == "ingest":
        source = s.source or path.strip("/").split("/", 1)[0]
        if "{source}" in s.ingest_url and not source:
            return ()
        return (s.ingest_url.replace("{source}", source),)
    return ()


_warned_off: set[str] = set()


def guard(function: Function, path: str, headers: Mapping[str, str]) -> Answer | None:
    """Authenticate one request to ``function`` before anything else runs.

    Returns None when the request may go on (or auth is off), else the JSON error answer
    ``({"error": {"code", "message"}}, 401 | 403 | 503, headers)``. ``/healthz`` on the api is always open.
    """
    s = settings()
    if function == "api" and s.auth == "off" and s.api_keys:
        # Fail closed: keys someone configured are enforced, or nothing is served (not even /healthz, so a
        # stack or a health check sees the api as down).
        log.error("api %s refused: %s", path, MISCONFIGURED)
        return {"error": {"code": "auth_misconfigured", "message": MISCONFIGURED}}, 503, {}
    if not auth_enabled(s):
        if function not in _warned_off:
            _warned_off.add(function)
            log.warning("auth is off for the %s function: every request is accepted", function)
        return None
    if function == "api" and (path.rstrip("/") or "/") in OPEN_PATHS:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    audience = audiences_for(function, path, s)
    try:
        if function == "api":
            identity = verify_public(lowered, audience=audience)
        else:
            identity = verify_internal(lowered, audience=audience)
    except Unauthorized as exc:
        log.warning("%s %s refused: %s %s (%s)", function, path, exc.status, exc.code, exc.message)
        return exc.answer()
    log.debug("%s %s accepted for %s %s", function, path, identity.kind, identity.name)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m common.runtime.auth new-key`` prints a fresh API key and the entry to store for it;
    ``python -m common.runtime.auth hash KEY`` prints the entry for an existing key."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m common.runtime.auth", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("new-key", help="a new random API key and its sha256 entry")
    hasher = sub.add_parser("hash", help="the sha256 entry of an existing key")
    hasher.add_argument("key")
    args = parser.parse_args(argv)
    key = secrets.token_urlsafe(32) if args.command == "new-key" else args.key
    if args.command == "new-key":
        print(f"key:   {key}")
    print(f"entry: {hash_api_key(key)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
