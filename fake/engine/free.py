"""``--strategy free``: each host runs its own list of calls in order, without waiting for the others.

The default (linear) runs each call on every host before the next starts
anywhere: the barrier a deploy's stages need. Tasks given on the command
line often need no barrier (checks, restarts, reports); under ``free`` a
slow host no longer holds up a fast one. A host whose call fails stops its
own list; the others go on, and the failures are reported together at the
end. Flows (deploy, rollback) never run this way: they keep their stages.
"""

from ..registry import FlowCall

__all__ = ["run_free", "STRATEGIES"]

STRATEGIES = ("linear", "free")


def run_free(run, calls, hosts):
    """``calls`` on each of ``hosts``, each host at its own pace; ``{host: value of its last call}``."""
    if any(isinstance(call, FlowCall) for call in calls):
        raise ValueError("run_free() takes no flows: they keep their stage barrier")
    if not hosts:  # nothing to run in parallel: the calls run here, as they would anyway
        return run.run_calls(calls, hosts)
    # Decided once, before any host starts: which hosts each call runs on
    # (@roles narrows them, @runs_once picks the first).
    plan = [(call, run.targets(call.task, hosts)) for call in calls]
    plan = [(call, set(targets)) for call, targets in plan if targets]

    def own_list(host):
        value = None
        for call, targets in plan:
            if host in targets:
                run.scheduler.check()  # after a Ctrl-C, a host starts nothing new
                value = run.call_on(call, host)
        return value

    label = ", ".join(call.name for call, _ in plan) + " (--strategy free)"
    busy = [host for host in hosts if any(host in targets for _, targets in plan)]
    return run.on_hosts(label, busy, own_list)
