"""One connection per host and login: opened on first use, closed at the end of the run.

A connection that dropped is opened again when next asked for (within
``connect_timeout``), so the clean-up after a failure reaches a host whose
connection was reset in the middle of a step.

The login (user, port, key, agent forwarding) is read in the host's scope,
so a call whose roles (``@roles``, ``execute(roles=)``) name another user
or port gets a connection with those, even on a host already connected
for its ``-R`` roles. Most runs have one login per host: one connection.

At most ``connect_limit`` connections are starting at any moment (see
:mod:`.limits`), and hosts behind a bastion share one connection to it
(:mod:`fake.transport.bastion`), which the pool closes last.
"""

import threading
import time

from ..env import CallableEnv
from ..exceptions import ConnectError
from ..settings import flag, number, text
from ..transport.bastion import Bastions
from ..transport.ssh import check_host_keys, describe_connect_error, open_target, tune_transport
from ..transport.sshconfig import cache_ssh_config
from .limits import connect_slots
from .scope import split_host

__all__ = ["Pool"]


class Pool:
    def __init__(self, env, config):
        self.env = env
        self.config = config
        self._connections = {}  # (host, login) -> connection
        self._lock = threading.Lock()
        self._opening = {}  # (host, login) -> lock: one handshake per login, however many threads ask
        self._lost = {}  # (host, login) -> the error of a dropped connection that did not come back
        if config is not None:
            cache_ssh_config(config)
        self.bastions = Bastions(config, prepare=check_host_keys, describe=describe_connect_error,
                                 tune=tune_transport)
        self._starting = connect_slots(env)

    def login(self, host):
        """The connection settings for ``host`` as the running code sees them (callables too)."""
        user, _, port = split_host(host)
        settings = CallableEnv(self.env)
        key = settings.get("key_filename")
        return (
            None if user else settings.get("user"),
            None if port else number(settings, "port", minimum=1, whole=True),
            tuple(key) if isinstance(key, (list, tuple)) else key,
            flag(settings, "forward_agent", default=None),
            text(settings, "gateway"),
        )

    def connect(self, host, scope=None):
        """The connection for ``host`` and the current login, opened on first use."""
        login = self.login(host)
        key = (host, login)
        with self._lock:
            conn = self._connections.get(key)
            if _alive(conn):
                return conn
            opening = self._opening.setdefault(key, threading.Lock())
        with opening:
            dead = self._connections.get(key)
            if _alive(dead):
                return dead
            if key in self._lost:
                raise self._lost[key]  # tried for connect_timeout already: later steps fail at once
            # None, or it dropped (a reset, a restarted sshd): the clean-up needs a new one
            user, port, key_filename, forward_agent, gateway = login
            timeout = number(CallableEnv(self.env), "connect_timeout", minimum=1)
            give_up = time.monotonic() + (timeout or 10)
            while True:
                try:
                    with self._starting:
                        conn = open_target(
                            host, self.config, user=user, port=port,
                            key_filename=list(key_filename) if isinstance(key_filename, tuple) else key_filename,
                            forward_agent=forward_agent, connect_timeout=timeout,
                            bastions=self.bastions, gateway=gateway,
                        )
                    break
                except ConnectError as e:
                    # A host that was reached and dropped (sshd restarting, a reset) gets
                    # connect_timeout to come back; a first connection fails at once.
                    if dead is None or time.monotonic() + 0.5 > give_up:
                        if dead is not None:
                            self._lost[key] = e
                        raise
                    time.sleep(0.5)
            with self._lock:
                self._connections[key] = conn
            if scope is not None and (scope.default_connection is None or scope.default_connection is dead):
                scope.connection = conn
            if dead is not None:
                _close(dead)
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
            _close(conn)
        self.bastions.close()  # after the hosts whose traffic runs through them


def _alive(conn):
    """An SSH connection whose transport still runs (a local target always is)."""
    return conn is not None and bool(getattr(conn, "is_connected", True))


def _close(conn):
    try:
        conn.close()
    except Exception:
        pass
