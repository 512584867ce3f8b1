"""``run``, ``sudo``, ``put``, ``get``, ``test``, ``local``: on the current host.

These are the Fabric 1 style calls a fabfile makes without a ``c`` argument;
they act on the connection of the host the task is running on.
"""

import invoke

from .env import current_scope
from .exceptions import HostCommandError, HostError
from .transport.exec import require_target, run_command

__all__ = ["run", "sudo", "put", "get", "test", "local"]


def _here(what):
    scope = current_scope()
    return require_target(scope, what), scope.host


def _timeout(timeout):
    from .settings import number
    from .state import env

    if timeout is not None:
        return timeout
    return number(env, "command_timeout", minimum=0.001)


def run(command, hide=None, warn=None, timeout=None, **kwargs):
    """Run a shell command on the current host; fail naming host and command."""
    conn, host = _here(f"run({command!r})")
    return run_command(conn, command, host=host, hide=hide, warn=warn,
                       timeout=_timeout(timeout), **kwargs)


def sudo(command, user=None, hide=None, warn=None, timeout=None, **kwargs):
    """Run a command through sudo on the current host (as ``user``, default root)."""
    conn, host = _here(f"sudo({command!r})")
    if user:
        kwargs["user"] = user  # checked in run_command, for c.sudo() too
    return run_command(conn, command, host=host, sudo=True, hide=hide, warn=warn,
                       timeout=_timeout(timeout), **kwargs)


def test(command, timeout=None):
    """Whether a command succeeds on the current host; never raises for its exit."""
    return run(command, hide=True, warn=True, timeout=timeout).ok


def put(local_path, remote_path=None, preserve_mode=True):
    """Upload a file to the current host."""
    conn, host = _here(f"put({local_path!r})")
    try:
        return conn.put(local_path, remote=remote_path, preserve_mode=preserve_mode)
    except (OSError, IOError) as e:
        raise HostError(host, f"put {local_path} -> {remote_path}: {e}") from e


def get(remote_path, local_path=None, preserve_mode=True):
    """Download a file from the current host."""
    conn, host = _here(f"get({remote_path!r})")
    try:
        return conn.get(remote_path, local=local_path, preserve_mode=preserve_mode)
    except (OSError, IOError) as e:
        raise HostError(host, f"get {remote_path} -> {local_path}: {e}") from e


def local(command, hide=False, warn=False, timeout=None):
    """Run a command on this machine (the controller), whatever the host."""
    kwargs = dict(hide=hide, warn=True, in_stream=False)
    if timeout:
        kwargs["timeout"] = timeout
    result = invoke.run(command, **kwargs)
    if result.exited != 0 and not warn:
        raise HostCommandError("localhost", command, result.exited, result.stderr, result.stdout)
    return result
