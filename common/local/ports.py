"""The local stack's ports: the defaults, and free ones on 127.0.0.1."""

from __future__ import annotations

import socket

DEFAULT_PORTS = {
    "pubsub": 8085,
    "firestore": 8086,
    "tasks": 8123,
    "scheduler": 8124,
    "scheduler_admin": 8125,
    "certs": 8126,
    "tasks_rest": 8127,
    "scheduler_rest": 8128,
    "replay": 8090,
    "api": 8080,
    "ingest": 8081,
    "status": 8082,
    "load": 8083,
    "gcs": 9023,
    "bigquery": 9050,
    "redis": 6379,
}


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
