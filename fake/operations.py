"""``run``, ``sudo``, ``put``, ``get``, ``test``, ``local``, ``cd``: on the current host.

These are the Fabric 1 style calls a fabfile makes without a ``c`` argument;
they act on the connection of the host the task is running on. ``here`` and
``timeout`` are how they, and Fake's own deploy steps, find that host and
how long a command may take.
"""

import invoke

from .env import current_scope
from .exceptions import ConfigError, HostCommandError, HostError
from .settings import number
from .state import env
from .transport.exec import cd, run_command

__all__ = ["run", "sudo", "put", "get", "test", "local", "cd", "here", "timeout"]


def here(what="this task"):
    """``(connection, host)`` of the host the running task is on; outside any host, an error naming ``what``."""
    scope = current_scope()
    if scope is None or getattr(scope, "connection", None) is None:
        raise ConfigError(f"{what} needs a host: give -H HOST or -R ROLE")
    return scope.connection, scope.host


def timeout(key="command_timeout", given=None):
    """Seconds a command may take: ``given`` when the caller passed one, else ``env.<key>`` (None: no limit)."""
    if given is not None:
        return given
    return number(env, key, minimum=0.001)


_timeout = timeout  # run() and sudo() take a ``timeout`` argument, which hides the function


def run(command, hide=None, warn=None, timeout=None, **kwargs):
    """Run a shell command on the current host; fail naming host and command."""
    conn, host = here(f"run({command!r})")
    return run_command(conn, command, host=host, hide=hide, warn=warn,
                       timeout=_timeout(given=timeout), **kwargs)


def sudo(command, user=None, hide=None, warn=None, timeout=None, **kwargs):
    """Run a command through sudo on the current host (as ``user``, default root)."""
    conn, host = here(f"sudo({command!r})")
    if user:
        kwargs["user"] = user  # checked in run_command, for c.sudo() too
    return run_command(conn, command, host=host, sudo=True, hide=hide, warn=warn,
                       timeout=_timeout(given=timeout), **kwargs)


def test(command, timeout=None):
    """Whether a command succeeds on the current host; never raises for its exit."""
    return run(command, hide=True, warn=True, timeout=timeout).ok


def put(local_path, remote_path=None, preserve_mode=True):
    """Upload a file to the current host."""
    return _transfer("put", local_path, remote_path, preserve_mode)


def get(remote_path, local_path=None, preserve_mode=True):
    """Download a file from the current host."""
    return _transfer("get", remote_path, local_path, preserve_mode)


def _transfer(kind, source, target, preserve_mode):
    conn, host = here(f"{kind}({source!r})")
    other_end = "remote" if kind == "put" else "local"
    try:
        return getattr(conn, kind)(source, preserve_mode=preserve_mode, **{other_end: target})
    except OSError as e:
        raise HostError(host, f"{kind} {source} -> {target}: {e}") from e


def local(command, hide=False, warn=False, timeout=None):
    """Run a command on this machine (the controller), whatever the host."""
    kwargs = dict(hide=hide, warn=True, in_stream=False)
    if timeout:
        kwargs["timeout"] = timeout
    result = invoke.run(command, **kwargs)
    if result.exited != 0 and not warn:
        raise HostCommandError("localhost", command, result.exited, result.stderr, result.stdout)
    return result
