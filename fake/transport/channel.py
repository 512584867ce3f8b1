"""One command over one SSH session channel: the exec loop, its deadline, the stdin sender.

The calling thread reads the channel itself (a selector, no runner threads,
no polling), so a command costs its round trips and little else.
"""

import selectors
import threading
import time

from ..exceptions import ControllerError
from ..shell import quote
from .exec import Lines, TimedOut, decode, open_stdin, run_env

__all__ = ["exec_ssh"]


def _left(deadline):
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimedOut()
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
        except TimedOut:
            if self.sender.thread.is_alive():
                raise TimedOut(f"sending its input made no progress for {self.timeout}s") from None
            raise


def exec_ssh(conn, command, timeout, before_exec, on_line, stdin=None):
    """``command`` on a new session channel of ``conn``: (exited, stdout, stderr), or TimedOut."""
    source = open_stdin(stdin)  # before the channel: a missing file is the controller's error
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
        env = run_env(conn)
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
        out, err, lines = bytearray(), bytearray(), Lines(on_line)
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
        return exited, decode(out), decode(err)
    finally:
        chan.close()  # also ends a sender still blocked on a full window
        if sender is not None:
            sender.thread.join(5)
        if source is not None:
            source.close()


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


