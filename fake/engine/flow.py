"""Running a flow: each stage, with its hooks, on every host before the next starts on any.

When a stage fails on some hosts the others finish it, nothing later
starts, and the flow's ``on_failure`` calls, then its ``final`` calls, run
on the hosts that were reached. ``--dry-run`` reads each host and prints a
plan instead (the flow's planner, registered by the library that fills it).
"""

import random
import time

from ..env import call_connection
from ..exceptions import ConnectError, HostBusy, RolloutStopped, StepFailed
from ..output import console
from ..registry import FlowCall
from ..tree import render_tree
from .flowstate import FlowState
from .rollout import Rollout
from .steps import Steps

__all__ = ["FlowRunner", "tasks_after"]


class FlowRunner:
    """The flow part of a :class:`~fake.engine.run.Run` (which it is given, not mixed into)."""

    def __init__(self, run):
        self.run = run

    def preflight(self, calls, hosts, outer=()):
        """Flow bodies and checks, per host in its env, before any connection.

        Runs for every flow of the command line before connecting (so a
        missing setting touches nothing), and again as each flow starts.
        """
        run = self.run
        for call in calls:
            if not isinstance(call, FlowCall):
                continue
            checks = run.registry.preflight_checks(call.task)
            roles = run.call_roles(call, outer)
            for host in hosts or [None]:
                with run.scopes.enter(host, roles), run.on_host(host):
                    task = call.task
                    task.body(None, **call.kwargs) if task.takes_context else task.body(**call.kwargs)
                    for check in checks:
                        check()
            for _, group in call.body:
                self.preflight(group, hosts, roles)

    def run_flow(self, fcall, hosts):
        """Run a flow's steps stage by stage; on failure clean up where reached.

        With ``--lock-wait``, a flow that failed only because other runs
        hold some hosts (HostBusy) releases what it took (its final calls
        marked ``on_retry``) and starts again after a short random pause,
        until the wait is used up.
        """
        run = self.run
        self.preflight([fcall], hosts)
        run.had_flow = True
        if run.dry_run:
            return self.plan(fcall, hosts)
        deadline = time.monotonic() + run.lock_wait if run.lock_wait else None
        waited = None
        decided = {}  # error -> try again? (asked twice: before the clean-up, then after)

        def again(error):
            if id(error) not in decided:
                decided[id(error)] = (error, deadline is not None and _busy_only(error)
                                      and not run.scheduler.interrupted and time.monotonic() < deadline)
            return decided[id(error)][1]

        while True:
            try:
                return self._run_once(fcall, hosts, again)
            except StepFailed as e:
                if not again(e):
                    raise
                busy = sorted(str(h) for h in e.failures)
                if busy != waited:  # said again only when other hosts are busy, not as the lock ages
                    reason = next(iter(e.failures.values())).reason.split("; if no deploy")[0]
                    run.say(f"waiting up to {run.lock_wait:g}s for the lock on {', '.join(busy)}: {reason}",
                            err=True)
                    waited = busy
                time.sleep(min(random.uniform(0.3, 1.5), max(0.0, deadline - time.monotonic())))
                run.report.forget(hosts)

    def _run_once(self, fcall, hosts, again):
        run = self.run
        unreachable = {h: e for h, e in run.unreachable.items() if h in hosts}
        hosts = [h for h in hosts if h not in unreachable]
        flow = FlowState(fcall, hosts, run.call_roles(fcall), run)
        token = flow.activate()
        try:
            flow.rollout = self.rollout(flow, unreachable)
            why = flow.rollout.over_budget()
            if why:
                raise RolloutStopped(StepFailed("connect", unreachable), why)
            Steps(self, flow).all()
            if flow.rollout.failed:
                run.report.degraded.update(flow.rollout.failed)
            return {h: "ok" for h in flow.alive}
        except BaseException as e:
            flow.failure = e
            raise
        finally:
            reached = run.pool.reached(hosts)
            try:
                if run.scheduler.aborted:
                    pass  # a second Ctrl-C: no clean-up while commands may still run
                elif flow.failure is not None and fcall.on_failure and not again(flow.failure):
                    # Hosts dropped earlier had their clean-up when they left.
                    self.cleanup(flow, fcall.on_failure, [h for h in reached if h in flow.alive], then=fcall.final)
            finally:
                final = fcall.final or []
                if flow.failure is not None and again(flow.failure):
                    # Tried again: only what gives back what this try took (the lock),
                    # not the fabfile's hooks on the last stage (they run once, at the end).
                    final = [call for call in final if getattr(call.task, "on_retry", False)]
                if final and not run.scheduler.aborted:
                    self.cleanup(flow, final, reached)
                FlowState.deactivate(token)

    def rollout(self, flow, unreachable=None):
        """The flow's batches and failure budget, from the settings as its first host sees them
        (its roles' values included: ``roledefs['production']['canary']``)."""
        first = next(iter(list(flow.hosts) + list(unreachable or ())), None)
        with self.run.scopes.enter(first, flow.roles):
            return Rollout.read(self.run.env, flow.hosts, unreachable)

    def plan(self, fcall, hosts):
        """--dry-run: read each host's state (read-only), then say what the flow would do."""
        run = self.run
        planner = run.registry.planner_for(fcall.task)
        console().write(f"dry run: {fcall.name} on {len(hosts)} host(s); steps and hooks in order:")
        console().write(render_tree(run.registry, fcall.task.name, indent="  "))
        flow = FlowState(fcall, hosts, run.call_roles(fcall), run)
        token = flow.activate()
        try:
            self.plan_hosts(flow)
            if planner is None or not hosts:
                return {}
            probe, plan = planner

            def read(host):
                with run.scopes.enter(host, flow.roles) as scope:
                    with call_connection(scope, run.pool.connect(host, scope)):
                        return probe()

            states = run.on_hosts(f"{fcall.name} (dry run)", hosts, read)
            lines = plan(states)
            for host in hosts:
                console().host_lines(host, lines.get(host, []))
            return states
        finally:
            FlowState.deactivate(token)

    def plan_hosts(self, flow):
        """--dry-run: the batches in order, and where each ``@primary`` task would run."""
        run = self.run
        if flow.hosts:
            rollout = flow.rollout = self.rollout(flow)
            if rollout.rolling:
                wait = f", {rollout.wait:g}s apart" if rollout.wait else ""
                console().write(f"going live in {len(rollout.batches)} batches{wait} (max_fail={rollout.budget}):")
                for line in rollout.plan_lines():
                    console().write("  " + line)
        seen = set()
        for task in _tasks_of(flow.call):
            if getattr(task, "primary", None) and task.name not in seen:
                seen.add(task.name)
                console().write(f"once per {flow.name}: {task.name} on {run.primary_host(task) or 'no host'}")

    def cleanup(self, flow, calls, hosts, then=None):
        """Best effort: every cleanup call runs on every reached host (``then`` follows them)."""
        run = self.run
        for k, call in enumerate(calls):
            flow.cleanup_rest = list(calls[k + 1:]) + list(then or [])
            targets = run.targets(call.task, hosts) or []
            def clean(host):
                try:
                    return run.call_on(call, host)
                except ConnectError:
                    # Lost in the middle of it (the transport looked alive until then):
                    # once more, on a new connection, which gets connect_timeout to come up.
                    return run.call_on(call, host)

            _, failures, _ = run.scheduler.map(targets, clean, interruptible=False,
                                               prepare=run.carry(), on_abort=run.aborting)
            for host, err in failures.items():
                run.say(f"[{host}] cleanup {call.name} failed too: {err}", err=True)
                run.note(host, f"state unknown: the clean-up ({call.name}) could not run here; check this host")


def _busy_only(error):
    """A step that failed only because other runs hold its hosts."""
    return (isinstance(error, StepFailed) and error.failures
            and all(isinstance(e, HostBusy) for e in error.failures.values()))


def tasks_after(flow):
    """The tasks ``flow`` may still run after the current step on a host; None outside a flow.

    The rest of its stages, its final calls, and its on-failure calls too:
    the step may yet fail on another host, and then they run here.
    """
    if flow is None or flow.call is None:
        return None
    if flow.cleanup_rest is not None:  # in the failure clean-up or the final calls
        return [task for call in flow.cleanup_rest for task in _tasks_of(call)]
    if flow.position is None:
        return None
    fcall, (i, j) = flow.call, flow.position
    later = list(fcall.body[i][1][j + 1:])
    for _, group in fcall.body[i + 1:]:
        later += group
    later += list(fcall.on_failure or []) + list(fcall.final or [])
    return [task for call in later for task in _tasks_of(call)]


def _tasks_of(call):
    tasks = [call.task]
    if isinstance(call, FlowCall):
        for _, group in call.body:
            for inner in group:
                tasks += _tasks_of(inner)
        for inner in list(call.on_failure or []) + list(call.final or []):
            tasks += _tasks_of(inner)
    return tasks
