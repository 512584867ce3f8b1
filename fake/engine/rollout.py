"""Going live in batches: which hosts switch together, and how many may fail.

With ``canary`` or ``batch_size`` set, a flow's live-making part (the
``publishing`` and ``published`` stages, then the health gate that
follows them) runs batch by batch; the stages before it run on every host
first, the stages after it once every batch is live. ``max_fail`` lets up
to that many hosts fail, live-making or not: each is dropped with its own
clean-up and the others go on. All four are off by default.
"""

from dataclasses import dataclass, field

from .. import settings
from ..exceptions import HostBusy, Interrupted, StepFailed

__all__ = ["Rollout", "split_window", "steps_of", "plan_batches", "WINDOW"]

WINDOW = ("publishing", "published")


def plan_batches(hosts, canary=0, size=None):
    """``hosts`` (in host order) as batches: the first ``canary`` alone, then ``size`` at a time."""
    hosts = list(hosts)
    batches = []
    if canary:
        batches.append(hosts[:canary])
        hosts = hosts[canary:]
    step = size or len(hosts)
    batches += [hosts[i:i + step] for i in range(0, len(hosts), step)]
    return [b for b in batches if b]


def steps_of(body):
    """A flow's body as stages (stage index, name, [(call index, call)])."""
    return [(i, name, list(enumerate(group))) for i, (name, group) in enumerate(body)]


def split_window(body):
    """A flow's body as (stages before, the live-making calls, stages after).

    A stage is as :func:`steps_of` gives it and a live-making
    call (stage index, name, call index, call): each step keeps its place
    in the flow. The health gate is the run of ``batch_gate`` tasks that
    opens the stage after the window.
    """
    stages = steps_of(body)
    names = [name for name, _ in body]
    if "publishing" not in names:
        return stages, [], []
    start = end = names.index("publishing")
    while end < len(body) and body[end][0] in WINDOW:
        end += 1
    window = [(i, name, j, call) for i, name, calls in stages[start:end] for j, call in calls]
    after = stages[end:]
    if after:
        i, name, calls = after[0]
        k = 0
        while k < len(calls) and getattr(calls[k][1].task, "batch_gate", False):
            window.append((i, name, *calls[k]))
            k += 1
        after[0] = (i, name, calls[k:])
    return stages[:start], window, after


@dataclass
class Rollout:
    """One flow's batches and failure budget, and the hosts that failed so far."""

    batches: list
    canary: bool = False
    wait: float = 0
    budget: int = 0
    failed: dict = field(default_factory=dict)  # host -> why it left the flow

    @classmethod
    def read(cls, env, hosts, unreachable=None):
        """From the settings as the flow's roles see them; ``unreachable`` hosts count as failed."""
        unreachable = dict(unreachable or {})
        total = len(hosts) + len(unreachable)
        canary = settings.number(env, "canary", whole=True, default=0)
        size = settings.share(env, "batch_size", total, at_least=1)
        wait = settings.number(env, "batch_wait", default=0)
        budget = settings.share(env, "max_fail", total, default=0)
        rolling = bool(canary or size)
        batches = plan_batches(hosts, canary, size) if rolling else [list(hosts)]
        failed = {h: f"unreachable: {getattr(e, 'reason', e)}" for h, e in unreachable.items()}
        return cls(batches, canary=bool(canary), wait=wait if rolling else 0, budget=budget, failed=failed)

    @property
    def rolling(self):
        return len(self.batches) > 1 or self.canary

    @property
    def active(self):
        """Does any of it apply? If not, a flow runs and fails as it always did."""
        return self.rolling or self.budget > 0 or bool(self.failed)

    def over_budget(self):
        """Why the flow must stop before it starts (too many hosts unreachable), else None."""
        if len(self.failed) > self.budget:
            return self._too_many(self.failed)
        return None

    def droppable(self, error, waiting=False):
        """Whether ``error``'s hosts could leave the flow at all (the budget aside).

        Not a Ctrl-C, not a failure with no host named; and a host another
        run holds only while the run does not wait for locks (``--lock-wait``:
        then the flow tries again).
        """
        if not isinstance(error, StepFailed) or not error.failures or None in error.failures:
            return False
        kinds = (Interrupted, HostBusy) if waiting else (Interrupted,)
        return not any(isinstance(e, kinds) for e in error.failures.values())

    def refuse(self, error, batch=None):
        """Why dropping ``error``'s hosts would stop the flow (canary, budget), or None to drop them."""
        if batch is not None and batch == 1 and self.canary:
            return f"the canary batch ({' '.join(self.batches[0])}) failed: no other host goes live"
        failed = {**self.failed, **{h: _reason(e) for h, e in error.failures.items()}}
        if len(failed) > self.budget:
            where = f"in batch {batch}/{len(self.batches)}: " if batch is not None and self.rolling else ""
            return where + self._too_many(failed)
        return None

    def _too_many(self, failed):
        shown = "; ".join(f"{h}: {why}" for h, why in failed.items())
        return (f"{len(failed)} host{'s' if len(failed) != 1 else ''} failed, more than max_fail={self.budget} "
                f"({shown}): no further host goes live")

    def drop(self, failures):
        for host, err in failures.items():
            self.failed[host] = _reason(err)

    def label(self, k):
        return f"batch {k}/{len(self.batches)}" + (" (canary)" if k == 1 and self.canary else "")

    def plan_lines(self):
        """The batches in order, for --dry-run."""
        return [f"{self.label(k)}: {' '.join(b)}" for k, b in enumerate(self.batches, 1)]


def _reason(err):
    text = getattr(err, "reason", None) or str(err) or type(err).__name__
    return text.splitlines()[0][:200]
