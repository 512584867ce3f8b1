"""A flow's steps in order: stage by stage on every host, or the live-making part batch by batch.

Each call finishes on every host it runs on before the next starts on any.
Under a :class:`~.rollout.Rollout` with a failure budget, a step that
fails on some hosts drops them (their clean-up runs at once) and the
others go on; past the budget, or in the canary batch, the step's failure
stops the flow as always.
"""

import time

from ..exceptions import Interrupted, RolloutStopped, StepFailed
from ..output import console
from .rollout import split_window, steps_of

__all__ = ["Steps"]


class Steps:
    """Runs one flow's body for a :class:`~.flow.FlowRunner`."""

    def __init__(self, runner, flow):
        self.runner, self.run, self.flow = runner, runner.run, flow

    def all(self):
        flow = self.flow
        rollout = flow.rollout
        if rollout.rolling:
            before, window, after = split_window(flow.call.body)
        else:
            before, window, after = steps_of(flow.call.body), [], []
        for stage in before:
            self.stage(*stage)
        if window:
            k = 1
            try:
                for k, batch in enumerate(rollout.batches, 1):
                    self.batch(k, batch, window)
            except KeyboardInterrupt as e:  # between steps, or in batch_wait (a step handles its own)
                signame = getattr(e, "signame", "SIGINT")
                self.run.scheduler.interrupted = signame
                self.run.say(f"interrupted ({signame}) at batch {k}/{len(rollout.batches)}: "
                             "no further batch goes live", err=True)
                raise Interrupted(signame) from None
        for stage in after:
            self.stage(*stage)

    def stage(self, i, name, calls):
        flow = self.flow
        flow.stage = name
        started = time.monotonic()
        with console().spin(name):
            for j, call in calls:
                flow.position = (i, j)
                self.step(call, flow.alive)
        if flow.hosts:
            console().stage(name, time.monotonic() - started)

    def batch(self, k, batch, window):
        """One batch through the live-making calls; then the wait before the next."""
        flow, rollout = self.flow, self.flow.rollout
        hosts = start = [h for h in batch if h in flow.alive]
        if not hosts:
            return
        started = time.monotonic()
        with console().spin(rollout.label(k)):
            for i, name, j, call in window:
                flow.stage, flow.position = name, (i, j)
                self.step(call, hosts, k)
                hosts = [h for h in hosts if h in flow.alive]
        gated = any(getattr(call.task, "batch_gate", False) for *_, call in window)
        lost, earlier = [h for h in start if h not in hosts], [h for h in batch if h not in start]
        line = f"{rollout.label(k)}: {' '.join(hosts) or 'no host'} live" + (", healthy" if gated and hosts else "")
        if lost:
            line += f"; {' '.join(lost)} failed, within max_fail={rollout.budget}"
        if earlier:
            line += f"; {' '.join(earlier)} left out before"
        console().write(f"{line} ({time.monotonic() - started:.1f}s)")
        if k < len(rollout.batches) and rollout.wait:
            time.sleep(rollout.wait)  # a Ctrl-C here stops before the next batch; the clean-up reverts

    def step(self, call, hosts, batch=None):
        flow, run = self.flow, self.run
        targets = [h for h in hosts if h in flow.alive]
        if flow.hosts and not targets:
            return
        try:
            run.run_calls([call], targets)
        except StepFailed as e:
            rollout = flow.rollout
            if not rollout.active or not rollout.droppable(e, waiting=bool(run.lock_wait)):
                raise
            why = rollout.refuse(e, batch)
            if why is None and getattr(call.task, "primary", None):
                why = f"{call.name} (@primary) runs once per {flow.name}: its failure fails the {flow.name}"
            if why is None:
                self.drop(e, call.name)
                return
            if rollout.budget == 0 and batch is None:
                raise  # no budget and no batch: said as always
            raise RolloutStopped(e, why)

    def drop(self, error, step):
        """Hosts that failed within the budget leave the flow, each put back by its clean-up now."""
        flow, run = self.flow, self.run
        failed = [h for h in error.failures if h in flow.alive]
        flow.rollout.drop({h: error.failures[h] for h in failed})
        for host in failed:
            flow.alive.remove(host)
            run.note(host, f"dropped at {step} (max_fail={flow.rollout.budget}): {flow.rollout.failed[host]}")
        reached = run.pool.reached(failed)
        if flow.call.on_failure and reached:
            try:
                self.runner.cleanup(flow, flow.call.on_failure, reached, then=flow.call.final)
            finally:
                flow.cleanup_rest = None
