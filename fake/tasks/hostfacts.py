"""What the deploy preflight checks read on a host: run there by ``call()``, standard library only.

This module is imported on the host (served from the controller), so it
imports nothing of Fake's and keeps to Python 3.6.
"""

import os
import socket
import sys

__all__ = ["facts", "free_bytes", "port_state"]


def free_bytes(path):
    """Bytes free to an unprivileged user under ``path``, or its nearest existing parent."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and path != os.path.dirname(path):
        path = os.path.dirname(path)
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def port_state(port, address="127.0.0.1", timeout=1.0):
    """``"listening"`` if something accepts TCP connections on the port, else ``"free"``."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return "listening"
    except OSError:
        return "free"


def facts(path=None, ports=(), address="127.0.0.1"):
    """Everything the checks need in one call (one round trip)."""
    return {
        "python": tuple(sys.version_info[:3]),
        "free_bytes": free_bytes(path) if path else None,
        "ports": {port: port_state(port, address) for port in ports},
    }
