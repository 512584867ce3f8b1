"""Opening a host: SSH connections checked the way OpenSSH checks them (or the local target).

Fabric accepts any host key; Fake reads known_hosts and refuses a changed
key (and an unknown one under ``StrictHostKeyChecking yes``). Every
failure to connect becomes one ConnectError naming the host and why.
"""

import hmac
import os
import socket
import threading
import time

import paramiko
import paramiko.agent
from fabric import Connection

from ..exceptions import ConnectError
from .bastion import jump_chain, plain_gateway
from .channel import exec_ssh
from .exec import HostCommands, TimedOut
from .local import LOCAL, LocalTarget

__all__ = ["HostConnection", "open_target", "check_host_keys", "describe_connect_error",
           "connection_kwargs", "tune_transport"]


class HostConnection(HostCommands, Connection):
    """Fabric's Connection, with a session channel kept open ahead of the next command.

    Opening a channel costs a round trip before a command can even be sent.
    The next command's channel is requested as soon as one is handed out,
    so it is ready by the time that command comes: each command, Fake's
    own or a fabfile's, then costs one round trip instead of two.
    """

    _spare = None
    _spare_lock = None  # a real attribute, for the reason below
    # A real attribute, so Fabric's `self.inline_ssh_env = ...` stays on the
    # connection: an unknown attribute is written into the shared config,
    # and that write re-merges it while other hosts' threads read it.
    inline_ssh_env = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._spare_lock = threading.Lock()  # guards _spare: commands and the opener thread race for it

    def create_session(self, timeout=None):
        with self._spare_lock:
            spare, self._spare = self._spare, None
        started = time.monotonic()
        channel = spare.take(timeout) if spare is not None else None
        if channel is None:
            left = None if timeout is None else timeout - (time.monotonic() - started)
            if left is not None and left <= 0:
                raise TimedOut()  # reported as the command's timeout
            channel = self.transport.open_session(timeout=left)
        self.open_spare()
        if self.forward_agent:
            # As Fabric does: git over SSH on the host may need the forwarded agent.
            channel.fake_agent = paramiko.agent.AgentRequestHandler(channel)
        return channel

    def exec_captured(self, command, timeout=None, before_exec=None, on_line=None, stdin=None):
        return exec_ssh(self, command, timeout, before_exec, on_line, stdin)

    def open_spare(self):
        """Start opening the next session channel, unless one is on its way."""
        transport = self.transport
        if transport is None or not transport.is_active():
            return
        with self._spare_lock:
            if self._spare is None:
                self._spare = _Spare(transport)



class _Spare:
    """A session channel being opened in the background."""

    def __init__(self, transport):
        self.channel = None
        self.abandoned = False
        self.ready = threading.Event()
        self.lock = threading.Lock()
        threading.Thread(target=self._open, args=(transport,), daemon=True).start()

    def _open(self, transport):
        try:
            channel = transport.open_session(timeout=30)
        except Exception:
            channel = None  # take() falls back to opening one, which reports the error
        with self.lock:
            if self.abandoned and channel is not None:
                channel.close()  # nobody waits for it: do not hold one of the server's sessions
                channel = None
            self.channel = channel
            self.ready.set()

    def take(self, timeout=None):
        """The channel, once open; None if it failed, closed, or is not there in time."""
        self.ready.wait(timeout)
        with self.lock:
            if not self.ready.is_set():
                self.abandoned = True  # closed by _open when it does arrive
                return None
            channel = self.channel
        if channel is None or channel.closed or not channel.active:
            return None
        return channel


def open_target(host, config, user=None, port=None, key_filename=None,
                forward_agent=None, connect_timeout=None, bastions=None, gateway=None):
    """An open connection to ``host``, or ConnectError naming it and why.

    With ``bastions`` (a :class:`~.bastion.Bastions`), a host behind
    ``ProxyJump`` (or ``gateway``, ``env.gateway``, when ssh_config names
    none) is reached over the run's one connection to its bastion.
    """
    if host == LOCAL:
        return LocalTarget(config=config)
    connect_kwargs, connect_timeout = connection_kwargs(config, host, key_filename, connect_timeout)
    via = None
    if bastions is not None:
        chain = jump_chain(config.base_ssh_config, host, default=gateway)
        if chain:
            hop_kwargs, hop_timeout = connection_kwargs(config, chain[-1], key_filename, connect_timeout)
            try:
                via = bastions.gateway(chain, hop_kwargs, hop_timeout)
            except ConnectError as e:
                raise ConnectError(host, e.reason) from e  # the same line for every host behind it
    try:
        conn = HostConnection(
            host,
            user=user,
            port=int(port) if port else None,
            config=config,
            connect_kwargs=connect_kwargs,
            forward_agent=forward_agent,
            connect_timeout=connect_timeout,
            # Never None with bastions: Fabric would open a bastion of its own for this host.
            gateway=via if via is not None else (plain_gateway(config, host) if bastions is not None else None),
        )
    except (ValueError, paramiko.SSHException) as e:
        raise ConnectError(host, f"bad host {host!r}: {e}") from e
    check_host_keys(conn)
    try:
        conn.open()
    except paramiko.ChannelException as e:
        where = f"{conn.host}:{conn.port}"
        raise ConnectError(host, f"bastion {via.host} could not reach {where}: {e.text}") from e
    except Exception as e:  # every failure here is a ConnectError to the user
        reason = describe_connect_error(conn, e, connect_timeout)
        if via is not None:
            reason += f" (via bastion {via.host})"
        raise ConnectError(host, reason) from e
    conn.fake_host = host
    tune_transport(conn.transport)
    conn.open_spare()  # the first command's channel opens while other hosts still connect
    return conn


