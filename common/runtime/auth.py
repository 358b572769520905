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
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from common.settings import Settings, settings

log = logging.getLogger("tributary.auth")

#: The issuers Google puts in ID tokens (``verify_oauth2_token`` in google-auth accepts the same two).
GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
#: Seconds of clock difference tolerated on ``iat`` and ``exp``.
CLOCK_SKEW = 10
#: Bounds on how long fetched keys are kept: never below this, never above ``settings().oidc_certs_ttl``.
CERTS_MIN_TTL = 5.0
#: A token signed by a key we don't know triggers a refetch (key rotation), at most this often.
CERTS_REFRESH_INTERVAL = 30.0
CERTS_FETCH_TIMEOUT = 5.0
API_KEY_HEADER = "x-api-key"
#: Routes of the api that never need credentials.
OPEN_PATHS = frozenset({"/healthz"})
#: Longest Authorization or X-API-Key value looked at (a Google ID token is about 1 KB).
MAX_CREDENTIAL = 8192
#: What Google's front end puts in place of a signature it strips (docs/security.md, "Quirks").
SIGNATURE_REMOVED = "SIGNATURE_REMOVED_BY_GOOGLE"

Function = Literal["api", "ingest", "status"]
Answer = tuple[dict[str, Any], int, dict[str, str]]


