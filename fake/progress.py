"""The console at scale: one progress line per stage instead of a line per host.

Above ``compact_above`` hosts (10 by default) a stage shows as
``updating 137/200 ✔ 134 ✗ 3``: redrawn in place on a terminal, printed
once when the stage ends when the output is a pipe or a file. What a host
prints at the normal level goes to the log file only; ``-v`` shows it all
as before. The errors of failed hosts are still printed, one line per
reason naming its hosts (:class:`~fake.exceptions.StepFailed`).
"""

import threading
import time

__all__ = ["StageProgress", "COMPACT_ABOVE"]

COMPACT_ABOVE = 10


class StageProgress:
    """How far one stage has got: hosts done with its current call, and failures so far.

    A stage is several calls (its before-hooks, itself, its after-hooks),
    each run on every host in turn; ``done`` counts the current call,
    ``failed`` the whole stage, since a host that failed stays failed.
    """

    def __init__(self, label, total):
        self.label = label
        self.total = total
        self.done = 0
        self.ok = 0
        self.failed = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def begin_call(self):
        with self._lock:
            self.done = self.ok = 0

    def tick(self, ok):
        with self._lock:
            self.done += 1
            if ok:
                self.ok += 1
            else:
                self.failed += 1

    def text(self, seconds=None):
        with self._lock:
            line = f"{self.label} {self.done}/{self.total} ✔ {self.ok} ✗ {self.failed}"
        if seconds is not None:
            line += f" ({seconds:.2f}s)"
        return line


def counted(progress, fn):
    """``fn`` that ticks ``progress`` as each host finishes (ok, or failed by any exception)."""

    def wrapper(host):
        try:
            result = fn(host)
        except BaseException:
            progress.tick(False)
            raise
        progress.tick(True)
        return result

    return wrapper
