"""Jump hosts (``ProxyJump``): one SSH connection per bastion, shared by every host behind it.

Fabric opens a new bastion connection for every target (so 200 hosts are
200 logins on the bastion, and its ``MaxStartups`` refuses most of them)
and walks a chain ``ProxyJump a,b`` from the wrong end. Here the chain is
read the way OpenSSH reads it (connect to ``a``, from ``a`` to ``b``, from
``b`` to the target), each hop is opened once per run, and every target
behind it is a ``direct-tcpip`` channel on that one connection.

A bastion that cannot be reached or refuses the login fails once; every
target behind it then fails with that same error, which names the
bastion, so the run reports one reason, not one per target.
"""

import threading

import paramiko
from fabric import Connection

from ..exceptions import ConnectError

__all__ = ["Bastions", "jump_chain", "split_jumps", "plain_gateway"]


def split_jumps(text):
    """``'a, ssh://u@b:2'`` -> ``['a', 'u@b:2']``; ``'none'`` or empty -> ``[]``."""
    if not text or str(text).strip().lower() == "none":
        return []
    hops = []
    for hop in str(text).split(","):
        hop = hop.strip()
        if hop.startswith("ssh://"):
            hop = hop[len("ssh://"):].rstrip("/")
        if hop:
            hops.append(hop)
    return hops


def _hop_name(hop):
    """The ssh_config name of a hop spec (``user@name:port`` -> ``name``)."""
    name = hop.rsplit("@", 1)[-1]
    if name.startswith("["):
        return name[1:].split("]", 1)[0]
    return name.rsplit(":", 1)[0] if name.count(":") == 1 else name


def jump_chain(ssh_config, host, default=None):
    """The hops to go through to reach ``host``, nearest to this machine first.

    ``ProxyJump`` in ssh_config wins; ``default`` (``env.gateway``) applies
    to a host that has none. As with ``ssh -J``, the first hop's own
    ``ProxyJump`` is followed too; a hop that names itself (a ``Host *``
    pattern) ends the chain, rather than looping.
    """
    seen = {_hop_name(host)}
    chain = []
    name = _hop_name(host)
    jumps = _lookup(ssh_config, name)
    if jumps is None:
        jumps = split_jumps(default)
    while jumps:
        jumps = [h for h in jumps if _hop_name(h) not in seen]
        if not jumps:
            break
        chain = jumps + chain
        seen.update(_hop_name(h) for h in jumps)
        jumps = _lookup(ssh_config, _hop_name(jumps[0])) or []
    return chain


def plain_gateway(config, name):
    """What Fabric may still proxy ``name`` through when no jump applies: a ``ProxyCommand``.

    Never None: Fabric takes None as "work it out", and would open a
    bastion of its own for a ``ProxyJump`` this module chose not to follow.
    """
    try:
        command = config.base_ssh_config.lookup(name).get("proxycommand")
    except Exception:
        command = None
    if command and command.strip().lower() != "none":
        return command
    return getattr(config, "gateway", None) or False


def _lookup(ssh_config, name):
    """The ProxyJump hops ssh_config gives ``name``, or None if it says nothing."""
    try:
        value = ssh_config.lookup(name).get("proxyjump")
    except Exception:
        return None
    return None if value is None else split_jumps(value)


class Bastions:
    """The open jump-host connections of a run, keyed by the chain that leads to them."""

    def __init__(self, config, prepare=None, describe=None, tune=None):
        self.config = config
        self.tune = tune or (lambda transport: None)  # TCP_NODELAY and the idle poll, from the caller
        self.prepare = prepare or (lambda conn: None)  # host-key checks, from the caller (ssh)
        self.describe = describe or (lambda conn, error, timeout: str(error))  # one line for an error
        self._conns = {}  # chain tuple -> open Connection to its last hop
        self._failed = {}  # chain tuple -> the ConnectError every target behind it gets
        self._opening = {}  # chain tuple -> lock: one login per bastion, however many threads ask
        self._lock = threading.Lock()

    def gateway(self, chain, connect_kwargs=None, connect_timeout=None):
        """The open connection to ``chain[-1]``, reached through the hops before it."""
        chain = tuple(chain)
        with self._lock:
            conn = self._conns.get(chain)
            if conn is not None and conn.is_connected:
                return conn
            opening = self._opening.setdefault(chain, threading.Lock())
        with opening:
            with self._lock:
                conn = self._conns.get(chain)
                if conn is not None and conn.is_connected:
                    return conn
                if chain in self._failed:
                    raise self._failed[chain]
            before = self.gateway(chain[:-1], connect_kwargs, connect_timeout) if len(chain) > 1 else False
            try:
                conn = self._open(chain[-1], before, connect_kwargs, connect_timeout)
            except ConnectError as e:
                with self._lock:
                    self._failed[chain] = e
                raise
            with self._lock:
                self._conns[chain] = conn
            return conn

    def _open(self, hop, before, connect_kwargs, connect_timeout):
        name = _hop_name(hop)
        try:
            # Never None for the first hop: Fabric would follow its ProxyJump
            # again, and jump_chain has already put that in front of it.
            conn = Connection(hop, config=self.config, gateway=before or plain_gateway(self.config, name),
                              connect_kwargs=dict(connect_kwargs or {}), connect_timeout=connect_timeout)
        except (ValueError, paramiko.SSHException) as e:
            raise ConnectError(name, f"bastion {hop!r}: bad host: {e}") from e
        self.prepare(conn)
        try:
            conn.open()
        except Exception as e:
            reason = self.describe(conn, e, connect_timeout)
            raise ConnectError(name, f"bastion {name}: {reason}") from e
        self.tune(conn.transport)
        return conn

    def hosts(self):
        with self._lock:
            return [chain[-1] for chain in self._conns]

    def close(self):
        """Close every bastion, the nearest last (a far hop's traffic runs through it)."""
        with self._lock:
            conns, self._conns = sorted(self._conns.items(), key=lambda kv: -len(kv[0])), {}
        for _, conn in conns:
            try:
                conn.close()
            except Exception:
                pass