class Unauthorized(Exception):
    """A request that may not run: ``status`` 401 (no or bad credentials) or 403 (identity not allowed)."""

    def __init__(self, code: str, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status

    def answer(self) -> Answer:
        headers = {"WWW-Authenticate": 'Bearer realm="tributary"'} if self.status == 401 else {}
        return {"error": {"code": self.code, "message": self.message}}, self.status, headers


class AuthUnavailable(Unauthorized):
    """The keys to verify with could not be fetched: 503, so Cloud Tasks and Pub/Sub retry later."""

    def __init__(self, message: str) -> None:
        super().__init__("auth_unavailable", message, 503)


@dataclass(frozen=True)
class Identity:
    """Who made an accepted request: a service account (email) or an API key (``sha256:`` + 12 hex)."""

    kind: Literal["service_account", "api_key"]
    name: str
    claims: Mapping[str, Any] = field(default_factory=dict)


# ---- Google's public keys ------------------------------------------------------------------------
def certs_from_json(data: Any) -> dict[str, str]:
    """``{kid: PEM}`` from either shape Google publishes: a JWK set (``/oauth2/v3/certs``) or ``{kid: PEM}``
    (``/oauth2/v1/certs``, X.509 certificates). Keys that are not RSA signing keys are left out.

    Raises:
        ValueError: neither shape.
    """
    if isinstance(data, dict) and isinstance(data.get("keys"), list):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from jwt.algorithms import RSAAlgorithm

        out = {}
        for jwk in data["keys"]:
            if not isinstance(jwk, dict) or jwk.get("kty") != "RSA" or jwk.get("use", "sig") != "sig":
                continue
            if not isinstance(jwk.get("kid"), str):
                continue
            key = RSAAlgorithm.from_jwk(jwk)
            public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
            pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            out[jwk["kid"]] = pem.decode()
        return out
    if isinstance(data, dict) and data and all(isinstance(v, str) and "-----BEGIN" in v for v in data.values()):
        return {str(k): v for k, v in data.items()}
    raise ValueError("not a JWK set nor a {kid: PEM} map")


def _max_age(cache_control: str) -> float | None:
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() == "max-age" and value.strip().isdigit():
            return float(value.strip())
    return None


@dataclass
class _Entry:
    fetched: float
    expires: float
    certs: dict[str, str]


class CertsCache:
    """Fetched keys per URL, kept for min(Cache-Control max-age, ``max_ttl``) and at least ``CERTS_MIN_TTL``.

    google-auth's ``verify_token`` fetches the keys again on every call; this cache is why it is not used
    as is (docs/security.md, "Quirks"). Thread-safe; one fetch at a time.
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self.fetches = 0

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def get(self, url: str, *, max_ttl: float, kid: str | None = None) -> dict[str, str]:
        """The keys at ``url``; refetched when expired, or when ``kid`` is unknown and the last fetch is
        older than ``CERTS_REFRESH_INTERVAL`` (Google rotates its keys).

        Raises:
            AuthUnavailable: the keys could not be fetched and none are cached.
        """
        with self._lock:
            now = time.monotonic()
            entry = self._entries.get(url)
            due = entry is None or now >= entry.expires
            if entry is not None and kid and kid not in entry.certs and now - entry.fetched >= CERTS_REFRESH_INTERVAL:
                due = True
            if due:
                certs, max_age = self._fetch(url)
                ttl = min(max(max_age if max_age is not None else max_ttl, CERTS_MIN_TTL), max_ttl)
                entry = self._entries[url] = _Entry(fetched=now, expires=now + ttl, certs=certs)
            assert entry is not None
            return entry.certs

    def _fetch(self, url: str) -> tuple[dict[str, str], float | None]:
        import httpx

        self.fetches += 1
        try:
            response = httpx.get(url, timeout=CERTS_FETCH_TIMEOUT)
        except httpx.HTTPError as exc:
            raise AuthUnavailable(f"the token signing keys could not be fetched from {url}: {exc}") from exc
        if response.status_code != 200:
            raise AuthUnavailable(
                f"the token signing keys could not be fetched from {url}: HTTP {response.status_code}"
            )
        try:
            certs = certs_from_json(response.json())
        except ValueError as exc:
            raise AuthUnavailable(f"{url} did not answer signing keys: {exc}") from exc
        log.info("fetched %d signing key(s) from %s", len(certs), url)
        return certs, _max_age(response.headers.get("cache-control", ""))


CERTS = CertsCache()


# ---- ID tokens -----------------------------------------------------------------------------------
def _listed(value: str | Sequence[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def verify_id_token(
    token: str,
    *,
    audience: str | Sequence[str],
    allowed: Iterable[str],
    certs_url: str,
    certs_ttl: float = 3600.0,
    cache: CertsCache | None = None,
) -> Identity:
    """Verify a Google-signed ID token and return the service account it speaks for.

    Checks, in order: shape, RS256 signature against the keys at ``certs_url``, ``iat``/``exp``, issuer,
    audience (any of ``audience``; a trailing ``/`` is ignored), ``email_verified`` and the ``allowed``
    emails (case-insensitive).

    Raises:
        Unauthorized: malformed_token, bad_signature, expired_token, token_not_yet_valid, wrong_issuer,
            wrong_audience (401); email_not_verified, service_account_not_allowed (403).
        AuthUnavailable: the keys could not be fetched (503).
    """
    from google.auth import exceptions as gexc
    from google.auth import jwt as gjwt

    if token.endswith("." + SIGNATURE_REMOVED):
        raise Unauthorized(
            "bad_signature", f"Google's front end replaced this token's signature with {SIGNATURE_REMOVED}"
        )
    try:
        header = gjwt.decode_header(token)
        claims = gjwt.decode(token, verify=False)
    except (ValueError, gexc.GoogleAuthError):
        raise Unauthorized("malformed_token", "the bearer token is not a JWT") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise Unauthorized("malformed_token", "the bearer token is not a JWT")
    if header.get("alg") != "RS256":
        raise Unauthorized("bad_signature", f"tokens must be signed with RS256, not {header.get('alg')!r}")
    for claim in ("iat", "exp"):
        if not isinstance(claims.get(claim), int | float) or isinstance(claims.get(claim), bool):
            raise Unauthorized("malformed_token", f"the token has no numeric {claim!r} claim")
    kid = header.get("kid") if isinstance(header.get("kid"), str) else None
    certs = (cache or CERTS).get(certs_url, max_ttl=certs_ttl, kid=kid)
    if kid is not None and kid not in certs:
        raise Unauthorized("bad_signature", f"the token is signed with a key Google does not publish (kid {kid[:16]})")
    try:
        gjwt.decode(token, certs=certs, verify=True, audience=None, clock_skew_in_seconds=CLOCK_SKEW)
    except gexc.MalformedError:
        raise Unauthorized("bad_signature", "the token signature does not verify") from None
    except (ValueError, gexc.GoogleAuthError):
        # The signature is checked first, so the claims read above are genuine.
        now = time.time()
        if claims["exp"] + CLOCK_SKEW < now:
            raise Unauthorized("expired_token", f"the token expired {int(now - claims['exp'])} s ago") from None
        if claims["iat"] - CLOCK_SKEW > now:
            raise Unauthorized("token_not_yet_valid", "the token is issued in the future") from None
        raise Unauthorized("bad_signature", "the token does not verify") from None
    if claims.get("iss") not in GOOGLE_ISSUERS:
        raise Unauthorized("wrong_issuer", f"the token issuer {claims.get('iss')!r} is not Google")
    wanted = {a.rstrip("/") for a in _listed(audience) if a}
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not wanted:
        raise Unauthorized("wrong_audience", "this function has no token audience configured (TRIBUTARY_OIDC_AUDIENCE)")
    if not any(isinstance(a, str) and a.rstrip("/") in wanted for a in auds):
        raise Unauthorized("wrong_audience", f"the token is for {aud!r}, not for this function")
    email = claims.get("email")
    if not isinstance(email, str) or not email:
        raise Unauthorized("service_account_not_allowed", "the token carries no email", 403)
    if claims.get("email_verified") not in (True, "true"):
        raise Unauthorized("email_not_verified", f"the token's email {email} is not verified", 403)
    if email.lower() not in {a.lower() for a in allowed}:
        raise Unauthorized("service_account_not_allowed", f"{email} may not call this function", 403)
    return Identity("service_account", email, claims)


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
def auth_enabled(s: Settings | None = None) -> bool:
    """``auth`` is "on", or "auto" on Google Cloud (Cloud Run and Cloud Functions set ``K_SERVICE``).

    ``K_SERVICE`` is the platform's signal, not a Tributary setting, and is read at each call.
    """
    s = s or settings()
    return s.auth == "on" or (s.auth == "auto" and bool(os.environ.get("K_SERVICE")))


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
