"""Commands on one host: running them, and errors that name it (connecting is in :mod:`fake.transport.ssh`).

The shell text they run is built in :mod:`fake.shell`.
"""

import os
import re
import selectors
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar

import invoke
import paramiko

from ..shell import Script, join, quote, quote_path  # noqa: F401  (re-exported: shell text lives in shell.py)
from ..exceptions import ConfigError, ConnectError, ControllerError, FakeError, HostCommandError
from ..output import VERBOSE, console

__all__ = [
    "quote",
    "join",
    "Script",
    "run_command",
    "run_quiet",
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
        if getattr(target, "transport", None) is not None:
            exited, out, err = _exec_ssh(target, command, timeout, before_exec, on_line, stdin)
        else:
            exited, out, err = _exec_local(target, command, timeout, before_exec, on_line, stdin)
    except _TimedOut as e:
        _log(host, command, "timeout", started, None)
        raise HostCommandError(host, label or command, "-", str(e) or f"timed out after {timeout}s") from None
    except (OSError, EOFError, paramiko.SSHException) as e:
        _log(host, command, "lost", started, None)
        raise ConnectError(host, f"connection lost while running {label or command!r}: {e}") from e
    result = invoke.Result(stdout=out, stderr=err, command=command, exited=exited, hide=("stdout", "stderr"))
    return _finish(host, command, started, result, hide=True, warn=False, label=label, command=command)


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


class _TimedOut(Exception):
    pass


def _left(deadline):
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise _TimedOut()
    return left


class _Deadline:
    """``timeout`` counted from the later of the start and the input's last progress.

    An upload on a slow link may take longer than any command should, so
    while a command's input is still going out only a stall of ``timeout``
    fails it; once all of it is sent, the command has ``timeout`` more.
    """

    def __init__(self, timeout, sender=None):
        self.timeout, self.sender = timeout, sender
        self.start = time.monotonic()

    def left(self):
        if not self.timeout:
            return None
        if self.sender is None:
            return _left(self.start + self.timeout)
        try:
            return _left(max(self.start, self.sender.progress) + self.timeout)
        except _TimedOut:
            if self.sender.thread.is_alive():
                raise _TimedOut(f"sending its input made no progress for {self.timeout}s") from None
            raise


def _run_env(target):
    config = getattr(target, "config", None)
    run = getattr(config, "run", None) or {}
    return {str(k): str(v) for k, v in (run.get("env") or {}).items()}


def _exec_ssh(conn, command, timeout, before_exec, on_line, stdin=None):
    source = _open_stdin(stdin)  # before the channel: a missing file is the controller's error
    try:
        chan = conn.create_session(timeout=timeout or None)
    except BaseException:
        if source is not None:
            source.close()
        raise
    sender = None
    try:
        if before_exec is not None:
            before_exec()
        deadline = _Deadline(timeout)
        env = _run_env(conn)
        if env and conn.inline_ssh_env:
            command = "export " + " ".join(f"{k}={quote(v)}" for k, v in sorted(env.items())) + " && " + command
        elif env:
            chan.update_environment(env)
        chan.exec_command(command)
        if source is None:
            chan.shutdown_write()
        else:
            # Its own thread, so output is read while the file goes out.
            sender = deadline.sender = _Sender(chan, source)
        out, err, lines = bytearray(), bytearray(), _Lines(on_line)
        # A selector, not select(): it takes any fd number, however many hosts are open.
        with selectors.DefaultSelector() as selector:
            # The channel's fileno turns readable when stdout or stderr data, EOF or close arrive.
            selector.register(chan, selectors.EVENT_READ)
            while True:
                while chan.recv_ready():
                    data = chan.recv(65536)
                    out += data
                    lines.feed(data)
                    deadline.left()  # a command that never stops talking still times out
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    deadline.left()
                if chan.closed or chan.eof_received:
                    if not chan.recv_ready() and not chan.recv_stderr_ready():
                        break
                    continue
                # A timeout here is checked again: the input may have moved meanwhile.
                selector.select(deadline.left())
        lines.close()
        while not chan.status_event.wait(deadline.left()):
            pass
        exited = chan.recv_exit_status()
        if exited == -1 and not conn.transport.is_active():
            raise EOFError("the connection closed")
        if sender is not None:
            sender.check(stdin)
        return exited, _text(out), _text(err)
    finally:
        chan.close()  # also ends a sender still blocked on a full window
        if sender is not None:
            sender.thread.join(5)
        if source is not None:
            source.close()


def _open_stdin(path):
    if path is None:
        return None
    try:
        return open(path, "rb")
    except OSError as e:
        raise ControllerError(f"cannot read {path} to send it: {e.strerror or e}") from e


class _Sender:
    """Streams a local file into a channel, then EOF, in a thread of its own.

    EOF is sent even when reading fails, so the remote side never waits for
    more; a read failure is then the controller's error to report. A
    command that exits before reading it all closes the channel: that is
    its own failure to report, not ours.
    """

    def __init__(self, chan, source):
        self.chan, self.source, self.error = chan, source, None
        self.progress = time.monotonic()  # when the last chunk went out (or all of it did)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while True:
                try:
                    chunk = self.source.read(1 << 16)
                except Exception as e:
                    self.error = e
                    return
                if not chunk:
                    return
                self.chan.sendall(chunk)
                self.progress = time.monotonic()
        except Exception:
            pass  # the channel closed under us: the command's exit says why
        finally:
            self.progress = time.monotonic()
            try:
                self.chan.shutdown_write()
            except Exception:
                pass

    def check(self, path):
        if self.error is not None:
            raise ControllerError(f"reading {path} to send it failed: {self.error}")


def _exec_local(target, command, timeout, before_exec, on_line, stdin=None):
    if before_exec is not None:
        before_exec()
    env = dict(os.environ, **_run_env(target))
    # Its own process group, so a timeout stops the command's children too
    # (they hold the output pipes open).
    with _open_stdin(stdin) or open(os.devnull, "rb") as source:
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=source, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout or None)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise _TimedOut() from None
    lines = _Lines(on_line)
    lines.feed(out)
    lines.close()
    return proc.returncode, _text(out), _text(err)


class _Lines:
    """Whole stdout lines for ``on_line`` as bytes arrive."""

    def __init__(self, on_line):
        self.on_line, self.buf = on_line, b""

    def feed(self, data):
        if self.on_line is None:
            return
        self.buf += data
        *whole, self.buf = self.buf.split(b"\n")
        for line in whole:
            self.on_line(_text(line))

    def close(self):
        if self.on_line is not None and self.buf:
            self.on_line(_text(self.buf))
        self.buf = b""


def _text(data):
    return bytes(data).decode("utf-8", "replace")


def _log(host, command, exited, started, result):
    transcript = console().transcript
    if transcript is not None:
        transcript.command(host, command, exited, time.monotonic() - started,
                           getattr(result, "stdout", ""), getattr(result, "stderr", ""))


def require_target(scope, what):
    if scope is None or getattr(scope, "connection", None) is None:
        raise FakeError(f"{what} needs a host: give -H HOST or -R ROLE")
    return scope.connection
