"""Ctrl-C and SIGTERM before any task started: leave at once, nothing was touched.

Once tasks run, the program handles them itself (running commands finish,
then the clean-up runs; see :mod:`fake.cli.program`). Before that, while
Python imports Fabric or the fabfile loads, ``fab`` exits 130 (143 for
SIGTERM) with one line, instead of an import traceback or Invoke's silent
exit 1. This module imports nothing of Fake's, so the console script can
install it before the heavy imports.
"""

import signal
import sys

__all__ = ["before_work"]


def before_work(previous=None):
    """Install the leave-at-once handlers; a SIGINT the shell ignores (nohup, ``&``) stays ignored."""
    previous = previous or {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if previous.get(sig, signal.getsignal(sig)) is not signal.SIG_IGN:
            signal.signal(sig, _leave)


def _leave(signum, frame):
    sys.stderr.write(f"interrupted by {signal.Signals(signum).name} before any task started; "
                     "nothing was changed\n")
    raise SystemExit(143 if signum == signal.SIGTERM else 130)
