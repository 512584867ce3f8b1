"""One connection per host and login: opened on first use, closed at the end of the run.

The login (user, port, key, agent forwarding) is read in the host's scope,
so a call whose roles (``@roles``, ``execute(roles=)``) name another user
or port gets a connection with those, even on a host already connected
for its ``-R`` roles. Most runs have one login per host: one connection.
"""

import threading

from ..env import CallableEnv, flag, number
from ..ssh import open_target
from .scope import split_host

__all__ = ["Pool"]


class Pool:
    def __init__(self, env, config):
        self.env = env
        self.config = config
        self._connections = {}  # (host, login) -> connection
        self._lock = threading.Lock()
        self._opening = {}  # (host, login) -> lock: one handshake per login, however many threads ask

    def login(self, host):
        """The connection settings for ``host`` as the running code sees them (callables too)."""
        user, _, port = split_host(host)
        settings = CallableEnv(self.env)
        key = settings.get("key_filename")
        return (
            None if user else settings.get("user"),
            None if port else number("port", settings.get("port"), 1),
            tuple(key) if isinstance(key, (list, tuple)) else key,
            flag("forward_agent", settings.get("forward_agent")),
        )

    def connect(self, host, scope=None):
        """The connection for ``host`` and the current login, opened on first use."""
        login = self.login(host)
        key = (host, login)
        with self._lock:
            conn = self._connections.get(key)
            if conn is not None:
                return conn
            opening = self._opening.setdefault(key, threading.Lock())
        with opening:
            conn = self._connections.get(key)
            if conn is not None:
                return conn
            user, port, key_filename, forward_agent = login
            conn = open_target(
                host, self.config, user=user, port=port,
                key_filename=list(key_filename) if isinstance(key_filename, tuple) else key_filename,
                forward_agent=forward_agent,
                connect_timeout=number("connect_timeout", CallableEnv(self.env).get("connect_timeout"), 1),
            )
            with self._lock:
                self._connections[key] = conn
            if scope is not None and scope.default_connection is None:
                scope.connection = conn
            return conn

    def reached(self, hosts):
        """The hosts among ``hosts`` that have a connection."""
        with self._lock:
            connected = {host for host, _ in self._connections}
        return [h for h in hosts if h in connected]

    def hosts(self):
        with self._lock:
            return list(dict.fromkeys(host for host, _ in self._connections))

    def close(self):
        with self._lock:
            conns, self._connections = list(self._connections.values()), {}
        for conn in conns:
            try:
                conn.close()
            except Exception:
                pass
