"""What a run learns about each host, for the summary table and the JSON report."""

import threading
import time

from ..exceptions import Interrupted

__all__ = ["Report"]


class Report:
    """Per host: outcome, facts (release, commit), notes and time per stage or task."""

    def __init__(self, hosts=(), selected_roles=(), dry_run=False):
        self.hosts = list(hosts)
        self.selected_roles = list(selected_roles)
        self.dry_run = dry_run
        self.had_flow = False
        self.started = time.monotonic()
        self.outcome = {}  # host -> "ok" or the error that stopped it
        self.info = {}  # host -> {"release": ..., "commit": ...}
        self.notes = {}  # host -> [text]
        self.timings = {}  # host -> {stage or task: seconds}
        self.degraded = {}  # host -> why a flow went on without it (within max_fail)
        self._lock = threading.Lock()

    def annotate(self, host, **facts):
        """Facts about a host for the summary and the JSON report."""
        with self._lock:
            self.info.setdefault(host, {}).update(facts)

    def note(self, host, text):
        """Something the summary should say about a host (e.g. 'reverted to X')."""
        with self._lock:
            self.notes.setdefault(host, []).append(text)

    def timed(self, host, key, seconds):
        with self._lock:
            per_host = self.timings.setdefault(host, {})
            per_host[key] = per_host.get(key, 0.0) + seconds

    def forget(self, hosts):
        """Outcomes of ``hosts`` start over (a flow tried again)."""
        with self._lock:
            for host in hosts:
                self.outcome.pop(host, None)

    def settle(self, results=(), failures=None, skipped=(), interrupted=None):
        """Record how a step ended on each host: ok unless something worse is known."""
        with self._lock:
            for host in skipped:
                self.outcome[host] = Interrupted(interrupted or "SIGINT")
            for host in results:
                self.outcome.setdefault(host, "ok")
            for host, err in (failures or {}).items():
                self.outcome[host] = err