# Paramiko checks each packet's MAC with a Python loop over its bytes; the
# standard library's compare_digest is the same constant-time comparison in
# C. At 200 hosts the loop was the largest of Paramiko's own costs.
paramiko.util.constant_time_bytes_eq = hmac.compare_digest

# How often an idle transport thread wakes up (Paramiko: 10 times a second).
# Its reads return as soon as data comes; the wake-up only notices a close,
# so once connected it may sleep longer. At 200 hosts the 0.1 s poll was
# about a quarter of the controller's CPU.
IDLE_POLL = 1.0


def tune_transport(transport):
    """After the handshake: TCP_NODELAY, and a calmer idle poll of the transport's thread."""
    sock = getattr(transport, "sock", None)
    if isinstance(sock, socket.socket):
        # Paramiko leaves Nagle on: each small command would wait for a
        # delayed ACK (about 40 ms per command, even on loopback).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if sock is not None and hasattr(sock, "settimeout"):
        sock.settimeout(IDLE_POLL)  # a bastion's channel too: it polls the same way


def connection_kwargs(config, host, key_filename=None, connect_timeout=None):
    """Paramiko's connect() arguments for ``host``, and the connect timeout to give Fabric."""
    # Never None or empty: given no connect_kwargs, Fabric adds ssh_config's
    # IdentityFile to the *config's* dict, and that write re-merges the config
    # while other hosts' threads read it (they then see it empty). The config's
    # own keys are added by Fabric, so they are left out here.
    connect_kwargs = {k: v for k, v in config.connect_kwargs.items() if k != "key_filename"}
    connect_kwargs.setdefault("look_for_keys", True)  # paramiko's default, said out loud
    if key_filename:
        connect_kwargs["key_filename"] = (
            [key_filename] if isinstance(key_filename, str) else list(key_filename)
        )
    if connect_timeout and "timeout" in config.connect_kwargs:
        connect_timeout = None  # -t given: Fabric already has it
    if connect_timeout is None and "timeout" not in config.connect_kwargs and not config.timeouts.connect:
        # ssh_config's ConnectTimeout wins when present (Connection reads it);
        # otherwise wait 10 s rather than the OS's minutes.
        connect_timeout = None if _ssh_connect_timeout(config, host) else 10
    wait = connect_timeout or config.connect_kwargs.get("timeout")
    if wait:
        # A host that accepts TCP but never speaks SSH must fail as fast as
        # one that does not answer (Paramiko waits 15 s for the banner).
        connect_kwargs.setdefault("banner_timeout", wait)
        connect_kwargs.setdefault("auth_timeout", wait)
    return connect_kwargs, connect_timeout


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Unknown host: accept for this run (not written anywhere); changed keys never get here."""

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)


def _ssh_connect_timeout(config, host):
    try:
        return config.base_ssh_config.lookup(host).get("connecttimeout")
    except Exception:
        return None


def check_host_keys(conn):
    """Check host keys the way OpenSSH does, not Fabric's accept-everything.

    Known keys come from ``UserKnownHostsFile`` (default ~/.ssh/known_hosts)
    and the system file; a key that differs from a known one is refused.
    An unknown key follows ``StrictHostKeyChecking``: ``yes`` refuses it,
    anything else accepts it for this run only.
    """
    cfg = conn.ssh_config
    files = cfg.get("userknownhostsfile") or ["~/.ssh/known_hosts"]
    if isinstance(files, str):
        files = files.split()
    files = [os.path.expanduser(f) for f in files] + [
        os.path.expanduser(f) for f in (cfg.get("globalknownhostsfile") or "/etc/ssh/ssh_known_hosts").split()
    ]
    for path in files:
        if path != "/dev/null" and os.path.isfile(path):
            try:
                conn.client.get_host_keys().load(path)
            except (OSError, paramiko.SSHException):
                pass
    strict = str(cfg.get("stricthostkeychecking", "")).lower()
    conn.client.set_missing_host_key_policy(
        paramiko.RejectPolicy() if strict == "yes" else _AcceptNew()
    )


def describe_connect_error(conn, error, timeout=None):
    """Why connecting failed, in one line: the ConnectError the user sees instead of a traceback."""
    where = f"{conn.host}:{conn.port}"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve host name {conn.host!r}: {error.strerror or error}"
    if isinstance(error, paramiko.ssh_exception.NoValidConnectionsError):
        reasons = {e.strerror or str(e) for e in error.errors.values()}
        return f"cannot connect to {where}: {'; '.join(sorted(reasons))}"
    if isinstance(error, (socket.timeout, TimeoutError)):
        secs = timeout or conn.connect_timeout
        return f"connecting to {where} timed out" + (f" after {secs}s" if secs else "")
    if isinstance(error, paramiko.BadHostKeyException):
        return (f"host key for {where} does not match known_hosts "
                f"(got {error.key.get_name()} {error.key.fingerprint}): refusing to connect")
    if isinstance(error, paramiko.SSHException) and "not found in known_hosts" in str(error):
        return f"host key for {where} is unknown and StrictHostKeyChecking is yes: refusing to connect"
    if isinstance(error, paramiko.AuthenticationException):
        return f"authentication failed for user {conn.user!r} at {where}: {error}"
    if isinstance(error, paramiko.SSHException):
        return f"SSH error with {where}: {error}"
    if isinstance(error, OSError):
        return f"cannot connect to {where}: {error.strerror or error}"
    return f"cannot connect to {where}: {type(error).__name__}: {error}"
