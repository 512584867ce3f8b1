"""Commands on one host: connecting, running, and errors that name it.

The shell text they run is built in :mod:`fake.shell`.
"""

import os
import re
import shutil
import socket
import time
from contextlib import contextmanager
from contextvars import ContextVar

import invoke
import paramiko
from fabric import Connection

from .shell import Script, join, quote, quote_path  # noqa: F401  (re-exported: shell text lives in shell.py)
from .exceptions import ConfigError, ConnectError, FakeError, HostCommandError
from .output import VERBOSE, console

__all__ = [
    "quote",
    "join",
    "Script",
    "LocalTarget",
    "open_target",
    "run_command",
    "cd",
    "prefixed",
    "LOCAL",
]

LOCAL = "local"
_cwd = ContextVar("fake_cwd", default=())


@contextmanager
def cd(path):
    """Run commands of this block in ``path`` (nests; the path is quoted)."""
    token = _cwd.set(_cwd.get() + (str(path),))
    try:
        yield
    finally:
        _cwd.reset(token)


def with_cwd(command):
    dirs = _cwd.get()
    if not dirs:
        return command
    return " && ".join(f"cd {quote_path(d)}" for d in dirs) + " && " + command


class PrefixedStream:
    """A file-like object that shows whole lines as ``[host] line``.

    The log file gets the command's full output separately, with its exit
    code, so these lines go to the screen only.
    """

    def __init__(self, host, err=False):
        self.host = host
        self.err = err
        self.buf = ""

    def write(self, data):
        self.buf += data
        *lines, self.buf = self.buf.split("\n")
        if lines:
            console().host_lines(self.host, lines, err=self.err, log=False)

    def flush(self):
        if self.buf:
            console().host_lines(self.host, [self.buf], err=self.err, log=False)
            self.buf = ""


def prefixed(host, err=False):
    return PrefixedStream(host, err)


class HostCommands:
    """``c.run``/``c.sudo`` with host-prefixed output and host-named errors.

    Mixed into the connection classes so a task's ``c.run(...)`` behaves
    like the fabfile-level ``run(...)``.
    """

    fake_host = None

    def run(self, command, **kwargs):
        return run_command(self, command, host=self.fake_host, **kwargs)

    def sudo(self, command, **kwargs):
        return run_command(self, command, host=self.fake_host, sudo=True, **kwargs)

    def raw_run(self, command, **kwargs):
        return super().run(command, **kwargs)

    def raw_sudo(self, command, **kwargs):
        return super().sudo(command, **kwargs)


class HostConnection(HostCommands, Connection):
    pass


class LocalTarget(HostCommands, invoke.Context):
    """The built-in ``local`` host: commands run here, without SSH."""

    host = LOCAL
    fake_host = LOCAL
    user = None

    def __init__(self, config=None):
        super().__init__(config=config)

    @property
    def is_connected(self):
        return True

    def open(self):
        pass

    def close(self):
        pass

    def put(self, local, remote=None, preserve_mode=True):
        remote = os.path.expanduser(remote or os.path.basename(local))
        if os.path.isdir(remote):
            remote = os.path.join(remote, os.path.basename(local))
        shutil.copy2(local, remote) if preserve_mode else shutil.copyfile(local, remote)
        return remote

    def get(self, remote, local=None, preserve_mode=True):
        remote = os.path.expanduser(remote)
        local = local or os.path.basename(remote)
        if os.path.isdir(local):
            local = os.path.join(local, os.path.basename(remote))
        shutil.copy2(remote, local) if preserve_mode else shutil.copyfile(remote, local)
        return local


