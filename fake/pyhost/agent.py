"""The host's side of ``call()``: runs inside ``python3 -c`` on the host, never on the controller.

The bootstrap (:mod:`fake.pyhost.bootstrap`) runs :mod:`fake.pyhost.wire`'s
source and then this module's in one namespace and calls :func:`serve`.
Nothing is written to disk: the code arrives in the command's argument,
and modules the host lacks come from the controller through
:class:`ControllerFinder`, last on ``sys.meta_path`` (the host's own
modules, the standard library among them, win).

The protocol's descriptors are taken first; fd 0 becomes /dev/null and
fd 1 goes to stderr, so neither the function nor a child process it starts
can read or corrupt a frame. Its ``print()`` output is sent as frames.
Keeps to the standard library and Python 3.6.
"""

import builtins
import importlib
import importlib.util
import io
import linecache
import os
import sys
import threading
import traceback
import types

try:  # imported on the controller (tests); on the host, wire's source ran first in this namespace
    from .wire import HEADER, WireError, decode, encode, frame, frame_length, pair
except (ImportError, SystemError):  # SystemError: how Python 3.5 says "no parent package"
    pass

__all__ = ["serve", "Channel", "ControllerFinder"]


class Channel:
    """Frames over two binary files; sending is locked (threads of ``fn`` may print)."""

    def __init__(self, rfile, wfile):
        self.rfile, self.wfile = rfile, wfile
        self.lock = threading.RLock()

    def send(self, message, encoded=None):
        data = frame(encoded if encoded is not None else encode(message))
        with self.lock:
            self.wfile.write(data)
            self.wfile.flush()

    def recv(self):
        header = self._exact(HEADER)
        return decode(self._exact(frame_length(header)))

    def _exact(self, n):
        data = self.rfile.read(n)
        if data is None or len(data) < n:
            raise EOFError("the controller went away")
        return data


class Relay(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of the function: whole lines as ``out``/``err`` frames."""

    def __init__(self, channel, kind):
        self.channel, self.kind, self.buf = channel, kind, ""

    def writable(self):
        return True

    def write(self, text):
        self.buf += str(text)
        if "\n" in self.buf:
            whole, _, self.buf = self.buf.rpartition("\n")
            self.channel.send((self.kind, whole + "\n"))
        return len(text)

    def flush(self):
        if self.buf:
            text, self.buf = self.buf, ""
            self.channel.send((self.kind, text))


class ControllerFinder:  # not importlib.abc's: importing it costs Python 3.11 about 60 ms
    """Asks the controller for a module this host cannot import by itself."""

    def __init__(self, channel):
        self.channel = channel
        self.missing = set()

    def find_spec(self, fullname, path=None, target=None):
        if fullname in self.missing:
            return None
        with self.channel.lock:  # one question at a time, whatever thread imports
            self.channel.send(("find", fullname))
            reply = self.channel.recv()
        answer = reply[2] if reply[0] == "module" and reply[1] == fullname else None
        if answer is None:
            self.missing.add(fullname)
            return None
        if answer[0] == "refused":
            raise ImportError(answer[1], name=fullname)
        _, is_package, source, origin = answer
        spec = importlib.util.spec_from_loader(fullname, _SourceLoader(source, origin),
                                               origin=origin, is_package=is_package)
        spec.has_location = True  # __file__: some modules only compute paths from it
        return spec


class _SourceLoader:
    def __init__(self, source, origin):
        self.source, self.origin = source, origin

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        exec(compile(self.source, self.origin, "exec"), module.__dict__)

    def get_source(self, name):  # tracebacks show the controller's lines
        return self.source


def _lookup(obj, qualname):
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class Functions:
    """The functions calls name: imported by reference, or built from source sent once."""

    def __init__(self):
        self.sources = {}  # digest -> payload, kept as sent
        self.built = {}  # digest -> function

    def resolve(self, spec):
        if spec[0] == "ref":
            return _lookup(importlib.import_module(spec[1]), spec[2])
        _, digest, payload = spec
        if payload is not None:
            self.sources[digest] = payload
        if digest not in self.built:
            if digest not in self.sources:
                raise LookupError("fake: the controller named a function it never sent")
            self.built[digest] = _build(self.sources[digest])
        return self.built[digest]


_LINES = {}  # filename -> {line number: text} of the sources sent from it


def _build(payload):
    """A function of the fabfile, rebuilt in a fresh namespace from its source and its globals."""
    module_name, filename, target, entries = payload
    namespace = {"__name__": module_name, "__builtins__": builtins, "__file__": filename}
    padded = _LINES.setdefault(filename, {})  # every function sent from that file, for tracebacks
    for entry in entries:
        kind, name = entry[0], entry[1]
        if kind == "module":
            namespace[name] = importlib.import_module(entry[2])
        elif kind == "ref":
            namespace[name] = _lookup(importlib.import_module(entry[2]), entry[3])
        elif kind == "value":
            namespace[name] = entry[2]
        elif kind == "alias":  # the fabfile names one of its functions twice
            namespace[name] = namespace[entry[2]]
        else:  # "source": a def or class at its own line numbers, so tracebacks point at the fabfile
            text = "\n" * (entry[3] - 1) + entry[2]
            for number, line in enumerate(text.splitlines(True)):
                if line.strip():
                    padded[number] = line
            exec(compile(text, filename, "exec"), namespace)
    lines = [padded.get(n, "\n") for n in range(max(padded) + 1)] if padded else []
    linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)
    return namespace[target]


def _exception_name(error):
    kind = type(error)
    module = getattr(kind, "__module__", "builtins")
    return kind.__qualname__ if module in ("builtins", "__main__") else module + "." + kind.__qualname__


def serve(rfd=0, wfd=1):
    """Answer calls until the controller closes the channel."""
    rfile, wfile = io.open(os.dup(rfd), "rb"), io.open(os.dup(wfd), "wb")
    if rfd == 0 and wfd == 1:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(2, 1)
    channel = Channel(rfile, wfile)
    out, err = Relay(channel, "out"), Relay(channel, "err")
    sys.stdin, sys.stdout, sys.stderr = io.StringIO(), out, err
    if sys.path and sys.path[0] == "":
        del sys.path[0]  # -c puts the login directory first; a stray file there must not shadow anything
    sys.meta_path.append(ControllerFinder(channel))
    functions = Functions()
    channel.send(("hello", tuple(sys.version_info[:3]), os.getpid(), sys.executable))
    while True:
        try:
            message = channel.recv()
        except EOFError:
            return
        if message[0] != "call":
            return
        _, spec, args, kwargs = message
        try:
            value = functions.resolve(spec)(*args, **kwargs)
        except BaseException as e:  # SystemExit too: it is the function's outcome, not ours
            out.flush()
            err.flush()
            try:
                text = str(e)
            except Exception:  # an exception whose __str__ fails must not end the agent
                text = "<unprintable {}>".format(type(e).__name__)
            channel.send(("raised", _exception_name(e), text, traceback.format_exc()))
            continue
        out.flush()
        err.flush()
        try:
            body = pair("ok", encode(value))
        except WireError as e:
            channel.send(("unsendable", str(e)))
            continue
        channel.send(None, body)
