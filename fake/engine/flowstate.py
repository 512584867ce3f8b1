"""What one flow (a ``deploy``, a ``rollback``) knows while it runs: typed, and its own.

Every flow started gets a new :class:`FlowState`, held in a ContextVar, so
flows running at the same time (``execute('deploy')`` from a task on
several hosts) never see each other's values. Libraries keep their
per-flow and per-host records here as objects of their own classes
(:meth:`FlowState.shared`, :meth:`FlowState.of_host`), never in ``env``.
"""

import threading
from contextvars import ContextVar

__all__ = ["FlowState", "current_flow"]

_flow = ContextVar("fake_flow", default=None)


class FlowState:
    """One flow's position, hosts and records."""

    def __init__(self, call=None, hosts=(), roles=(), run=None):
        self.run = run  # the Run it belongs to
        self.call = call  # the FlowCall; None for the run's own state outside flows
        self.hosts = list(hosts)
        self.alive = list(hosts)  # the hosts still in the flow: a host dropped within max_fail leaves
        self.rollout = None  # its batches and failure budget (:class:`~fake.engine.rollout.Rollout`)
        self.roles = list(roles)
        self.stage = None  # the stage running now
        self.position = None  # (stage index, call index) of the running call
        self.cleanup_rest = None  # in the failure clean-up: the calls still to run after this one
        self.failure = None  # the error that stopped the flow, once it did
        self._objects = {}
        self._shown = {}  # host -> the values this flow shows in that host's env
        self._lock = threading.RLock()

    @property
    def name(self):
        return self.call.name if self.call is not None else None

    @property
    def kwargs(self):
        """The flow's own arguments (``fab rollback --release X``)."""
        return dict(self.call.kwargs) if self.call is not None else {}

    def has_stage(self, name):
        return self.call is not None and any(stage == name for stage, _ in self.call.body)

    def shared(self, cls):
        """The one ``cls()`` of this flow, for all its hosts (made on first use)."""
        with self._lock:
            if cls not in self._objects:
                self._objects[cls] = cls()
            return self._objects[cls]

    def of_host(self, cls, host):
        """The one ``cls()`` of this flow for ``host``."""
        key = (cls, host)
        with self._lock:
            if key not in self._objects:
                self._objects[key] = cls()
            return self._objects[key]

    def each_host(self, cls):
        """{host: that host's ``cls`` object}, for the hosts that have one."""
        with self._lock:
            return {key[1]: obj for key, obj in self._objects.items() if isinstance(key, tuple) and key[0] is cls}

    def once(self, key, compute):
        """``compute()`` once per flow, its value shared by all hosts (a failure is not kept)."""
        with self._lock:
            slot = ("once", key)
            if slot not in self._objects:
                self._objects[slot] = compute()
            return self._objects[slot]

    def shown(self, host):
        """The dict of values this flow shows in ``host``'s env (``env.release_path``...)."""
        with self._lock:
            return self._shown.setdefault(host, {})

    def activate(self):
        """Make this the running flow; returns a token for :meth:`deactivate`."""
        return _flow.set(self)

    @staticmethod
    def deactivate(token):
        _flow.reset(token)


def current_flow():
    """The flow running in this context, or None."""
    return _flow.get()
