"""``--strategy``: how the command line's task steps are handed to the engine.

Under ``free`` each run of consecutive task steps on the selected hosts
becomes one step, :func:`fake.engine.free.run_free`; flows and Invoke's own
pre- and post-tasks stay steps of their own, in order, so a flow still
starts only when every host is done with what came before it.
"""

import invoke

from ..engine.free import STRATEGIES, run_free
from ..exceptions import ConfigError
from ..registry import FlowCall

__all__ = ["strategy_of", "merge_free"]


def strategy_of(text):
    """The strategy named on the command line (default linear), or ConfigError."""
    name = (text or "linear").strip().lower()
    if name not in STRATEGIES:
        raise ConfigError(f"--strategy wants one of {', '.join(STRATEGIES)}, got {text!r}")
    return name


class _FreeSteps:
    """What Invoke calls for a group of steps run under ``--strategy free``."""

    autoprint = False

    def __init__(self, executor, calls, hosts):
        self.executor, self.calls, self.hosts = executor, calls, hosts
        self.name = " ".join(call.name for call in calls)

    def __call__(self, context):
        self.executor.begin()
        return run_free(self.executor.run, self.calls, self.hosts)

    def __repr__(self):
        return f"<free on hosts: {self.name}>"


def merge_free(executor, steps):
    """``steps`` with each run of plain task steps on hosts merged into one free step."""
    merged, group, hosts = [], [], None

    def flush():
        if len(group) == 1:
            merged.append(group[0][0])
        elif group:
            merged.append(invoke.Call(_FreeSteps(executor, [call for _, call in group], hosts)))
        group.clear()

    for step in steps:
        fake_call = getattr(getattr(step, "task", None), "call", None)
        step_hosts = getattr(getattr(step, "task", None), "hosts", None)
        if fake_call is None or isinstance(fake_call, FlowCall) or not step_hosts:
            flush()
            merged.append(step)
            continue
        if group and step_hosts != hosts:
            flush()
        hosts = step_hosts
        group.append((step, fake_call))
    flush()
    return merged
