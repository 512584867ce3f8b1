"""What a person sees, and what the log file keeps.

The screen gets a calm view: a banner, one line per stage, host lines only
when something is worth seeing, a summary. The log file (``log/fake.log``
next to the fabfile by default) gets everything: each command, its host,
exit code, duration and output. Secrets are masked in both.
"""

import datetime
import os
import sys
import threading
import time
from contextvars import ContextVar

from .progress import StageProgress, counted

__all__ = ["Console", "Transcript", "console", "use_console", "QUIET", "NORMAL", "VERBOSE"]

QUIET, NORMAL, VERBOSE = -1, 0, 1
MASK = "********"
_COLORS = {"green": "32", "red": "31", "yellow": "33", "cyan": "36", "dim": "2", "bold": "1"}


class Transcript:
    """Append-only log of a run; every write is masked and flushed."""

    def __init__(self, path, mask):
        self.path = path
        self.mask = mask
        self._lock = threading.Lock()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")

    def write(self, text):
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
        lines = self.mask(text).rstrip("\n").split("\n")
        with self._lock:
            for line in lines:
                self._file.write(f"{stamp} {line}\n")
            self._file.flush()

    def command(self, host, command, exited, seconds, stdout, stderr):
        parts = [f"[{host}] $ " + command.rstrip("\n").replace("\n", "\n    ")]
        parts.append(f"[{host}] exit {exited} in {seconds:.3f}s")
        parts += [f"[{host}] | {line}" for line in (stdout or "").splitlines()]
        parts += [f"[{host}] ! {line}" for line in (stderr or "").splitlines()]
        self.write("\n".join(parts))

    def close(self):
        with self._lock:
            self._file.close()


class Console:
    """The screen side of a run: levels, colour, spinner, masking."""

    def __init__(self, out=None, err=None, level=NORMAL, color=None, transcript=None):
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.level = level
        self.tty = _isatty(self.out)
        self.color = self.tty and not os.environ.get("NO_COLOR") if color is None else color
        self.transcript = transcript
        self.secrets = []
        self._lock = threading.RLock()
        self._spinner = None
        self.compact = 0  # the run's hosts, when there are enough for a progress line per stage; 0: off
        self._progress = None  # the stage's StageProgress while one runs in compact mode
        self._last_progress = None  # the last stage's, for its closing line

    # -- masking --------------------------------------------------------
    def add_secret(self, value):
        if value is None:
            return
        text = str(value)
        if len(text) >= 3 and text not in self.secrets:
            self.secrets.append(text)
            self.secrets.sort(key=len, reverse=True)

    def mask(self, text):
        text = str(text)
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    # -- writing ----------------------------------------------------------
    def paint(self, text, color):
        if not self.color or color not in _COLORS:
            return text
        return f"\033[{_COLORS[color]}m{text}\033[0m"

    def write(self, text, err=False, level=NORMAL, log=True):
        """Write whole lines to the screen if the level allows; log them always."""
        text = self.mask(text)
        if log and self.transcript is not None:
            self.transcript.write(_strip_ansi(text))
        if self.level < level:
            return
        stream = self.err if err else self.out
        with self._lock:
            self._clear_spinner(stream)
            stream.write(text if text.endswith("\n") else text + "\n")
            stream.flush()

    def host_lines(self, host, lines, err=False, level=NORMAL, log=True):
        if self._progress is not None and level == NORMAL:
            level = VERBOSE  # at scale a stage's host lines go to the log (and -v) only
        prefix = self.paint(f"[{host}]", "cyan")
        self.write("".join(f"{prefix} {line}\n" for line in lines), err=err, level=level, log=log)

    def banner(self, text):
        self.write(self.paint(text, "bold"))

    def stage(self, name, seconds):
        progress = self._last_progress if self.compact else None
        if progress is not None and progress.label == name:
            name = progress.text()
        self.write(f"{self.paint('✔' if self.tty else '*', 'green')} {name} ({seconds:.2f}s)")

    def counting(self, fn):
        """``fn`` that counts each host's end in the running stage's progress line (compact mode)."""
        progress = self._progress
        if progress is None:
            return fn
        progress.begin_call()
        return counted(progress, fn)

    def fail(self, text):
        self.write(self.paint(text, "red"), err=True, level=QUIET)

    # -- spinner (a terminal only) ----------------------------------------------
    def spin(self, label):
        """A context manager showing ``label`` with elapsed time while it runs.

        At scale (``compact`` set) it is the stage's progress line instead.
        """
        if self.compact and self.level == NORMAL:
            return _ProgressLine(self, StageProgress(label, self.compact))
        return _Spinner(self, label) if self.tty and self.level >= NORMAL else _NoSpinner()

    def _clear_spinner(self, stream):
        if self._spinner is not None and stream is self.out:
            stream.write("\r\033[K")

    def close(self):
        if self.transcript is not None:
            self.transcript.close()
            self.transcript = None


class _NoSpinner:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _ProgressLine:
    """A stage at scale: counts hosts, redraws on a terminal, one line if the stage fails."""

    def __init__(self, console, progress):
        self.console = console
        self.progress = progress
        self.spinner = _Spinner(console, progress.text) if console.tty else None

    def __enter__(self):
        self.console._progress = self.console._last_progress = self.progress
        if self.spinner is not None:
            self.spinner.__enter__()
        return self

    def __exit__(self, exc_type, *exc):
        self.console._progress = None
        if self.spinner is not None:
            self.spinner.__exit__(exc_type, *exc)
        if exc_type is not None:  # the stage stopped: say how far it got (its errors follow)
            seconds = time.monotonic() - self.progress.started
            self.console.write(f"{self.console.paint('✗' if self.console.tty else '!', 'red')} "
                               f"{self.progress.text(seconds)}")
        return False


class _Spinner:
    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, console, label):
        self.console = console
        self.label = label
        self.done = threading.Event()

    def __enter__(self):
        self.started = time.monotonic()
        self.console._spinner = self
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self):
        i = 0
        out = self.console.out
        while not self.done.wait(0.1):
            with self.console._lock:
                frame = self.FRAMES[i % len(self.FRAMES)]
                label = self.label() if callable(self.label) else self.label
                out.write(f"\r\033[K{frame} {label} {time.monotonic() - self.started:.1f}s")
                out.flush()
            i += 1

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join(1)
        with self.console._lock:
            self.console.out.write("\r\033[K")
            self.console.out.flush()
            self.console._spinner = None
        return False


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _strip_ansi(text):
    import re

    return re.sub(r"\033\[[0-9;]*[A-Za-z]|\r", "", text)


_console = ContextVar("fake_console", default=None)


def console():
    """The console of this run (``fab`` installs the configured one; threads carry it over)."""
    current = _console.get()
    if current is None:
        current = use_console(Console())
    return current


def use_console(new):
    """Make ``new`` the console of this context (and of the threads that carry it)."""
    _console.set(new)
    return new
