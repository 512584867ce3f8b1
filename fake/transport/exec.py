"""One command on one host: ``cd()``, output prefixed with the host, errors that name it.

:func:`run_command` is the fabfile's ``run``/``sudo`` (and ``c.run``): Fabric's
runners, live output, ``-w`` and ``--hide`` honoured. :func:`run_quiet` runs
Fake's own commands the lean way: each target class supplies
``exec_captured`` (SSH in :mod:`fake.transport.channel`, this machine in
:mod:`fake.transport.local`), and both use the helpers at the end of this
module. Connecting is in :mod:`fake.transport.ssh`; the shell text comes
from :mod:`fake.shell`.
"""

import re
import time
from contextlib import contextmanager
from contextvars import ContextVar

import invoke
import paramiko

from ..exceptions import ConfigError, ConnectError, ControllerError, HostCommandError
from ..output import VERBOSE, console
from ..shell import Script, quote, quote_path

__all__ = ["cd", "with_cwd", "prefixed", "PrefixedStream", "HostCommands", "run_command", "run_quiet"]

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
        # Invoke's reader threads write here; they do not carry the run's context.
        self.console = console()

    def write(self, data):
        self.buf += data
        *lines, self.buf = self.buf.split("\n")
        if lines:
            self.console.host_lines(self.host, lines, err=self.err, log=False)

    def flush(self):
        """Nothing: Invoke flushes after every chunk it reads, often mid-line (at 1000 bytes)."""

    def close(self):
        """The command ended: its last line, even without a newline."""
        if self.buf:
            self.console.host_lines(self.host, [self.buf], err=self.err, log=False)
            self.buf = ""


def prefixed(host, err=False):
    return PrefixedStream(host, err)


class HostCommands:
    """``c.run``/``c.sudo`` with host-prefixed output and host-named errors.

    Mixed into the connection classes so a task's ``c.run(...)`` behaves
    like the fabfile-level ``run(...)``. Each of them also supplies
    ``exec_captured(command, timeout, before_exec, on_line, stdin)``, which
    returns ``(exited, stdout, stderr)`` or raises TimedOut: how
    :func:`run_quiet` runs a command on that kind of target.
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
                stream.close()
    return _finish(host, full, started, result, hide=hide, warn=warn, label=label, command=command)


def run_quiet(target, command, *, host=None, label=None, timeout=None, before_exec=None, on_line=None,
              stdin=None):
    """Run one of Fake's own commands: no pty, output captured, failure raised.

    Over SSH this is one session on the pooled connection, read by the
    calling thread: no runner threads and no polling, so a command costs
    its round trips and little else. ``before_exec`` runs once the session
    is open (to wait for a slot without a round trip after it);
    ``on_line`` sees each stdout line as it arrives; ``stdin`` is a local
    file streamed to the command's standard input (else it reads EOF).
    ``cd()`` and ``-w`` do not apply: these commands use absolute paths and
    must never pass silently.
    """
    host = host or getattr(target, "host", None) or "?"
    started = time.monotonic()
    try:
        exited, out, err = target.exec_captured(command, timeout, before_exec, on_line, stdin)
    except TimedOut as e:
        _log(host, command, "timeout", started, None)
        raise HostCommandError(host, label or command, "-", str(e) or f"timed out after {timeout}s") from None
    except (OSError, EOFError, paramiko.SSHException) as e:
        _log(host, command, "lost", started, None)
        _drop(target)  # the pool then opens a new one for the next step (the clean-up, say)
        raise ConnectError(host, f"connection lost while running {label or command!r}: {e}") from e
    result = invoke.Result(stdout=out, stderr=err, command=command, exited=exited, hide=("stdout", "stderr"))
    return _finish(host, command, started, result, hide=True, warn=False, label=label, command=command)


def _drop(target):
    try:
        target.close()
    except Exception:
        pass


def _finish(host, full, started, result, *, hide, warn, label, command):
    """Log a finished command, show it under -v when hidden, raise if it failed and must not."""
    _log(host, full, result.exited, started, result)
    if hide and console().level >= VERBOSE:  # only -v shows hidden output: do not build it otherwise
        shown = ["$ " + line for line in full.rstrip("\n").split("\n")]
        shown += (result.stdout + result.stderr).rstrip("\n").split("\n") if (result.stdout + result.stderr).strip() else []
        console().host_lines(host, shown, level=VERBOSE, log=False)
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


# -- shared by the targets' exec_captured -------------------------------------------
class TimedOut(Exception):
    """A command ran past its deadline; run_quiet reports it as the command's timeout."""


def run_env(target):
    config = getattr(target, "config", None)
    run = getattr(config, "run", None) or {}
    return {str(k): str(v) for k, v in (run.get("env") or {}).items()}


def open_stdin(path):
    if path is None:
        return None
    try:
        return open(path, "rb")
    except OSError as e:
        raise ControllerError(f"cannot read {path} to send it: {e.strerror or e}") from e


class Lines:
    """Whole stdout lines for ``on_line`` as bytes arrive."""

    def __init__(self, on_line):
        self.on_line, self.buf = on_line, b""

    def feed(self, data):
        if self.on_line is None:
            return
        self.buf += data
        *whole, self.buf = self.buf.split(b"\n")
        for line in whole:
            self.on_line(decode(line))

    def close(self):
        if self.on_line is not None and self.buf:
            self.on_line(decode(self.buf))
        self.buf = b""


def decode(data):
    return bytes(data).decode("utf-8", "replace")
