"""The byte streams of a host's interpreter: a session channel on its SSH connection, or a local process.

Both give the same four calls to :class:`~fake.pyhost.interpreter.Interpreter`:
``send``, ``pump`` (whatever stdout and stderr have, waiting at most a
timeout), ``exit_status`` and ``close``. The caller's thread does the
reading, as for Fake's own commands: no reader threads.
"""

import os
import selectors
import signal
import subprocess

__all__ = ["SshPipe", "LocalPipe", "open_pipe"]


class SshPipe:
    """A new session channel on the host's existing connection (still one connection)."""

    def __init__(self, conn, command, timeout=None):
        self.chan = conn.create_session(timeout=timeout)
        self.chan.exec_command(command)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.chan, selectors.EVENT_READ)

    def send(self, data):
        self.chan.sendall(data)

    def pump(self, timeout):
        chan = self.chan
        if not (chan.recv_ready() or chan.recv_stderr_ready() or chan.closed or chan.eof_received):
            self.selector.select(timeout)
        out, err = bytearray(), bytearray()
        while chan.recv_ready():
            out += chan.recv(65536)
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        ended = (chan.closed or chan.eof_received) and not chan.recv_ready() and not chan.recv_stderr_ready()
        return bytes(out), bytes(err), ended

    def exit_status(self, wait=2.0):
        if self.chan.status_event.wait(wait):
            return self.chan.recv_exit_status()
        return None

    def close(self):
        try:
            self.selector.close()
        finally:
            self.chan.close()


class LocalPipe:
    """The interpreter of the ``local`` target: a child process of ``fab``, in its own process group."""

    def __init__(self, command):
        self.proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.selector = selectors.DefaultSelector()
        self.open = {}
        for stream, name in ((self.proc.stdout, "out"), (self.proc.stderr, "err")):
            self.selector.register(stream, selectors.EVENT_READ, name)
            self.open[name] = stream

    def send(self, data):
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except BrokenPipeError as e:
            raise EOFError("the interpreter closed its input") from e

    def pump(self, timeout):
        got = {"out": bytearray(), "err": bytearray()}
        if self.open:
            for key, _ in self.selector.select(timeout):
                data = os.read(key.fileobj.fileno(), 65536)
                if data:
                    got[key.data] += data
                else:
                    self.selector.unregister(key.fileobj)
                    self.open.pop(key.data, None)
        return bytes(got["out"]), bytes(got["err"]), not self.open

    def exit_status(self, wait=2.0):
        try:
            return self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            return None

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        if self.exit_status(1.0) is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        self.selector.close()
        self.proc.stdout.close()
        self.proc.stderr.close()


def open_pipe(conn, command, timeout=None):
    """The pipe for ``conn``: a channel on an SSH connection, else a local process."""
    if hasattr(conn, "create_session"):
        return SshPipe(conn, command, timeout)
    return LocalPipe(command)
