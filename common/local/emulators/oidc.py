"""A local OIDC signer: mints Google-shaped ID tokens with a local RSA key and serves its public keys.

Cloud Tasks and Cloud Scheduler attach an ``Authorization: Bearer <ID token>`` header when a task or
job asks for ``oidc_token``. The emulators do the same with this signer, so the verification code
that runs in the cloud (signature, issuer, audience, service account) runs unchanged in tests: it only
needs the certificate URL pointed at :meth:`LocalSigner.jwks` served by the local stack.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from common.settings import settings

#: The issuer Google puts in ID tokens minted for Cloud Tasks and Cloud Scheduler.
GOOGLE_ISSUER = "https://accounts.google.com"


class LocalSigner:
    """Signs RS256 ID tokens with one RSA key, loaded from ``key_file`` or created there.

    Several processes of the local stack share one key through the file, so a token minted by the
    Tasks emulator verifies against the keys any process serves.
    """

    def __init__(self, key_file: str | Path | None = None, issuer: str = GOOGLE_ISSUER) -> None:
        self.issuer = issuer
        path = Path(key_file) if key_file else None
        if path and path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            assert isinstance(key, rsa.RSAPrivateKey)
            self._key = key
        else:
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if path:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(
                    self._key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                )
                os.replace(tmp, path)
        public_der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = hashlib.sha256(public_der).hexdigest()[:40]

    def sign_id_token(
        self, audience: str, email: str, *, lifetime: int = 3600, now: float | None = None, **claims: Any
    ) -> str:
        """An ID token for ``audience`` on behalf of service account ``email``, valid for ``lifetime`` s."""
        issued = int(now if now is not None else time.time())
        payload = {
            "iss": self.issuer,
            "aud": audience,
            "sub": hashlib.sha256(email.encode()).hexdigest()[:21],
            "azp": hashlib.sha256(email.encode()).hexdigest()[:21],
            "email": email,
            "email_verified": True,
            "iat": issued,
            "exp": issued + lifetime,
            **claims,
        }
        return jwt.encode(payload, self._key, algorithm="RS256", headers={"kid": self.kid})

    def jwks(self) -> dict[str, Any]:
        """The public key as a JWK set, shaped like ``https://www.googleapis.com/oauth2/v3/certs``."""
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "alg": "RS256", "use": "sig"})
        return {"keys": [jwk]}

    def pem_certs(self) -> dict[str, str]:
        """The public key as ``{kid: PEM}``, shaped like ``https://www.googleapis.com/oauth2/v1/certs``."""
        pem = self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {self.kid: pem.decode()}


def default_signer() -> LocalSigner:
    """The signer of this process: key from ``TRIBUTARY_OIDC_KEY_FILE`` when set, else a fresh key."""
    return LocalSigner(settings().oidc_key_file or None)
