"""``sys.stdout`` and ``sys.stderr`` a whole line at a time while hosts run in threads.

``print("build")`` is two writes, the text and then the newline. With two
hosts' tasks printing at once, stock Python can put ``buildbuild`` on one
line and an empty line after it. While ``fab`` runs, each thread's
unfinished line waits for its newline (or a flush, or the end of that
host's call), and whole lines go out under one lock.
"""

import sys
import threading
from contextlib import contextmanager

__all__ = ["whole_lines", "flush_thread"]


class LineStream:
    def __init__(self, stream):
        self._stream = stream
        self._lock = threading.Lock()
        self._partial = {}  # thread ident -> its unfinished line

    def write(self, text):
        me, size = threading.get_ident(), len(text)
        text = self._partial.pop(me, "") + text
        cut = text.rfind("\n") + 1
        if cut < len(text):
            self._partial[me] = text[cut:]
        if cut:
            with self._lock:
                self._stream.write(text[:cut])
        return size

    def flush(self):
        rest = self._partial.pop(threading.get_ident(), "")
        with self._lock:
            if rest:
                self._stream.write(rest)
            self._stream.flush()

    def drain(self):
        """Every thread's unfinished line (the run is over)."""
        with self._lock:
            for me in list(self._partial):
                self._stream.write(self._partial.pop(me))
            self._stream.flush()

    def __getattr__(self, name):  # isatty, encoding, fileno, buffer...
        return getattr(self._stream, name)


@contextmanager
def whole_lines():
    """Wrap ``sys.stdout``/``sys.stderr`` for a block; put them back after."""
    saved = sys.stdout, sys.stderr
    wrapped = [LineStream(s) if s is not None else None for s in saved]
    sys.stdout, sys.stderr = wrapped
    try:
        yield
    finally:
        for stream in wrapped:
            if stream is not None:
                try:
                    stream.drain()
                except (OSError, ValueError):
                    pass
        sys.stdout, sys.stderr = saved


def flush_thread():
    """This thread's unfinished lines, out now (a host's call has ended)."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, LineStream) and threading.get_ident() in stream._partial:
            stream.flush()
