"""How many hosts at once: the parallel width, and how many connections may be starting.

Two different limits. The width bounds the hosts working at once, and what
it costs is file descriptors (a socket, and for each command a selector and
the channel's pipe), so it follows ``ulimit -n`` instead of a fixed cap.
Connection starts are bounded separately and much lower (``connect_limit``,
30 by default): a bastion or git server under sshd's default
``MaxStartups 10:30:100`` drops unauthenticated connections beyond 10, and
firewalls rate-limit new ones, whatever the machine could hold.
"""

import gc
import threading

try:
    import resource
except ImportError:  # not on every platform; the width then falls back to FALLBACK_WIDTH
    resource = None

from ..env import CallableEnv
from ..settings import number

__all__ = ["default_width", "raise_fd_limit", "connect_slots", "calm_gc", "CONNECT_LIMIT"]

CONNECT_LIMIT = 30
FDS_PER_HOST = 6  # socket, selector, channel pipe (2), the spare channel's pipe, one to spare
RESERVED_FDS = 64  # the log file, the fabfile's own files, Python's imports
FALLBACK_WIDTH = 64
MAX_FDS = 1 << 16  # raising the soft limit further only lets a runaway run do more damage


def raise_fd_limit():
    """Lift the soft file-descriptor limit towards the hard one (as far as MAX_FDS)."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = MAX_FDS if hard == resource.RLIM_INFINITY else min(hard, MAX_FDS)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft


def default_width():
    """The hosts that may work at once when -P is not given: what the fd limit allows."""
    soft = raise_fd_limit()
    if soft is None:
        return FALLBACK_WIDTH
    if soft == resource.RLIM_INFINITY:
        soft = MAX_FDS
    return max(1, (soft - RESERVED_FDS) // FDS_PER_HOST)


def calm_gc():
    """Fewer garbage-collector passes over a heap that only grows during a run.

    Every packet of every host allocates, so the cyclic collector's young
    generation filled thousands of times a deploy and each full pass walked
    every connection's objects again: about 6 % of the controller's CPU at
    200 hosts. What is loaded by now (Fake, Fabric, the fabfile) is frozen
    out of the passes, and the young generation is larger.
    """
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, 20000), max(middle, 20), max(old, 20))


class _Slots:
    """A semaphore sized from ``connect_limit`` when first used (the fabfile has set it by then)."""

    def __init__(self, env):
        self.env = env
        self._sem = None
        self._lock = threading.Lock()

    def _get(self):
        with self._lock:
            if self._sem is None:
                n = number(CallableEnv(self.env), "connect_limit", minimum=1, whole=True, default=CONNECT_LIMIT)
                self._sem = threading.BoundedSemaphore(int(n))
            return self._sem

    def __enter__(self):
        self._get().acquire()
        return self

    def __exit__(self, *exc):
        self._sem.release()
        return False


def connect_slots(env):
    """A context manager held while one connection starts: at most ``connect_limit`` at once."""
    return _Slots(env)
