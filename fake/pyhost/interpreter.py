"""A host's Python, started once over its connection and asked to run functions.

The first ``call()`` on a host starts ``python3 -c <bootstrap>`` on a new
session channel of the host's pooled connection; later calls reuse it, so
each costs one round trip (plus one per module the host has to fetch the
first time). It belongs to the connection: a connection opened again after
a drop gets a new one.

Everything the host sends is checked here before it is used: frames must
carry the protocol's magic and a bounded length, and values are decoded by
:mod:`fake.pyhost.wire` only. Anything else stops the interpreter with an
error naming the host.
"""

import threading
import time
import weakref

from ..exceptions import ConfigError, HostError, RemoteError
from ..output import QUIET, console
from . import modules
from .bootstrap import command
from .pipes import open_pipe
from .wire import HEADER, MAGIC, WireError, decode, encode, frame, frame_length

__all__ = ["Interpreter", "interpreter_for"]

_registry_lock = threading.Lock()
_EARLY_ERR_LIMIT = 64 << 10


class _Ended(Exception):
    """The interpreter's output ended."""


class Interpreter:
    """One running agent on one host: ``call()`` it from the host's thread (calls are serialized)."""

    def __init__(self, host, pipe, python, fabfile=None):
        self.host, self.pipe, self.python, self.fabfile = host, pipe, python, fabfile
        self.buf = bytearray()
        self.err_line = b""
        self.early_err = bytearray()
        self.ended = False
        self.started = False
        self.broken = None  # the error that stopped it; a later call starts a new one
        self.sent = set()  # digests of function sources the host has
        self.info = None  # (version, pid, executable) from its hello
        self.lock = threading.Lock()

    # -- starting ---------------------------------------------------------
    def start(self, timeout):
        """Wait for the agent's hello; one clear error if the interpreter cannot start."""
        deadline = time.monotonic() + timeout
        try:
            hello = self._next(deadline, "starting Python", timeout)
        except _Ended:
            raise self._fail(self._start_error()) from None
        if not (isinstance(hello, tuple) and len(hello) == 4 and hello[0] == "hello"):
            raise self._fail(self._protocol(f"a first message that is not a hello: {type(hello).__name__}"))
        self.info = hello[1:]
        self.started = True
        self._show_err(bytes(self.early_err))
        self.early_err.clear()
        return self

    def _start_error(self):
        status = self.pipe.exit_status()
        tail = _tail(bytes(self.early_err))
        if status == 127:
            return f"cannot start Python: {self.python!r} was not found on the host" + (f" ({tail})" if tail else "")
        if status == 126:
            return f"cannot start Python: {self.python!r} is not executable on the host" + (f" ({tail})" if tail else "")
        return (f"{self.python!r} exited {status if status is not None else '(no status)'} before Fake's agent "
                f"started" + (f": {tail}" if tail else ""))

    # -- calling ----------------------------------------------------------
    def call(self, spec, args, kwargs, name, timeout=None, debug=False):
        """``fn(*args, **kwargs)`` on the host; its value, or RemoteError / HostError."""
        with self.lock:
            if self.broken is not None:
                raise self.broken
            digest = spec[1] if spec[0] == "src" else None
            sent_spec = ("src", digest, None) if digest in self.sent else spec
            try:
                body = encode(("call", sent_spec, tuple(args), dict(kwargs)))
            except WireError as e:
                raise ConfigError(f"call({name}): an argument cannot be sent to the host: {e}") from None
            deadline = time.monotonic() + timeout if timeout else None
            try:
                self.pipe.send(frame(body))
            except (OSError, EOFError) as e:
                raise self._fail(f"the interpreter went away before call({name}) was sent: {e}") from None
            if digest is not None:
                self.sent.add(digest)
            started, outcome = time.monotonic(), "lost"
            try:
                value = self._answer(name, deadline, timeout, debug)
                outcome = 0
                return value
            except RemoteError as e:
                outcome = f"raised {e.exc_type}"
                raise
            finally:
                self._log(name, outcome, started)

    def _log(self, name, outcome, started):
        """Each call goes to the log file as a command does: ``[web1] $ call(fn)``, then how it ended."""
        transcript = console().transcript
        if transcript is not None:
            transcript.command(self.host, f"call({name}) with {self.python}", outcome,
                               time.monotonic() - started, "", "")

    def _answer(self, name, deadline, timeout, debug):
        while True:
            try:
                message = self._next(deadline, f"call({name})", timeout)
            except _Ended:
                status = self.pipe.exit_status()
                raise self._fail(f"the interpreter ended during call({name}) (exit {status})"
                                 + (f": {_tail(bytes(self.early_err))}" if self.early_err else "")) from None
            kind = message[0] if isinstance(message, tuple) and message and isinstance(message[0], str) else None
            if kind in ("out", "err") and len(message) == 2 and isinstance(message[1], str):
                lines = message[1].rstrip("\n").split("\n")
                console().host_lines(self.host, lines, err=kind == "err")
            elif kind == "find" and len(message) == 2:
                reply = ("module", message[1], modules.answer(message[1], self.fabfile))
                self.pipe.send(frame(encode(reply)))
            elif kind == "ok" and len(message) == 2:
                return message[1]
            elif kind == "raised" and len(message) == 4 and all(isinstance(m, str) for m in message[1:]):
                error = RemoteError(self.host, name, message[1], message[2], message[3])
                if debug and message[3]:
                    console().host_lines(self.host, message[3].rstrip("\n").split("\n"), err=True, level=QUIET)
                raise error
            elif kind == "unsendable" and len(message) == 2 and isinstance(message[1], str):
                raise HostError(self.host, f"call({name}) returned a value that cannot be sent back: {message[1]}")
            else:
                raise self._fail(self._protocol(f"an unexpected message ({kind or type(message).__name__})"))

    # -- reading ------------------------------------------------------------
    def _next(self, deadline, what, limit=None):
        """The next message, read and checked; _Ended when the output ended first."""
        while True:
            buf = self.buf
            if len(buf) >= HEADER:
                try:
                    length = frame_length(bytes(buf[:HEADER]))
                except WireError as e:
                    raise self._fail(self._protocol(str(e))) from None
                if len(buf) >= HEADER + length:
                    body = bytes(buf[HEADER:HEADER + length])
                    del buf[:HEADER + length]
                    try:
                        return decode(body)
                    except WireError as e:
                        raise self._fail(self._protocol(str(e))) from None
            elif buf and bytes(buf[:len(MAGIC)]) != MAGIC[:len(buf)]:
                raise self._fail(self._protocol(f"not a frame of Fake's protocol: {bytes(buf[:40])!r}"))
            if self.ended:
                raise _Ended()
            left = None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._fail(f"{what} timed out after {limit}s")
            try:
                out, err, self.ended = self.pipe.pump(left)
            except (OSError, EOFError) as e:
                raise self._fail(f"the connection was lost during {what}: {e}") from None
            buf += out
            self._show_err(err)

    def _show_err(self, data):
        """The interpreter's own stderr (a child process of ``fn`` writes there): prefixed lines."""
        if not data:
            return
        if not self.started:
            self.early_err += data[:max(0, _EARLY_ERR_LIMIT - len(self.early_err))]
            return
        *lines, self.err_line = (self.err_line + data).split(b"\n")
        if lines:
            console().host_lines(self.host, [line.decode("utf-8", "replace") for line in lines], err=True)

    def _protocol(self, detail):
        return (f"{self.python!r} on the host answered with data that is not Fake's protocol "
                f"(nothing of it was used): {detail}")

    def _fail(self, reason):
        """Stop this interpreter for good; the error for the caller (later calls start a new one)."""
        self.broken = HostError(self.host, reason)
        self.close()
        return self.broken

    def close(self):
        try:
            self.pipe.close()
        except Exception:
            pass


class _PerConnection:
    """The interpreters started over one connection, by interpreter name; one start at a time."""

    def __init__(self):
        self.lock = threading.Lock()
        self.running = {}


def interpreter_for(conn, host, python, timeout, fabfile=None):
    """The running interpreter for ``python`` on ``conn``, started on first use."""
    with _registry_lock:
        # vars(), not setattr: an unknown attribute set on a Fabric connection goes into its config.
        table = vars(conn).setdefault("_fake_interpreters", _PerConnection())
    with table.lock:
        current = table.running.get(python)
        if current is not None and current.broken is None:
            return current
        try:
            pipe = open_pipe(conn, command(python), timeout)
        except Exception as e:  # a session refused, a dropped connection: one line naming the host
            raise HostError(host, f"cannot start {python!r}: opening a session failed: "
                                  f"{type(e).__name__}: {e}") from e
        interp = Interpreter(host, pipe, python, fabfile)
        weakref.finalize(conn, interp.close)  # the local target's process ends with its connection
        interp.start(timeout)
        table.running[python] = interp
        return interp


def _tail(data, lines=3):
    text = data.decode("utf-8", "replace")
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(kept[-lines:])[-300:]
