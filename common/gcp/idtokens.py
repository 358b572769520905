"""Google-signed OIDC ID tokens: Google's published keys, cached, and the verification of one token.

google-auth decodes and checks the signature; this module adds the key cache (google-auth's ``verify_token``
fetches the keys on every call), the audience and allow-list rules, and errors that say what failed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from common.core.identity import AuthUnavailable, Identity, Unauthorized

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
#: What Google's front end puts in place of a signature it strips (docs/security.md, "Quirks").
SIGNATURE_REMOVED = "SIGNATURE_REMOVED_BY_GOOGLE"


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
        if name.lower() == "max-age" and value.strip().isascii() and value.strip().isdigit():
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