def open_target(host, config, user=None, port=None, key_filename=None,
                forward_agent=None, connect_timeout=None):
    """An open connection to ``host``, or ConnectError naming it and why."""
    if host == LOCAL:
        return LocalTarget(config=config)
    connect_kwargs = {}
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
    try:
        conn = HostConnection(
            host,
            user=user,
            port=int(port) if port else None,
            config=config,
            connect_kwargs=connect_kwargs or None,
            forward_agent=forward_agent,
            connect_timeout=connect_timeout,
        )
    except (ValueError, paramiko.SSHException) as e:
        raise ConnectError(host, f"bad host {host!r}: {e}") from e
    check_host_keys(conn)
    try:
        conn.open()
    except Exception as e:  # every failure here is a ConnectError to the user
        raise ConnectError(host, describe_connect_error(conn, e, connect_timeout)) from e
    conn.fake_host = host
    sock = getattr(conn.transport, "sock", None)
    if isinstance(sock, socket.socket):
        # Paramiko leaves Nagle on: each small command would wait for a
        # delayed ACK (about 40 ms per command, even on loopback).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


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


def run_command(target, command, *, host=None, sudo=False, hide=None, warn=None,
                timeout=None, label=None, **kwargs):
    """Run ``command`` on ``target``; raise HostCommandError unless ``warn``.

    Output streams live, each line prefixed with the host, unless ``hide``
    (then ``-v`` still shows it). Every command goes to the log file.
    """
    host = host or getattr(target, "host", None) or "?"
    full = with_cwd(command)
    out = console()
    # None means "as the command line says" (fab -w, --hide): user commands.
    # Fake's own steps pass False/True explicitly, so -w never hides their failures.
    run_config = getattr(getattr(target, "config", None), "run", None) or {}
    warn = bool(run_config.get("warn")) if warn is None else warn
    hide = bool(run_config.get("hide")) if hide is None else hide
    if sudo:
        user = kwargs.get("user")
        if user is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", str(user)):
            # Invoke puts the user into `sudo -u USER` unquoted.
            raise ConfigError(f"sudo user {user!r} is not a valid user name")
        if full != command:
            # A cd() prefix must run under sudo too; otherwise the command goes
            # through as given, so sudoers rules for exact commands still match.
            full = "sh -c " + quote(full)
    opts = dict(warn=True, hide=True, in_stream=False, **kwargs)
    if timeout:
        opts["timeout"] = timeout
    if not hide:
        out.host_lines(host, ["$ " + full], level=VERBOSE, log=False)
        opts.update(out_stream=prefixed(host), err_stream=prefixed(host, err=True), hide=False)
    started = time.monotonic()
    try:
        result = (target.raw_sudo if sudo else target.raw_run)(full, **opts)
    except invoke.CommandTimedOut as e:
        _log(host, full, "timeout", started, e.result)
        raise HostCommandError(host, label or command, "-", f"timed out after {e.timeout}s") from e
    except (OSError, EOFError, paramiko.SSHException) as e:
        _log(host, full, "lost", started, None)
        raise ConnectError(host, f"connection lost while running {label or command!r}: {e}") from e
    finally:
        for stream in (opts.get("out_stream"), opts.get("err_stream")):
            if stream is not None:
                stream.flush()
    _log(host, full, result.exited, started, result)
    if hide:
        shown = ["$ " + line for line in full.rstrip("\n").split("\n")]
        shown += (result.stdout + result.stderr).rstrip("\n").split("\n") if (result.stdout + result.stderr).strip() else []
        out.host_lines(host, shown, level=VERBOSE, log=False)
    if result.exited != 0 and not warn:
        step, stderr = Script.failed_step(result.stderr)
        what = label or command
        if step and step != "start":
            what = f"{label}: {step}" if label else step
        raise HostCommandError(host, what, result.exited, stderr, result.stdout)
    return result


def _log(host, command, exited, started, result):
    transcript = console().transcript
    if transcript is not None:
        transcript.command(host, command, exited, time.monotonic() - started,
                           getattr(result, "stdout", ""), getattr(result, "stderr", ""))


def require_target(scope, what):
    if scope is None or getattr(scope, "connection", None) is None:
        raise FakeError(f"{what} needs a host: give -H HOST or -R ROLE")
    return scope.connection
