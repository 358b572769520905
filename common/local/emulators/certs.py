"""Serve the local OIDC signer's public keys where Google serves its own, on 127.0.0.1 only.

``GET /oauth2/v3/certs`` answers the JWK set (Google's https://www.googleapis.com/oauth2/v3/certs shape) and
``GET /oauth2/v1/certs`` the ``{kid: PEM}`` map (the v1 shape), with ``Cache-Control: public, max-age=…`` as
Google sends. The local stack runs it as its own process with the stack's key file and points
``TRIBUTARY_OIDC_CERTS_URL`` at it, so the functions verify the emulators' tokens with the code that runs in
the cloud (``common.runtime.auth``).

Run it: ``python -m common.local.emulators.certs --port 8126 --oidc-key-file .tributary/dev/oidc-key.pem``.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections import Counter
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from common.local.emulators.oidc import LocalSigner, default_signer
from common.local.serve import serve_until_signalled

JWKS_PATH = "/oauth2/v3/certs"
PEM_PATH = "/oauth2/v1/certs"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class CertsServer:
    """Serve the public keys of ``signers`` (a list: append one to rotate) on ``host``:``port`` (0 = free)."""

    def __init__(
        self,
        signers: LocalSigner | Sequence[LocalSigner] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_age: int = 300,
    ) -> None:
        if host not in LOOPBACK:
            raise ValueError(f"the certs server listens on loopback only, not {host!r}")
        if signers is None:
            signers = [default_signer()]
        self.signers: list[LocalSigner] = [signers] if isinstance(signers, LocalSigner) else list(signers)
        self.max_age = max_age
        self.hits: Counter[str] = Counter()
        #: Answer this status instead of the keys (tests: a certs endpoint that is down).
        self.fail_with: int | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                server.hits[path] += 1
                status, body = server.answer(path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(body)))
                if status == 200:
                    self.send_header("Cache-Control", f"public, max-age={server.max_age}, must-revalidate")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread: threading.Thread | None = None

    def answer(self, path: str) -> tuple[int, bytes]:
        if self.fail_with is not None:
            return self.fail_with, b'{"error": "unavailable"}'
        if path == JWKS_PATH:
            return 200, json.dumps({"keys": [k for s in self.signers for k in s.jwks()["keys"]]}).encode()
        if path == PEM_PATH:
            pems: dict[str, str] = {}
            for s in self.signers:
                pems.update(s.pem_certs())
            return 200, json.dumps(pems).encode()
        return 404, b'{"error": "not found"}'

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def certs_url(self) -> str:
        """The JWK set URL (``TRIBUTARY_OIDC_CERTS_URL``)."""
        return self.url + JWKS_PATH

    @property
    def pem_url(self) -> str:
        return self.url + PEM_PATH

    def start(self) -> int:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="certs-server", daemon=True
        )
        self._thread.start()
        return self.port

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> CertsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.local.emulators.certs", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", choices=LOOPBACK)
    parser.add_argument("--port", type=int, default=8126)
    parser.add_argument("--oidc-key-file", default=None, help="the stack's key (default: $TRIBUTARY_OIDC_KEY_FILE)")
    parser.add_argument("--max-age", type=int, default=300, help="Cache-Control max-age of the answers")
    args = parser.parse_args(argv)
    signer = LocalSigner(args.oidc_key_file) if args.oidc_key_file else default_signer()
    server = CertsServer(signer, host=args.host, port=args.port, max_age=args.max_age)
    server.start()
    print(f"OIDC certs server listening on {server.host}:{server.port} ({JWKS_PATH}, {PEM_PATH})", flush=True)
    serve_until_signalled(server.stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
